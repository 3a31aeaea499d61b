"""A strict RFC 5424 syslog message parser, and RFC 5425 octet-counting framing.

Invariant: ``parse_syslog`` either returns a ``SyslogMessage`` whose every field is as
RFC 5424 section 6 defines it, or raises ``AtnaParseError`` with a stable ``reason``
naming the first part that is wrong:

====================== ============================================================
reason                 what was wrong
====================== ============================================================
``empty``              no bytes at all
``bad_pri``            PRI is not ``<0>`` .. ``<191>`` (no leading zeros)
``bad_version``        VERSION is not ``1`` (the only version defined)
``bad_header``         a header field is missing, or not separated by one SP
``bad_timestamp``      TIMESTAMP is neither ``-`` nor an RFC 3339 time as 6.2.3 allows
``bad_hostname``       HOSTNAME, APP-NAME, PROCID or MSGID have characters outside
``bad_app_name``       PRINTUSASCII (33-126) or are longer than 255, 48, 128 and 32
``bad_procid``         octets
``bad_msgid``
``bad_structured_data`` STRUCTURED-DATA is malformed (names, quoting, escapes, UTF-8,
                       a repeated SD-ID, or no SP before MSG)
``bad_utf8``           MSG starts with the UTF-8 BOM but is not valid UTF-8
``bad_frame``          (framing) MSG-LEN is not a decimal number followed by SP
``oversize``           (framing) MSG-LEN is larger than the configured maximum
``truncated``          (framing) the stream ended inside a frame
====================== ============================================================

Nothing here does I/O; ``OctetCountingDecoder`` is fed whatever a socket returned
(any split of the stream) and hands back whole frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from integrations.errors import AtnaParseError
from schemas import dicom

__all__ = [
    "BOM",
    "NILVALUE",
    "Frame",
    "FrameError",
    "OctetCountingDecoder",
    "SdElement",
    "SyslogMessage",
    "format_syslog",
    "frame_octet_counted",
    "parse_syslog",
]

BOM: Final = b"\xef\xbb\xbf"
NILVALUE: Final = "-"

_TIMESTAMP = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})"
)
#: PRINTUSASCII: %d33-126.
_PRINTUSASCII = re.compile(rb"[!-~]+")
#: SD-NAME: 1*32 PRINTUSASCII except '=', SP, ']' and '"'.
_SD_NAME = re.compile(rb"[!#-<>-\\^-~]{1,32}")
_FIELD_LIMITS: Final = (
    ("hostname", 255, "bad_hostname"),
    ("app_name", 48, "bad_app_name"),
    ("procid", 128, "bad_procid"),
    ("msgid", 32, "bad_msgid"),
)


@dataclass(frozen=True, slots=True)
class SdElement:
    """One SD-ELEMENT: its SD-ID and its parameters in order (names may repeat)."""

    id: str
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SyslogMessage:
    """One RFC 5424 message. Fields that were NILVALUE (``-``) are ``None``.

    ``msg`` is the MSG part without the BOM; ``bom`` tells whether it had one (then it
    is valid UTF-8). ``msg`` is ``b""`` when the message has no MSG part.
    """

    facility: int
    severity: int
    version: int
    timestamp: datetime | None
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    structured_data: tuple[SdElement, ...]
    msg: bytes
    bom: bool
    #: ``rfc5424``, or ``rfc3164`` for a BSD header (``rfc3164.parse_bsd``).
    syntax: str = "rfc5424"
    #: The header as received: every byte before MSG and its BOM.
    header: bytes = b""

    @property
    def pri(self) -> int:
        return self.facility * 8 + self.severity


def _fail(reason: str, problem: str) -> AtnaParseError:
    return AtnaParseError(f"RFC 5424: {problem}", reason=reason)


def _pri_version(token: bytes) -> tuple[int, int]:
    if not token.startswith(b"<"):
        raise _fail("bad_pri", "a message starts with '<PRIVAL>'")
    end = token.find(b">", 1, 5)
    if end < 0:
        raise _fail("bad_pri", "PRI must be '<' 1-3 digits '>'")
    digits = token[1:end]
    if not digits.isdigit() or not digits.isascii() or (len(digits) > 1 and digits[0] == 0x30):
        raise _fail("bad_pri", f"PRIVAL {digits[:8]!r} is not a number without leading zeros")
    prival = int(digits)
    if prival > 191:
        raise _fail("bad_pri", f"PRIVAL {prival} is above 191")
    version = token[end + 1 :]
    if version != b"1":
        if not version:
            raise _fail("bad_version", "VERSION is missing after PRI")
        if re.fullmatch(rb"[1-9]\d{0,2}", version):
            raise _fail("bad_version", f"VERSION {version.decode()} is not supported (only 1)")
        raise _fail("bad_version", f"VERSION {version[:8]!r} is not a number")
    return prival >> 3, prival & 7


def _timestamp(token: bytes) -> datetime | None:
    if token == b"-":
        return None
    m = _TIMESTAMP.fullmatch(token)
    if m is None:
        raise _fail(
            "bad_timestamp",
            f"TIMESTAMP {token[:40]!r} is not '-' nor YYYY-MM-DDThh:mm:ss[.1-6 digits](Z|+hh:mm)",
        )
    year, month, day, hour, minute, second = (int(m[i]) for i in range(1, 7))
    micros = int(m[7].ljust(6, b"0")) if m[7] else 0
    zone = m[8]
    try:
        if zone == b"Z":
            tz: timezone = UTC
        else:
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            offset = timedelta(hours=hours, minutes=minutes)
            tz = timezone(-offset if zone[:1] == b"-" else offset)
        # datetime rejects second 60: RFC 5424 6.2.3.1 forbids leap seconds too.
        return datetime(year, month, day, hour, minute, second, micros, tzinfo=tz)
    except ValueError as exc:
        raise _fail("bad_timestamp", f"TIMESTAMP {token.decode()} is not a valid time") from exc


def _header_field(token: bytes, limit: int, reason: str, name: str) -> str | None:
    if token == b"-":
        return None
    if len(token) > limit or not _PRINTUSASCII.fullmatch(token):
        raise _fail(reason, f"{name} must be '-' or 1-{limit} printable US-ASCII characters")
    return token.decode("ascii")


def _structured_data(data: bytes) -> tuple[tuple[SdElement, ...], int]:
    """Parse STRUCTURED-DATA at the start of ``data``; return it and where it ended."""
    if data[:1] == b"-":
        return (), 1
    if data[:1] != b"[":
        raise _fail("bad_structured_data", "STRUCTURED-DATA must be '-' or start with '['")
    elements: list[SdElement] = []
    seen: set[str] = set()
    pos = 0
    n = len(data)
    while pos < n and data[pos] == 0x5B:  # '['
        m = _SD_NAME.match(data, pos + 1)
        if m is None:
            raise _fail("bad_structured_data", f"bad SD-ID at octet {pos + 1}")
        sd_id = m.group().decode("ascii")
        if sd_id in seen:
            raise _fail("bad_structured_data", f"SD-ID {sd_id!r} appears twice")
        seen.add(sd_id)
        pos = m.end()
        params: list[tuple[str, str]] = []
        while True:
            if pos >= n:
                raise _fail("bad_structured_data", f"SD-ELEMENT {sd_id!r} is not closed")
            c = data[pos]
            if c == 0x5D:  # ']'
                pos += 1
                break
            if c != 0x20:
                raise _fail("bad_structured_data", f"expected SP or ']' at octet {pos}")
            m = _SD_NAME.match(data, pos + 1)
            if m is None:
                raise _fail("bad_structured_data", f"bad PARAM-NAME at octet {pos + 1}")
            name = m.group().decode("ascii")
            pos = m.end()
            if data[pos : pos + 2] != b'="':
                raise _fail("bad_structured_data", f'PARAM-NAME {name!r} needs ="value"')
            pos += 2
            value = bytearray()
            while True:
                if pos >= n:
                    raise _fail("bad_structured_data", f"PARAM-VALUE of {name!r} is not closed")
                c = data[pos]
                if c == 0x22:  # '"'
                    pos += 1
                    break
                if c == 0x5C and pos + 1 < n and data[pos + 1] in b'"\\]':
                    value.append(data[pos + 1])
                    pos += 2
                    continue
                if c == 0x5D:
                    raise _fail(
                        "bad_structured_data", f"PARAM-VALUE of {name!r} has an unescaped ']'"
                    )
                # A backslash before any other character is an ordinary backslash (6.3.3).
                value.append(c)
                pos += 1
            try:
                params.append((name, value.decode("utf-8")))
            except UnicodeDecodeError as exc:
                raise _fail("bad_structured_data", f"PARAM-VALUE of {name!r} is not UTF-8") from exc
        elements.append(SdElement(sd_id, tuple(params)))
    return tuple(elements), pos


def parse_syslog(data: bytes) -> SyslogMessage:
    """Parse one RFC 5424 SYSLOG-MSG; raises ``AtnaParseError`` (see the module doc)."""
    if not data:
        raise _fail("empty", "the message is empty")
    parts = data.split(b" ", 6)
    if len(parts) < 7:
        if not data.startswith(b"<"):
            raise _fail("bad_pri", "a message starts with '<PRIVAL>'")
        _pri_version(parts[0])
        raise _fail("bad_header", "the header needs 7 fields separated by single spaces")
    head, ts, host, app, procid, msgid, rest = parts
    facility, severity = _pri_version(head)
    timestamp = _timestamp(ts)
    fields: list[str | None] = []
    for token, (name, limit, reason) in zip((host, app, procid, msgid), _FIELD_LIMITS, strict=True):
        if not token:
            raise _fail("bad_header", f"{name.upper()} is empty (two spaces in a row?)")
        fields.append(_header_field(token, limit, reason, name.upper()))
    if not rest:
        raise _fail("bad_structured_data", "STRUCTURED-DATA is missing")
    sd, end = _structured_data(rest)
    msg = b""
    bom = False
    header = data
    if end < len(rest):
        if rest[end] != 0x20:
            raise _fail("bad_structured_data", "STRUCTURED-DATA must be followed by SP or end")
        msg = rest[end + 1 :]
        header = data[: len(data) - len(msg)]
        if msg.startswith(BOM):
            msg = msg[3:]
            bom = True
            try:
                msg.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _fail("bad_utf8", "MSG starts with a BOM but is not UTF-8") from exc
    return SyslogMessage(
        facility=facility,
        severity=severity,
        version=1,
        timestamp=timestamp,
        hostname=fields[0],
        app_name=fields[1],
        procid=fields[2],
        msgid=fields[3],
        structured_data=sd,
        msg=msg,
        bom=bom,
        header=header,
    )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_syslog(
    msg: bytes,
    *,
    facility: int = 10,
    severity: int = 5,
    timestamp: datetime | None = None,
    hostname: str | None = None,
    app_name: str | None = None,
    procid: str | None = None,
    msgid: str | None = dicom.ATNA_MSGID,
    structured_data: tuple[SdElement, ...] = (),
    bom: bool = True,
) -> bytes:
    """An RFC 5424 message (the sending side: tests, benchmarks, forwarding)."""
    if not (0 <= facility <= 23 and 0 <= severity <= 7):
        raise ValueError("facility must be 0-23 and severity 0-7")
    if timestamp is None:
        ts = NILVALUE
    else:
        if timestamp.utcoffset() is None:
            raise ValueError("timestamp must be timezone-aware")
        ts = timestamp.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    header = " ".join(
        (
            f"<{facility * 8 + severity}>1",
            ts,
            hostname or NILVALUE,
            app_name or NILVALUE,
            procid or NILVALUE,
            msgid or NILVALUE,
        )
    )
    if structured_data:
        sd = "".join(
            "[" + e.id + "".join(f' {k}="{_escape(v)}"' for k, v in e.params) + "]"
            for e in structured_data
        )
    else:
        sd = NILVALUE
    return f"{header} {sd} ".encode() + (BOM if bom else b"") + msg


def frame_octet_counted(message: bytes) -> bytes:
    """RFC 5425 framing: ``MSG-LEN SP SYSLOG-MSG``."""
    return b"%d %s" % (len(message), message)


# --------------------------------------------------------------------------- framing


@dataclass(frozen=True, slots=True)
class Frame:
    """One whole SYSLOG-MSG taken off the stream."""

    data: bytes


@dataclass(frozen=True, slots=True)
class FrameError:
    """The stream cannot be framed any further; ``data`` is what was read of the bad frame
    (at most the maximum message size), to be kept. The connection must be closed."""

    reason: str
    detail: str
    data: bytes


class OctetCountingDecoder:
    """Incremental RFC 5425 decoder: ``feed`` any split of the stream, get whole frames.

    After a ``FrameError`` the decoder is broken (a stream cannot be re-synchronised
    once a length is wrong) and ``feed`` returns nothing more.
    """

    __slots__ = ("_broken", "_buf", "_head", "_max", "_max_digits", "_need")

    def __init__(self, max_message_bytes: int) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be positive")
        self._max = max_message_bytes
        self._max_digits = len(str(max_message_bytes))
        self._buf = bytearray()
        self._need = -1  # length of the frame being read, -1 while reading MSG-LEN
        self._head = b""  # its MSG-LEN SP, once read
        self._broken = False

    @property
    def broken(self) -> bool:
        return self._broken

    @property
    def pending(self) -> int:
        """Bytes held that do not yet make a whole frame."""
        return len(self._head) + len(self._buf)

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        if self._broken:
            return []
        buf = self._buf
        buf += data
        out: list[Frame | FrameError] = []
        pos = 0
        n = len(buf)
        while True:
            if self._need < 0:
                space = buf.find(b" ", pos, pos + self._max_digits + 1)
                if space < 0:
                    head = bytes(buf[pos : pos + self._max_digits + 1])
                    if not head.isdigit() and head:
                        out.append(self._error("bad_frame", "MSG-LEN is not a number", pos))
                        return out
                    if len(head) > self._max_digits:
                        out.append(
                            self._error(
                                "oversize",
                                f"MSG-LEN has more digits than {self._max} bytes allows",
                                pos,
                            )
                        )
                        return out
                    break
                digits = bytes(buf[pos:space])
                if not digits or not digits.isdigit() or digits[0] == 0x30:
                    out.append(
                        self._error("bad_frame", "MSG-LEN must be a non-zero decimal number", pos)
                    )
                    return out
                length = int(digits)
                if length > self._max:
                    out.append(
                        self._error(
                            "oversize",
                            f"frame of {length} bytes exceeds the maximum of {self._max}",
                            pos,
                        )
                    )
                    return out
                self._need = length
                self._head = bytes(buf[pos : space + 1])
                pos = space + 1
            if n - pos < self._need:
                break
            end = pos + self._need
            out.append(Frame(bytes(buf[pos:end])))
            pos = end
            self._need = -1
            self._head = b""
        del buf[:pos]
        return out

    def finish(self) -> FrameError | None:
        """The stream ended: a partial frame, if any, as a ``truncated`` error."""
        if self._broken or not (self._buf or self._head):
            return None
        return self._error("truncated", "the connection ended inside a frame", 0)

    def _error(self, reason: str, detail: str, pos: int) -> FrameError:
        self._broken = True
        data = self._head + bytes(self._buf[pos : pos + self._max + self._max_digits + 1])
        self._buf.clear()
        self._head = b""
        return FrameError(reason, detail, data)
