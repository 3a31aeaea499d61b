"""Checkpointing's cost to ingest: appends with and without signing, side by side.

Appends the same kind of synthetic batches (real leaf format, tiles integrated in
the append transaction) three ways in one run, each into its own fresh database:
no checkpoints, the default cadence (every 1000 ms or 100,000 leaves), and a
checkpoint after every batch (the worst case). Prints leaves/s, the throughput
lost against the runs without checkpoints, and the share of wall time spent
inside checkpointing measured in the same run. Needs `make up`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.proofs import env, on_db
from ledger.audit.ingest import Accepted
from ledger.log.note import generate_signer, parse_signer_key
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from ledger.pg.migrate import apply_migrations
from tests.support import synthetic_batch


async def run(
    url: str, batches: list[list[Accepted]], policy: CheckpointPolicy | None
) -> tuple[float, int, float]:
    """(leaves/s, checkpoints signed, share of wall time spent checkpointing)."""
    topic = batches[0][0].record.topic
    signer = parse_signer_key(generate_signer("bench.ledger.local")[0])
    async with PostgresAppender(dsn=url, ledger_name="bench.ledger.local", pool_size=2) as app:
        cp = None
        if policy is not None:
            cp = Checkpointer(pool=app.pool, signers=[signer], policy=policy)
        signed = size = 0
        in_checkpoints = 0.0
        started = time.perf_counter()
        for items in batches:
            result = await app.append(topic=topic, partition=0, items=items)
            size += len(items)
            if cp is not None:
                t = time.perf_counter()
                if await cp.after_append(result.log_id, size) is not None:
                    signed += 1
                in_checkpoints += time.perf_counter() - t
        seconds = time.perf_counter() - started
    return size / seconds, signed, in_checkpoints / seconds


def make_batches(leaves: int, batch: int, seed: int) -> list[list[Accepted]]:
    rng = random.Random(seed)
    topic = f"bench-{seed}-{uuid.uuid4().hex[:6]}"
    return [synthetic_batch(topic, start, batch, rng) for start in range(0, leaves, batch)]


async def fresh_database(settings: dict[str, str], name: str) -> str:
    admin = await asyncpg.connect(settings["DATABASE_URL"])
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    apply_migrations(on_db(settings["DATABASE_URL"], name))
    return on_db(settings["LEDGER_APPENDER_URL"], name)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leaves", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    settings = env()
    variants = (
        ("no checkpoints", None),
        ("default cadence (1 s / 100k leaves)", CheckpointPolicy()),
        ("a checkpoint after every batch", CheckpointPolicy(every_leaves=1, every_ms=0)),
        ("no checkpoints (again, for noise)", None),
    )
    rows = []
    for seed, (label, policy) in enumerate(variants):
        url = await fresh_database(settings, f"ledger_bench_checkpoints_{seed}")
        rate, signed, share = await run(url, make_batches(args.leaves, args.batch, seed), policy)
        rows.append((label, rate, signed, share))
    base = (rows[0][1] + rows[3][1]) / 2
    print(f"{args.leaves:,} leaves in batches of {args.batch}, one log, synchronous_commit on")
    print("overhead: throughput lost against the mean of the two runs without checkpoints")
    print("in-run share: wall time spent inside checkpointing, measured in that same run")
    for label, rate, signed, share in rows:
        print(
            f"{label:<38} {rate:>9,.0f} leaves/s  {signed:4d} checkpoints  "
            f"overhead {100 * (1 - rate / base):5.1f}%  in-run share {100 * share:5.2f}%"
        )


if __name__ == "__main__":
    asyncio.run(main())
