"""Producer authentication: its cost, side by side with authentication off, in one run.

1. emit(): the real Emitter, N simulated events, p50/p99/p99.9 of each emit() call, without a
   producer key (unsigned) and with one (one Ed25519 seal per partition batch);
2. end to end: those events in Kafka (signed / unsigned, separate topics), consumed by one
   real consumer process each into an empty ledger, with producer authentication on (the
   default) and off; events/s from first append to last. "Off" exists only here: the
   child process below calls ``run_consumer(authenticate_producers=False)``; no setting
   or environment variable of the product turns authentication off.
3. the pure cost per event: signing batches of 512 records (one seal per partition),
   checking them, and the envelope bytes each record carries in Kafka.

Goals (issue #12): at most 10% end-to-end throughput loss, at most 20 µs more at p99 of
emit(). Rounds alternate off/on so a noisy shared machine hurts both alike.
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
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.emitstats import bounds_of
from benchmarks.ingest import count_events, fresh_database, ingest_times
from benchmarks.proofs import admin_kafka, env, on_db, simulator
from integrations.simulator import Simulator
from ledger.audit.producerauth import ProducerAuthenticator, RegisteredKey, key_id_of
from ledger.pg.producerkeys import add_producer_key
from ledgerctl.infra import ensure_topics
from producers.emitter import Emitter, EmitterConfig
from producers.kafka_security import KafkaSecurity
from producers.signing import SIGN_BATCH, generate_producer_key, write_producer_key

PRODUCER = "bench-auth"
PARTITIONS = 4


async def produce(
    bootstrap: str,
    topics: tuple[str, str],
    n: int,
    key_file: str | None,
    security: KafkaSecurity,
) -> list[float]:
    events = list(Simulator(seed=int(secrets.token_hex(4), 16)).events(n))
    config = EmitterConfig(
        bootstrap_servers=bootstrap,
        producer_id=PRODUCER,
        access_topic=topics[0],
        relay_topic=topics[1],
        linger_ms=20,
        producer_key_file=key_file,
        kafka_security=security,
    )
    durations = []
    async with Emitter(config) as emitter:
        for event in events:
            t = time.perf_counter()
            await emitter.emit(event)
            durations.append(time.perf_counter() - t)
        await emitter.flush()
    return durations


async def ingest(
    settings: dict[str, str], topics: tuple[str, str], n: int, auth: bool, public_key: bytes
) -> tuple[float, float]:
    """(events/s from first append to last, the consumer process's CPU µs per event)."""
    db = f"ledger_bench_auth_{secrets.token_hex(3)}"
    await fresh_database(settings, db)
    owner = on_db(settings["DATABASE_URL"], db)
    await add_producer_key(owner, producer_id=PRODUCER, public_key=public_key)
    child_env = {
        **os.environ,
        **settings,
        "LEDGER_ENV_FILE": os.devnull,
        "DATABASE_URL": owner,
        "LEDGER_APPENDER_URL": on_db(settings["LEDGER_APPENDER_URL"], db),
        "LEDGER_ACCESS_TOPIC": topics[0],
        "LEDGER_RELAY_TOPIC": topics[1],
        "LEDGER_REGISTRY_TOPIC": f"{topics[0]}-registry",
        "LEDGER_CONSUMER_GROUP": f"bench-auth-{secrets.token_hex(4)}",
    }
    args = [sys.executable, __file__, "--child-consume", "on" if auth else "off"]
    proc = spawn(args, child_env)
    try:
        started = time.monotonic()
        while await count_events(owner) < n:
            if proc.poll() is not None:
                raise SystemExit("the consumer exited")
            if time.monotonic() - started > 900:
                raise SystemExit("ingest did not finish in 15 minutes")
            await asyncio.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, _, usage = await asyncio.to_thread(os.wait4, proc.pid, 0)
        proc.returncode = 0
    cpu = (usage.ru_utime + usage.ru_stime) / n * 1e6
    first, last = await ingest_times(owner)
    admin = await asyncpg.connect(settings["DATABASE_URL"])
    try:
        for _ in range(20):  # the consumer's sessions may outlive its process briefly
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                break
            except asyncpg.InsufficientPrivilegeError:
                await asyncio.sleep(0.5)
    finally:
        await admin.close()
    return n / max(last - first, 1e-6), cpu


def spawn(args: list[str], child_env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=child_env, stdout=subprocess.DEVNULL)


def child_consume(auth: bool) -> None:
    from consumers.process import run_consumer
    from ledger.log.keys import load_signers
    from ledger.pg.checkpointer import CheckpointPolicy
    from ledgerctl.settings import KafkaRole, Settings

    s = Settings.load()
    asyncio.run(
        run_consumer(
            bootstrap=s.kafka_bootstrap,
            topics=s.topics,
            relay_topics=frozenset({s.relay_topic}),
            group_id=s.consumer_group,
            appender_dsn=s.require("appender_url"),
            ledger_name=s.ledger_name,
            signers=load_signers(s.signer_key_file or ""),
            policy=CheckpointPolicy(),
            authenticate_producers=auth,
            kafka_security=s.kafka(KafkaRole.CONSUMER),
        )
    )


def pure_costs(partitions: int) -> tuple[float, float, float]:
    """µs per event to sign batches of 512 records split over ``partitions`` partitions
    (one seal each, as the emitter does), and to check them as a consumer's poll does;
    and the envelope bytes per record in Kafka."""
    key = generate_producer_key(PRODUCER)
    per_seal = SIGN_BATCH // partitions
    values = [("phi-access", os.urandom(700)) for _ in range(SIGN_BATCH * 20)]
    signer = key.signer()
    t = time.perf_counter()
    envelopes = []
    for start in range(0, len(values), per_seal):
        envelopes += signer.envelopes(values[start : start + per_seal])
    sign = (time.perf_counter() - t) / len(values) * 1e6
    registered = RegisteredKey(
        key_id=key_id_of(key.public_key),
        producer_id=PRODUCER,
        public_key=key.public_key,
        created_at=datetime.now(UTC),
    )
    rows = [(t, v, e) for (t, v), e in zip(values, envelopes, strict=True)]
    auth = ProducerAuthenticator([registered])
    t = time.perf_counter()
    auth.authenticate_many(rows)
    check = (time.perf_counter() - t) / len(values) * 1e6
    return sign, check, sum(len(e) for e in envelopes) / len(envelopes)


def quantiles(durations: list[float]) -> tuple[float, float, float]:
    qs = statistics.quantiles(durations, n=1000)
    return qs[499] * 1e6, qs[989] * 1e6, qs[998] * 1e6


async def main(args: argparse.Namespace) -> None:
    settings = env()
    bootstrap = settings["KAFKA_BOOTSTRAP"]
    key = generate_producer_key(PRODUCER)
    workdir = Path(tempfile.mkdtemp(prefix="ledger-bench-auth-"))
    key_file = str(workdir / "producer.key")
    write_producer_key(key_file, key)

    emits: dict[bool, list[float]] = {False: [], True: []}
    rates: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for auth in (False, True):
            run = secrets.token_hex(3)
            topics = (f"bench-auth-{run}-phi-access", f"bench-auth-{run}-relay")
            await ensure_topics(bootstrap, topics, PARTITIONS, admin_kafka(settings))
            emits[auth] += await produce(
                bootstrap, topics, args.events, key_file if auth else None, simulator(settings)
            )
            rate, cpu = await ingest(settings, topics, args.events, auth, key.public_key)
            rates[auth].append(rate)
            cpus[auth].append(cpu)

    sign, check, size = pure_costs(PARTITIONS)
    print(f"producer authentication, {args.events:,} events x {args.rounds} rounds per mode")
    print(f"{'':<34}{'off':>14}{'on':>14}{'change':>12}")
    p50_off, p99_off, p999_off = quantiles(emits[False])
    p50_on, p99_on, p999_on = quantiles(emits[True])
    print(f"{'emit() p50 (µs)':<34}{p50_off:>14.1f}{p50_on:>14.1f}{p50_on - p50_off:>+12.1f}")
    print(f"{'emit() p99 (µs)':<34}{p99_off:>14.1f}{p99_on:>14.1f}{p99_on - p99_off:>+12.1f}")
    print(f"{'emit() p99.9 (µs)':<34}{p999_off:>14.1f}{p999_on:>14.1f}"
          f"{p999_on - p999_off:>+12.1f}")  # fmt: skip
    print(f"  emit() ran with {bounds_of(EmitterConfig(bootstrap_servers='', producer_id='b'))}")
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"{'end to end, 1 consumer (events/s)':<34}{off:>14,.0f}{on:>14,.0f}"
          f"{(on / off - 1) * 100:>+11.1f}%")  # fmt: skip
    c_off, c_on = statistics.median(cpus[False]), statistics.median(cpus[True])
    print(f"{'consumer CPU per event (µs)':<34}{c_off:>14.1f}{c_on:>14.1f}"
          f"{(c_on / c_off - 1) * 100:>+11.1f}%")  # fmt: skip
    print(f"  per round: off {', '.join(f'{r:,.0f}' for r in rates[False])}; "
          f"on {', '.join(f'{r:,.0f}' for r in rates[True])}")  # fmt: skip
    print(f"pure cost per event (one core): sign {sign:.2f} µs, check {check:.2f} µs; "
          f"envelope {size:.0f} bytes per record (batches of 512 over {PARTITIONS} "
          "partitions, one seal each)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child-consume", choices=["on", "off"])
    arguments = parser.parse_args()
    if arguments.child_consume:
        child_consume(arguments.child_consume == "on")
    else:
        asyncio.run(main(arguments))
