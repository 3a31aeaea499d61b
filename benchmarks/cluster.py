"""A 3-broker Kafka cluster beside a single broker, in one run: ingest and failover.

Both Kafkas are the benchmark's own (tests/kafka_cluster.py: their own ports, data and
secrets, the security of `make up`), started one after the other so that they never
share the machine; the ledgers are scratch databases on the stack's PostgreSQL
(`make up` first). For each of one broker (topics with replication factor 1,
min.insync.replicas 1) and three brokers (3 and 2):

1. produce: N simulated events through the real Emitter (signed, idempotent, acks=all),
   events/s from the first emit() to the last acknowledgement;
2. end to end: those N events consumed by a real `ledger consume` into an empty ledger,
   events/s from its first append to its last;
3. failover: a paced stream through an Emitter with a spool (as the API and the ATNA
   receiver run), one consumer caught up; SIGKILL the leader of partition 0 (the one
   broker is then restarted at once, as a supervisor would); the time from the kill to
   the first append of an event emitted after it into a partition the dead broker led.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ingest import (
    bench_key,
    consumer,
    count_events,
    fresh_database,
    ingest_times,
    produce,
)
from benchmarks.proofs import env, on_db
from integrations.simulator import Simulator
from ledgerctl.infra import ensure_topics
from ledgerctl.replication import TopicReplication
from ledgerctl.settings import KafkaRole
from producers.emitter import Emitter, EmitterConfig
from tests.kafka_cluster import KafkaCluster, free_base_port

PARTITIONS = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures:
    produce: float
    end_to_end: float
    failover: float
    led: tuple[int, ...]
    #: CPU seconds of the PostgreSQL backends serving the consumer, per appended event.
    pg_cpu_per_event: float
    #: The ledger database's size per appended event (bytes; tables, indexes, tiles).
    bytes_per_event: float


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, from /proc (PostgreSQL runs on this machine)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sample_backends(
    admin_url: str, db: str, seen: dict[int, float], stop: asyncio.Event
) -> None:
    """Until ``stop``: the CPU time of every backend connected to ``db`` (the consumer's),
    the last value seen per backend process."""
    conn = await asyncpg.connect(admin_url)
    try:
        while not stop.is_set():
            for row in await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", db):
                cpu = _cpu_seconds(row["pid"])
                if cpu is not None:
                    seen[row["pid"]] = cpu
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def paced(
    cluster: KafkaCluster, topics: tuple[str, str], rate: float, stop: asyncio.Event, spool: Path
) -> dict[uuid.UUID, float]:
    """Emit ``rate`` events/s until ``stop``; each event id -> the wall time of its emit()."""
    config = EmitterConfig(
        bootstrap_servers=cluster.bootstrap,
        producer_id="bench",
        access_topic=topics[0],
        relay_topic=topics[1],
        kafka_security=cluster.kafka(KafkaRole.SIMULATOR),
        producer_key_file=bench_key()[0],
        spool_dir=str(spool),
        first_sequence=10_000_000,
    )
    emitted: dict[uuid.UUID, float] = {}
    events = Simulator(seed=int(secrets.token_hex(4), 16)).events(10_000_000)
    start = time.monotonic()
    async with Emitter(config) as emitter:
        for i, event in enumerate(events):
            if stop.is_set():
                break
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            emitted[event.event_id] = time.time()
            await emitter.emit(event)
        await emitter.flush()
    return emitted


async def first_append_after(
    url: str, topic: str, led: tuple[int, ...], ids: list[uuid.UUID]
) -> float | None:
    """The earliest commit time of any of ``ids`` appended to the logs of ``led``."""
    conn = await asyncpg.connect(url)
    try:
        value = await conn.fetchval(
            "SELECT extract(epoch FROM min(p.committed_at)) FROM events e "
            "JOIN logs g ON g.log_id = e.log_id "
            "JOIN ingest_positions p ON p.log_id = e.log_id AND e.leaf_index >= p.first_leaf "
            "AND e.leaf_index < p.first_leaf + p.appended "
            "WHERE g.topic = $1 AND g.kafka_partition = ANY($2::int[]) "
            "AND e.event_id = ANY($3::uuid[])",
            topic, list(led), ids,
        )  # fmt: skip
        return None if value is None else float(value)
    finally:
        await conn.close()


async def wait_for(url: str, ids: list[uuid.UUID], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(url)
    try:
        while await conn.fetchval(
            "SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", ids
        ) < len(ids):
            if time.monotonic() > deadline:
                raise SystemExit(f"events still missing after {timeout:.0f} s")
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def failover(
    cluster: KafkaCluster,
    settings: Mapping[str, str],
    db: str,
    topics: tuple[str, str],
    workdir: Path,
    rate: float,
) -> tuple[float, tuple[int, ...]]:
    url = on_db(settings["DATABASE_URL"], db)
    proc = consumer(dict(settings), db, topics, f"bench-fo-{db}", workdir / f"{db}.log")
    try:
        stop = asyncio.Event()
        stream = asyncio.create_task(paced(cluster, topics, rate, stop, workdir / f"spool-{db}"))
        while await count_events(url) < rate * 2:  # noqa: ASYNC110 - polling another process
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # caught up, streaming
        layout = await cluster.partitions(topics[0])
        leader = layout[0][0]
        led = tuple(sorted(p for p, (node, _) in layout.items() if node == leader))
        killed_at = await asyncio.to_thread(cluster.kill, leader)
        if cluster.brokers == 1:
            await asyncio.to_thread(cluster.start)  # a supervisor restarts it at once
        else:
            await asyncio.sleep(20)  # the cluster carries on without it
        await asyncio.sleep(5)
        stop.set()
        emitted = await stream
        await wait_for(url, list(emitted), timeout=600)
    finally:
        stop_process(proc)
    after = [event_id for event_id, at in emitted.items() if at > killed_at]
    first = await first_append_after(url, topics[0], led, after)
    if first is None:
        raise SystemExit("no event emitted after the kill reached the dead leader's partitions")
    if cluster.brokers > 1:
        await asyncio.to_thread(cluster.start)  # back, for a clean stop
    return first - killed_at, led


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def database_size(base: Mapping[str, str], db: str) -> float:
    """Bytes of ``db`` on disk."""
    conn = await asyncpg.connect(base["DATABASE_URL"])
    try:
        return float(await conn.fetchval("SELECT pg_database_size($1)", db))
    finally:
        await conn.close()


async def drop(base: Mapping[str, str], *names: str) -> None:
    conn = await asyncpg.connect(base["DATABASE_URL"])
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def measure(
    cluster: KafkaCluster, base: Mapping[str, str], events: int, rate: float, workdir: Path
) -> Figures:
    replication = (
        TopicReplication(factor=3, min_insync=2) if cluster.brokers >= 3 else TopicReplication()
    )
    settings = {**base, **cluster.kafka_env, "KAFKA_BOOTSTRAP": cluster.bootstrap}
    run = secrets.token_hex(3)
    admin = cluster.kafka(KafkaRole.ADMIN)
    names = {}
    for use in ("ingest", "failover"):
        topics = (f"bench-{run}-{use}-phi-access", f"bench-{run}-{use}-relay")
        await ensure_topics(cluster.bootstrap, topics, PARTITIONS, admin, replication=replication)
        registry = (f"{topics[0]}-registry",)
        await ensure_topics(cluster.bootstrap, registry, 1, admin, replication=replication)
        names[use] = topics

    started = time.perf_counter()
    await produce(cluster.bootstrap, names["ingest"], events, cluster.kafka(KafkaRole.SIMULATOR))
    produced = events / (time.perf_counter() - started)

    db = f"ledger_bench_cluster_{run}_{cluster.brokers}"
    fo_db = f"{db}_fo"
    try:
        await fresh_database(dict(base), db)
        url = on_db(base["DATABASE_URL"], db)
        empty = await database_size(base, db)
        proc = consumer(settings, db, names["ingest"], f"bench-{run}", workdir / f"{db}.log")
        cpu: dict[int, float] = {}
        done = asyncio.Event()
        sampler = asyncio.create_task(sample_backends(base["DATABASE_URL"], db, cpu, done))
        try:
            deadline = time.monotonic() + 1800
            while await count_events(url) < events:
                if time.monotonic() > deadline:
                    raise SystemExit("ingest did not finish in 30 minutes")
                await asyncio.sleep(0.5)
        finally:
            done.set()
            await sampler
            stop_process(proc)
        first, last = await ingest_times(url)
        size = await database_size(base, db) - empty
        await fresh_database(dict(base), fo_db)
        latency, led = await failover(cluster, settings, fo_db, names["failover"], workdir, rate)
    finally:
        await drop(base, db, fo_db)
    return Figures(
        produce=produced,
        end_to_end=events / max(last - first, 1e-6),
        failover=latency,
        led=led,
        pg_cpu_per_event=sum(cpu.values()) / events,
        bytes_per_event=size / events,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=2_000, help="paced events/s (failover)")
    args = parser.parse_args()
    base = env()
    workdir = Path(tempfile.mkdtemp(prefix="ledger-bench-cluster-"))
    results: dict[int, Figures] = {}
    for brokers in (1, 3):
        home = workdir / f"kafka-{brokers}"
        cluster = KafkaCluster(home=home, port=free_base_port(brokers), brokers=brokers)
        t = time.perf_counter()
        cluster.start()
        print(f"{brokers} broker(s) started in {time.perf_counter() - t:.0f} s "
              f"({cluster.bootstrap})", flush=True)  # fmt: skip
        try:
            results[brokers] = await measure(cluster, base, args.events, args.rate, workdir)
        finally:
            cluster.stop()
            shutil.rmtree(home, ignore_errors=True)  # its data; the consumers' logs stay
    one, three = results[1], results[3]
    print(f"{'':44} {'1 broker':>14} {'3 brokers':>14} {'ratio':>7}")
    rows = (
        ("produce, acks=all (events/s)", one.produce, three.produce),
        ("end to end, one consumer (events/s)", one.end_to_end, three.end_to_end),
    )
    for label, a, b in rows:
        print(f"{label:44} {a:>14,.0f} {b:>14,.0f} {b / a:>7.2f}")
    print(f"{'PostgreSQL backend CPU per event (µs)':44} {one.pg_cpu_per_event * 1e6:>14,.0f} "
          f"{three.pg_cpu_per_event * 1e6:>14,.0f}")  # fmt: skip
    print(f"{'ledger database bytes per event':44} {one.bytes_per_event:>14,.0f} "
          f"{three.bytes_per_event:>14,.0f}")  # fmt: skip
    print(f"{'leader SIGKILL to first append (s)':44} {one.failover:>14.2f} "
          f"{three.failover:>14.2f}   (1 broker: restarted at once; "
          f"3 brokers: partitions {','.join(map(str, three.led))} moved)")  # fmt: skip
    print(f"({args.events:,} events per ingest run, {args.rate:,.0f} events/s paced "
          f"during the failover; logs in {workdir})")  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("LEDGER_ENV_FILE", os.devnull)
    # aiokafka logs every refused connection while a broker is down: the point here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    asyncio.run(main())
