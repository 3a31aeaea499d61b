"""Sustained ingest, end to end, beside a raw COPY of the same rows; emit() overhead; restart.

In one run, on this machine, against the real broker and database (`make up` first):

1. producer: the real Emitter, N simulated events, p50/p99/p99.9 of each emit() call with
   a healthy broker, and the in-flight bounds it ran with;
2. end to end: those N events already in Kafka, consumed by a real `ledger consume`
   process into an empty ledger (decode, validate, leaves, tiles, index rows, quarantine
   checks, signed checkpoints, synchronous_commit on) - events/s from its first append
   to its last;
3. baselines: a single-connection COPY of the same leaves and index rows into the same
   indexed tables of another empty ledger - rows/s, and the ratio of 2 to it; the real
   appender on the same events without Kafka or a consumer, on one partition and on four
   (at once, and one after another) - events/s and PostgreSQL's CPU per event
   (benchmarks/baselines.py);
4. restart: SIGKILL the consumer mid-stream and time until its successor's first append.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.baselines import appender_alone, appender_url, raw_copy
from benchmarks.emitstats import bounds_of, quantile_line
from benchmarks.pgrows import one_row
from benchmarks.proofs import admin_kafka, env, on_db, simulator
from benchmarks.stackcpu import SERVERS, process_cpu, stack_cpu
from consumers.classify import classify
from integrations.simulator import Simulator
from ledger.log.leaf import KafkaRecord
from ledger.pg.migrate import apply_migrations
from ledger.pg.producerkeys import add_producer_key
from ledgerctl.infra import ensure_topics
from producers.codec import Codec
from producers.emitter import Emitter, EmitterConfig
from producers.events import new_event_id
from producers.kafka_security import KafkaSecurity
from producers.signing import generate_producer_key, write_producer_key

LEDGER = str(Path(sys.executable).with_name("ledger"))


@functools.cache
def bench_key() -> tuple[str, bytes]:
    """(key file, public key) of the "bench" producer: the ledger appends only signed events
    (docs/producer-auth.md), so the benchmark's producer signs like any other."""
    key = generate_producer_key("bench")
    path = Path(tempfile.mkdtemp(prefix="ledger-bench-key-")) / "bench.key"
    write_producer_key(path, key)
    return str(path), key.public_key


@functools.cache
def registry_key() -> tuple[str, bytes]:
    """(key file, public key) of the "bench-registry" producer (the registry's changes)."""
    key = generate_producer_key("bench-registry")
    path = Path(tempfile.mkdtemp(prefix="ledger-bench-key-")) / "bench-registry.key"
    write_producer_key(path, key)
    return str(path), key.public_key


async def fresh_database(settings: dict[str, str], name: str) -> None:
    """An empty ledger database that trusts the "bench" producer's key."""
    admin = await asyncpg.connect(settings["DATABASE_URL"])
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    owner = on_db(settings["DATABASE_URL"], name)
    apply_migrations(owner)
    await add_producer_key(owner, producer_id="bench", public_key=bench_key()[1])


async def produce(
    bootstrap: str, topics: tuple[str, str], n: int, security: KafkaSecurity
) -> list[float]:
    """Emit n events through the real Emitter; return each emit() call's duration. The
    simulator's events get their ids as a producer makes them (``new_event_id``: UUIDv7)."""
    events = [
        dataclasses.replace(e, event_id=new_event_id()).stamped(producer_id="bench", producer_seq=i)
        for i, e in enumerate(Simulator(seed=int(secrets.token_hex(4), 16)).events(n))
    ]
    config = EmitterConfig(
        bootstrap_servers=bootstrap,
        producer_id="bench",
        access_topic=topics[0],
        relay_topic=topics[1],
        linger_ms=20,
        kafka_security=security,
        producer_key_file=bench_key()[0],
    )
    durations = []
    async with Emitter(config) as emitter:
        for event in events:
            t = time.perf_counter()
            await emitter.emit(event)
            durations.append(time.perf_counter() - t)
        await emitter.flush()
    return durations


async def count_events(url: str) -> int:
    """Events appended so far, from the batches' position rows: a count(*) of the events
    every half second read the whole table each time, PostgreSQL CPU the ingest paid."""
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT coalesce(sum(appended), 0) FROM ingest_positions"))
    finally:
        await conn.close()


async def ingest_times(url: str) -> tuple[float, float]:
    conn = await asyncpg.connect(url)
    try:
        row = await one_row(
            conn,
            "SELECT extract(epoch FROM min(committed_at)), extract(epoch FROM max(committed_at)) "
            "FROM ingest_positions",
        )
        return float(row[0]), float(row[1])
    finally:
        await conn.close()


