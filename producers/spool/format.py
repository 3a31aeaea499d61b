"""The spool's on-disk framing: segment headers and length- and CRC32-framed records.

Invariant: ``parse_record`` returns exactly what ``encode_record`` framed, or raises
``BadRecord`` (never a wrong record): a record's body is covered by its CRC32, and a
length field larger than ``MAX_BODY_BYTES`` is damage, not data. The format is described
in docs/design/spool.md; changing it needs a new ``FORMAT_VERSION``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

MAGIC: Final = b"PHISPOOL"
FORMAT_VERSION: Final = 1
_HEADER = struct.Struct(">8sIQ")
HEADER_LEN: Final = _HEADER.size
_FRAME = struct.Struct(">II")
FRAME_LEN: Final = _FRAME.size
_BODY_FIXED = struct.Struct(">BQH")
_KEY_LEN = struct.Struct(">i")
_RECORD_KIND: Final = 1
#: Largest record body accepted; anything larger in a length field is damage, not data.
MAX_BODY_BYTES: Final = 16 * 1024 * 1024
#: Bytes from a record's start through its ``created_ms`` (see ``created_ms_of``).
HEAD_LEN: Final = FRAME_LEN + _BODY_FIXED.size


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolEntry:
    """One already-encoded Kafka record: where it goes, its key and value bytes."""

    topic: str
    key: bytes | None
    value: bytes
    created_ms: int


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class SpoolPosition:
    """A byte position in the spool: segment id, then offset within that segment."""

    segment: int
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolRecord:
    """A record read back from the spool, with where it starts and where the next starts."""

    entry: SpoolEntry
    position: SpoolPosition
    end: SpoolPosition
    size: int


def segment_header(segment_id: int) -> bytes:
    return _HEADER.pack(MAGIC, FORMAT_VERSION, segment_id)


def header_ok(data: bytes, segment_id: int) -> bool:
    """Whether ``data`` starts with the header of segment ``segment_id``."""
    return len(data) >= HEADER_LEN and _HEADER.unpack_from(data, 0) == (
        MAGIC,
        FORMAT_VERSION,
        segment_id,
    )


def created_ms_of(head: bytes) -> int:
    """The ``created_ms`` of the record whose first ``HEAD_LEN`` bytes are ``head``."""
    _kind, created_ms, _topic_len = _BODY_FIXED.unpack_from(head, FRAME_LEN)
    return int(created_ms)


def record_size(entry: SpoolEntry) -> int:
    """Bytes one entry takes in a segment (frame included): what counts against the bound."""
    key_len = 0 if entry.key is None else len(entry.key)
    return (
        FRAME_LEN
        + _BODY_FIXED.size
        + len(entry.topic.encode("utf-8"))
        + _KEY_LEN.size
        + key_len
        + len(entry.value)
    )


def encode_record(entry: SpoolEntry) -> bytes:
    """The framed bytes of one record (length, CRC32, body)."""
    topic = entry.topic.encode("utf-8")
    if len(topic) > 0xFFFF:
        raise ValueError(f"topic name is {len(topic)} bytes; at most 65535 fit a spool record")
    key = entry.key
    body = b"".join(
        (
            _BODY_FIXED.pack(_RECORD_KIND, entry.created_ms, len(topic)),
            topic,
            _KEY_LEN.pack(-1 if key is None else len(key)),
            key or b"",
            entry.value,
        )
    )
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"record is {len(body)} bytes; at most {MAX_BODY_BYTES} fit the spool")
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


class BadRecord(Exception):
    """A record that does not parse; ``declared_end`` is where its frame says it ends."""

    def __init__(self, reason: str, *, declared_end: int) -> None:
        super().__init__(reason)
        self.declared_end = declared_end


def parse_record(buf: memoryview, offset: int) -> tuple[SpoolEntry, int]:
    """Parse the record at ``offset``; return it and its framed size, or raise BadRecord."""
    available = len(buf) - offset
    if available < FRAME_LEN:
        raise BadRecord(f"{available} bytes left, less than a frame", declared_end=len(buf) + 1)
    length, crc = _FRAME.unpack_from(buf, offset)
    end = offset + FRAME_LEN + length
    if length > MAX_BODY_BYTES or length < _BODY_FIXED.size + _KEY_LEN.size:
        raise BadRecord(f"implausible record length {length}", declared_end=end)
    if end > len(buf):
        raise BadRecord(f"record of {length} bytes runs past the end", declared_end=end)
    body = buf[offset + FRAME_LEN : end]
    if zlib.crc32(body) != crc:
        raise BadRecord("CRC32 mismatch", declared_end=end)
    return _parse_body(body, length, end), FRAME_LEN + length


def _parse_body(body: memoryview, length: int, end: int) -> SpoolEntry:
    kind, created_ms, topic_len = _BODY_FIXED.unpack_from(body, 0)
    at = _BODY_FIXED.size
    if kind != _RECORD_KIND or at + topic_len + _KEY_LEN.size > length:
        raise BadRecord(f"malformed body (kind {kind})", declared_end=end)
    try:
        topic = bytes(body[at : at + topic_len]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecord(f"topic is not UTF-8: {exc}", declared_end=end) from exc
    at += topic_len
    (key_len,) = _KEY_LEN.unpack_from(body, at)
    at += _KEY_LEN.size
    if key_len < -1 or at + max(key_len, 0) > length:
        raise BadRecord(f"implausible key length {key_len}", declared_end=end)
    key = None if key_len == -1 else bytes(body[at : at + key_len])
    at += max(key_len, 0)
    return SpoolEntry(topic=topic, key=key, value=bytes(body[at:]), created_ms=created_ms)
