"""What a rule sees and what it returns: an appended event with its ledger position, and
findings that cite positions.

Invariant: pure values. An ``AppendedEvent`` is a leaf's decoded record exactly as the
ledger stores it (``ledger.audit.records``), with the position it was appended at; a
``Finding`` names the rule and version that raised it, the triggering position (the alert's
unique key with the rule) and every position behind it, each provable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Protocol, TypeVar

from ledger.audit.records import JsonValue
from ledger.errors import MalformedInputError

#: The record full names the rules read (schemas/*.avsc).
PHI_ACCESS: Final = "philedger.audit.PhiAccessEvent"
SECURITY_EVENT: Final = "philedger.audit.SecurityEvent"
RELAY: Final = "philedger.audit.CriticalResultRelay"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Position:
    """Where a leaf is: its log and its index in that log."""

    log_id: int
    leaf_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendedEvent:
    """One appended leaf's record, decoded with its stored writer schema: either
    rendered JSON-safe (timestamps as ISO 8601 text) or as fastavro returns it
    (``datetime``, ``date``, ``UUID``; what the evaluator reads, to skip rendering).
    ``text`` and ``instant`` read both alike."""

    position: Position
    schema: str
    record: Mapping[str, Any]

    def _at(self, path: tuple[str, ...]) -> object:
        value: object = self.record
        for key in path:
            if type(value) is not dict and not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return value

    def text(self, *path: str) -> str | None:
        """The string at ``path`` (e.g. ``("actor", "user_id")``), or None when absent."""
        value = self._at(path)
        return value if type(value) is str else None

    def instant(self, *path: str) -> datetime | None:
        """The timestamp at ``path``, or None."""
        raw = self._at(path)
        if raw is None:
            return None
        if isinstance(raw, datetime):
            return raw
        if not isinstance(raw, str):
            return None
        try:
            return datetime.fromisoformat(raw)
        except ValueError as exc:
            raise MalformedInputError(f"{'.'.join(path)} is not a timestamp: {raw!r}") from exc

    @property
    def event_time(self) -> datetime:
        raw = self.record.get("event_time")
        if type(raw) is datetime:
            return raw
        found = self.instant("event_time")
        if found is None:
            raise MalformedInputError(f"leaf {self.position.leaf_index} has no event_time")
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """A position behind a finding and what it shows (``trigger``, ``window``, ...)."""

    position: Position
    role: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientRef:
    id: str
    issuer: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """What a rule raised: one alert once stored."""

    rule_id: str
    rule_version: int
    severity: Severity
    trigger: Position
    summary: str
    facility_id: str | None
    user_id: str | None
    patient: PatientRef | None
    evidence: tuple[Evidence, ...]
    thresholds: Mapping[str, JsonValue] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int, int, int]:
        """The alert's unique key: rule, version, triggering log and leaf."""
        return (self.rule_id, self.rule_version, self.trigger.log_id, self.trigger.leaf_index)


@dataclass(frozen=True, slots=True, kw_only=True)
class LeafBatch:
    """Leaves [first, next_leaf) of a log: the decodable ones as events; ``undecodable``
    counts those the stored writer schemas could not decode (``ledger verify`` names them)."""

    events: tuple[AppendedEvent, ...]
    next_leaf: int
    undecodable: int = 0


W = TypeVar("W")


class Rule(Protocol[W]):
    """A rule: an id, a version (bumped on any change of meaning), a severity and its
    thresholds; it evaluates each appended event of a log, in leaf order, against the
    window state ``W`` the evaluator keeps for it per log (``new_window``)."""

    @property
    def id(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def severity(self) -> Severity: ...

    def thresholds(self) -> Mapping[str, JsonValue]:
        """The configuration this rule runs with, recorded in each alert it raises."""
        ...

    def new_window(self) -> W:
        """Empty window state for one log."""
        ...

    def evaluate(self, event: AppendedEvent, window: W) -> Sequence[Finding]:
        """The findings ``event`` raises, given (and updating) the log's window state."""
        ...
