"""What the host (``pipe.PipeEmitter``) and its pipe process (``pipe_process``) agree on:
the frame format, the sequence-number blocks and the environment the child starts with.

Invariant: both directions carry 4-byte big-endian length + a pickled non-empty tuple;
host to pipe process ``("config", dict)`` first, then ``("event", frame_no,
schema_name, record)``; pipe process to host ``("block", first, count)``, ``("ack",
frame_no)``, ``("refused", frame_no, field)`` (docs/design/pipe.md). Only these modules
write and read it, over a pipe between two processes of the same user.
"""

from __future__ import annotations

import pickle
import struct
from typing import IO, Final

LENGTH: Final = struct.Struct(">I")
#: The pipe process's nice value when not at idle priority, set by the host.
NICE_ENV: Final = "PHI_LEDGER_PIPE_NICE"
#: The pipe process's command after the interpreter. Not ``-m producers.pipe``: the
#: package imports that module, so runpy would warn at every start (a RuntimeWarning in
#: the host's log).
PIPE_COMMAND: Final = ("-m", "producers.pipe_process")
#: "1": the pipe process runs at idle CPU priority (``SCHED_IDLE``), set by the host.
IDLE_ENV: Final = "PHI_LEDGER_PIPE_IDLE"
#: "host:port" (or a port on loopback): the pipe process serves /metrics, /livez and
#: /readyz there (docs/observability.md); unset: no listener. Read from the host's
#: environment, which the child inherits.
OPS_ENV: Final = "PHI_LEDGER_PIPE_OPS"
#: "json": the pipe process writes JSON log lines (as LEDGER_LOG_FORMAT=json elsewhere).
LOG_FORMAT_ENV: Final = "LEDGER_LOG_FORMAT"
#: The pipe to the pipe process holds this much (Linux's default limit for unprivileged
#: users); what does not fit waits in memory until the next emit or acknowledgement.
PIPE_BYTES: Final = 1 << 20
#: Sequence numbers the pipe process reserves at a time; it sends a new block once it has
#: emitted half of the newest. The host is never more than ``max_pending`` frames ahead of
#: the pipe process, and ``max_pending`` < BLOCK // 2, so it never waits for numbers. A
#: pipe process crash skips at most BLOCK numbers (the ledger allows gaps; they never
#: repeat).
BLOCK: Final = 65_536
#: The most frames a host may have unacknowledged (``PipeEmitter(max_pending=...)``).
MAX_PENDING: Final = BLOCK // 2 - 1
#: The pipe process acknowledges at most this often (each acknowledgement wakes a host
#: thread).
ACK_EVERY: Final = 0.02


def frame(message: tuple[object, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(len(data)) + data


def read_message(stream: IO[bytes]) -> tuple[object, ...] | None:
    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        return None
    (size,) = LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return decode(data)


def decode(data: bytes | bytearray) -> tuple[object, ...] | None:
    """A frame's message, or None if it is no (non-empty) tuple."""
    message = pickle.loads(data)  # noqa: S301 - our own child process, over our own pipe
    return message if isinstance(message, tuple) and message else None


class Frames:
    """Split a byte stream into messages: ``feed`` what was read, ``take`` the complete
    ones (a frame cut by the end of a read waits for the next)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def take(self) -> list[tuple[object, ...]]:
        messages: list[tuple[object, ...]] = []
        buffer = self._buffer
        at = 0
        while len(buffer) - at >= LENGTH.size:
            (size,) = LENGTH.unpack_from(buffer, at)
            end = at + LENGTH.size + size
            if end > len(buffer):
                break
            message = decode(buffer[at + LENGTH.size : end])
            if message is None:
                raise SystemExit("pipe: malformed frame")
            messages.append(message)
            at = end
        del buffer[:at]
        return messages