def consumer(
    settings: dict[str, str],
    db: str,
    topics: tuple[str, str],
    group: str,
    log: Path,
    instance: str | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **settings,
        "LEDGER_ENV_FILE": os.devnull,
        "DATABASE_URL": on_db(settings["DATABASE_URL"], db),
        "LEDGER_APPENDER_URL": on_db(settings["LEDGER_APPENDER_URL"], db),
        "LEDGER_ACCESS_TOPIC": topics[0],
        "LEDGER_RELAY_TOPIC": topics[1],
        "LEDGER_REGISTRY_TOPIC": f"{topics[0]}-registry",
        "LEDGER_CONSUMER_GROUP": group,
    }
    if instance is not None:
        env["LEDGER_CONSUMER_INSTANCE_ID"] = instance
    with log.open("ab") as out:
        return subprocess.Popen([LEDGER, "consume"], env=env, stdout=out, stderr=subprocess.STDOUT)


def stopped_cpu(proc: subprocess.Popen[bytes]) -> float:
    """SIGTERM a consumer, reap it, and return the CPU seconds it used (user + system):
    on a shared machine its CPU per event says more than its wall-clock rate."""
    proc.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


async def restart_latency(
    settings: dict[str, str], db: str, topics: tuple[str, str], workdir: Path
) -> float:
    """SIGKILL a consumer while events flow; seconds until its successor appends."""
    group = f"bench-restart-{secrets.token_hex(3)}"
    url = on_db(settings["DATABASE_URL"], db)
    # Static membership: the successor takes over the same instance id, so the group does
    # not wait for the dead member's session to time out.
    first = consumer(settings, db, topics, group, workdir / "restart.log", "bench-1")
    producer = asyncio.create_task(
        produce(settings["KAFKA_BOOTSTRAP"], topics, 40_000, simulator(settings))
    )
    while await count_events(url) == 0:  # noqa: ASYNC110 - polling another process
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = time.time()
    second = consumer(settings, db, topics, group, workdir / "restart.log", "bench-1")
    conn = await asyncpg.connect(url)
    try:
        while True:
            latest = await conn.fetchval(
                "SELECT extract(epoch FROM max(committed_at)) FROM ingest_positions"
            )
            if latest is not None and float(latest) > killed_at:
                break
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    second.send_signal(signal.SIGTERM)
    second.wait()
    await producer
    return float(latest) - killed_at


def cpu_account(consumer: float, servers: dict[str, float]) -> str:
    """Where the CPU of one event went, from the first append on, and the rate the
    machine's cores would allow were the consumer free: a faster consumer can buy no more."""
    missing = [name for name in SERVERS if name not in servers]
    if missing:
        where = ", ".join(missing)
        return f"  consumer CPU {consumer * 1e6:.1f} µs per event ({where} not local: no bound)"
    cores = os.cpu_count() or 1
    total = consumer + sum(servers.values())
    shares = {"consumer": consumer, **servers}
    parts = ", ".join(f"{name} {s * 1e6:.1f}" for name, s in shares.items())
    return (
        f"  CPU per event (µs): {parts}; together {total * 1e6:.1f}, so at most "
        f"{cores / total:,.0f}/s on {cores} cores; with a consumer that cost nothing, "
        f"{cores / max(total - consumer, 1e-9):,.0f}/s"
    )


