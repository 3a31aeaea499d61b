"""Producer durability against the real broker: Kafka down, cut, slow, or the host killed.

Every test checks the promise from the consumer's side: each event whose ``emit``
returned arrives in Kafka, and one patient's events arrive in the order they were
emitted (a re-send after a crash may add an identical duplicate later; the first
occurrences keep the order). Hosts that must be killed run as subprocesses of this
module (``python -m tests.integration.test_emitter_durability --help``); outages in
the middle of a stream go through ``tests.tcp_proxy.KafkaProxy``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.classify import envelope_of
from integrations.simulator import Simulator
from ledger.audit.producerauth import ProducerAuthenticator
from ledgerctl.settings import KafkaRole
from producers.codec import Codec
from producers.emitter import Emitter, EmitterConfig, EmitterState
from producers.errors import EmitterPushbackError, EmitterUnavailableError, SpoolFullError
from producers.events import AuditEvent
from producers.kafka_security import client_kwargs
from producers.spool import Spool
from tests.ports import closed_address
from tests.support import Stack, kafka_proxy, local_authenticator, local_kafka, local_producer_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CODEC = Codec()
ROOT = Path(__file__).resolve().parents[2]
HOST = [sys.executable, "-m", "tests.integration.test_emitter_durability"]
#: Slack on top of max_block_seconds for one fsync of the spool on a busy CI disk.
FSYNC_SLACK = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    event_id: str
    topic: str
    key: str
    partition: int
    offset: int
    producer_id: str
    producer_seq: int
    value: bytes


def dead_bootstrap() -> str:
    """An address where nothing listens: connecting is refused at once."""
    return closed_address()


def split(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.rpartition(":")
    return host, int(port)


async def fresh_topics(bootstrap: str, name: str) -> tuple[str, str]:
    from ledgerctl.infra import ensure_topics

    run = uuid.uuid4().hex[:8]
    topics = (f"tdur-{name}-{run}-access", f"tdur-{name}-{run}-relay")
    await ensure_topics(bootstrap, topics, 3, local_kafka(KafkaRole.ADMIN))
    return topics


def config(
    bootstrap: str, topics: tuple[str, str], producer_id: str, **kw: object
) -> EmitterConfig:
    return EmitterConfig(
        bootstrap_servers=bootstrap,
        producer_id=producer_id,
        access_topic=topics[0],
        relay_topic=topics[1],
        producer_key_file=local_producer_key(producer_id),  # signs, as in production
        kafka_security=local_kafka(KafkaRole.SIMULATOR),
        **kw,  # type: ignore[arg-type]
    )


async def consume(
    bootstrap: str, topics: tuple[str, str], expected: set[str], *, timeout: float = 20.0
) -> list[Received]:
    """Every record of the topics (partition order) once ``expected`` ids have all arrived."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        **client_kwargs(local_kafka(KafkaRole.CONSUMER)),  # type: ignore[arg-type]
    )
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in range(3)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        got: list[Received] = []
        seen: set[str] = set()
        auth = local_authenticator()
        assert isinstance(auth, ProducerAuthenticator)
        deadline = time.monotonic() + timeout
        while not expected <= seen and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    event = CODEC.decode(r.value)
                    # Every record is signed, re-sends from the spool included.
                    auth.authenticate(topic=r.topic, value=r.value, envelope=envelope_of(r))
                    got.append(
                        Received(
                            event_id=str(event.event_id),
                            topic=r.topic,
                            key=r.key.decode(),
                            partition=r.partition,
                            offset=r.offset,
                            producer_id=event.producer_id or "",
                            producer_seq=event.producer_seq or 0,
                            value=r.value,
                        )
                    )
                    seen.add(str(event.event_id))
        missing = expected - seen
        assert not missing, f"{len(missing)} emitted event(s) never reached Kafka"
        return got
    finally:
        await consumer.stop()


