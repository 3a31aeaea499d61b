"""The pipe process's pure parts: wire framing, and the policy that sets its CPU priority."""

from __future__ import annotations

import pickle
import struct

import pytest

from producers.pipe_protocol import Frames, frame
from producers.pipe_watchdog import PriorityPolicy


def test_frames_split_at_every_byte_decode_to_the_messages_sent() -> None:
    messages = [("config", {"a": 1}), ("event", 1, "PhiAccessEvent", {"x": "é" * 300}),
                ("event", 2, "SecurityEvent", {})]  # fmt: skip
    stream = b"".join(frame(m) for m in messages)
    for cut in range(len(stream) + 1):
        frames = Frames()
        frames.feed(stream[:cut])
        got = frames.take()
        frames.feed(stream[cut:])
        got += frames.take()
        assert got == messages, cut
        assert frames.take() == []


def test_a_frame_that_is_no_tuple_stops_the_pipe_process() -> None:
    frames = Frames()
    data = pickle.dumps(["not", "a", "tuple"])
    frames.feed(struct.pack(">I", len(data)) + data)
    with pytest.raises(SystemExit, match="malformed frame"):
        frames.take()


def _tick(policy: PriorityPolicy, now: float, **seen: object) -> str | None:
    observed: dict[str, object] = {
        "idle": True, "waiting": False, "stalled_for": 0.0,
        "run_queue_share": 0.0, "schedstat": True,
    } | seen  # fmt: skip
    return policy.decide(now=now, **observed)  # type: ignore[arg-type]


def test_an_idle_pipe_process_is_promoted_only_when_it_waits_for_a_cpu() -> None:
    policy = PriorityPolicy(starved_seconds=1.0, demote_seconds=30.0)
    starving = {"waiting": True, "stalled_for": 1.5, "run_queue_share": 0.9}
    # Kafka slow, not the CPU: frames wait, but the pipe process is not on the run queue.
    assert _tick(policy, 0.0, **(starving | {"run_queue_share": 0.1})) is None
    # Not long enough yet, or nothing waiting.
    assert _tick(policy, 0.0, **(starving | {"stalled_for": 0.5})) is None
    assert _tick(policy, 0.0, **(starving | {"waiting": False})) is None
    # The first look after a start has no share yet: starving only without schedstat.
    assert _tick(policy, 0.0, **(starving | {"run_queue_share": None})) is None
    assert _tick(policy, 0.0, **(starving | {"run_queue_share": None, "schedstat": False})) == (
        "promote"
    )
    assert _tick(policy, 0.0, **starving) == "promote"


def test_a_promoted_pipe_process_is_demoted_after_keeping_up_and_backs_off_if_starved_again() -> (
    None
):
    policy = PriorityPolicy(starved_seconds=1.0, demote_seconds=30.0)
    starving = {"waiting": True, "stalled_for": 1.5, "run_queue_share": 0.9}
    assert _tick(policy, 0.0, **starving) == "promote"
    assert _tick(policy, 1.0, idle=False) is None
    assert _tick(policy, 20.0, idle=False, waiting=True, stalled_for=0.01) is None  # keeping up
    assert _tick(policy, 25.0, idle=False, waiting=True, stalled_for=2.0) is None  # behind: reset
    assert _tick(policy, 26.0, idle=False) is None
    assert _tick(policy, 55.0, idle=False) is None
    assert _tick(policy, 56.0, idle=False) == "demote"
    # Starved again soon after: promoted, and the next demotion waits twice as long.
    assert _tick(policy, 60.0, **starving) == "promote"
    assert policy.demote_seconds == 60.0
    assert _tick(policy, 61.0, idle=False) is None
    assert _tick(policy, 120.0, idle=False) is None
    assert _tick(policy, 121.0, idle=False) == "demote"
    now = 122.0
    for _ in range(12):  # a host busy for hours: starved again soon after each demotion
        assert _tick(policy, now, **starving) == "promote"
        wait = policy.demote_seconds
        assert _tick(policy, now + 1, idle=False) is None
        assert _tick(policy, now + 1 + wait, idle=False) == "demote"
        now += 2 + wait
    assert policy.demote_seconds == PriorityPolicy.MAX_DEMOTE_SECONDS
    # Starved long after the last demotion: back to the configured wait.
    assert _tick(policy, 10**7, **starving) == "promote"
    assert policy.demote_seconds == 30.0
