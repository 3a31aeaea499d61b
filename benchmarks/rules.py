"""The compliance rules beside ingestion: do they keep up, and how soon does an alert follow?

In one run, on this machine, against the real broker and database (`make up` first):

1. keep up: the simulator's compliance world (a registry covering every user, and N
   accesses and relays over ten days, every checklist item evaluated for each access)
   emitted to scratch topics, ingested by a real `ledger consume` into an empty ledger
   (events/s from its first append to its last),
   then every rule evaluated over the same ledger by a real `ledger rules run --once`,
   with one evaluator process and with two sharing the logs (`--workers 2`, on a copy
   of the ledger) (leaves/s over the whole pass, from process start to exit, start-up
   included); the ratio rules / ingest (goal: at least 1);
2. emit to alert: a fresh ledger with `ledger consume` and `ledger rules run` running,
   simulated events emitted at a paced rate (default 1,000/s) for S seconds; every alert
   whose triggering event was emitted in the run gives one latency: the alert's
   ``raised_at`` minus the event's ``event_time`` (stamped at emit, same clock);
   p50/p99/max (goal: p99 under 2 s at 1,000 events/s). The simulator's stream records
   one access in fifty as unencrypted, and its users are unknown to the empty registry,
   so transport and account rules both fire.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ingest import (
    LEDGER,
    bench_key,
    consumer,
    count_events,
    fresh_database,
    ingest_times,
    registry_key,
)
from benchmarks.proofs import admin_kafka, env, on_db, simulator
from integrations.simplants import ComplianceSimulation
from integrations.simulator import Simulator
from ledger.pg.producerkeys import add_producer_key
from ledgerctl.infra import ensure_topics
from ledgerctl.settings import KafkaRole, kafka_security_from_env
from producers.emitter import Emitter, EmitterConfig


def rules_env(settings: dict[str, str], db: str) -> dict[str, str]:
    return {
        **os.environ,
        **settings,
        "LEDGER_ENV_FILE": os.devnull,
        "DATABASE_URL": on_db(settings["DATABASE_URL"], db),
        "LEDGER_APPENDER_URL": on_db(settings["LEDGER_APPENDER_URL"], db),
    }


def rules_once(
    settings: dict[str, str], db: str, registry_topic: str, workers: int = 1
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEDGER, "rules", "run", "--once", "--workers", str(workers)],
        env={**rules_env(settings, db), "LEDGER_REGISTRY_TOPIC": registry_topic},
        capture_output=True,
        text=True,
        check=False,
    )


def rules_loop(
    settings: dict[str, str], db: str, log: Path, registry_topic: str
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [LEDGER, "rules", "run", "--interval", "0.1"],
            env={**rules_env(settings, db), "LEDGER_REGISTRY_TOPIC": registry_topic},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def wait_ingested(url: str, n: int, limit: float = 1800) -> None:
    started = time.monotonic()
    while await count_events(url) < n:
        if time.monotonic() - started > limit:
            raise SystemExit(f"ingest did not reach {n} events in {limit:.0f} s")
        await asyncio.sleep(0.5)


async def emit_world(
    settings: dict[str, str], topics: tuple[str, str, str], n: int, *, stream: bool = True
) -> int:
    """The compliance simulation's registry (as its own producer, on the registry topic)
    and (with ``stream``) its clean stream of about n events; returns how many records."""
    sim = ComplianceSimulation(seed=int(secrets.token_hex(4), 16), events=n)

    def config(producer_id: str, role: KafkaRole, key_file: str) -> EmitterConfig:
        return EmitterConfig(
            bootstrap_servers=settings["KAFKA_BOOTSTRAP"],
            producer_id=producer_id,
            access_topic=topics[0],
            relay_topic=topics[1],
            registry_topic=topics[2],
            linger_ms=20,
            kafka_security=kafka_security_from_env(settings, role),
            producer_key_file=key_file,
        )

    registry = config("bench-registry", KafkaRole.REGISTRY, registry_key()[0])
    async with Emitter(registry) as emitter:
        for i, change in enumerate(sim.registry_changes()):
            await emitter.emit(change.stamped(producer_id="bench-registry", producer_seq=i))
        await emitter.flush()
    if not stream:
        return len(sim.registry_changes())
    events = sim.stream(plant=False)
    events_config = config("bench", KafkaRole.SIMULATOR, bench_key()[0])
    async with Emitter(events_config) as emitter:
        for i, event in enumerate(events):
            await emitter.emit(event.stamped(producer_id="bench", producer_seq=i))
        await emitter.flush()
    return len(events)


async def keep_up(settings: dict[str, str], run: str, n: int, workdir: Path) -> None:
    topics = (f"bench-{run}-k-phi-access", f"bench-{run}-k-relay")
    registry_topic = f"{topics[0]}-registry"  # the consumer's (benchmarks/ingest.py)
    await ensure_topics(settings["KAFKA_BOOTSTRAP"], topics, 4, admin_kafka(settings))
    await ensure_topics(settings["KAFKA_BOOTSTRAP"], (registry_topic,), 1, admin_kafka(settings))
    n = await emit_world(settings, (*topics, registry_topic), n)
    db = f"ledger_bench_rules_{run}"
    await fresh_database(settings, db)
    url = on_db(settings["DATABASE_URL"], db)
    await add_producer_key(url, producer_id="bench-registry", public_key=registry_key()[1])
    proc = consumer(settings, db, topics, f"bench-{run}-k", workdir / "consumer-k.log")
    await wait_ingested(url, n)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    first, last = await ingest_times(url)
    ingest = n / max(last - first, 1e-6)
    print(f"ingest, one consumer process: {ingest:,.0f} events/s over {n:,} events "
          "(the simulator's compliance world: a registry covering every user)")  # fmt: skip
    # The same ledger again (the same topics, another consumer group), for a second
    # evaluator run from scratch.
    twin = f"{db}_twin"
    await fresh_database(settings, twin)
    twin_url = on_db(settings["DATABASE_URL"], twin)
    await add_producer_key(twin_url, producer_id="bench-registry", public_key=registry_key()[1])
    proc = consumer(settings, twin, topics, f"bench-{run}-k2", workdir / "consumer-k2.log")
    await wait_ingested(twin_url, n)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    for workers, name in ((1, db), (2, twin)):
        started = time.perf_counter()
        done = await asyncio.to_thread(rules_once, settings, name, registry_topic, workers)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"ledger rules run failed: {done.stderr.strip()[-400:]}")
        conn = await asyncpg.connect(on_db(settings["DATABASE_URL"], name))
        leaves = int(await conn.fetchval("SELECT count(*) FROM leaves"))
        alerts = int(await conn.fetchval("SELECT count(*) FROM alerts"))
        await conn.close()
        rules = leaves / seconds
        print(f"rules, `ledger rules run --once --workers {workers}` over the same {leaves:,} "
              f"leaves (start-up and the registry included): {rules:,.0f} leaves/s, "
              f"{alerts:,} alerts; ratio rules / ingest {rules / ingest:.2f} "
              "(goal: at least 1)")  # fmt: skip
    await drop(settings, twin)
    await drop(settings, db)


async def paced_emit(
    settings: dict[str, str], topics: tuple[str, str], rate: float, seconds: float
) -> int:
    config = EmitterConfig(
        bootstrap_servers=settings["KAFKA_BOOTSTRAP"],
        producer_id="bench",
        access_topic=topics[0],
        relay_topic=topics[1],
        linger_ms=5,
        kafka_security=simulator(settings),
        producer_key_file=bench_key()[0],
    )
    sim = Simulator(seed=int(secrets.token_hex(4), 16), start=datetime.now(UTC))
    stream = sim.events(int(rate * seconds) + 1)
    sent = 0
    async with Emitter(config) as emitter:
        start = time.monotonic()
        for event in stream:
            due = start + sent / rate
            pause = due - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            await emitter.emit(event.stamped(producer_id="bench", producer_seq=sent))
            sent += 1
            if time.monotonic() - start >= seconds:
                break
        await emitter.flush()
    return sent


async def emit_to_alert(
    settings: dict[str, str], run: str, rate: float, seconds: float, workdir: Path
) -> None:
    topics = (f"bench-{run}-l-phi-access", f"bench-{run}-l-relay")
    registry_topic = f"{topics[0]}-registry"  # the consumer's (benchmarks/ingest.py)
    await ensure_topics(settings["KAFKA_BOOTSTRAP"], topics, 4, admin_kafka(settings))
    await ensure_topics(settings["KAFKA_BOOTSTRAP"], (registry_topic,), 1, admin_kafka(settings))
    db = f"ledger_bench_alerts_{run}"
    await fresh_database(settings, db)
    url = on_db(settings["DATABASE_URL"], db)
    await add_producer_key(url, producer_id="bench-registry", public_key=registry_key()[1])
    consume = consumer(settings, db, topics, f"bench-{run}-l", workdir / "consumer-l.log")
    rules = rules_loop(settings, db, workdir / "rules.log", registry_topic)
    try:
        # A registry in use (the simulator's world), so the registry rules judge every
        # access and the settle hold applies; the paced stream's users are not in it.
        changes = await emit_world(settings, (*topics, registry_topic), 2000, stream=False)
        await wait_ingested(url, changes, limit=120)
        began = datetime.now(UTC)
        sent = await paced_emit(settings, topics, rate, seconds)
        await wait_ingested(url, changes + sent, limit=300)
        await asyncio.sleep(10)  # every rule's settle hold and the last pass
    finally:
        for proc in (rules, consume):
            proc.send_signal(signal.SIGTERM)
            proc.wait()
    conn = await asyncpg.connect(url)
    rows = await conn.fetch(
        "SELECT a.rule_id, extract(epoch FROM a.raised_at - e.event_time) AS lag, "
        "extract(epoch FROM p.committed_at - e.event_time) AS appended "
        "FROM alerts a JOIN events e USING (log_id, leaf_index) "
        "JOIN ingest_positions p ON p.log_id = a.log_id "
        "AND a.leaf_index >= p.first_leaf AND a.leaf_index < p.first_leaf + p.appended "
        "WHERE e.event_time >= $1",
        began - timedelta(seconds=1),
    )
    await conn.close()
    await drop(settings, db)
    if len(rows) < 2:
        print(f"emit to alert: only {len(rows)} alert(s) raised; nothing to measure")
        return
    lags = sorted(float(r["lag"]) for r in rows)
    qs = statistics.quantiles(lags, n=100)
    appended = statistics.quantiles([float(r["appended"]) for r in rows], n=100)
    by_rule: dict[str, int] = {}
    for r in rows:
        by_rule[r["rule_id"]] = by_rule.get(r["rule_id"], 0) + 1
    print(f"emit to alert at {rate:,.0f} events/s for {seconds:.0f} s ({sent:,} events, "
          f"{len(lags):,} alerts: {', '.join(f'{k} {v}' for k, v in sorted(by_rule.items()))}): "
          f"p50 {qs[49]:.2f} s, p99 {qs[98]:.2f} s, max {lags[-1]:.2f} s "
          "(goal: p99 under 2 s)")  # fmt: skip
    print(f"  of which emit to the consumer's commit of the triggering event: "
          f"p50 {appended[49]:.2f} s, p99 {appended[98]:.2f} s")  # fmt: skip


async def drop(settings: dict[str, str], db: str) -> None:
    admin = await asyncpg.connect(settings["DATABASE_URL"])
    await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    settings = env()
    run = secrets.token_hex(3)
    workdir = Path(tempfile.mkdtemp(prefix=f"ledger-bench-rules-{run}-"))
    await keep_up(settings, run, args.events, workdir)
    await emit_to_alert(settings, run, args.rate, args.seconds, workdir)


if __name__ == "__main__":
    asyncio.run(main())
