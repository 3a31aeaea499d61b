"""Timeliness of critical-result relays by ACR category (ACR actionable findings;
Joint Commission NPSG.02.03.01).

Invariant: pure and deterministic ("now" is an argument); several records of one relay
count once, as the latest, and earlier records are named as superseded.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from ledger.audit.query import LedgerPosition
from ledger.audit.reports.checks import (
    MAX_WINDOW,
    check_instant,
    check_text,
    check_utc,
    check_window,
)
from ledger.audit.reports.rows import RelayRow
from ledger.errors import MalformedInputError

#: Default deadlines, identified -> communicated, per ACR category. The ACR Actionable
#: Reporting Work Group sets only the order of magnitude (category 1 "minutes", by direct
#: verbal contact; category 2 "hours"; category 3 "days") and each organisation defines
#: "timely" (shared/reference/audit-events.md). CAT1 30 minutes is the common policy the
#: reference names; CAT2 6 hours and CAT3 3 days are placeholders at the strict end of
#: "hours" and "days": pass the organisation's own policy as ``deadlines``.
DEFAULT_RELAY_DEADLINES: Final[Mapping[str, timedelta]] = MappingProxyType(
    {
        "CAT1": timedelta(minutes=30),
        "CAT2": timedelta(hours=6),
        "CAT3": timedelta(days=3),
    }
)

#: Categories that must be communicated by direct verbal contact (ACR category 1).
VERBAL_CATEGORIES: Final = frozenset({"CAT1"})
_VERBAL_METHODS: Final = frozenset({"PHONE", "IN_PERSON"})


class RelayIssue(StrEnum):
    """Why a relay is listed as an exception."""

    #: Communicated after the category's deadline.
    LATE = "late"
    #: Not communicated, and the deadline has passed by ``now``.
    OVERDUE = "overdue"
    #: Communicated without the recipient reading the finding back.
    NO_READ_BACK = "no-read-back"
    #: A category that requires direct verbal contact was communicated otherwise.
    NOT_VERBAL = "not-verbal"


@dataclass(frozen=True, slots=True, kw_only=True)
class DurationStats:
    """Distribution of durations: nearest-rank percentiles, so each is an observed value
    (the median of an even count is the lower middle value)."""

    count: int
    median: timedelta
    p90: timedelta
    max: timedelta


def _percentile(ordered: Sequence[timedelta], pct: int) -> timedelta:
    rank = -(-pct * len(ordered) // 100)  # ceil(pct / 100 * n), at least 1
    return ordered[max(rank, 1) - 1]


def _stats(values: Iterable[timedelta]) -> DurationStats | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return DurationStats(
        count=len(ordered),
        median=_percentile(ordered, 50),
        p90=_percentile(ordered, 90),
        max=ordered[-1],
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CategoryStats:
    """Relays of one ACR category identified in the window."""

    category: str
    deadline: timedelta | None
    relays: int
    communicated: int
    acknowledged: int
    on_time: int
    late: int
    overdue: int
    #: Not communicated yet, deadline not passed (or no deadline).
    pending: int
    no_read_back: int
    identified_to_communicated: DurationStats | None
    identified_to_acknowledged: DurationStats | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayException:
    """A relay that missed its deadline or lacks a read-back, with where it is recorded."""

    event_id: uuid.UUID
    position: LedgerPosition
    #: Earlier records of the same relay (same facility, patient, study, category and
    #: identification time), superseded by this one.
    superseded: tuple[uuid.UUID, ...]
    category: str
    facility_id: str
    patient_id: str
    patient_issuer: str | None
    study_uid: str
    sender_user_id: str
    recipient_name: str
    recipient_role: str
    method: str
    identified_at: datetime
    communicated_at: datetime | None
    acknowledged_at: datetime | None
    deadline: timedelta | None
    #: identified -> communicated, or identified -> now while never communicated.
    delay: timedelta
    attempts: int
    issues: tuple[RelayIssue, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayReport:
    """The result of ``build_relay_report``."""

    start: datetime
    end: datetime
    now: datetime
    deadlines: tuple[tuple[str, timedelta], ...]
    relays: int
    categories: tuple[CategoryStats, ...]
    exceptions: tuple[RelayException, ...]
    #: The facility the relays were selected at (None: every facility).
    facility: str | None = None


def _deadlines(deadlines: Mapping[str, timedelta]) -> dict[str, timedelta]:
    if not isinstance(deadlines, Mapping):
        raise MalformedInputError("deadlines must map a category to a duration")
    out: dict[str, timedelta] = {}
    for category, limit in deadlines.items():
        check_text("deadline category", category, limit=32)
        if not isinstance(limit, timedelta) or limit <= timedelta(0) or limit > MAX_WINDOW:
            raise MalformedInputError(f"deadline of {category} must be a positive duration")
        out[category] = limit
    return out


def _relay_key(r: RelayRow) -> tuple[object, ...]:
    return (r.facility_id, r.patient_issuer, r.patient_id, r.study_uid, r.category, r.identified_at)


def _check_relay(r: RelayRow) -> None:
    check_utc("identified_at", r.identified_at)
    if r.communicated_at is not None and check_utc("communicated_at", r.communicated_at) < (
        r.identified_at
    ):
        raise MalformedInputError(f"relay {r.event_id}: communicated before identified")
    if r.acknowledged_at is not None:
        check_utc("acknowledged_at", r.acknowledged_at)
        if r.communicated_at is None or r.acknowledged_at < r.communicated_at:
            raise MalformedInputError(f"relay {r.event_id}: acknowledged before communicated")


def build_relay_report(
    rows: Iterable[RelayRow],
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    deadlines: Mapping[str, timedelta] = DEFAULT_RELAY_DEADLINES,
    facility: str | None = None,
) -> RelayReport:
    """Timeliness of critical-result relays identified in [start, end), as of ``now``
    (``facility``: the one the rows were selected at, recorded in the report).

    Several records of one relay (same facility, patient, study, category and
    identification time: a producer may record a relay while unreached and again once
    communicated) count once, as the latest record (by event time, then leaf index).

    Per category: counts and identified -> communicated / -> acknowledged distributions
    (``DurationStats``). Exceptions: communicated after the deadline (LATE), not
    communicated with the deadline passed at ``now`` (OVERDUE), communicated without
    read-back (NO_READ_BACK), and category 1 not by direct verbal contact (NOT_VERBAL).
    A category without a deadline gets statistics but no LATE or OVERDUE.
    """
    start, end = check_window(start, end)
    now = check_instant("now", now)
    limits = _deadlines(deadlines)
    per_category = _current_by_category(_versions(rows, start, end))
    categories: list[CategoryStats] = []
    exceptions: list[RelayException] = []
    for category in sorted(set(per_category) | set(limits)):
        deadline = limits.get(category)
        assessed = [
            _assess(r, superseded, category=category, deadline=deadline, now=now)
            for r, superseded in per_category.get(category, [])
        ]
        categories.append(_category_stats(category, deadline, assessed))
        exceptions.extend(_exception(a, deadline) for a in assessed if a.issues)
    exceptions.sort(key=lambda x: (x.identified_at, x.position.origin, x.position.leaf_index))
    return RelayReport(
        start=start,
        end=end,
        now=now,
        deadlines=tuple(sorted(limits.items())),
        relays=sum(c.relays for c in categories),
        categories=tuple(categories),
        exceptions=tuple(exceptions),
        facility=facility,
    )


_Current = tuple[RelayRow, tuple[uuid.UUID, ...]]


def _versions(
    rows: Iterable[RelayRow], start: datetime, end: datetime
) -> dict[tuple[object, ...], list[RelayRow]]:
    """Every row is checked; those identified in [start, end) are grouped per relay."""
    latest: dict[tuple[object, ...], list[RelayRow]] = {}
    for r in rows:
        _check_relay(r)
        if start <= r.identified_at < end:
            latest.setdefault(_relay_key(r), []).append(r)
    return latest


def _current_by_category(
    versions_by_relay: Mapping[tuple[object, ...], list[RelayRow]],
) -> dict[str, list[_Current]]:
    """Each relay's latest record (event time, then leaf) with the ids it supersedes."""
    per_category: dict[str, list[_Current]] = {}
    for versions in versions_by_relay.values():
        versions.sort(key=lambda v: (v.event_time, v.position.origin, v.position.leaf_index))
        current = versions[-1]
        superseded = tuple(v.event_id for v in versions[:-1])
        per_category.setdefault(current.category, []).append((current, superseded))
    return per_category


