"""The leaf format: the exact bytes each Merkle leaf commits to.

Invariant: ``decode_leaf(encode_leaf(r)) == r`` and ``encode_leaf`` is a pure
function of the Kafka record, so replaying the same topic into an empty ledger
yields byte-identical leaves (and so identical roots). A leaf is at most
``MAX_LEAF_BYTES`` (65,535) bytes, the C2SP tlog-tiles entry limit.

Layout (version 1, all integers big-endian; see docs/leaf-format.md)::

    u8   version            = 0x01
    u16  topic length T,     T bytes topic (UTF-8)
    u32  partition
    u64  offset
    i64  Kafka timestamp, milliseconds since the Unix epoch
    u8   timestamp type     (0 = CreateTime, 1 = LogAppendTime)
    u8   key flag           (0 = null key, 1 = key present)
    u16  key length K,       K bytes key     (only when the flag is 1)
    ...  value: the Kafka record value verbatim, to the end of the leaf
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ledger.errors import MalformedInputError

LEAF_VERSION: Final = 1
MAX_LEAF_BYTES: Final = 65_535

_HEAD = struct.Struct(">BH")
_POSITION = struct.Struct(">IQqBB")
_U16 = struct.Struct(">H")


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaRecord:
    """A Kafka record as received, with the coordinates an auditor needs."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    timestamp_type: int
    key: bytes | None
    value: bytes


def encode_leaf(record: KafkaRecord) -> bytes:
    """The leaf bytes of a record; raises ``MalformedInputError`` if they cannot fit."""
    topic = record.topic.encode("utf-8")
    if len(topic) > 0xFFFF:
        raise MalformedInputError("topic name too long for a leaf")
    if record.key is not None and len(record.key) > 0xFFFF:
        raise MalformedInputError(f"record key is {len(record.key)} bytes; at most 65,535")
    if record.timestamp_type not in (0, 1):
        raise MalformedInputError(f"unknown Kafka timestamp type {record.timestamp_type}")
    parts = [
        _HEAD.pack(LEAF_VERSION, len(topic)),
        topic,
        _POSITION.pack(
            record.partition,
            record.offset,
            record.timestamp_ms,
            record.timestamp_type,
            0 if record.key is None else 1,
        ),
    ]
    if record.key is not None:
        parts += [_U16.pack(len(record.key)), record.key]
    parts.append(record.value)
    leaf = b"".join(parts)
    if len(leaf) > MAX_LEAF_BYTES:
        raise MalformedInputError(
            f"leaf would be {len(leaf)} bytes; a leaf holds at most {MAX_LEAF_BYTES}"
        )
    return leaf


def leaf_overhead(topic: str, key: bytes | None) -> int:
    """How many leaf bytes precede the value for this topic and key."""
    return (
        _HEAD.size
        + len(topic.encode())
        + _POSITION.size
        + (0 if key is None else _U16.size + len(key))
    )


def decode_leaf(leaf: bytes) -> KafkaRecord:
    """Parse leaf bytes; raises ``MalformedInputError`` naming what is wrong."""
    try:
        version, topic_len = _HEAD.unpack_from(leaf, 0)
        if version != LEAF_VERSION:
            raise MalformedInputError(f"unknown leaf format version {version}")
        pos = _HEAD.size
        topic_bytes = leaf[pos : pos + topic_len]
        if len(topic_bytes) != topic_len:
            raise MalformedInputError("leaf truncated inside the topic")
        pos += topic_len
        partition, offset, ts, ts_type, has_key = _POSITION.unpack_from(leaf, pos)
        pos += _POSITION.size
        key: bytes | None = None
        if has_key == 1:
            (key_len,) = _U16.unpack_from(leaf, pos)
            pos += _U16.size
            key = leaf[pos : pos + key_len]
            if len(key) != key_len:
                raise MalformedInputError("leaf truncated inside the key")
            pos += key_len
        elif has_key != 0:
            raise MalformedInputError(f"bad key flag {has_key}")
        topic = topic_bytes.decode("utf-8")
    except struct.error as exc:
        raise MalformedInputError(f"leaf truncated: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise MalformedInputError("leaf topic is not UTF-8") from exc
    return KafkaRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=ts,
        timestamp_type=ts_type,
        key=None if key is None else bytes(key),
        value=bytes(leaf[pos:]),
    )
