"""The ledger's ingest beside two peers, Tessera's POSIX log and immudb, on the same entries.

In one run, on this machine (`make up` first; the peers built by deploy/local/peers.sh):

1. N simulated events through the real Emitter into Kafka (benchmarks/ingest.py's way);
2. the entries: the ledger's own leaf bytes of those N events, made from the records read
   back from Kafka (a leaf is a pure function of its record: ledger/log/leaf.py);
3. Tessera v1.0.4, POSIX driver: the entries appended until a signed checkpoint covers
   the last one (benchmarks/peers/tessera);
4. immudb v1.10.0, a real server: the entries written with SetAll, 1,000 per transaction,
   one session, each transaction fsynced and indexed before it returns
   (benchmarks/peers/immudb);
5. the ledger end to end: `ledger consume` with one and then two processes into empty
   ledgers, events/s from the first append to the last (as benchmarks/ingest.py);
6. the baseline: a single-connection raw COPY of leaves and index rows (ingest.raw_copy).

The peers run once per round, interleaved with the ledger's runs. One table: entries/s
and the ratios to the ledger's best end-to-end figure and to the raw COPY.
`--skip-ledger`: the peers alone, on leaves made without Kafka (no stack needed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.baselines import raw_copy
from benchmarks.ingest import (
    consumer,
    count_events,
    fresh_database,
    ingest_times,
    produce,
)
from benchmarks.peerfmt import PeerError, Row, format_table, frame_entries
from benchmarks.peerprocs import (
    exit_status,
    require_binaries,
    run_immudb,
    run_tessera,
    sweep_stale,
    temp_dir,
)
from benchmarks.proofs import admin_kafka, env, on_db, simulator
from consumers.classify import kafka_record
from integrations.simulator import Simulator
from ledger.log.leaf import KafkaRecord, encode_leaf
from ledgerctl.infra import ensure_topics
from ledgerctl.settings import KafkaRole, kafka_security_from_env
from producers.codec import Codec
from producers.events import event_key
from producers.kafka_security import client_kwargs

PARTITIONS = 4
INGEST_TIMEOUT_S = 1800
STEP_NAMES = {
    "1": "ledger end to end, one consumer",
    "2": "ledger end to end, two consumers",
    "copy": "raw COPY",
}


async def kafka_leaves(settings: dict[str, str], topics: tuple[str, str], n: int) -> list[bytes]:
    """The leaves of every record in the topics, in (topic, partition, offset) order."""
    kafka = AIOKafkaConsumer(
        bootstrap_servers=settings["KAFKA_BOOTSTRAP"], group_id=None, enable_auto_commit=False,
        **client_kwargs(kafka_security_from_env(settings, KafkaRole.CONSUMER)),
    )  # fmt: skip
    await kafka.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        kafka.assign(parts)
        await kafka.seek_to_beginning(*parts)
        ends = await kafka.end_offsets(parts)
        leaves: dict[tuple[str, int, int], bytes] = {}
        while [p for p in parts if await kafka.position(p) < ends[p]]:
            for batch in (await kafka.getmany(timeout_ms=1000, max_records=10_000)).values():
                for r in batch:  # the consumer's own record -> leaf
                    leaves[(r.topic, r.partition, r.offset)] = encode_leaf(kafka_record(r))
    finally:
        await kafka.stop()
    if len(leaves) != n:
        raise PeerError(f"read {len(leaves):,} records back from Kafka, not {n:,}")
    return [leaves[k] for k in sorted(leaves)]


def local_leaves(n: int) -> list[bytes]:
    """Leaves of n simulated events made without Kafka (the same layout; the producer's
    signature travels in a Kafka header, outside the leaf, in either case)."""
    codec = Codec()
    leaves = []
    for i, e in enumerate(Simulator(seed=int(secrets.token_hex(4), 16)).events(n)):
        value = codec.encode(e.stamped(producer_id="bench", producer_seq=i))
        record = KafkaRecord(topic="bench-phi-access", partition=i % PARTITIONS,
                             offset=i // PARTITIONS, timestamp_ms=int(time.time() * 1000),
                             timestamp_type=0, key=event_key(e).encode(), value=value)  # fmt: skip
        leaves.append(encode_leaf(record))
    return leaves


async def drop_database(settings: dict[str, str], db: str) -> None:
    admin = await asyncpg.connect(settings["DATABASE_URL"])
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await admin.close()


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def end_to_end(
    settings: dict[str, str], topics: tuple[str, str], n: int, processes: int, workdir: Path
) -> float:
    """events/s of `ledger consume` x processes over the n events already in Kafka."""
    run = secrets.token_hex(3)
    db = f"ledger_bench_peers_{run}_{processes}"
    await fresh_database(settings, db)
    url = on_db(settings["DATABASE_URL"], db)
    log = workdir / f"consumer-{processes}.log"
    procs = [consumer(settings, db, topics, f"bench-peers-{run}", log) for _ in range(processes)]
    try:
        deadline = time.monotonic() + INGEST_TIMEOUT_S
        while await count_events(url) < n:
            if dead := [p.returncode for p in procs if p.poll() is not None]:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                raise PeerError(
                    f"a `ledger consume` process exited ({exit_status(dead[0])}); "
                    f"its log ends:\n{tail or '(empty)'}"
                )
            if time.monotonic() > deadline:
                raise PeerError(f"ingest did not finish in {INGEST_TIMEOUT_S} s")
            await asyncio.sleep(0.5)
        _stop(procs)
        first, last = await ingest_times(url)
        return n / max(last - first, 1e-6)
    finally:
        _stop(procs)
        await drop_database(settings, db)


async def copy_baseline(settings: dict[str, str], n: int) -> float:
    db = f"ledger_bench_peers_copy_{secrets.token_hex(3)}"
    await fresh_database(settings, db)
    try:
        return (await raw_copy(on_db(settings["DATABASE_URL"], db), n))[0]
    finally:
        await drop_database(settings, db)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000, help="N (default 200,000)")
    parser.add_argument("--rounds", type=int, default=2, help="peer rounds (default 2)")
    parser.add_argument(
        "--skip-ledger",
        action="store_true",
        help="the peers alone, on leaves made without Kafka; no stack needed",
    )
    parser.add_argument(
        "--tessera-batch",
        type=int,
        default=1000,
        help="Tessera entries per batch (default 1,000, as immudb's per transaction)",
    )
    parser.add_argument("--immudb-per-tx", type=int, default=1000)
    args = parser.parse_args()
    if args.events < 1 or args.rounds < 1:
        parser.error("--events and --rounds must be at least 1")
    return args


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def run(args: argparse.Namespace, workdir: Path) -> None:
    bins = require_binaries()
    print(f"load average at start: {load()}")
    if args.skip_ledger:
        await measure(args, bins, workdir, local_leaves(args.events), None)
        return
    settings = env()
    run_id = secrets.token_hex(3)
    topics = (f"bench-peers-{run_id}-phi-access", f"bench-peers-{run_id}-relay")
    await ensure_topics(settings["KAFKA_BOOTSTRAP"], topics, PARTITIONS, admin_kafka(settings))
    try:
        await produce(settings["KAFKA_BOOTSTRAP"], topics, args.events, simulator(settings))
        leaves = await kafka_leaves(settings, topics, args.events)
        await measure(args, bins, workdir, leaves, (settings, topics))
    finally:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings["KAFKA_BOOTSTRAP"], **client_kwargs(admin_kafka(settings))
        )
        await admin.start()
        try:
            await admin.delete_topics(list(topics))
        finally:
            await admin.close()


async def measure(
    args: argparse.Namespace,
    bins: dict[str, Path],
    workdir: Path,
    leaves: list[bytes],
    stack: tuple[dict[str, str], tuple[str, str]] | None,
) -> None:
    """The peers' rounds, the ledger's runs between them (unless ``stack`` is None)."""
    n = args.events
    sizes = [len(leaf) for leaf in leaves]
    print(f"{n:,} entries: the ledger's leaves, mean {statistics.fmean(sizes):.0f} B "
          f"(min {min(sizes)}, max {max(sizes)})"
          + ("" if stack else "; made without Kafka"))  # fmt: skip
    entries = workdir / "entries.bin"
    entries.write_bytes(frame_entries(leaves))
    leaves.clear()
    tessera: list[float] = []
    immudb: list[float] = []
    ledger: dict[str, list[float]] = {"1": [], "2": [], "copy": []}
    steps: list[tuple[str, Callable[[], Awaitable[float]]]] = []
    if stack is not None:
        settings, topics = stack
        steps = [
            ("1", lambda: end_to_end(settings, topics, n, 1, workdir)),
            ("2", lambda: end_to_end(settings, topics, n, 2, workdir)),
            ("copy", lambda: copy_baseline(settings, n)),
        ]
    for r in range(args.rounds):
        tessera.append(run_tessera(bins, entries, n, args.tessera_batch).rate)
        immudb.append(run_immudb(bins, entries, n, args.immudb_per_tx).rate)
        print(f"round {r + 1}: Tessera {tessera[-1]:,.0f}/s, immudb {immudb[-1]:,.0f}/s")
        for name, step in steps[r : r + 1] if r < args.rounds - 1 else steps[r:]:
            ledger[name].append(await step())
            print(f"  {STEP_NAMES[name]}: {ledger[name][-1]:,.0f}/s")
    print(f"load average at end: {load()}")
    print_table(args, tessera, immudb, ledger)


def print_table(
    args: argparse.Namespace,
    tessera: list[float],
    immudb: list[float],
    ledger: dict[str, list[float]],
) -> None:
    rows = [
        Row(system="Tessera v1.0.4, POSIX driver", rates=tuple(tessera),
            measured=f"appended until a signed checkpoint covered them "
                     f"(batches of {args.tessera_batch:,})"),
        Row(system="immudb v1.10.0 server", rates=tuple(immudb),
            measured=f"SetAll, {args.immudb_per_tx:,} entries per transaction, one session, "
                     "indexed and fsynced"),
    ]  # fmt: skip
    if ledger["1"]:
        rows += [
            Row(system="this ledger, end to end", rates=tuple(ledger["1"]),
                measured="Kafka -> one `ledger consume` -> PostgreSQL"),
            Row(system="this ledger, end to end", rates=tuple(ledger["2"]),
                measured="Kafka -> two `ledger consume` -> PostgreSQL"),
            Row(system="this ledger's baseline", rates=tuple(ledger["copy"]),
                measured="raw COPY of leaves + index rows, one connection"),
        ]  # fmt: skip
    end_to_end = max(rows[2].rate, rows[3].rate) if ledger["1"] else None
    copy = rows[4].rate if ledger["1"] else None
    print(f"\n{args.events:,} entries; median (range) over {args.rounds} round(s) for the peers; "
          "ratios to the ledger's best end-to-end figure and to the raw COPY")  # fmt: skip
    print(format_table(rows, end_to_end=end_to_end, copy=copy))


def main() -> None:
    args = parse_args()
    # TERM unwinds like Ctrl-C, so the peers' processes and directories are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for path in sweep_stale():
        print(f"removed {path}, left by a killed run")
    workdir = temp_dir("run")
    try:
        asyncio.run(run(args, workdir))
    except PeerError as exc:
        print(f"peers: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