@dataclass(frozen=True, slots=True, kw_only=True)
class _Assessment:
    """One relay judged against its category's deadline."""

    relay: RelayRow
    superseded: tuple[uuid.UUID, ...]
    #: identified -> communicated, or identified -> now while never communicated.
    delay: timedelta
    issues: tuple[RelayIssue, ...]


def _assess(
    r: RelayRow,
    superseded: tuple[uuid.UUID, ...],
    *,
    category: str,
    deadline: timedelta | None,
    now: datetime,
) -> _Assessment:
    issues: list[RelayIssue] = []
    if r.communicated_at is not None:
        delay = r.communicated_at - r.identified_at
        if deadline is not None and delay > deadline:
            issues.append(RelayIssue.LATE)
        if not r.read_back:
            issues.append(RelayIssue.NO_READ_BACK)
        if category in VERBAL_CATEGORIES and r.method not in _VERBAL_METHODS:
            issues.append(RelayIssue.NOT_VERBAL)
    else:
        delay = max(now - r.identified_at, timedelta(0))
        if deadline is not None and delay > deadline:
            issues.append(RelayIssue.OVERDUE)
    return _Assessment(relay=r, superseded=superseded, delay=delay, issues=tuple(issues))


def _category_stats(
    category: str, deadline: timedelta | None, assessed: list[_Assessment]
) -> CategoryStats:
    def count(issue: RelayIssue) -> int:
        return sum(1 for a in assessed if issue in a.issues)

    to_comm = [a.delay for a in assessed if a.relay.communicated_at is not None]
    to_ack = [
        a.relay.acknowledged_at - a.relay.identified_at
        for a in assessed
        if a.relay.acknowledged_at is not None
    ]
    late, overdue = count(RelayIssue.LATE), count(RelayIssue.OVERDUE)
    return CategoryStats(
        category=category,
        deadline=deadline,
        relays=len(assessed),
        communicated=len(to_comm),
        acknowledged=len(to_ack),
        on_time=len(to_comm) - late,
        late=late,
        overdue=overdue,
        pending=len(assessed) - len(to_comm) - overdue,
        no_read_back=count(RelayIssue.NO_READ_BACK),
        identified_to_communicated=_stats(to_comm),
        identified_to_acknowledged=_stats(to_ack),
    )


def _exception(a: _Assessment, deadline: timedelta | None) -> RelayException:
    r = a.relay
    return RelayException(
        event_id=r.event_id,
        position=r.position,
        superseded=a.superseded,
        category=r.category,
        facility_id=r.facility_id,
        patient_id=r.patient_id,
        patient_issuer=r.patient_issuer,
        study_uid=r.study_uid,
        sender_user_id=r.sender_user_id,
        recipient_name=r.recipient_name,
        recipient_role=r.recipient_role,
        method=r.method,
        identified_at=r.identified_at,
        communicated_at=r.communicated_at,
        acknowledged_at=r.acknowledged_at,
        deadline=deadline,
        delay=a.delay,
        attempts=r.attempts,
        issues=a.issues,
    )
