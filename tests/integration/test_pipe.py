"""PipeEmitter against the real broker: a pipe process owns the Kafka client.

Every event whose ``emit`` returned reaches Kafka; when the pipe process is killed, a new one
gets every unacknowledged frame again with its original stamp, so whatever arrives twice
is byte-identical (a duplicate to the ledger, never a conflict).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from integrations.simulator import Simulator
from producers.events import AuditEvent, Patient, PhiAccessEvent, schema_name, to_record
from producers.pipe import PipeEmitter, _config_fields
from producers.pipe_protocol import PIPE_COMMAND, frame, read_message
from tests.integration.test_emitter_durability import consume, fresh_topics
from tests.integration.test_sync_emitter import sync_config
from tests.support import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@contextlib.asynccontextmanager
async def busy_cores() -> AsyncIterator[None]:
    """Busy loops at normal priority on every core (twice over), for the block's length."""
    hogs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", "while True: pass")
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            await hog.wait()


async def assert_all_arrived(
    stack: Stack, topics: tuple[str, str], events: list[AuditEvent], emitter: PipeEmitter
) -> None:
    """Every event was accepted, none lost, and each one is in Kafka."""
    assert (emitter.counts["accepted"], emitter.counts["lost"]) == (len(events), 0)
    ids = {str(e.event_id) for e in events}
    received = await consume(stack.kafka_bootstrap, topics, ids, timeout=60)
    assert {r.event_id for r in received} == ids


async def test_a_killed_pipe_process_is_replaced_and_nothing_is_lost_or_changed(
    stack: Stack, tmp_path: Path
) -> None:
    topics = await fresh_topics(stack.kafka_bootstrap, "pipe-kill")
    cfg = sync_config(stack.kafka_bootstrap, topics, "pipe-kill", tmp_path / "spool")
    events: list[AuditEvent] = list(Simulator(seed=424_242).events(3000))
    emitter = PipeEmitter(cfg, block_seconds=5.0)
    await asyncio.to_thread(emitter.start)
    killed = threading.Event()

    def produce() -> None:
        for n, event in enumerate(events):
            emitter.emit(event)
            if n == 1500:
                proc = emitter._proc
                assert proc is not None
                proc.send_signal(signal.SIGKILL)  # mid-stream, frames in flight
                killed.set()
            if n % 200 == 0:
                time.sleep(0.01)

    await asyncio.to_thread(produce)
    assert killed.is_set()
    assert await asyncio.to_thread(emitter.stop, 60.0)
    counts = emitter.counts
    assert counts["pipe_restarts"] >= 1
    assert (counts["accepted"], counts["lost"], counts["refused"]) == (len(events), 0, 0)

    ids = {str(e.event_id) for e in events}
    received = await consume(stack.kafka_bootstrap, topics, ids, timeout=60)
    values: dict[str, set[bytes]] = defaultdict(set)
    stamps: dict[tuple[str, int], set[str]] = defaultdict(set)
    for r in received:
        values[r.event_id].add(r.value)
        stamps[(r.producer_id, r.producer_seq)].add(r.event_id)
    assert set(values) == ids  # every event arrived
    assert all(len(v) == 1 for v in values.values())  # a re-send is byte-identical
    assert all(len(v) == 1 for v in stamps.values())  # no number stamps two events


async def test_an_invalid_event_is_refused_by_the_pipe_process_and_counted(
    stack: Stack, tmp_path: Path
) -> None:
    topics = await fresh_topics(stack.kafka_bootstrap, "pipe-invalid")
    cfg = sync_config(stack.kafka_bootstrap, topics, "pipe-invalid", tmp_path / "spool")
    good = next(e for e in Simulator(seed=77).events(5) if isinstance(e, PhiAccessEvent))
    bad = replace(good, patient=Patient(id="  "), event_id=Simulator(seed=78).access().event_id)
    with PipeEmitter(cfg) as emitter:
        emitter.emit(bad)  # not validated here: that is the pipe process's work
        emitter.emit(good)
    assert emitter.counts["refused"] == 1
    received = await consume(stack.kafka_bootstrap, topics, {str(good.event_id)})
    assert [r.event_id for r in received] == [str(good.event_id)]