def assert_per_key_order(received: list[Received], emitted: list[str]) -> int:
    """Per topic and key, first occurrences follow the emit order; return the duplicate count.

    (Kafka orders a partition, so a patient's access events are ordered among themselves,
    and their critical-result relays among themselves.)
    """
    position = {event_id: i for i, event_id in enumerate(emitted)}
    by_key: dict[tuple[str, str], list[Received]] = defaultdict(list)
    for r in sorted(received, key=lambda r: (r.topic, r.partition, r.offset)):
        by_key[(r.topic, r.key)].append(r)
    duplicates = 0
    first_value: dict[str, bytes] = {}
    for key, records in by_key.items():
        assert len({r.partition for r in records}) == 1, f"{key} spans partitions"
        order: list[str] = []
        for r in records:
            if r.event_id in first_value:
                assert r.value == first_value[r.event_id], "a re-send must be byte-identical"
                duplicates += 1
                continue
            first_value[r.event_id] = r.value
            order.append(r.event_id)
        known = [i for i in order if i in position]
        assert known == sorted(known, key=position.__getitem__), f"{key}: out of emit order"
    return duplicates


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def emit_until_refused(emitter: Emitter, sim: Simulator) -> tuple[int, SpoolFullError]:
    for accepted, event in enumerate(sim.events(10_000)):
        try:
            await emitter.emit(event)
        except SpoolFullError as exc:
            return accepted, exc
    raise AssertionError("the spool never filled")


# ---------------------------------------------------------------------------- host process


