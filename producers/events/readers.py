"""Typed reads of a decoded Avro record's fields, for turning records back into events
(``decoding``) and registry changes (``producers.registry.records``).

Invariant: each reader returns the value with the type its name says or raises
``TypeError`` naming the field (the codec turns it into ``DecodeError``); instants come
back as aware UTC datetimes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from producers.events.records import Record

__all__ = [
    "instant",
    "integer",
    "optional_instant",
    "optional_text",
    "record_at",
    "text",
    "uuid_at",
]


def record_at(record: Record, key: str) -> Record:
    value = record[key]
    if not isinstance(value, dict):
        raise TypeError(f"{key} is not a record")
    return value


def text(record: Record, key: str) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string")
    return value


def optional_text(record: Record, key: str) -> str | None:
    value = record.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} is not a string")
    return value


def instant(record: Record, key: str) -> datetime:
    value = record[key]
    if not isinstance(value, datetime):
        raise TypeError(f"{key} is not a timestamp")
    return value.astimezone(UTC)


def optional_instant(record: Record, key: str) -> datetime | None:
    return None if record.get(key) is None else instant(record, key)


def uuid_at(record: Record, key: str) -> uuid.UUID:
    value = record[key]
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def integer(record: Record, key: str) -> int:
    value = record[key]
    if type(value) is not int:  # a bool is an int to isinstance
        raise TypeError(f"{key} is not an integer")
    return value
