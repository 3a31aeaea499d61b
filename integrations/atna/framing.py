"""RFC 6587 framing of a syslog stream, detected per connection (section 3.4).

Invariant: a ``StreamDecoder`` decides from the first octet of its stream and sticks to
that framing: a digit is octet counting (``MSG-LEN SP SYSLOG-MSG``, RFC 5425 and RFC 6587
3.4.1, ``rfc5424.OctetCountingDecoder``); ``<`` is non-transparent framing (RFC 6587
3.4.2: each message ends with LF; a CR before the LF and empty lines are dropped). RFC
6587 forbids an LF inside such a message, but audit XML is often written over several
lines: an LF after an XML prolog or inside an open ``<AuditMessage>`` element (up to its
end tag) does not end the frame, unless the next line starts a syslog message
(``<PRI>``). Any other first octet is ``bad_frame``. Once decided, a frame of the other framing
(``MSG-LEN SP <`` on a line; a line where a length is expected) is ``bad_frame`` (mixed
framing), a frame over ``max_message_bytes`` is ``oversize``; after either the decoder is
broken (the connection is to be closed: a stream cannot be re-synchronised) and nothing
more than ``max_message_bytes`` is ever held. At the end of the stream, a line without
its LF is a frame when the sender closed cleanly, else ``truncated``.
"""

from __future__ import annotations

import re
from typing import Final

from integrations.atna.rfc5424 import Frame, FrameError, OctetCountingDecoder

__all__ = ["LINE", "OCTET_COUNTING", "UNDECIDED", "StreamDecoder"]

UNDECIDED: Final = "undecided"
OCTET_COUNTING: Final = "octet-counting"
LINE: Final = "non-transparent"
#: A line that starts like an octet-counted frame: the sender switched framing.
_COUNTED: Final = re.compile(rb"[1-9]\d{0,9} <")
#: A line that starts a syslog message.
_PRI: Final = re.compile(rb"<\d{1,3}>")
_AUDIT_OPEN: Final = re.compile(rb"<(?:[\w.-]+:)?AuditMessage(?:\s[^>]*)?(/?)>")
_AUDIT_CLOSE: Final = re.compile(rb"</(?:[\w.-]+:)?AuditMessage\s*>")


def _open_audit_message(message: bytearray) -> bool:
    """Whether ``message`` has begun XML (its prolog, or an AuditMessage element) and not
    closed the AuditMessage yet: an LF inside it is part of the XML, not a frame's end."""
    opened = _AUDIT_OPEN.search(message)
    if opened is None:
        return b"<?xml" in message  # the prolog of an XML message: its root comes next
    if opened[1]:
        return False
    return _AUDIT_CLOSE.search(message, opened.end()) is None


class StreamDecoder:
    """Feed any split of a stream; get whole frames (see the module doc)."""

    __slots__ = ("_broken", "_buf", "_counted", "_max", "_message", "mode")

    def __init__(self, max_message_bytes: int) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be positive")
        self._max = max_message_bytes
        self._counted = OctetCountingDecoder(max_message_bytes)
        self._buf = bytearray()  # bytes after the last LF
        self._message = bytearray()  # the lines of a message not yet complete
        self._broken = False
        self.mode = UNDECIDED

    @property
    def broken(self) -> bool:
        return self._broken or self._counted.broken

    @property
    def pending(self) -> int:
        """Bytes held that do not yet make a whole frame."""
        if self.mode == OCTET_COUNTING:
            return self._counted.pending
        return len(self._buf) + len(self._message)

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        if self.broken or not data:
            return []
        if self.mode == UNDECIDED:
            first = data[:1]
            if first.isdigit() and first != b"0":
                self.mode = OCTET_COUNTING
            elif first == b"<":
                self.mode = LINE
            else:
                return [
                    self._error(
                        "bad_frame",
                        "a stream starts with a digit (octet counting) or '<' "
                        "(non-transparent framing, RFC 6587 3.4)",
                        data,
                    )
                ]
        if self.mode == OCTET_COUNTING:
            return self._counted_frames(data)
        return self._lines(data)

    def _counted_frames(self, data: bytes) -> list[Frame | FrameError]:
        out = self._counted.feed(data)
        if out and isinstance(out[-1], FrameError) and out[-1].data[:1] == b"<":
            error = out[-1]
            out[-1] = FrameError(
                "bad_frame",
                "mixed framing: a non-transparent frame on an octet-counting stream",
                error.data,
            )
        return out

    def _lines(self, data: bytes) -> list[Frame | FrameError]:
        buf = self._buf
        start = len(buf)
        buf += data
        out: list[Frame | FrameError] = []
        pos = 0
        while True:
            end = buf.find(b"\n", max(pos, start))
            if end < 0:
                break
            line = bytes(buf[pos:end])
            pos = end + 1
            error = self._line(line, out)
            if error is not None:
                out.append(error)
                return out
        del buf[:pos]
        if not self._message and _COUNTED.match(buf):
            out.append(
                self._error(
                    "bad_frame",
                    "mixed framing: an octet-counted frame on a non-transparent stream",
                    bytes(buf),
                )
            )
        elif self.pending > self._max:
            held = bytes(self._message) + b"\n" + bytes(buf) if self._message else bytes(buf)
            out.append(self._error("oversize", f"a frame of more than {self._max} bytes", held))
        return out

    def _line(self, line: bytes, out: list[Frame | FrameError]) -> FrameError | None:
        """One LF-terminated line: a message, or the next line of one (an AuditMessage
        written over several lines), or the start of the next (it has a PRI)."""
        message = self._message
        if message and _PRI.match(line):
            out.append(Frame(bytes(message).removesuffix(b"\r")))
            message.clear()
        if message:
            message += b"\n" + line
        elif not line.strip(b"\r"):
            return None  # an empty line between messages
        elif _COUNTED.match(line):
            return self._error(
                "bad_frame",
                "mixed framing: an octet-counted frame on a non-transparent stream",
                line,
            )
        else:
            message += line
        if len(message) > self._max:
            return self._error(
                "oversize",
                f"frame of {len(message)} bytes exceeds the maximum of {self._max}",
                bytes(message),
            )
        if not _open_audit_message(message):
            out.append(Frame(bytes(message).removesuffix(b"\r")))
            message.clear()
        return None

    def finish(self, *, clean: bool = True) -> Frame | FrameError | None:
        """The stream ended (``clean``: the sender closed it): a partial frame, if any."""
        if self.mode == OCTET_COUNTING:
            return self._counted.finish()
        if self._broken:
            return None
        tail = bytes(self._buf)
        held = bytes(self._message) + (b"\n" + tail if tail else b"") if self._message else tail
        self._buf.clear()
        self._message.clear()
        held = held.removesuffix(b"\r")
        if not held.strip(b"\r\n"):
            return None
        if not clean:
            return self._error("truncated", "the connection ended inside a frame", held)
        if len(held) > self._max:
            return self._error("oversize", f"a frame of more than {self._max} bytes", held)
        return Frame(held)

    def _error(self, reason: str, detail: str, data: bytes) -> FrameError:
        self._broken = True
        self._buf.clear()
        self._message.clear()
        return FrameError(reason, detail, data[: self._max])
