"""Breach investigation: who and what a breach touched (45 CFR 164.404-164.410).

Invariant: pure and deterministic; an investigation names the signed checkpoints it was
computed against, and events appended after them are still reported, counted as
uncovered. How security events are treated: docs/design/reports.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from ledger.audit.query import LedgerPosition
from ledger.audit.reports.affected import (
    AffectedPatient,
    PatientKey,
    Touch,
    affected_patient,
    patient_order,
    touches_of,
)
from ledger.audit.reports.checks import check_selectors, check_text, check_window
from ledger.audit.reports.phi import PhiKind, is_completed, phi_kinds
from ledger.audit.reports.rows import (
    AccessRow,
    EventRef,
    PatientRef,
    ReportCheckpoint,
    event_ref,
    order_key,
)
from ledger.errors import MalformedInputError


@dataclass(frozen=True, slots=True, kw_only=True)
class InvestigationScope:
    """Which events a breach may have touched: a time window [start, end) and selectors.

    Selectors combine like search parameters: values of one selector are alternatives (any
    of the users), different selectors narrow each other (those users, at that facility).
    At least one selector is required; the window is required and at most ``MAX_WINDOW``.
    Construction validates and normalises (UTC times, duplicate values dropped).
    """

    start: datetime
    end: datetime
    users: tuple[str, ...] = ()
    facility: str | None = None
    network_addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        start, end = check_window(self.start, self.end)
        users = check_selectors("users", self.users)
        addresses = check_selectors("network_addresses", self.network_addresses)
        if self.facility is not None:
            check_text("facility", self.facility)
        if not users and not addresses and self.facility is None:
            raise MalformedInputError(
                "an investigation needs at least one selector: users, facility or network_addresses"
            )
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "users", users)
        object.__setattr__(self, "network_addresses", addresses)

    def matches(self, row: AccessRow) -> bool:
        """True if the event lies in the window and satisfies every selector given."""
        return (
            self.start <= row.event_time < self.end
            and (not self.users or row.user_id in self.users)
            and (self.facility is None or row.facility_id == self.facility)
            and (not self.network_addresses or row.network_address in self.network_addresses)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TruncatedAnswer:
    """An in-scope access whose answer returned more patients than its event lists: the
    others are not identified (re-run the query at its source to name them)."""

    source: EventRef
    listed: int
    total: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StateCount:
    """Affected residents of one state and the notices that count triggers."""

    state: str
    residents: int
    #: 164.406(a): media notice for "more than 500 residents of a State or jurisdiction".
    media_notice: bool
    #: Not (yet) over the media threshold, but would be if enough of the affected
    #: individuals without a recorded state (or not identified: ``unlisted_patients``)
    #: live here: establish their residence.
    media_notice_possible: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineEntry:
    """One in-scope event, in chronological order, with where it sits in the ledger."""

    event_id: uuid.UUID
    event_time: datetime
    kind: str
    position: LedgerPosition
    #: The leaf is under the named checkpoint of its log (provable with that checkpoint).
    covered: bool
    #: The action took place (see ``is_completed``); failed attempts stay on the timeline.
    completed: bool
    user_id: str
    user_role: str | None
    facility_id: str
    patient_id: str | None
    patient_issuer: str | None
    dicom_event_id: str | None
    #: DICOM EventTypeCode, e.g. 110122 Login or 110127 Emergency Override Started.
    event_type_code: str | None
    action: str | None
    outcome: str | None
    study_uid: str | None
    network_address: str | None
    purpose_of_use: str | None
    phi_kinds: tuple[PhiKind, ...]
    #: Patients the answer returned that the event lists (PhiAccessEvent v2 ``disclosed``).
    disclosed_patients: int = 0
    #: Patients the answer returned, listed or not (more than listed: truncated).
    disclosed_total: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class InvestigationReport:
    """The result of ``build_investigation``."""

    scope: InvestigationScope
    threshold: int
    patients: tuple[AffectedPatient, ...]
    #: Patients the scope only tried to reach (every event failed): not counted as affected.
    attempted_only: tuple[PatientRef, ...]
    states: tuple[StateCount, ...]
    unknown_state: int
    #: 164.408(b): notify the Secretary contemporaneously (500 or more individuals, all
    #: states together); otherwise 164.408(c): log it and report within 60 days of year end.
    hhs_contemporaneous_notice: bool
    timeline: tuple[TimelineEntry, ...]
    checkpoints: tuple[ReportCheckpoint, ...]
    #: Timeline events appended after the named checkpoint of their log.
    uncovered_events: int
    #: In-scope answers that returned more patients than their events list.
    truncated_answers: tuple[TruncatedAnswer, ...] = ()
    #: Patients those answers returned but did not list: affected, not identified (some
    #: may be among ``patients``). Never left out of the counts silently: see
    #: ``individuals_at_most`` and ``hhs_contemporaneous_notice_possible``.
    unlisted_patients: int = 0

    @property
    def individuals(self) -> int:
        """How many identified individuals are affected (all states, known or not)."""
        return len(self.patients)

    @property
    def individuals_at_most(self) -> int:
        """The identified individuals plus those truncated answers returned unlisted."""
        return len(self.patients) + self.unlisted_patients

    @property
    def hhs_contemporaneous_notice_possible(self) -> bool:
        """Under the Secretary's threshold with the identified individuals, but not with
        those truncated answers returned unlisted: identify them."""
        return len(self.patients) < self.threshold <= self.individuals_at_most


def _checkpoint_map(checkpoints: Iterable[ReportCheckpoint]) -> dict[int, ReportCheckpoint]:
    by_log: dict[int, ReportCheckpoint] = {}
    for cp in checkpoints:
        if cp.log_id in by_log:
            raise MalformedInputError(f"two checkpoints given for log {cp.log_id}")
        if cp.size < 0 or not cp.note:
            raise MalformedInputError(f"checkpoint of log {cp.log_id} is not well formed")
        by_log[cp.log_id] = cp
    return by_log


def _covered(position: LedgerPosition, checkpoints: Mapping[int, ReportCheckpoint]) -> bool:
    cp = checkpoints.get(position.log_id)
    if cp is None:
        return False
    if cp.origin != position.origin:
        raise MalformedInputError(
            f"log {position.log_id} is {position.origin!r} but its checkpoint names {cp.origin!r}"
        )
    return position.leaf_index < cp.size


def build_investigation(
    scope: InvestigationScope,
    rows: Iterable[AccessRow],
    *,
    checkpoints: Iterable[ReportCheckpoint],
    threshold: int = 500,
) -> InvestigationReport:
    """Who and what a breach touched, and which notices the counts trigger.

    ``rows`` may be a superset: only events ``scope.matches`` are used. A patient is
    *affected* when at least one in-scope event completed (``is_completed``); patients
    with only failed attempts are listed in ``attempted_only`` and not counted.

    The two thresholds differ, and both are applied as written (``threshold`` = 500):

    * 164.406(a), media: "more than 500 residents of a State or jurisdiction", so a state
      triggers media notice at 501 affected residents, not 500, and residents of different
      states never add up;
    * 164.408(b), the Secretary: "500 or more individuals", all affected individuals
      together whatever their state (unknown included), so 500 triggers contemporaneous
      notice; fewer go to the annual log of 164.408(c).

    An access whose answer returned patients (PhiAccessEvent v2 ``disclosed``: a query's
    result set, a bulk listing) touches each of them, with their own state when the answer
    carried it (else they count as unknown); an answer that returned more patients than
    its event lists is in ``truncated_answers``, and the patients it did not list count in
    ``unlisted_patients``, ``individuals_at_most`` and the "possible" notices.

    A business associate (a teleradiology group) notifies the covered entity (164.410),
    which gives these notices; the report serves both. Each checkpoint names, for its log,
    the signed tree the report's positions can be proven against; events appended after it
    are still reported (a breach report must not drop them) and counted as uncovered.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise MalformedInputError("threshold must be a positive integer")
    cps = _checkpoint_map(checkpoints)
    in_scope = sorted((r for r in rows if scope.matches(r)), key=order_key)
    sweep = _sweep(in_scope, cps)
    patients = tuple(
        affected_patient(key, sweep.by_patient[key]) for key in patient_order(sweep.by_patient)
    )
    unlisted = sum(t.total - t.listed for t in sweep.truncated)
    states, unknown = _state_counts(patients, threshold, unlisted)
    timeline = tuple(sweep.timeline)
    return InvestigationReport(
        scope=scope,
        threshold=threshold,
        patients=patients,
        attempted_only=_attempted_only(sweep),
        states=states,
        unknown_state=unknown,
        hhs_contemporaneous_notice=len(patients) >= threshold,
        timeline=timeline,
        checkpoints=_named_checkpoints(timeline, cps),
        uncovered_events=sum(1 for e in timeline if not e.covered),
        truncated_answers=tuple(sweep.truncated),
        unlisted_patients=unlisted,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Sweep:
    """One pass over the in-scope events: the timeline and who was touched or tried."""

    timeline: list[TimelineEntry]
    #: Touches per patient (issuer, id), chronological.
    by_patient: dict[PatientKey, list[Touch]]
    #: Patients with at least one failed attempt (insertion-ordered set).
    attempted: dict[PatientKey, None]
    #: Answers that returned more patients than they list.
    truncated: list[TruncatedAnswer]


def _sweep(in_scope: list[AccessRow], cps: Mapping[int, ReportCheckpoint]) -> _Sweep:
    sweep = _Sweep(timeline=[], by_patient={}, attempted={}, truncated=[])
    seen: set[uuid.UUID] = set()
    for row in in_scope:
        if row.event_id in seen:
            raise MalformedInputError(f"event {row.event_id} is given twice")
        seen.add(row.event_id)
        completed = is_completed(row)
        sweep.timeline.append(_timeline_entry(row, cps, completed=completed))
        touched, attempted = touches_of(row, completed=completed)
        for key, touch in touched.items():
            sweep.by_patient.setdefault(key, []).append(touch)
        if attempted is not None:
            sweep.attempted[attempted] = None
        if row.unlisted:
            sweep.truncated.append(
                TruncatedAnswer(
                    source=event_ref(row),
                    listed=len(row.disclosed),
                    total=len(row.disclosed) + row.unlisted,
                )
            )
    return sweep


def _timeline_entry(
    row: AccessRow, cps: Mapping[int, ReportCheckpoint], *, completed: bool
) -> TimelineEntry:
    kinds = phi_kinds(row)
    return TimelineEntry(
        event_id=row.event_id,
        event_time=row.event_time,
        kind=row.kind,
        position=row.position,
        covered=_covered(row.position, cps),
        completed=completed,
        user_id=row.user_id,
        user_role=row.user_role,
        facility_id=row.facility_id,
        patient_id=row.patient_id,
        patient_issuer=row.patient_issuer,
        dicom_event_id=row.dicom_event_id,
        event_type_code=row.event_type_code,
        action=row.action,
        outcome=row.outcome,
        study_uid=None if row.study is None else row.study.uid,
        network_address=row.network_address,
        purpose_of_use=row.purpose_of_use,
        phi_kinds=tuple(sorted(kinds)),
        disclosed_patients=len(row.disclosed),
        disclosed_total=len(row.disclosed) + row.unlisted,
    )


def _attempted_only(sweep: _Sweep) -> tuple[PatientRef, ...]:
    return tuple(
        PatientRef(id=pid, issuer=issuer)
        for issuer, pid in patient_order(sweep.attempted)
        if (issuer, pid) not in sweep.by_patient
    )


def _state_counts(
    patients: tuple[AffectedPatient, ...], threshold: int, unlisted: int
) -> tuple[tuple[StateCount, ...], int]:
    """Affected residents per state (media notice, 164.406(a)) and how many have no state.
    A state's notice is possible when those without a state, or not identified
    (``unlisted``), could take it over the threshold."""
    residents: dict[str, int] = {}
    unknown = 0
    for p in patients:
        if p.state is None:
            unknown += 1
        else:
            residents[p.state] = residents.get(p.state, 0) + 1
    states = tuple(
        StateCount(
            state=state,
            residents=n,
            media_notice=n > threshold,
            media_notice_possible=n <= threshold < n + unknown + unlisted,
        )
        for state, n in sorted(residents.items())
    )
    return states, unknown


def _named_checkpoints(
    timeline: tuple[TimelineEntry, ...], cps: Mapping[int, ReportCheckpoint]
) -> tuple[ReportCheckpoint, ...]:
    """The given checkpoints of the logs the timeline names, by origin."""
    used_logs = {e.position.log_id for e in timeline}
    return tuple(sorted((cps[i] for i in used_logs if i in cps), key=lambda c: c.origin))
