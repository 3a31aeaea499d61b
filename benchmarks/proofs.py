"""Proof latency through the real API at ledger scale (default 10M leaves in one log).

Loads the log through the bulk path (COPY of leaves and full tiles into a scratch
database, reused on later runs), serves it with the real aiohttp API and reader
role, then measures, side by side in one run:
  - GET /healthz (the HTTP floor),
  - inclusion proofs (random index, tree_size = n),
  - consistency proofs (random first, second = n),
and prints p50/p90/p99 and throughput. Needs `make up` (or stack.sh infra).

The API is authenticated and records every read as an AuditLogUsed event in Kafka
before answering: the benchmark issues itself an admin token in the scratch database
and points the server's read recorder at throwaway topics (deleted afterwards), so
the demo ledger's consumer never sees these reads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from ledger.audit.auth import Role
from ledger.log import merkle, tiles
from ledger.log.leaf import KafkaRecord, encode_leaf
from ledger.pg import tree
from ledger.pg.migrate import apply_migrations
from ledgerctl.infra import api_ready, ensure_topics
from ledgerctl.settings import KAFKA_SECURITY_VARS, KafkaRole, kafka_security_from_env
from ledgerctl.tokens import create_token
from producers.kafka_security import KafkaSecurity, client_kwargs

ROOT = Path(__file__).resolve().parents[1]
BATCH = 100_000


def env() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".local" / "env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def admin_kafka(settings: dict[str, str]) -> KafkaSecurity:
    """The admin principal's Kafka settings from .local/env (topic set-up and clean-up)."""
    return kafka_security_from_env(settings, KafkaRole.ADMIN)


def simulator(settings: dict[str, str]) -> KafkaSecurity:
    """A producer principal's Kafka settings from .local/env."""
    return kafka_security_from_env(settings, KafkaRole.SIMULATOR)


def on_db(url: str, db: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


@dataclass(frozen=True, slots=True)
class Api:
    """A running `ledger serve` and what a client needs to call it."""

    base: str
    token: str
    process: subprocess.Popen[bytes]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextlib.asynccontextmanager
async def serve_api(
    settings: dict[str, str],
    db: str,
    *,
    profile: Path | None = None,
    workers: int = 1,
    source: Path | None = None,
) -> AsyncIterator[Api]:
    """Run the real API (`ledger serve`, its own process, reader role) on database ``db``.

    Issues an admin token into ``db``; the server records each read (AuditLogUsed) to
    two throwaway topics, deleted on exit with its spool. With ``profile`` the server
    runs under cProfile and writes its stats there when it stops. ``workers``: API
    processes (`--workers`); ``source``: run the code of this source tree instead (an
    exported older commit, the baseline of a side-by-side run).
    """
    run = secrets.token_hex(3)
    topics = (f"bench-{run}-reads-phi-access", f"bench-{run}-reads-relay")
    bootstrap = settings["KAFKA_BOOTSTRAP"]
    await ensure_topics(bootstrap, topics, 1, admin_kafka(settings))
    issued = await create_token(
        on_db(settings["DATABASE_URL"], db), subject="bench", role=Role.ADMIN, ttl=None,
        note="benchmark client",
    )  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix=f"ledger-bench-api-{run}-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server_env = {
        **os.environ,
        "LEDGER_ENV_FILE": os.devnull,
        "LEDGER_READER_URL": on_db(settings["LEDGER_READER_URL"], db),
        "KAFKA_BOOTSTRAP": bootstrap,
        **{k: v for k, v in settings.items() if k in KAFKA_SECURITY_VARS},
        "LEDGER_ACCESS_TOPIC": topics[0],
        "LEDGER_RELAY_TOPIC": topics[1],
        "LEDGER_SPOOL_DIR": str(workdir / "spool"),
    }
    ledger = str(Path(sys.executable).with_name("ledger"))
    command = [ledger, "serve", "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    if source is not None:
        server_env["PYTHONPATH"] = str(source)
        command = [sys.executable, "-m", "ledgerctl", *command[1:]]
    if profile is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), *command]
    log = workdir / "api.log"
    with log.open("wb") as out:
        server = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
            command, env=server_env, stdout=out, stderr=subprocess.STDOUT, cwd=source
        )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            await api_ready(base, 30)
        except TimeoutError:
            tail = log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"`ledger serve` did not come up; its output:\n{tail}") from None
        yield Api(base=base, token=issued.text, process=server)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, **client_kwargs(admin_kafka(settings))
        )
        await admin.start()
        try:
            await admin.delete_topics(list(topics))
        finally:
            await admin.close()