def cpu_ceiling(n: int) -> tuple[float, float]:
    """Records/s on one core for the codec's decode alone (generated code, no validation;
    benchmarks/codec.py compares it with fastavro) and for the consumer's classify (decode,
    validate, leaf, index row) of the same records: the Python-side ceiling."""
    codec = Codec()
    values = [
        codec.encode(e.stamped(producer_id="cpu", producer_seq=i))
        for i, e in enumerate(Simulator(seed=7).events(n))
    ]
    records = [
        KafkaRecord(topic="cpu", partition=0, offset=i, timestamp_ms=1_790_000_000_000,
                    timestamp_type=0, key=b"k", value=v)
        for i, v in enumerate(values)
    ]  # fmt: skip
    t = time.perf_counter()
    for v in values:
        codec.decode_record(v)
    decode = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for r in records:
        classify(r, codec)
    return decode, n / (time.perf_counter() - t)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    settings = env()
    run = secrets.token_hex(3)
    topics = (f"bench-{run}-phi-access", f"bench-{run}-relay")
    await ensure_topics(settings["KAFKA_BOOTSTRAP"], topics, 4, admin_kafka(settings))
    workdir = Path(tempfile.mkdtemp(prefix=f"ledger-bench-{run}-"))

    durations = await produce(settings["KAFKA_BOOTSTRAP"], topics, args.events, simulator(settings))
    print(f"producer emit(): {quantile_line(durations)} over {len(durations):,} calls "
          f"(healthy broker; {bounds_of(EmitterConfig(bootstrap_servers='', producer_id='b'))}; "
          "beside the configuration of before: benchmarks/emit.py)")  # fmt: skip

    rates = {}
    for processes in (1, 2):
        db = f"ledger_bench_ingest_{run}_{processes}"
        await fresh_database(settings, db)
        url = on_db(settings["DATABASE_URL"], db)
        group = f"bench-{run}-{processes}"
        procs = [
            consumer(settings, db, topics, group, workdir / f"consumer-{processes}.log")
            for _ in range(processes)
        ]
        started = time.monotonic()
        while (at_first := await count_events(url)) == 0:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.05)
        cpu_at_first = sum(process_cpu(proc.pid) for proc in procs)
        servers_at_first = stack_cpu()
        while await count_events(url) < args.events:
            if time.monotonic() - started > 1800:
                raise SystemExit("ingest did not finish in 30 minutes")
            await asyncio.sleep(0.5)
        servers = {
            k: v - servers_at_first[k] for k, v in stack_cpu().items() if k in servers_at_first
        }
        cpu = sum(stopped_cpu(proc) for proc in procs) - cpu_at_first
        counted = max(args.events - at_first, 1)
        first, last = await ingest_times(url)
        rates[processes] = args.events / max(last - first, 1e-6)
        print(f"end to end (Kafka -> consumer -> PostgreSQL, leaves, tiles, checkpoints), "
              f"{processes} consumer process(es): {rates[processes]:,.0f} events/s "
              f"over {args.events:,} events; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        print(cpu_account(cpu / counted, {k: v / counted for k, v in servers.items()}))
        admin = await asyncpg.connect(settings["DATABASE_URL"])
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
    e2e = max(rates.values())

    decode, classified = cpu_ceiling(min(args.events, 50_000))
    print(f"one core, same records: Avro decode {decode:,.0f}/s; consumer classify "
          f"(decode + validate + leaf + index row) {classified:,.0f}/s")  # fmt: skip

    copy_db = f"ledger_bench_copy_{run}"
    await fresh_database(settings, copy_db)
    copy, copy_cpu = await raw_copy(on_db(settings["DATABASE_URL"], copy_db), args.events)
    print(f"baseline raw COPY of the same leaves + index rows, one connection: {copy:,.0f} rows/s"
          f" (PostgreSQL CPU {copy_cpu * 1e6:.1f} µs per row)")  # fmt: skip
    print(f"ratio end to end / raw COPY: {e2e / copy:.2f} (load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())})")  # fmt: skip
    for partitions, concurrent in ((1, False), (4, True), (4, False)):
        db = f"ledger_bench_alone_{run}_{partitions}_{int(concurrent)}"
        await fresh_database(settings, db)
        rate, cpu = await appender_alone(
            appender_url(settings, db), args.events, partitions=partitions, concurrent=concurrent
        )
        how = "at once" if concurrent else "one after another"
        print(f"the appender alone (no Kafka, no consumer; batches of 2,000), {partitions} "
              f"partition(s) {how}: {rate:,.0f} events/s, PostgreSQL CPU {cpu * 1e6:.1f} µs "
              "per event")  # fmt: skip
        admin = await asyncpg.connect(settings["DATABASE_URL"])
        await drop_when_released(admin, db)
        await admin.close()

    restart_db = f"ledger_bench_restart_{run}"
    await fresh_database(settings, restart_db)
    restart_topics = (f"bench-{run}-r-phi-access", f"bench-{run}-r-relay")
    await ensure_topics(settings["KAFKA_BOOTSTRAP"], restart_topics, 4, admin_kafka(settings))
    latency = await restart_latency(settings, restart_db, restart_topics, workdir)
    print(f"SIGKILL of the consumer to its successor's first append: {latency:.2f} s")

    admin = await asyncpg.connect(settings["DATABASE_URL"])
    for name in (copy_db, restart_db):
        await drop_when_released(admin, name)
    await admin.close()


async def drop_when_released(admin: asyncpg.Connection, name: str) -> None:
    """Drop a benchmark database once the killed consumer's backend is gone: until then
    FORCE must terminate a backend of the writer role, which this role may not."""
    for _ in range(50):
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except asyncpg.InsufficientPrivilegeError:
            await asyncio.sleep(0.2)
    print(f"left database {name} behind: a writer backend still holds it")


if __name__ == "__main__":
    asyncio.run(main())
