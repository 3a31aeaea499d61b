"""Typed, checked access to one JSON-safe stored record (what ``SchemaSet.decode`` returns).

Invariant: a field of the wrong shape is a ``MalformedInputError`` naming its path in the
record (``actor.role``, ``attempts[2].at``); times come out as FHIR ``instant`` in UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from ledger.audit.records import JsonValue
from ledger.errors import MalformedInputError

__all__ = ["StoredRecord", "format_instant"]


class StoredRecord:
    """Typed access to one JSON-safe stored record; errors name the field path."""

    __slots__ = ("_data", "_path")

    def __init__(self, data: Mapping[str, JsonValue], path: str) -> None:
        self._data = data
        self._path = path

    def _fail(self, key: str, problem: str) -> MalformedInputError:
        return MalformedInputError(f"stored event field {self._path}{key} {problem}")

    def text(self, key: str) -> str:
        value = self._data.get(key)
        if not isinstance(value, str) or not value:
            raise self._fail(key, "must be a non-empty string")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self._data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(key, "must be a string")
        return value or None  # FHIR strings cannot be empty: "" reads as absent

    def integer(self, key: str) -> int:
        value = self._data.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(key, "must be an integer")
        return value

    def opt_integer(self, key: str) -> int | None:
        return None if self._data.get(key) is None else self.integer(key)

    def flag(self, key: str) -> bool:
        value = self._data.get(key)
        if not isinstance(value, bool):
            raise self._fail(key, "must be a boolean")
        return value

    def opt_flag(self, key: str) -> bool:
        """A boolean that older schema versions lack (absent reads as false)."""
        return False if self._data.get(key) is None else self.flag(key)

    def opt_bool(self, key: str) -> bool | None:
        """A nullable boolean: None when absent or null (unknown)."""
        return None if self._data.get(key) is None else self.flag(key)

    def record(self, key: str) -> StoredRecord:
        value = self._data.get(key)
        if not isinstance(value, dict):
            raise self._fail(key, "must be a record")
        return StoredRecord(value, f"{self._path}{key}.")

    def opt_record(self, key: str) -> StoredRecord | None:
        return None if self._data.get(key) is None else self.record(key)

    def array(self, key: str) -> list[JsonValue]:
        value = self._data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._fail(key, "must be an array")
        return value

    def records(self, key: str) -> list[StoredRecord]:
        out = []
        for i, item in enumerate(self.array(key)):
            if not isinstance(item, dict):
                raise self._fail(f"{key}[{i}]", "must be a record")
            out.append(StoredRecord(item, f"{self._path}{key}[{i}]."))
        return out

    def texts(self, key: str) -> list[str]:
        out = []
        for i, item in enumerate(self.array(key)):
            if not isinstance(item, str) or not item:
                raise self._fail(f"{key}[{i}]", "must be a non-empty string")
            out.append(item)
        return out

    def text_map(self, key: str) -> dict[str, str]:
        value = self._data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self._fail(key, "must be a map of strings")
        return {k: v for k, v in value.items() if isinstance(v, str)}

    def instant(self, key: str) -> str:
        return _instant(self.text(key), lambda: self._fail(key, "must be an ISO 8601 UTC time"))

    def opt_instant(self, key: str) -> str | None:
        return None if self._data.get(key) is None else self.instant(key)


def _instant(text: str, fail: Callable[[], MalformedInputError]) -> str:
    """An ISO 8601 time with an offset, as a FHIR ``instant`` in UTC (``Z``)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise fail() from None
    if when.utcoffset() is None:
        raise fail()
    return format_instant(when)


def format_instant(when: datetime) -> str:
    """A timezone-aware datetime as a FHIR ``instant`` in UTC, microseconds kept."""
    if when.utcoffset() is None:
        raise MalformedInputError("a FHIR instant needs a timezone-aware time")
    utc = when.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"
