"""The relay's wire framing: a stream cut anywhere decodes to the same messages."""

from __future__ import annotations

import pickle
import struct

import pytest

from producers.relay import _frame, _Frames


def test_frames_split_at_every_byte_decode_to_the_messages_sent() -> None:
    messages = [("config", {"a": 1}), ("event", 1, "PhiAccessEvent", {"x": "é" * 300}),
                ("event", 2, "SecurityEvent", {})]  # fmt: skip
    stream = b"".join(_frame(m) for m in messages)
    for cut in range(len(stream) + 1):
        frames = _Frames()
        frames.feed(stream[:cut])
        got = frames.take()
        frames.feed(stream[cut:])
        got += frames.take()
        assert got == messages, cut
        assert frames.take() == []


def test_a_frame_that_is_no_tuple_stops_the_relay() -> None:
    frames = _Frames()
    data = pickle.dumps(["not", "a", "tuple"])
    frames.feed(struct.pack(">I", len(data)) + data)
    with pytest.raises(SystemExit, match="malformed frame"):
        frames.take()