def run_host(
    *,
    bootstrap: str,
    topics: tuple[str, str],
    spool: Path,
    seed: int,
    count: int,
    producer_id: str,
    flush: bool,
    timeout: float = 40.0,
) -> tuple[list[str], dict[str, object], str]:
    """Run a host to completion: (event ids whose emit returned, final health, stderr)."""
    proc = subprocess.run(
        [*HOST, *host_args(bootstrap, topics, spool, seed, count, producer_id, flush)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    ids, health = parse_host_output(proc.stdout)
    assert health is not None, proc.stdout[-2000:]
    return ids, health, proc.stderr


def host_args(
    bootstrap: str,
    topics: tuple[str, str],
    spool: Path,
    seed: int,
    count: int,
    producer_id: str,
    flush: bool,
) -> list[str]:
    args = [
        f"--bootstrap={bootstrap}",
        f"--access-topic={topics[0]}",
        f"--relay-topic={topics[1]}",
        f"--spool={spool}",
        f"--seed={seed}",
        f"--count={count}",
        f"--producer-id={producer_id}",
    ]
    return [*args, "--flush"] if flush else args


def parse_host_output(stdout: str) -> tuple[list[str], dict[str, object] | None]:
    ids: list[str] = []
    health = None
    for line in stdout.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # a line the kill cut short: its emit had returned, but we cannot read the id
        kind, _, rest = line.strip().partition(" ")
        if kind == "E":
            ids.append(rest)
        elif kind == "H":
            health = json.loads(rest)
    return ids, health


async def _host(args: argparse.Namespace) -> None:
    cfg = EmitterConfig(
        bootstrap_servers=args.bootstrap,
        producer_id=args.producer_id,
        producer_key_file=local_producer_key(args.producer_id),
        access_topic=args.access_topic,
        relay_topic=args.relay_topic,
        spool_dir=args.spool,
        max_block_seconds=0.5,
        stop_timeout_seconds=2.0,
        connect_timeout_seconds=3.0,
        reconnect_backoff_max_seconds=0.5,
        kafka_security=local_kafka(KafkaRole.SIMULATOR),
        max_inflight_events=args.max_inflight,
        spool_after_seconds=args.spool_after,
    )
    sim = Simulator(seed=args.seed, patients=8)
    async with Emitter(cfg) as emitter:
        slowest = 0.0
        for event in sim.events(args.count):
            started = time.perf_counter()
            await emitter.emit(event)
            slowest = max(slowest, time.perf_counter() - started)
            print(f"E {event.event_id}", flush=True)
            if args.pace:
                await asyncio.sleep(args.pace)
        if args.linger:
            print(f"S {emitter.health().state}", flush=True)
            await asyncio.sleep(3600)  # until killed
        if args.flush:
            await asyncio.wait_for(emitter.flush(), 30)
        health = dataclasses.asdict(emitter.health())
    health["slowest_emit_seconds"] = slowest
    print("H " + json.dumps(health), flush=True)


def main(argv: list[str] | None = None) -> None:
    """A host embedding the emitter: emits simulated events, prints each id once emitted."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--access-topic", required=True)
    parser.add_argument("--relay-topic", required=True)
    parser.add_argument("--spool", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--producer-id", required=True)
    parser.add_argument("--flush", action="store_true")
    parser.add_argument("--max-inflight", type=int, default=20_000)
    parser.add_argument("--spool-after", type=float, default=2.0)
    parser.add_argument("--pace", type=float, default=0.0, help="seconds between emits")
    parser.add_argument("--linger", action="store_true", help="after the emits, wait to be killed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    asyncio.run(_host(args))


# ---------------------------------------------------------------------------- tests


async def test_healthy_broker_emit_is_bounded_and_never_spools(
    stack: Stack, tmp_path: Path
) -> None:
    topics = await fresh_topics(stack.kafka_bootstrap, "healthy")
    cfg = config(
        stack.kafka_bootstrap, topics, "dur-healthy", spool_dir=str(tmp_path / "spool"),
        max_block_seconds=0.5,
    )  # fmt: skip
    stream = list(Simulator(seed=91_001, patients=8).events(2000))
    slowest = 0.0
    async with Emitter(cfg) as emitter:
        assert emitter.health().state is EmitterState.DIRECT
        for i, event in enumerate(stream):
            started = time.perf_counter()
            await emitter.emit(event)
            slowest = max(slowest, time.perf_counter() - started)
            if i % 100 == 0:
                health = emitter.health()
                assert health.spooled == 0
                assert health.state is EmitterState.DIRECT
        await asyncio.wait_for(emitter.flush(), 20)
        health = emitter.health()
    assert slowest < cfg.max_block_seconds
    assert health.sent == len(stream)
    assert (health.queued, health.spooled, health.failed, health.lost) == (0, 0, 0, 0)
    assert health.oldest_undelivered_age_seconds == 0.0
    assert health.next_sequence == len(stream)
    assert not list((tmp_path / "spool").glob("*.seg"))
    received = await consume(stack.kafka_bootstrap, topics, {str(e.event_id) for e in stream})
    assert assert_per_key_order(received, [str(e.event_id) for e in stream]) == 0
    assert sorted(r.producer_seq for r in received) == list(range(len(stream)))


async def test_kafka_down_at_start_spools_then_drains_in_order(
    stack: Stack, tmp_path: Path
) -> None:
    """A host that starts while Kafka is down spools; the next start delivers, in order."""
    topics = await fresh_topics(stack.kafka_bootstrap, "down")
    spool = tmp_path / "spool"
    host = functools.partial(run_host, topics=topics, spool=spool, producer_id="dur-down")
    first, health1, log1 = await asyncio.to_thread(
        host, bootstrap=dead_bootstrap(), seed=92_001, count=300, flush=False
    )
    assert len(first) == 300
    assert health1["state"] == "spooling"
    assert health1["spooled"] == 300
    assert health1["sent"] == 0
    assert float(health1["oldest_undelivered_age_seconds"]) > 0  # type: ignore[arg-type]
    # Spooling (one fsync per event here) kept emit within the bound.
    assert float(health1["slowest_emit_seconds"]) < 0.5 + FSYNC_SLACK  # type: ignore[arg-type]
    assert "starts spooling" in log1

    second, health2, _ = await asyncio.to_thread(
        host, bootstrap=stack.kafka_bootstrap, seed=92_002, count=100, flush=True
    )
    assert health2["spooled"] == 0
    assert health2["sent"] == 400
    emitted = first + second
    received = await consume(stack.kafka_bootstrap, topics, set(emitted))
    assert assert_per_key_order(received, emitted) == 0
    seq = {r.event_id: r.producer_seq for r in received}
    assert [seq[i] for i in first] == list(range(300))
    # The restarted host continues above every number the first one reserved.
    assert min(seq[i] for i in second) >= 300
    assert len({seq[i] for i in emitted}) == len(emitted)
    assert not list(spool.glob("*.seg"))


async def test_host_killed_while_spooling_loses_nothing_emit_returned_for(
    stack: Stack, tmp_path: Path
) -> None:
    topics = await fresh_topics(stack.kafka_bootstrap, "kill")
    spool = tmp_path / "spool"
    proc = await asyncio.create_subprocess_exec(
        *HOST,
        *host_args(dead_bootstrap(), topics, spool, 93_001, 1_000_000, "dur-kill", False),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    killed = False
    try:
        stdout = proc.stdout
        assert stdout is not None
        lines: list[bytes] = []
        async with asyncio.timeout(30):
            while len(lines) < 400:
                line = await stdout.readline()
                assert line.startswith(b"E "), "the host exited early"
                lines.append(line)
        proc.send_signal(signal.SIGKILL)  # mid-stream: very likely mid-write too
        killed = True
        lines.append(await stdout.read())
    finally:
        if not killed:  # (a second kill could reap the child before asyncio's watcher does)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before_kill, final = parse_host_output(b"".join(lines).decode(errors="replace"))
    assert final is None  # it never got to stop()
    assert len(before_kill) >= 400

    # What emit() returned for before the kill is in the spool; the next host sends it.
    second, health, log = await asyncio.to_thread(
        run_host,
        bootstrap=stack.kafka_bootstrap,
        topics=topics,
        spool=spool,
        seed=93_002,
        count=20,
        producer_id="dur-kill",
        flush=True,
    )
    assert health["spooled"] == 0
    assert "Traceback" not in log
    received = await consume(stack.kafka_bootstrap, topics, set(before_kill) | set(second))
    assert_per_key_order(received, before_kill + second)
    seq = {r.event_id: r.producer_seq for r in received}
    earlier = [n for event_id, n in seq.items() if event_id not in set(second)]
    assert min(seq[i] for i in second) > max(earlier)  # numbers never repeat across the kill
    assert len(set(seq.values())) == len(seq)
    assert not list(spool.glob("*.seg"))


async def host_killed_behind_a_silent_broker(
    stack: Stack, tmp_path: Path, name: str, *bounds: str
) -> tuple[tuple[str, str], list[str], str]:
    """A host emits through a proxy that goes silent after its first 30 events, keeps
    emitting (paced), and is SIGKILLed once all its emits returned; a second host drains
    its spool. (The topics, every id emitted in order, the state the first host was in
    when killed.)"""
    topics = await fresh_topics(stack.kafka_bootstrap, name)
    spool = tmp_path / "spool"
    async with kafka_proxy(stack.kafka_bootstrap) as proxy:
        args = host_args(proxy.bootstrap, topics, spool, 99_001, 130, f"dur-{name}", False)
        proc = await asyncio.create_subprocess_exec(
            *HOST, *args, "--pace=0.01", "--linger", *bounds,
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        lines: list[bytes] = []
        try:
            stdout = proc.stdout
            assert stdout is not None
            async with asyncio.timeout(30):
                while not lines or not lines[-1].startswith(b"S "):
                    line = await stdout.readline()
                    assert line, "the host exited early"
                    lines.append(line)
                    if len(lines) == 30:
                        proxy.stall()  # Kafka goes silent: nothing is acknowledged any more
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            await proc.wait()
        await proxy.cut()
    state = lines[-1].decode().split()[1]
    before_kill, _ = parse_host_output(b"".join(lines[:-1]).decode())
    assert len(before_kill) == 130
    second, health, log = await asyncio.to_thread(
        run_host, bootstrap=stack.kafka_bootstrap, topics=topics, spool=spool, seed=99_002,
        count=5, producer_id=f"dur-{name}", flush=True,
    )  # fmt: skip
    assert health["spooled"] == 0
    assert "Traceback" not in log
    return topics, before_kill + second, state


async def test_host_killed_past_the_in_flight_count_bound_loses_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    """With the age bound out of reach, the count bound alone puts every event Kafka has
    not acknowledged on disk: after the 50th unacknowledged event the host spools, so
    nothing emit() returned for lives only in the killed host's memory."""
    topics, emitted, state = await host_killed_behind_a_silent_broker(
        stack, tmp_path, "count", "--max-inflight=50", "--spool-after=600"
    )
    assert state == "spooling"
    received = await consume(stack.kafka_bootstrap, topics, set(emitted))
    assert_per_key_order(received, emitted)


async def test_host_killed_past_the_in_flight_age_bound_loses_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    """With the count bound out of reach, the age bound alone does it: 0.5 s after
    Kafka went silent the host spools what is in flight and everything after it."""
    topics, emitted, state = await host_killed_behind_a_silent_broker(
        stack, tmp_path, "age", "--max-inflight=100000", "--spool-after=0.5"
    )
    assert state == "spooling"
    received = await consume(stack.kafka_bootstrap, topics, set(emitted))
    assert_per_key_order(received, emitted)


async def test_outage_mid_stream_spools_and_resends_in_order(stack: Stack, tmp_path: Path) -> None:
    """Kafka vanishes mid-stream (connections cut, new ones refused), then comes back."""

    topics = await fresh_topics(stack.kafka_bootstrap, "cut")
    sim = Simulator(seed=94_001, patients=8)
    emitted: list[str] = []
    async with kafka_proxy(stack.kafka_bootstrap) as proxy:
        cfg = config(
            proxy.bootstrap, topics, "dur-cut", spool_dir=str(tmp_path / "spool"),
            max_block_seconds=0.25, spool_after_seconds=1.0, stop_timeout_seconds=5.0,
            reconnect_backoff_max_seconds=0.5,
        )  # fmt: skip
        async with Emitter(cfg) as emitter:
            for event in sim.events(100):
                await emitter.emit(event)
                emitted.append(str(event.event_id))
            await asyncio.wait_for(emitter.flush(), 20)
            assert proxy.rewritten > 0  # the client really talks through the proxy

            await proxy.cut()
            slowest = 0.0
            for event in sim.events(300):
                started = time.perf_counter()
                await emitter.emit(event)
                slowest = max(slowest, time.perf_counter() - started)
                emitted.append(str(event.event_id))
                await asyncio.sleep(0.005)
            outage = emitter.health()
            assert outage.state is EmitterState.SPOOLING
            assert outage.spooled > 0
            assert outage.oldest_undelivered_age_seconds > 0.5
            assert slowest < cfg.max_block_seconds + FSYNC_SLACK

            await proxy.restore()
            await asyncio.wait_for(emitter.flush(), 40)
            await eventually(lambda: emitter.health().state is EmitterState.DIRECT)
            for event in sim.events(50):  # straight to Kafka again, behind everything spooled
                await emitter.emit(event)
                emitted.append(str(event.event_id))
            await asyncio.wait_for(emitter.flush(), 20)
            after = emitter.health()
    assert (after.spooled, after.queued, after.lost) == (0, 0, 0)
    assert after.sent == len(emitted)
    received = await consume(stack.kafka_bootstrap, topics, set(emitted))
    # The events in flight at the cut were copied to the spool; aiokafka then delivered
    # them after the restore and the drainer skipped the copies: nothing came twice.
    assert assert_per_key_order(received, emitted) == 0
    assert sorted({r.producer_seq for r in received}) == list(range(len(emitted)))


async def test_concurrent_emitters_keep_sequence_order_through_an_outage(
    stack: Stack, tmp_path: Path
) -> None:
    """Many tasks emit at once while Kafka goes away and comes back. Their events are
    handed over in sequence-number order, so per patient Kafka holds them in that order."""

    topics = await fresh_topics(stack.kafka_bootstrap, "concurrent")
    streams = [list(Simulator(seed=98_000 + n, patients=5).events(80)) for n in range(8)]
    async with kafka_proxy(stack.kafka_bootstrap) as proxy:
        cfg = config(
            proxy.bootstrap, topics, "dur-concurrent", spool_dir=str(tmp_path / "spool"),
            max_block_seconds=0.25, spool_after_seconds=1.0, reconnect_backoff_max_seconds=0.3,
        )  # fmt: skip

        async def host_task(stream: list[AuditEvent]) -> None:
            for event in stream:
                await emitter.emit(event)
                await asyncio.sleep(0.01)

        async def outage() -> None:
            await asyncio.sleep(0.3)
            await proxy.cut()
            await asyncio.sleep(1.5)
            await proxy.restore()

        async with Emitter(cfg) as emitter:
            await asyncio.gather(outage(), *(host_task(s) for s in streams))
            await asyncio.wait_for(emitter.flush(), 40)
            health = emitter.health()
    total = sum(len(s) for s in streams)
    assert (health.spooled, health.queued, health.lost) == (0, 0, 0)
    assert health.failed == 0 or health.sent >= total
    ids = {str(e.event_id) for s in streams for e in s}
    received = await consume(stack.kafka_bootstrap, topics, ids)
    first: dict[str, Received] = {}
    for r in received:
        first.setdefault(r.event_id, r)
    assert sorted(r.producer_seq for r in first.values()) == list(range(total))
    by_seq = sorted(first.values(), key=lambda r: r.producer_seq)
    assert assert_per_key_order(received, [r.event_id for r in by_seq]) == 0


async def test_stop_while_kafka_is_slow_spools_within_the_bound(
    stack: Stack, tmp_path: Path
) -> None:
    """Kafka hangs (connections open, nothing answers): emit and stop stay bounded."""

    topics = await fresh_topics(stack.kafka_bootstrap, "slow")
    spool = tmp_path / "spool"
    sim = Simulator(seed=95_001, patients=8)
    emitted: list[str] = []
    async with kafka_proxy(stack.kafka_bootstrap) as proxy:
        cfg = config(
            proxy.bootstrap, topics, "dur-slow", spool_dir=str(spool), max_block_seconds=0.25,
            spool_after_seconds=1.0, stop_timeout_seconds=1.0,
        )  # fmt: skip
        emitter = Emitter(cfg)
        await emitter.start()
        for event in sim.events(50):
            await emitter.emit(event)
            emitted.append(str(event.event_id))
        await asyncio.wait_for(emitter.flush(), 20)

        proxy.stall()
        slowest = 0.0
        for event in sim.events(200):
            started = time.perf_counter()
            await emitter.emit(event)
            slowest = max(slowest, time.perf_counter() - started)
            emitted.append(str(event.event_id))
        assert slowest < cfg.max_block_seconds + FSYNC_SLACK
        started = time.perf_counter()
        await emitter.stop()
        stopped_in = time.perf_counter() - started
        await emitter.stop()  # idempotent
        await proxy.cut()  # drop whatever the stalled connections still held
    # stop() waited stop_timeout_seconds for Kafka, then spooled and closed within ~2 s.
    assert stopped_in < cfg.stop_timeout_seconds + 3.0
    with Spool(spool) as reopened:
        assert reopened.pending_records >= 150  # a few may have reached Kafka before the stall

    restarted = config(stack.kafka_bootstrap, topics, "dur-slow", spool_dir=str(spool))
    async with Emitter(restarted) as emitter:
        await asyncio.wait_for(emitter.flush(), 30)
        assert emitter.health().spooled == 0
    received = await consume(stack.kafka_bootstrap, topics, set(emitted))
    assert_per_key_order(received, emitted)


async def test_failed_delivery_is_spooled_and_resent(stack: Stack, tmp_path: Path) -> None:
    """Kafka takes the events but then rejects them for good (too large for the topic):
    the failed events go to the spool, not away, and are sent once the topic accepts them."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    name = uuid.uuid4().hex[:8]
    topics = (f"tdur-reject-{name}-access", f"tdur-reject-{name}-relay")
    admin = AIOKafkaAdminClient(**stack.kafka_client(KafkaRole.ADMIN))
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(topics[0], 3, 1, topic_configs={"max.message.bytes": "200"}),
                NewTopic(topics[1], 3, 1),
            ]
        )
        cfg = config(
            stack.kafka_bootstrap, topics, "dur-reject", spool_dir=str(tmp_path / "spool"),
            max_block_seconds=0.5, reconnect_backoff_max_seconds=0.3,
        )  # fmt: skip
        stream = list(Simulator(seed=97_001, patients=4).events(20, relay_every=0))
        async with Emitter(cfg) as emitter:
            for event in stream:
                await emitter.emit(event)
            assert emitter.health().state is EmitterState.DIRECT  # accepted by aiokafka
            await eventually(lambda: emitter.health().failed >= len(stream))
            await asyncio.sleep(1.0)  # the drainer's re-sends keep failing meanwhile
            rejected = emitter.health()
            assert rejected.state is EmitterState.SPOOLING
            assert (rejected.spooled, rejected.queued, rejected.lost) == (len(stream), 0, 0)
            assert rejected.failed > len(stream)  # re-sent and rejected again, never dropped

            await admin.alter_configs(
                [
                    ConfigResource(
                        ConfigResourceType.TOPIC, topics[0], {"max.message.bytes": "1048588"}
                    )
                ]
            )
            await asyncio.wait_for(emitter.flush(), 30)
            delivered = emitter.health()
    finally:
        await admin.close()
    assert (delivered.spooled, delivered.queued, delivered.lost) == (0, 0, 0)
    assert delivered.sent == len(stream)
    emitted = [str(e.event_id) for e in stream]
    received = await consume(stack.kafka_bootstrap, topics, set(emitted))
    assert assert_per_key_order(received, emitted) == 0


async def test_full_spool_raises_spool_full_error(tmp_path: Path) -> None:
    cfg = config(
        dead_bootstrap(), ("a", "r"), "dur-full", spool_dir=str(tmp_path / "spool"),
        spool_max_bytes=16_000, stop_timeout_seconds=0.2,
    )  # fmt: skip
    sim = Simulator(seed=96_001)
    async with Emitter(cfg) as emitter:
        accepted, refusal = await emit_until_refused(emitter, sim)
        assert "full" in str(refusal)
        assert isinstance(refusal, EmitterPushbackError)
        health = emitter.health()
        assert 10 < accepted < 1000
        assert health.spooled == accepted
        assert health.spool_bytes <= cfg.spool_max_bytes
        assert health.next_sequence == accepted  # the refused event gave its number back
        with pytest.raises(SpoolFullError):
            await emitter.emit(next(sim.events(1)))
    with Spool(tmp_path / "spool") as spool:
        records = spool.read(max_records=10_000, max_bytes=1 << 30)
    assert [CODEC.decode(r.entry.value).producer_seq for r in records] == list(range(accepted))


async def test_without_a_spool_an_unreachable_kafka_fails_start(tmp_path: Path) -> None:
    cfg = config(dead_bootstrap(), ("a", "r"), "dur-nospool", connect_timeout_seconds=5.0)
    started = time.perf_counter()
    with pytest.raises(EmitterUnavailableError, match="cannot reach Kafka"):
        await Emitter(cfg).start()
    assert time.perf_counter() - started < 5.0


if __name__ == "__main__":
    main()
