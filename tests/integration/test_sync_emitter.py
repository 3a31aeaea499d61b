"""SyncEmitter against the real broker: many threads, bounds, stop, and Kafka away.

Every event whose ``emit`` returned must arrive in Kafka exactly once per event id
(read back with aiokafka), and ``emit`` must never hold its caller longer than its bound.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from integrations.simulator import Simulator
from ledgerctl.settings import KafkaRole
from producers.emitter import EmitterConfig, EmitterState
from producers.errors import EmitterPushbackError, EmitterUnavailableError, EventValidationError
from producers.events import AuditEvent, Patient, PhiAccessEvent
from producers.spool import Spool
from producers.sync import SyncEmitter
from tests.integration.test_emitter_durability import (
    assert_per_key_order,
    consume,
    dead_bootstrap,
    fresh_topics,
)
from tests.support import Stack, local_kafka, local_producer_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def sync_config(
    bootstrap: str, topics: tuple[str, str], producer_id: str, spool: Path, **kw: object
) -> EmitterConfig:
    return EmitterConfig(
        bootstrap_servers=bootstrap,
        producer_id=producer_id,
        access_topic=topics[0],
        relay_topic=topics[1],
        spool_dir=str(spool),
        max_block_seconds=0.5,
        stop_timeout_seconds=5.0,
        connect_timeout_seconds=3.0,
        reconnect_backoff_max_seconds=0.5,
        producer_key_file=local_producer_key(producer_id),  # signs, as in production
        kafka_security=local_kafka(KafkaRole.SIMULATOR),
        **kw,  # type: ignore[arg-type]
    )


def emit_from_threads(
    emitter: SyncEmitter, streams: list[list[AuditEvent]]
) -> tuple[list[list[str]], float]:
    """Emit each stream from its own thread, all at once; (ids per thread, slowest emit)."""
    barrier = threading.Barrier(len(streams))
    emitted: list[list[str]] = [[] for _ in streams]
    slowest = [0.0] * len(streams)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait(10)
            for event in streams[n]:
                started = time.perf_counter()
                emitter.emit(event)
                slowest[n] = max(slowest[n], time.perf_counter() - started)
                emitted[n].append(str(event.event_id))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(streams))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return emitted, max(slowest)


async def test_many_threads_each_event_reaches_kafka_exactly_once(
    stack: Stack, tmp_path: Path
) -> None:
    topics = await fresh_topics(stack.kafka_bootstrap, "sync-threads")
    cfg = sync_config(stack.kafka_bootstrap, topics, "sync-threads", tmp_path / "spool")
    streams: list[list[AuditEvent]] = [
        list(Simulator(seed=191_000 + n, patients=6).events(250)) for n in range(16)
    ]
    emitter = SyncEmitter(cfg, max_pending=100_000, block_seconds=1.0)
    emitter.start()
    try:
        assert emitter.health().state is EmitterState.DIRECT
        emitted, slowest = await asyncio.to_thread(emit_from_threads, emitter, streams)
        await asyncio.to_thread(emitter.flush, 30)
        health = emitter.health()
    finally:
        assert await asyncio.to_thread(emitter.stop, 20)
    total = sum(len(s) for s in streams)
    assert sum(len(ids) for ids in emitted) == total
    assert slowest < 1.0, f"an emit held its caller for {slowest:.3f}s"
    assert health.sent == total
    assert (health.queued, health.spooled, health.lost) == (0, 0, 0)
    assert emitter.counts == {"accepted": total, "delivered": total, "pending": 0, "lost": 0}

    all_ids = {i for ids in emitted for i in ids}
    received = await consume(stack.kafka_bootstrap, topics, all_ids, timeout=30)
    per_id = Counter(r.event_id for r in received)
    assert set(per_id) == all_ids
    assert max(per_id.values()) == 1, "an event reached Kafka more than once"
    # One producer: every sequence number once, no gap.
    assert sorted(r.producer_seq for r in received) == list(range(total))
    # Each thread's events keep that thread's order within each patient's partition.
    for ids in emitted:
        mine = set(ids)
        assert assert_per_key_order([r for r in received if r.event_id in mine], ids) == 0


async def test_stop_flushes_everything_accepted_and_emit_after_stop_raises(
    stack: Stack, tmp_path: Path
) -> None:
    topics = await fresh_topics(stack.kafka_bootstrap, "sync-stop")
    cfg = sync_config(stack.kafka_bootstrap, topics, "sync-stop", tmp_path / "spool")
    stream = list(Simulator(seed=192_001, patients=5).events(400))
    emitter = SyncEmitter(cfg)
    with pytest.raises(EmitterUnavailableError):
        emitter.emit(stream[0])  # not started yet
    with emitter:
        for event in stream:
            emitter.emit(event)
        # No flush: leaving the block stops the emitter, which must deliver all of it.
    assert emitter.pending == 0
    with pytest.raises(EmitterUnavailableError):
        emitter.emit(stream[0])
    assert emitter.stop() is True  # idempotent
    with pytest.raises(EmitterUnavailableError):
        emitter.start()  # a stopped SyncEmitter stays stopped
    received = await consume(stack.kafka_bootstrap, topics, {str(e.event_id) for e in stream})
    assert Counter(r.event_id for r in received) == Counter(str(e.event_id) for e in stream)
    health = emitter.health()
    assert (health.state, health.sent, health.lost) == (EmitterState.STOPPED, len(stream), 0)


async def test_invalid_event_raises_in_the_caller_and_is_never_queued(
    stack: Stack, tmp_path: Path
) -> None:
    topics = await fresh_topics(stack.kafka_bootstrap, "sync-invalid")
    cfg = sync_config(stack.kafka_bootstrap, topics, "sync-invalid", tmp_path / "spool")
    good = next(e for e in Simulator(seed=193_001).events(5) if isinstance(e, PhiAccessEvent))
    bad = replace(good, patient=Patient(id="  "))
    with SyncEmitter(cfg) as emitter:
        with pytest.raises(EventValidationError) as info:
            emitter.emit(bad)
        assert info.value.field == "patient.id"
        with pytest.raises(EventValidationError):
            # Every field is valid, but the encoded event is larger than a ledger leaf allows.
            emitter.emit(replace(good, details={f"k{i}": "y" * 1000 for i in range(64)}))
        assert emitter.counts["accepted"] == 0
        emitter.emit(good)
        await asyncio.to_thread(emitter.flush, 20)
        assert emitter.health().sent == 1
    received = await consume(stack.kafka_bootstrap, topics, {str(good.event_id)})
    assert [r.event_id for r in received] == [str(good.event_id)]


async def test_kafka_down_events_are_spooled_at_stop_and_sent_by_the_next_emitter(
    stack: Stack, tmp_path: Path
) -> None:
    topics = await fresh_topics(stack.kafka_bootstrap, "sync-down")
    spool = tmp_path / "spool"
    stream = list(Simulator(seed=194_001, patients=4).events(300))
    down = sync_config(dead_bootstrap(), topics, "sync-down", spool)
    emitter = SyncEmitter(down, block_seconds=0.5)
    emitter.start()  # with a spool, Kafka need not be reachable
    streams: list[list[AuditEvent]] = [stream[i::4] for i in range(4)]
    emitted, slowest = await asyncio.to_thread(emit_from_threads, emitter, streams)
    started = time.perf_counter()
    assert await asyncio.to_thread(emitter.stop, 20) is True
    assert time.perf_counter() - started < 15
    assert slowest < 1.5, f"an emit held its caller for {slowest:.3f}s"
    reopened = Spool(spool)
    reopened.open()
    try:
        assert reopened.pending_records == len(stream)
    finally:
        reopened.close()

    up = replace(down, bootstrap_servers=stack.kafka_bootstrap)
    with SyncEmitter(up) as again:
        await asyncio.to_thread(again.flush, 30)
    ids = [i for part in emitted for i in part]
    received = await consume(stack.kafka_bootstrap, topics, set(ids))
    assert Counter(r.event_id for r in received) == Counter(ids)
    for part in emitted:
        mine = set(part)
        assert assert_per_key_order([r for r in received if r.event_id in mine], part) == 0


async def test_full_queue_pushes_back_within_the_bound(tmp_path: Path) -> None:
    """Kafka away and a tiny spool: the emitter refuses, the queue fills, emit raises
    EmitterPushbackError after block_seconds, never later; stop gives up within its bound."""
    topics = ("sync-bound-access", "sync-bound-relay")
    cfg = sync_config(dead_bootstrap(), topics, "sync-bound", tmp_path / "spool",
                      spool_max_bytes=4096)  # fmt: skip
    block = 0.1
    emitter = SyncEmitter(cfg, max_pending=20, block_seconds=block)
    emitter.start()
    sim = Simulator(seed=195_001)
    pushed_back: list[float] = []
    accepted = 0
    for event in sim.events(500):
        started = time.perf_counter()
        try:
            emitter.emit(event)
            accepted += 1
        except EmitterPushbackError:
            pushed_back.append(time.perf_counter() - started)
            if len(pushed_back) == 5:
                break
        assert emitter.pending <= 20
    assert len(pushed_back) == 5, "the queue never filled"
    assert all(block <= t < block + 0.5 for t in pushed_back), pushed_back
    assert emitter.pending == 20

    # Concurrent callers are refused within the bound too.
    def one() -> float:
        started = time.perf_counter()
        with pytest.raises(EmitterPushbackError):
            emitter.emit(next(sim.events(1)))
        return time.perf_counter() - started

    waits = await asyncio.gather(*(asyncio.to_thread(one) for _ in range(8)))
    assert all(t < block + 0.5 for t in waits), waits

    started = time.perf_counter()
    assert await asyncio.to_thread(emitter.stop, 3.0) is False  # the queued 20 cannot go
    assert time.perf_counter() - started < 6.0
    counts = emitter.counts
    assert counts["pending"] == 0
    assert counts["lost"] == 20
    assert counts["accepted"] == accepted
    with pytest.raises(EmitterUnavailableError):
        emitter.emit(next(sim.events(1)))