def _talk_to_a_pipe(
    frames: list[tuple[object, ...]],
) -> tuple[list[tuple[object, ...]], int, str]:
    """Send frames to a fresh pipe process (started as PipeEmitter starts one), close its
    input; (its replies, its exit status, what it wrote to stderr)."""
    proc = subprocess.Popen(
        [sys.executable, *PIPE_COMMAND],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    for message in frames:
        proc.stdin.write(frame(message))
    proc.stdin.close()
    replies = []
    while (reply := read_message(proc.stdout)) is not None:
        replies.append(reply)
    return replies, proc.wait(30), proc.stderr.read().decode()


async def test_a_record_that_is_no_event_is_refused_not_fatal_to_the_pipe_process(
    stack: Stack, tmp_path: Path
) -> None:
    # Speak the wire protocol to a pipe process directly: a poison frame must not kill it (a
    # pipe process that died on a frame would be restarted and get the same frame again).
    topics = await fresh_topics(stack.kafka_bootstrap, "pipe-poison")
    cfg = sync_config(stack.kafka_bootstrap, topics, "pipe-poison", tmp_path / "spool")
    good = Simulator(seed=79).access()
    record = to_record(good) | {"producer_id": "pipe-poison", "producer_seq": 0}
    frames = [
        ("config", _config_fields(cfg)),
        ("event", 1, schema_name(good), {"not": "an event"}),
        ("event", 2, schema_name(good), record),
    ]
    replies, returncode, stderr = await asyncio.to_thread(_talk_to_a_pipe, frames)
    assert returncode == 0
    # What Orthanc's log shows of each pipe process: no interpreter warning at its start
    # (`-m producers.pipe` drew runpy's "found in sys.modules" RuntimeWarning).
    assert "Warning" not in stderr, stderr
    assert replies[0][0] == "block"
    assert replies[1] == ("refused", 1, "<record>")
    # Acknowledgements are cumulative: "ack 2" alone, or "ack 1" (the refused frame is
    # settled too) then "ack 2" when the periodic acknowledgement ran between the frames.
    acks = replies[2:]
    assert {kind for kind, *_ in acks} == {"ack"}
    assert [n for _, n in acks] in ([2], [1, 2]), acks
    received = await consume(stack.kafka_bootstrap, topics, {str(good.event_id)})
    assert [(r.event_id, r.producer_seq) for r in received] == [(str(good.event_id), 0)]


async def test_a_batch_larger_than_the_hand_off_bound_still_flows(
    stack: Stack, tmp_path: Path
) -> None:
    # Inside batch() frames wait to be written; an emit that finds no room must write them
    # first, or the pipe process never sees them, never acknowledges, and the batch never ends.
    topics = await fresh_topics(stack.kafka_bootstrap, "pipe-batch")
    cfg = sync_config(stack.kafka_bootstrap, topics, "pipe-batch", tmp_path / "spool")
    events: list[AuditEvent] = list(Simulator(seed=515).events(400))
    emitter = PipeEmitter(cfg, max_pending=16, block_seconds=10.0)

    def produce() -> None:
        with emitter.batch():
            for event in events:
                emitter.emit(event)

    await asyncio.to_thread(emitter.start)
    try:
        await asyncio.wait_for(asyncio.to_thread(produce), 60)
    finally:
        assert await asyncio.to_thread(emitter.stop, 60.0)
    await assert_all_arrived(stack, topics, events, emitter)


# Busy loops on every core, and idle priority judged by what else runs: no other test.
@pytest.mark.alone
async def test_a_pipe_process_starved_at_idle_priority_is_promoted_then_demoted(
    stack: Stack, tmp_path: Path
) -> None:
    # The pipe process runs SCHED_IDLE: it gets a core only when nothing else wants one. Busy
    # loops at normal priority on every core starve it; the watchdog must replace it with
    # a pipe process at normal priority, every event must still arrive, and once the cores are
    # free the pipe process must go back to idle priority.
    topics = await fresh_topics(stack.kafka_bootstrap, "pipe-starved")
    cfg = sync_config(stack.kafka_bootstrap, topics, "pipe-starved", tmp_path / "spool")
    events: list[AuditEvent] = list(Simulator(seed=616).events(300))
    # demote_seconds leaves this test, itself slowed by the busy loops, time to see the
    # promoted pipe process at normal priority before it goes back to idle.
    emitter = PipeEmitter(cfg, block_seconds=10.0, starved_seconds=0.5, demote_seconds=5.0)
    await asyncio.to_thread(emitter.start)

    def policy() -> int:
        proc = emitter._proc
        assert proc is not None
        return os.sched_getscheduler(proc.pid)

    async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.05)

    try:
        # Idle from the start, or soon after a promotion the machine's load caused while
        # the pipe process was starting (then it is demoted after demote_seconds).
        await until(lambda: policy() == os.SCHED_IDLE, "the pipe process is not at idle priority")
        assert emitter.health()["priority"] == "idle"
        promoted = emitter.counts["pipe_promotions"]
        async with busy_cores():
            for event in events:
                await asyncio.to_thread(emitter.emit, event)
            await until(lambda: emitter.counts["pipe_promotions"] > promoted, "no promotion")
            await until(lambda: emitter.counts["pending"] == 0, "the promoted one is stuck")
            assert policy() == os.SCHED_OTHER
            assert emitter.health()["priority"] == "normal"
        await until(lambda: policy() == os.SCHED_IDLE, "the pipe process stayed at normal priority")
        assert emitter.health()["priority"] == "idle"
    finally:
        assert await asyncio.to_thread(emitter.stop, 60.0)
    await assert_all_arrived(stack, topics, events, emitter)


# Busy loops on every core, and idle priority judged by what else runs: no other test.
@pytest.mark.alone
async def test_a_pipe_process_starting_on_busy_cores_is_promoted_and_starts(
    stack: Stack, tmp_path: Path
) -> None:
    # Starting is waiting too: an idle-priority pipe process on saturated cores imports its
    # modules at a crawl, and the plugin disables itself when start() times out; the
    # watchdog must promote it rather than leave start() waiting.
    topics = await fresh_topics(stack.kafka_bootstrap, "pipe-busy-start")
    cfg = sync_config(stack.kafka_bootstrap, topics, "pipe-busy-start", tmp_path / "spool")
    emitter = PipeEmitter(cfg, starved_seconds=0.5)
    event = next(iter(Simulator(seed=717).events(1)))
    try:
        async with busy_cores():
            await asyncio.to_thread(emitter.start, 30.0)
            assert emitter.counts["pipe_promotions"] >= 1
            await asyncio.to_thread(emitter.emit, event)
    finally:
        assert await asyncio.to_thread(emitter.stop, 60.0)
    received = await consume(stack.kafka_bootstrap, topics, {str(event.event_id)})
    assert [r.event_id for r in received] == [str(event.event_id)]