async def load(owner: str, n: int) -> float:
    """Bulk-load n leaves and their full tiles into log 1; return seconds taken."""
    conn = await asyncpg.connect(owner)
    started = time.perf_counter()
    try:
        await conn.execute(
            "INSERT INTO logs (origin, topic, kafka_partition, period, period_end, first_offset)"
            " SELECT $1, 'bench', 0, m, (m + interval '1 month')::date, 0"
            " FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date) AS t(m)",
            "bench.ledger.local/bench/0",
        )
        row = await conn.fetchrow("SELECT log_id, period FROM logs")
        if row is None:
            raise SystemExit("the log just inserted is not there")
        log_id, period = row
        rng = random.Random(1)
        level_entries: dict[int, list[bytes]] = {0: []}
        sha = hashlib.sha256
        builder = merkle.TreeBuilder()
        for start in range(0, n, BATCH):
            rows = []
            tile_rows = []
            for i in range(start, min(n, start + BATCH)):
                record = KafkaRecord(
                    topic="bench", partition=0, offset=i, timestamp_ms=1_700_000_000_000 + i,
                    timestamp_type=0, key=b"p|%d" % (i % 50_000),
                    value=b"\xc3\x01" + rng.randbytes(8) + os.urandom(120),
                )  # fmt: skip
                leaf = encode_leaf(record)
                h = sha(b"\x00" + leaf).digest()
                builder.append(h)
                rows.append((log_id, i, leaf, h, period))
                level_entries[0].append(h)
                level = 0
                while len(level_entries[level]) == tiles.TILE_WIDTH:
                    entries = level_entries[level]
                    # Leaf i completes this tile: it is the last of its 256^(level+1) leaves.
                    tile_index = (i + 1) // (1 << (8 * (level + 1))) - 1
                    root = tiles.perfect_root(entries)
                    tile_rows.append((log_id, level, tile_index, b"".join(entries), root, period))
                    level_entries[level] = []
                    level_entries.setdefault(level + 1, []).append(root)
                    level += 1
            await conn.copy_records_to_table(
                "leaves",
                records=rows,
                columns=("log_id", "leaf_index", "leaf", "leaf_hash", "period"),
            )
            if tile_rows:
                await conn.copy_records_to_table(
                    "tiles",
                    records=tile_rows,
                    columns=("log_id", "level", "tile_index", "hashes", "root", "period"),
                )
            print(f"  loaded {min(n, start + BATCH):,} leaves", end="\r", flush=True)
        await conn.execute("ANALYZE leaves; ANALYZE tiles")
        # The bulk path must build exactly the tree the appender would.
        stored = await tree.root_at(conn, log_id, n, n)
        if stored != builder.root():
            raise SystemExit("bulk-loaded tiles do not reproduce the tree root")
    finally:
        await conn.close()
    print()
    return time.perf_counter() - started


def percentiles(samples: list[float]) -> str:
    qs = statistics.quantiles(samples, n=100)
    return f"p50 {qs[49] * 1000:6.2f} ms  p90 {qs[89] * 1000:6.2f} ms  p99 {qs[98] * 1000:6.2f} ms"


async def measure(
    session: aiohttp.ClientSession, urls: list[str], concurrency: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    queue = list(reversed(urls))

    async def worker() -> None:
        while queue:
            url = queue.pop()
            t = time.perf_counter()
            async with session.get(url) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url}: {resp.status}")
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, len(urls) / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leaves", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    settings = env()
    db = f"ledger_bench_proofs_{args.leaves}"
    admin = await asyncpg.connect(settings["DATABASE_URL"])
    exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db)
    if not exists:
        await admin.execute(f'CREATE DATABASE "{db}"')
    await admin.close()
    owner = on_db(settings["DATABASE_URL"], db)
    apply_migrations(owner)
    conn = await asyncpg.connect(owner)
    size = await conn.fetchval("SELECT coalesce(max(leaf_index) + 1, 0) FROM leaves")
    await conn.close()
    if size != args.leaves:
        if size:
            raise SystemExit(f"{db} holds {size} leaves; drop it to reload")
        print(f"bulk-loading {args.leaves:,} leaves (leaves + full tiles, COPY) ...")
        seconds = await load(owner, args.leaves)
        print(f"loaded {args.leaves:,} leaves in {seconds:.1f}s ({args.leaves / seconds:,.0f}/s)")
    else:
        print(f"reusing {db} ({size:,} leaves)")

    n = args.leaves
    rng = random.Random(7)
    # The API runs as its own process (`ledger serve`), as in production; this process
    # is only the client.
    async with serve_api(settings, db) as api:
        await run_requests(api, args, n, rng)


async def run_requests(api: Api, args: argparse.Namespace, n: int, rng: random.Random) -> None:
    base = api.base

    def urls(kind: str) -> list[str]:
        if kind == "floor":
            return [f"{base}/healthz"] * args.requests
        if kind == "inclusion":
            return [
                f"{base}/v1/logs/1/proof/inclusion?index={rng.randrange(n)}&tree_size={n}"
                for _ in range(args.requests)
            ]
        return [
            f"{base}/v1/logs/1/proof/consistency?first={rng.randrange(1, n)}&second={n}"
            for _ in range(args.requests)
        ]

    async with aiohttp.ClientSession(headers=api.headers) as session:
        await measure(session, urls("inclusion")[:300], 1)  # warm up
        print(f"log size {n:,} leaves; {args.requests} random requests per row")
        for concurrency in (1, args.concurrency):
            print(f"-- concurrency {concurrency}")
            floor: list[float] = []
            for kind in ("floor", "inclusion", "consistency"):
                lat, rps = await measure(session, urls(kind), concurrency)
                floor = floor or lat
                p99_ratio = (
                    statistics.quantiles(lat, n=100)[98] / statistics.quantiles(floor, n=100)[98]
                )
                label = {"floor": "GET /healthz (HTTP floor)"}.get(kind, f"{kind} proof")
                print(
                    f"{label:<28} {percentiles(lat)}  {rps:7,.0f} req/s  "
                    f"p99 {p99_ratio:4.1f}x floor"
                )


if __name__ == "__main__":
    asyncio.run(main())
