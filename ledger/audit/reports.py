"""HIPAA reports over the ledger: breach investigation, accounting of disclosures, relays.

Invariant: everything here is pure and deterministic. No function performs I/O or reads
the clock ("now" is always an argument), so the same typed rows always give the same
report and byte-identical JSON, CSV and HTML. Every event a report names carries its
ledger position (log origin and leaf index), and an investigation names the signed
checkpoints it was computed against, so any line of a report can be proven against the
Merkle log later. Every datetime in a report is timezone-aware UTC; a naive or non-datetime
input, an empty or oversized selector, or any other hostile input raises
``MalformedInputError`` naming what is wrong.

Three reports (issue 5, items 2-4):

* ``build_investigation``: who and what a breach touched (45 CFR 164.404-164.410).
* ``build_disclosures``: the accounting of disclosures an individual may request
  (45 CFR 164.528).
* ``build_relay_report``: timeliness of critical-result relays by ACR category (ACR
  actionable-finding categories; Joint Commission NPSG.02.03.01).

Exports: ``to_json`` (any report), ``to_csv`` (any report; cells that a spreadsheet would
run as a formula are neutralised) and ``to_html`` (the printable accounting of disclosures,
self-contained, every value escaped).

Security events (``kind == "security_event"``, schema ``philedger.audit.SecurityEvent``:
logins, logouts and failed logins, emergency override started / stopped, application
activity, security alerts) are decided as follows:

* They are on an investigation's timeline whenever they match its scope (user, facility,
  network address, window): where and when a user logged in, failed to, or broke the glass
  is what a breach investigation retraces. The timeline carries the EventTypeCode
  (``event_type_code``: 110122 Login, 110123 Logout, 110127 / 110138 Emergency Override
  Started / Stopped) to tell them apart.
* One that names no patient (a login) touches no PHI: no PHI kind, no affected patient.
* One that names a patient (an emergency override opens that patient's record to the user)
  counts that patient as affected, with DEMOGRAPHICS only, when it succeeded: a breach
  notice must not understate who was exposed, and what was viewed under the override is in
  the PHI access events themselves.
* Only SUCCESS completes a security event: DICOM's outcome 4 for an authentication is an
  invalid password that the user retried, not a login (``is_completed``).
* A security event is never a disclosure (``is_disclosure``): nothing left the system.
"""

from __future__ import annotations

import csv
import html
import io
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from ledger.audit.query import LedgerPosition
from ledger.audit.records import JsonValue
from ledger.errors import MalformedInputError

__all__ = [
    "BASIS_RULES",
    "COMPLIANCE_DATE",
    "DEFAULT_RELAY_DEADLINES",
    "DISCLOSURE_BASIS_DETAIL",
    "DISCLOSURE_EVENT_IDS",
    "KIND_ACCESS",
    "KIND_LEDGER_READ",
    "KIND_RELAY",
    "KIND_SECURITY",
    "MAX_LOOKBACK_YEARS",
    "MAX_SCOPE_SELECTORS",
    "MAX_SELECTOR_CHARS",
    "MAX_WINDOW",
    "PHI_KINDS_BY_EVENT_ID",
    "PURPOSE_RULES",
    "REPORT_SOP_CLASS_PREFIXES",
    "VERBAL_CATEGORIES",
    "AccessRow",
    "AffectedPatient",
    "CategoryStats",
    "DisclosureAccounting",
    "DisclosureEntry",
    "Disposition",
    "DurationStats",
    "EventRef",
    "ExcludedDisclosure",
    "InvestigationReport",
    "InvestigationScope",
    "PatientRef",
    "PhiKind",
    "PurposeRule",
    "RecipientRef",
    "RelayException",
    "RelayIssue",
    "RelayReport",
    "RelayRow",
    "ReportCheckpoint",
    "StateCount",
    "StudyRef",
    "TimelineEntry",
    "accounting_period_start",
    "build_disclosures",
    "build_investigation",
    "build_relay_report",
    "check_identifier",
    "check_window",
    "describe_phi",
    "disclosure_rule",
    "is_completed",
    "is_disclosure",
    "phi_kinds",
    "to_csv",
    "to_html",
    "to_json",
]

# --------------------------------------------------------------------------------------------
# Limits and shared validation
# --------------------------------------------------------------------------------------------

#: Longest report window: ten years (3,653 days covers the leap days). HIPAA retention is
#: six years (164.316(b)(2)); ten leaves room for state law without allowing "everything".
MAX_WINDOW: Final = timedelta(days=3653)
#: Most users, or most network addresses, one investigation may name.
MAX_SCOPE_SELECTORS: Final = 100
#: Longest identifier accepted in a selector (the events' own limit).
MAX_SELECTOR_CHARS: Final = 256
#: Longest accounting lookback the Privacy Rule grants (164.528(a)(1)): six years.
MAX_LOOKBACK_YEARS: Final = 6
#: 164.528(a)(1)(ix): disclosures before the compliance date are never accounted. April 14,
#: 2003 for most covered entities (small health plans: April 14, 2004).
COMPLIANCE_DATE: Final = datetime(2003, 4, 14, tzinfo=UTC)

#: Report windows must lie within these bounds (no event predates 1990; far-future times
#: would overflow date arithmetic).
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9000, 1, 1, tzinfo=UTC)

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")

#: Event kinds of the index (``events.kind``).
KIND_ACCESS: Final = "phi_access"
KIND_RELAY: Final = "critical_result_relay"
KIND_LEDGER_READ: Final = "audit_log_used"
KIND_SECURITY: Final = "security_event"


def _text(name: str, value: object, *, limit: int = MAX_SELECTOR_CHARS) -> str:
    if (
        not isinstance(value, str)
        or not value
        or value.isspace()
        or len(value) > limit
        or _CONTROL.search(value)
    ):
        raise MalformedInputError(f"{name} must be 1-{limit} printable characters")
    return value


def _utc(name: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise MalformedInputError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def _instant(name: str, value: object) -> datetime:
    when = _utc(name, value)
    if not EARLIEST <= when <= LATEST:
        raise MalformedInputError(f"{name} must lie between {EARLIEST.date()} and {LATEST.date()}")
    return when


def _window(start: object, end: object) -> tuple[datetime, datetime]:
    if start is None or end is None:
        raise MalformedInputError("a time window (start and end) is required")
    s, e = _utc("start", start), _utc("end", end)
    if not s < e:
        raise MalformedInputError("start must be before end")
    if s < EARLIEST or e > LATEST:
        raise MalformedInputError(
            f"the window must lie between {EARLIEST.date()} and {LATEST.date()}"
        )
    if e - s > MAX_WINDOW:
        raise MalformedInputError(f"the window may span at most {MAX_WINDOW.days} days")
    return s, e


def check_window(start: object, end: object) -> tuple[datetime, datetime]:
    """Validate a report window [start, end): both timezone-aware, start < end, at most
    ``MAX_WINDOW`` long. Returns both in UTC; raises ``MalformedInputError``."""
    return _window(start, end)


def check_identifier(name: str, value: object) -> str:
    """Validate an identifier (1-256 printable characters); raises ``MalformedInputError``."""
    return _text(name, value)


def _selectors(name: str, values: object) -> tuple[str, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise MalformedInputError(f"{name} must be a list of strings")
    if len(values) > MAX_SCOPE_SELECTORS:
        raise MalformedInputError(f"{name} may name at most {MAX_SCOPE_SELECTORS} values")
    return tuple(dict.fromkeys(_text(name, v) for v in values))


# --------------------------------------------------------------------------------------------
# Typed inputs: what the adapter decodes from the leaves
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientRef:
    """A patient: an id is unique only within its issuer (assigning authority)."""

    id: str
    issuer: str | None = None

    def __post_init__(self) -> None:
        _text("patient id", self.id)
        if self.issuer is not None:
            _text("patient issuer", self.issuer)


@dataclass(frozen=True, slots=True, kw_only=True)
class StudyRef:
    """The study an event names (DICOM ParticipantObject type 2, role 3)."""

    uid: str
    accession: str | None = None
    modality: str | None = None
    sop_classes: tuple[str, ...] = ()
    instances: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientRef:
    """Who received disclosed PHI (the event's ``recipient``)."""

    name: str
    address: str | None = None
    organization: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRow:
    """One event of the ledger as a report sees it (decoded from its leaf).

    A critical-result relay appears with ``kind == "critical_result_relay"``, its sender as
    the user, no DICOM EventID and no network address. A read of the ledger itself appears
    with ``kind == "audit_log_used"`` (DICOM 110101), the API caller as the user, and a
    patient only when the query named one. A security event appears with
    ``kind == "security_event"`` (a login, an emergency override, ...), its user, its
    EventID and EventTypeCode, no study, and a patient only when it names one.
    """

    event_id: uuid.UUID
    kind: str
    event_time: datetime
    position: LedgerPosition
    facility_id: str
    patient_id: str | None
    user_id: str
    patient_issuer: str | None = None
    patient_state: str | None = None
    user_name: str | None = None
    user_role: str | None = None
    user_org: str | None = None
    dicom_event_id: str | None = None
    event_type_code: str | None = None
    action: str | None = None
    outcome: str | None = None
    study: StudyRef | None = None
    network_address: str | None = None
    purpose_of_use: str | None = None
    recipient: RecipientRef | None = None
    #: The event's ``details[DISCLOSURE_BASIS_DETAIL]``, when the producer recorded it.
    disclosure_basis: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayRow:
    """One CriticalResultRelay record (schema ``philedger.audit.CriticalResultRelay``)."""

    event_id: uuid.UUID
    event_time: datetime
    position: LedgerPosition
    facility_id: str
    patient_id: str
    study_uid: str
    category: str
    identified_at: datetime
    read_back: bool
    method: str
    sender_user_id: str
    recipient_name: str
    recipient_role: str
    patient_issuer: str | None = None
    communicated_at: datetime | None = None
    acknowledged_at: datetime | None = None
    attempts: int = 0
    escalations: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportCheckpoint:
    """A signed checkpoint a report was computed against: the note verbatim, as stored."""

    log_id: int
    origin: str
    size: int
    note: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRef:
    """An event by id, time and ledger position."""

    event_id: uuid.UUID
    event_time: datetime
    position: LedgerPosition


def _ref(row: AccessRow) -> EventRef:
    return EventRef(event_id=row.event_id, event_time=row.event_time, position=row.position)


# --------------------------------------------------------------------------------------------
# Kinds of PHI an event touched
# --------------------------------------------------------------------------------------------


class PhiKind(StrEnum):
    """Kinds of PHI, for the breach notice's "types of unsecured PHI" (164.404(c)(1)(B))."""

    #: Patient identifiers and demographics: id, issuer, state, the link to the facility.
    DEMOGRAPHICS = "demographics"
    #: Diagnostic images (DICOM instances).
    IMAGES = "images"
    #: The diagnostic report or a finding (procedure record, SR/PDF objects, relays).
    REPORT = "report"
    #: The imaging order (DICOM Order Record).
    ORDER = "order"
    #: A copy of the PHI left the system (DICOM Export).
    EXPORT = "export"


#: DICOM EventID -> the kinds of PHI it touches besides DEMOGRAPHICS, which every event
#: touches (it names the patient). Read with ``phi_kinds``, which adds the study-based rules.
PHI_KINDS_BY_EVENT_ID: Final[Mapping[str, tuple[PhiKind, ...]]] = MappingProxyType(
    {
        "110100": (),  # Application Activity
        "110101": (),  # Audit Log Used: reveals who accessed the patient
        "110102": (PhiKind.IMAGES,),  # Begin Transferring DICOM Instances
        "110103": (PhiKind.IMAGES,),  # DICOM Instances Accessed
        "110104": (PhiKind.IMAGES,),  # DICOM Instances Transferred
        "110105": (PhiKind.IMAGES,),  # DICOM Study Deleted
        "110106": (PhiKind.EXPORT,),  # Export (+ images or report, from the study)
        "110107": (PhiKind.IMAGES,),  # Import
        "110108": (),  # Network Entry
        "110109": (PhiKind.ORDER,),  # Order Record
        "110110": (),  # Patient Record: demographics
        "110111": (PhiKind.REPORT,),  # Procedure Record: the report of the procedure
        "110112": (),  # Query: the parameters are recorded, not the results
        "110113": (),  # Security Alert (+ images when it names a study: break the glass)
        "110114": (),  # User Authentication
    }
)

#: SOP Class UID prefixes of report objects: Structured Reports (1.2.840.10008.5.1.4.1.1.88.*)
#: and encapsulated documents (PDF .104.1, CDA .104.2).
REPORT_SOP_CLASS_PREFIXES: Final = (
    "1.2.840.10008.5.1.4.1.1.88.",
    "1.2.840.10008.5.1.4.1.1.104.",
)


def _is_report_sop(sop: str) -> bool:
    return sop.startswith(REPORT_SOP_CLASS_PREFIXES)


def phi_kinds(row: AccessRow) -> frozenset[PhiKind]:
    """The kinds of PHI one event touched.

    Rules, in order:

    1. every event that names a patient touches DEMOGRAPHICS (a read of the ledger or a
       security event that names none touches no PHI kind);
    2. a critical-result relay touches REPORT (it carries the finding);
    3. the DICOM EventID adds its kinds from ``PHI_KINDS_BY_EVENT_ID``;
    4. an Export, a Security Alert or an unknown EventID that names a study adds IMAGES
       (conservative: a breach notice must not understate what was exposed);
    5. a study's SOP classes that are report objects (``REPORT_SOP_CLASS_PREFIXES``) add
       REPORT; when every SOP class named is a report object, IMAGES is dropped.
    """
    if row.patient_id is None:
        return frozenset()
    kinds = {PhiKind.DEMOGRAPHICS}
    if row.kind == KIND_RELAY:
        kinds.add(PhiKind.REPORT)
        return frozenset(kinds)
    code = row.dicom_event_id
    known = code is not None and code in PHI_KINDS_BY_EVENT_ID
    if known and code is not None:
        kinds.update(PHI_KINDS_BY_EVENT_ID[code])
    if row.study is not None:
        if not known or code in ("110106", "110113"):
            kinds.add(PhiKind.IMAGES)
        sops = row.study.sop_classes
        if any(_is_report_sop(s) for s in sops):
            kinds.add(PhiKind.REPORT)
            if all(_is_report_sop(s) for s in sops):
                kinds.discard(PhiKind.IMAGES)
    return frozenset(kinds)


#: DICOM outcomes after which the action took place (0 success, 4 minor failure). Serious
#: (8) and major (12) failures mean the action was terminated or refused: no PHI was touched.
_COMPLETED_OUTCOMES: Final = frozenset({"SUCCESS", "MINOR_FAILURE"})


def is_completed(row: AccessRow) -> bool:
    """True if the action happened: outcome success or minor failure, or not recorded. A
    relay always happened (its sender had the finding). A read of the ledger returned data
    only on SUCCESS: its producer records a refused (4xx) request as MINOR_FAILURE. A
    security event happened only on SUCCESS: DICOM's minor failure (4) of an authentication
    is an invalid password the user retried."""
    if row.kind == KIND_RELAY:
        return True
    if row.kind in (KIND_LEDGER_READ, KIND_SECURITY):
        return row.outcome == "SUCCESS"
    return row.outcome is None or row.outcome in _COMPLETED_OUTCOMES


# --------------------------------------------------------------------------------------------
# Breach investigation (164.404, 164.406, 164.408, 164.410)
# --------------------------------------------------------------------------------------------


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
        start, end = _window(self.start, self.end)
        users = _selectors("users", self.users)
        addresses = _selectors("network_addresses", self.network_addresses)
        if self.facility is not None:
            _text("facility", self.facility)
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
class AffectedPatient:
    """One individual whose PHI an in-scope event touched (164.410(c)(1): identify each)."""

    patient_id: str
    issuer: str | None
    #: State of residence on the latest in-scope event that records one.
    state: str | None
    #: Other states recorded for this patient on in-scope events (moves, data errors).
    other_states: tuple[str, ...]
    first_access: datetime
    last_access: datetime
    phi_kinds: tuple[PhiKind, ...]
    events: int
    users: tuple[str, ...]
    facilities: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class StateCount:
    """Affected residents of one state and the notices that count triggers."""

    state: str
    residents: int
    #: 164.406(a): media notice for "more than 500 residents of a State or jurisdiction".
    media_notice: bool
    #: Not (yet) over the media threshold, but would be if enough of the affected
    #: individuals without a recorded state live here: establish their residence.
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

    @property
    def individuals(self) -> int:
        """How many individuals are affected (all states, known or not)."""
        return len(self.patients)


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


def _order_key(row: AccessRow) -> tuple[datetime, str, int]:
    return (row.event_time, row.position.origin, row.position.leaf_index)


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

    A business associate (a teleradiology group) notifies the covered entity (164.410),
    which gives these notices; the report serves both. Each checkpoint names, for its log,
    the signed tree the report's positions can be proven against; events appended after it
    are still reported (a breach report must not drop them) and counted as uncovered.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise MalformedInputError("threshold must be a positive integer")
    cps = _checkpoint_map(checkpoints)
    in_scope = sorted((r for r in rows if scope.matches(r)), key=_order_key)

    timeline: list[TimelineEntry] = []
    by_patient: dict[tuple[str | None, str], list[AccessRow]] = {}
    attempted: dict[tuple[str | None, str], None] = {}
    seen: set[uuid.UUID] = set()
    for row in in_scope:
        if row.event_id in seen:
            raise MalformedInputError(f"event {row.event_id} is given twice")
        seen.add(row.event_id)
        kinds = phi_kinds(row)
        completed = is_completed(row)
        timeline.append(
            TimelineEntry(
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
            )
        )
        if row.patient_id is None:
            continue  # a read of the ledger or a security event naming no one: timeline only
        key = (row.patient_issuer, row.patient_id)
        if completed:
            by_patient.setdefault(key, []).append(row)
        else:
            attempted[key] = None

    patients = tuple(
        _affected(pid, events) for (_, pid), events in sorted(by_patient.items(), key=_patient_sort)
    )
    attempted_only = tuple(
        PatientRef(id=pid, issuer=issuer)
        for issuer, pid in sorted(attempted, key=lambda k: (k[0] or "", k[1]))
        if (issuer, pid) not in by_patient
    )
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
            media_notice_possible=n <= threshold < n + unknown,
        )
        for state, n in sorted(residents.items())
    )
    used_logs = {e.position.log_id for e in timeline}
    return InvestigationReport(
        scope=scope,
        threshold=threshold,
        patients=patients,
        attempted_only=attempted_only,
        states=states,
        unknown_state=unknown,
        hhs_contemporaneous_notice=len(patients) >= threshold,
        timeline=tuple(timeline),
        checkpoints=tuple(sorted((cps[i] for i in used_logs if i in cps), key=lambda c: c.origin)),
        uncovered_events=sum(1 for e in timeline if not e.covered),
    )


def _patient_sort(item: tuple[tuple[str | None, str], list[AccessRow]]) -> tuple[str, str]:
    (issuer, pid), _ = item
    return (issuer or "", pid)


def _affected(patient_id: str, events: list[AccessRow]) -> AffectedPatient:
    first, last = events[0], events[-1]  # chronological already
    states = [e.patient_state for e in events if e.patient_state is not None]
    state = states[-1] if states else None
    kinds: set[PhiKind] = set()
    for e in events:
        kinds |= phi_kinds(e)
    return AffectedPatient(
        patient_id=patient_id,
        issuer=first.patient_issuer,
        state=state,
        other_states=tuple(sorted(set(states) - {state})) if state is not None else (),
        first_access=first.event_time,
        last_access=last.event_time,
        phi_kinds=tuple(sorted(kinds)),
        events=len(events),
        users=tuple(sorted({e.user_id for e in events})),
        facilities=tuple(sorted({e.facility_id for e in events})),
    )


# --------------------------------------------------------------------------------------------
# Accounting of disclosures (164.528)
# --------------------------------------------------------------------------------------------


class Disposition(StrEnum):
    """What the accounting does with a disclosure."""

    #: Accounted (164.528(a)(1) names no exception for it).
    INCLUDE = "include"
    #: Left out under one of the exceptions of 164.528(a)(1)(i)-(ix).
    EXCLUDE = "exclude"
    #: Accounted, but flagged: the ledger cannot tell whether an exception applies.
    REVIEW = "review"


@dataclass(frozen=True, slots=True, kw_only=True)
class PurposeRule:
    """How one purpose (or recorded legal basis) of a disclosure is treated."""

    disposition: Disposition
    #: The purpose as the individual reads it (164.528(b)(2)(iv): "a brief statement of
    #: the purpose of the disclosure that reasonably informs the individual of the basis").
    statement: str
    #: Where the rule comes from.
    citation: str


def _rule(disposition: Disposition, statement: str, citation: str) -> PurposeRule:
    return PurposeRule(disposition=disposition, statement=statement, citation=citation)


_X, _I, _R = Disposition.EXCLUDE, Disposition.INCLUDE, Disposition.REVIEW
_TPO = "45 CFR 164.528(a)(1)(i): treatment, payment, health care operations (164.506)"

#: HL7 v3 PurposeOfUse code (``purpose_of_use``) -> disposition in the accounting.
PURPOSE_RULES: Final[Mapping[str, PurposeRule]] = MappingProxyType(
    {
        "TREAT": _rule(_X, "Treatment", _TPO),
        "ETREAT": _rule(_X, "Emergency treatment", _TPO),
        "BTG": _rule(_X, "Emergency access for treatment (break the glass)", _TPO),
        "COC": _rule(_X, "Coordination of care", _TPO),
        "HPAYMT": _rule(_X, "Payment", _TPO),
        "HOPERAT": _rule(_X, "Health care operations", _TPO),
        "HQUALIMP": _rule(_X, "Quality improvement (health care operations)", _TPO),
        "SYSADMN": _rule(_X, "System administration (health care operations)", _TPO),
        "HSYSADMIN": _rule(_X, "System administration (health care operations)", _TPO),
        "PATRQT": _rule(
            _X,
            "At the individual's request",
            "45 CFR 164.528(a)(1)(ii) to the individual (164.502), or (iv) with the "
            "individual's authorization (164.508)",
        ),
        "PWATRNY": _rule(
            _X,
            "To the individual's personal representative",
            "45 CFR 164.528(a)(1)(ii): a personal representative is treated as the "
            "individual (164.502(g))",
        ),
        "FAMRQT": _rule(
            _X,
            "To family involved in the individual's care",
            "45 CFR 164.528(a)(1)(v): persons involved in care (164.510(b))",
        ),
        "DISASTER": _rule(
            _X,
            "Disaster relief notification",
            "45 CFR 164.528(a)(1)(v): notification purposes (164.510(b)(4))",
        ),
        "PUBHLTH": _rule(_I, "Public health activities", "45 CFR 164.512(b)"),
        "HRESCH": _rule(
            _I,
            "Research without the individual's authorization",
            "45 CFR 164.512(i) (with an authorization it is excluded: record the basis)",
        ),
        "CLINTRCH": _rule(
            _I,
            "Clinical trial research without the individual's authorization",
            "45 CFR 164.512(i) (with an authorization it is excluded: record the basis)",
        ),
        "LEGAL": _rule(
            _I,
            "Judicial or administrative proceedings, or law enforcement",
            "45 CFR 164.512(e), (f) (custody situations under 164.512(k)(5) are excluded: "
            "record the basis)",
        ),
        "OVERSIGHT": _rule(
            _I,
            "Health oversight activities",
            "45 CFR 164.512(d) (the agency may suspend the accounting: 164.528(a)(2))",
        ),
        "THREAT": _rule(_I, "To avert a serious threat to health or safety", "45 CFR 164.512(j)"),
        "HPRGRP": _rule(
            _R,
            "Health program reporting",
            "accounted when required by law (164.512(a)); excluded when health care "
            "operations (164.528(a)(1)(i)): record the basis",
        ),
        "HMARKT": _rule(
            _R,
            "Marketing",
            "permitted only with an authorization (164.508(a)(3); then excluded by "
            "164.528(a)(1)(iv)); without one it is an impermissible disclosure, which is "
            "accounted",
        ),
    }
)

#: The detail key (``details[...]`` of a PhiAccessEvent) in which a producer may record the
#: legal basis of a disclosure, which no PurposeOfUse code expresses. Values: ``BASIS_RULES``.
DISCLOSURE_BASIS_DETAIL: Final = "disclosure_basis"

#: Recorded legal basis -> disposition. A known basis takes precedence over the purpose code.
BASIS_RULES: Final[Mapping[str, PurposeRule]] = MappingProxyType(
    {
        "tpo": _rule(_X, "Treatment, payment or health care operations", _TPO),
        "individual": _rule(
            _X, "To the individual", "45 CFR 164.528(a)(1)(ii): to the individual (164.502)"
        ),
        "incidental": _rule(
            _X,
            "Incidental to a permitted use or disclosure",
            "45 CFR 164.528(a)(1)(iii) (164.502(a)(1)(iii))",
        ),
        "authorization": _rule(
            _X,
            "With the individual's authorization",
            "45 CFR 164.528(a)(1)(iv) (164.508)",
        ),
        "directory": _rule(_X, "Facility directory", "45 CFR 164.528(a)(1)(v) (164.510(a))"),
        "involved-in-care": _rule(
            _X,
            "To persons involved in the individual's care, or notification",
            "45 CFR 164.528(a)(1)(v) (164.510(b))",
        ),
        "national-security": _rule(
            _X,
            "National security or intelligence",
            "45 CFR 164.528(a)(1)(vi) (164.512(k)(2))",
        ),
        "custody": _rule(
            _X,
            "To a correctional institution or law enforcement with custody",
            "45 CFR 164.528(a)(1)(vii) (164.512(k)(5))",
        ),
        "limited-data-set": _rule(
            _X, "Limited data set", "45 CFR 164.528(a)(1)(viii) (164.514(e))"
        ),
        "required-by-law": _rule(_I, "Required by law", "45 CFR 164.512(a)"),
    }
)

_NO_PURPOSE: Final = _rule(
    _R, "Purpose not recorded", "no purpose recorded: an exception cannot be shown to apply"
)

#: DICOM EventIDs that are disclosures by themselves: Export (the BALP PrivacyDisclosure
#: source record) and DICOM Instances Transferred. Any event with a recipient is one too.
DISCLOSURE_EVENT_IDS: Final = frozenset({"110106", "110104"})


def disclosure_rule(row: AccessRow) -> PurposeRule:
    """The rule for a disclosure: its recorded basis if known, else its purpose code.

    An unknown basis, an unknown purpose code or no purpose at all gives ``REVIEW``: the
    disclosure is accounted (an exception cannot be shown to apply) and flagged.
    """
    if row.disclosure_basis is not None:
        basis = BASIS_RULES.get(row.disclosure_basis)
        if basis is not None:
            return basis
        return _rule(
            _R,
            "Unrecognised basis recorded",
            f"recorded basis {row.disclosure_basis!r} is not one of {sorted(BASIS_RULES)}",
        )
    if row.purpose_of_use is None:
        return _NO_PURPOSE
    rule = PURPOSE_RULES.get(row.purpose_of_use)
    if rule is None:
        return _rule(
            _R,
            f"Purpose {row.purpose_of_use}",
            f"PurposeOfUse {row.purpose_of_use!r} has no rule in PURPOSE_RULES",
        )
    return rule


def is_disclosure(row: AccessRow) -> bool:
    """True for a completed PHI access that released PHI outside: an Export, a Transfer,
    or any event that names a recipient."""
    return (
        row.kind == KIND_ACCESS
        and is_completed(row)
        and (row.recipient is not None or row.dicom_event_id in DISCLOSURE_EVENT_IDS)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DisclosureEntry:
    """One line of the accounting (164.528(b)(2)); several when summarised (164.528(b)(3))."""

    disclosed_at: datetime
    recipient_name: str | None
    recipient_address: str | None
    recipient_organization: str | None
    description: str
    purpose: str
    purpose_code: str | None
    citation: str
    needs_review: bool
    #: How many disclosures this line stands for; ``last_disclosed_at`` is the last one.
    count: int
    last_disclosed_at: datetime
    sources: tuple[EventRef, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExcludedDisclosure:
    """A disclosure left out of the accounting, and why (for the privacy officer only)."""

    source: EventRef
    purpose_code: str | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DisclosureAccounting:
    """The result of ``build_disclosures``."""

    patient: PatientRef
    requested_at: datetime
    period_start: datetime
    entries: tuple[DisclosureEntry, ...]
    excluded: tuple[ExcludedDisclosure, ...]

    @property
    def needs_review(self) -> int:
        """Entries a privacy officer must review before the accounting is released."""
        return sum(1 for e in self.entries if e.needs_review)


def accounting_period_start(now: datetime, years: int) -> datetime:
    """Start of the accounting period: the same calendar date ``years`` earlier, 00:00 UTC.

    164.528(a)(1) grants disclosures "in the six years prior to the date on which the
    accounting is requested"; counting in whole dates, that date is included (29 February
    falls back to 28 February). Never before ``COMPLIANCE_DATE`` (164.528(a)(1)(ix)).
    """
    now = _instant("now", now)
    if isinstance(years, bool) or not isinstance(years, int):
        raise MalformedInputError("lookback_years must be an integer")
    if not 1 <= years <= MAX_LOOKBACK_YEARS:
        raise MalformedInputError(f"lookback_years must be from 1 to {MAX_LOOKBACK_YEARS}")
    d = now.date()
    try:
        then = d.replace(year=d.year - years)
    except ValueError:  # 29 February
        then = date(d.year - years, 2, 28)
    return max(datetime.combine(then, time.min, tzinfo=UTC), COMPLIANCE_DATE)


def describe_phi(row: AccessRow) -> str:
    """A brief description of the PHI an event disclosed (164.528(b)(2)(iii))."""
    kinds = phi_kinds(row)
    parts: list[str] = []
    study = row.study
    if study is not None and (PhiKind.IMAGES in kinds or PhiKind.REPORT in kinds):
        what = []
        if PhiKind.IMAGES in kinds:
            what.append("images")
        if PhiKind.REPORT in kinds:
            what.append("report")
        label = f"{study.modality} imaging study" if study.modality else "Imaging study"
        details = [f"accession {study.accession}"] if study.accession else []
        if study.instances is not None:
            details.append(f"{study.instances} instances")
        details.append(f"study UID {study.uid}")
        parts.append(f"{label} ({' and '.join(what)}; {', '.join(details)})")
    elif PhiKind.IMAGES in kinds:
        parts.append("Diagnostic images")
    elif PhiKind.REPORT in kinds:
        parts.append("Diagnostic report")
    if PhiKind.ORDER in kinds:
        parts.append("imaging order")
    parts.append("patient identifiers and demographics")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:]


def build_disclosures(
    patient: PatientRef,
    rows: Iterable[AccessRow],
    *,
    now: datetime,
    lookback_years: int = MAX_LOOKBACK_YEARS,
    summarise_repeated: bool = False,
) -> DisclosureAccounting:
    """The accounting of disclosures of ``patient``'s PHI requested at ``now`` (164.528).

    Of ``rows``, only this patient's disclosures (``is_disclosure``) made in
    [``accounting_period_start(now, lookback_years)``, ``now``] are considered; each is
    included, excluded or included for review by ``disclosure_rule`` (tables
    ``BASIS_RULES`` and ``PURPOSE_RULES``). Without an issuer, rows of one patient id under
    several issuers are different people: that raises ``MalformedInputError``.

    With ``summarise_repeated``, disclosures to one recipient for one purpose become one
    line with the first date, the number and the last date (164.528(b)(3)); lines flagged
    for review are never merged.
    """
    if not isinstance(patient, PatientRef):
        raise MalformedInputError("patient must be a PatientRef")
    now = _instant("now", now)
    period_start = accounting_period_start(now, lookback_years)
    mine = [
        r
        for r in rows
        if r.patient_id == patient.id
        and (patient.issuer is None or r.patient_issuer == patient.issuer)
    ]
    issuers = sorted({r.patient_issuer or "" for r in mine})
    if patient.issuer is None and len(issuers) > 1:
        raise MalformedInputError(
            f"patient id {patient.id!r} exists under several issuers ({', '.join(issuers)}); "
            "name the issuer"
        )
    included: list[tuple[AccessRow, PurposeRule]] = []
    excluded: list[ExcludedDisclosure] = []
    for row in sorted(mine, key=_order_key):
        if not is_disclosure(row) or not period_start <= row.event_time <= now:
            continue
        rule = disclosure_rule(row)
        if rule.disposition is Disposition.EXCLUDE:
            excluded.append(
                ExcludedDisclosure(
                    source=_ref(row), purpose_code=row.purpose_of_use, reason=rule.citation
                )
            )
        else:
            included.append((row, rule))
    entries = [_entry(row, rule) for row, rule in included]
    if summarise_repeated:
        entries = _summarise(entries)
    return DisclosureAccounting(
        patient=patient,
        requested_at=now,
        period_start=period_start,
        entries=tuple(entries),
        excluded=tuple(excluded),
    )


def _entry(row: AccessRow, rule: PurposeRule) -> DisclosureEntry:
    recipient = row.recipient
    return DisclosureEntry(
        disclosed_at=row.event_time,
        recipient_name=None if recipient is None else recipient.name,
        recipient_address=None if recipient is None else recipient.address,
        recipient_organization=None if recipient is None else recipient.organization,
        description=describe_phi(row),
        purpose=rule.statement,
        purpose_code=row.purpose_of_use,
        citation=rule.citation,
        needs_review=rule.disposition is Disposition.REVIEW or recipient is None,
        count=1,
        last_disclosed_at=row.event_time,
        sources=(_ref(row),),
    )


def _summarise(entries: list[DisclosureEntry]) -> list[DisclosureEntry]:
    out: list[DisclosureEntry] = []
    slot: dict[tuple[str | None, ...], int] = {}
    for e in entries:
        key = (e.recipient_name, e.recipient_address, e.purpose_code, e.purpose)
        if e.needs_review or key not in slot:
            if not e.needs_review:
                slot[key] = len(out)
            out.append(e)
            continue
        first = out[slot[key]]
        out[slot[key]] = DisclosureEntry(
            disclosed_at=first.disclosed_at,
            recipient_name=first.recipient_name,
            recipient_address=first.recipient_address,
            recipient_organization=first.recipient_organization,
            description=first.description,
            purpose=first.purpose,
            purpose_code=first.purpose_code,
            citation=first.citation,
            needs_review=False,
            count=first.count + 1,
            last_disclosed_at=e.disclosed_at,
            sources=first.sources + e.sources,
        )
    return out


# --------------------------------------------------------------------------------------------
# Critical-result relays (ACR actionable findings; Joint Commission NPSG.02.03.01)
# --------------------------------------------------------------------------------------------

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


def _deadlines(deadlines: Mapping[str, timedelta]) -> dict[str, timedelta]:
    if not isinstance(deadlines, Mapping):
        raise MalformedInputError("deadlines must map a category to a duration")
    out: dict[str, timedelta] = {}
    for category, limit in deadlines.items():
        _text("deadline category", category, limit=32)
        if not isinstance(limit, timedelta) or limit <= timedelta(0) or limit > MAX_WINDOW:
            raise MalformedInputError(f"deadline of {category} must be a positive duration")
        out[category] = limit
    return out


def _relay_key(r: RelayRow) -> tuple[object, ...]:
    return (r.facility_id, r.patient_issuer, r.patient_id, r.study_uid, r.category, r.identified_at)


def _check_relay(r: RelayRow) -> None:
    _utc("identified_at", r.identified_at)
    if r.communicated_at is not None and _utc("communicated_at", r.communicated_at) < (
        r.identified_at
    ):
        raise MalformedInputError(f"relay {r.event_id}: communicated before identified")
    if r.acknowledged_at is not None:
        _utc("acknowledged_at", r.acknowledged_at)
        if r.communicated_at is None or r.acknowledged_at < r.communicated_at:
            raise MalformedInputError(f"relay {r.event_id}: acknowledged before communicated")


def build_relay_report(
    rows: Iterable[RelayRow],
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    deadlines: Mapping[str, timedelta] = DEFAULT_RELAY_DEADLINES,
) -> RelayReport:
    """Timeliness of critical-result relays identified in [start, end), as of ``now``.

    Several records of one relay (same facility, patient, study, category and
    identification time: a producer may record a relay while unreached and again once
    communicated) count once, as the latest record (by event time, then leaf index).

    Per category: counts and identified -> communicated / -> acknowledged distributions
    (``DurationStats``). Exceptions: communicated after the deadline (LATE), not
    communicated with the deadline passed at ``now`` (OVERDUE), communicated without
    read-back (NO_READ_BACK), and category 1 not by direct verbal contact (NOT_VERBAL).
    A category without a deadline gets statistics but no LATE or OVERDUE.
    """
    start, end = _window(start, end)
    now = _instant("now", now)
    limits = _deadlines(deadlines)
    latest: dict[tuple[object, ...], list[RelayRow]] = {}
    for r in rows:
        _check_relay(r)
        if start <= r.identified_at < end:
            latest.setdefault(_relay_key(r), []).append(r)

    per_category: dict[str, list[tuple[RelayRow, tuple[uuid.UUID, ...]]]] = {}
    for versions in latest.values():
        versions.sort(key=lambda v: (v.event_time, v.position.origin, v.position.leaf_index))
        current = versions[-1]
        superseded = tuple(v.event_id for v in versions[:-1])
        per_category.setdefault(current.category, []).append((current, superseded))

    categories: list[CategoryStats] = []
    exceptions: list[RelayException] = []
    for category in sorted(set(per_category) | set(limits)):
        relays = per_category.get(category, [])
        deadline = limits.get(category)
        on_time = late = overdue = pending = no_read_back = 0
        to_comm: list[timedelta] = []
        to_ack: list[timedelta] = []
        for r, superseded in relays:
            issues: list[RelayIssue] = []
            if r.communicated_at is not None:
                delay = r.communicated_at - r.identified_at
                to_comm.append(delay)
                if deadline is not None and delay > deadline:
                    late += 1
                    issues.append(RelayIssue.LATE)
                else:
                    on_time += 1
                if not r.read_back:
                    no_read_back += 1
                    issues.append(RelayIssue.NO_READ_BACK)
                if category in VERBAL_CATEGORIES and r.method not in _VERBAL_METHODS:
                    issues.append(RelayIssue.NOT_VERBAL)
            else:
                delay = max(now - r.identified_at, timedelta(0))
                if deadline is not None and delay > deadline:
                    overdue += 1
                    issues.append(RelayIssue.OVERDUE)
                else:
                    pending += 1
            if r.acknowledged_at is not None:
                to_ack.append(r.acknowledged_at - r.identified_at)
            if issues:
                exceptions.append(_exception(r, superseded, deadline, delay, issues))
        categories.append(
            CategoryStats(
                category=category,
                deadline=deadline,
                relays=len(relays),
                communicated=len(to_comm),
                acknowledged=len(to_ack),
                on_time=on_time,
                late=late,
                overdue=overdue,
                pending=pending,
                no_read_back=no_read_back,
                identified_to_communicated=_stats(to_comm),
                identified_to_acknowledged=_stats(to_ack),
            )
        )
    exceptions.sort(key=lambda x: (x.identified_at, x.position.origin, x.position.leaf_index))
    return RelayReport(
        start=start,
        end=end,
        now=now,
        deadlines=tuple(sorted(limits.items())),
        relays=sum(c.relays for c in categories),
        categories=tuple(categories),
        exceptions=tuple(exceptions),
    )


def _exception(
    r: RelayRow,
    superseded: tuple[uuid.UUID, ...],
    deadline: timedelta | None,
    delay: timedelta,
    issues: list[RelayIssue],
) -> RelayException:
    return RelayException(
        event_id=r.event_id,
        position=r.position,
        superseded=superseded,
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
        delay=delay,
        attempts=r.attempts,
        issues=tuple(issues),
    )


# --------------------------------------------------------------------------------------------
# Exports
# --------------------------------------------------------------------------------------------

Report = InvestigationReport | DisclosureAccounting | RelayReport


def _t(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _s(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _pos(p: LedgerPosition) -> dict[str, JsonValue]:
    return {"log_id": p.log_id, "origin": p.origin, "leaf_index": p.leaf_index}


def _event_ref(e: EventRef) -> dict[str, JsonValue]:
    return {"event_id": str(e.event_id), "time": _t(e.event_time), "ledger": _pos(e.position)}


def _strs(values: Iterable[str]) -> list[JsonValue]:
    return [str(v) for v in values]


def _dstats(s: DurationStats | None) -> JsonValue:
    if s is None:
        return None
    return {
        "count": s.count,
        "median_seconds": _s(s.median),
        "p90_seconds": _s(s.p90),
        "max_seconds": _s(s.max),
    }


def to_json(report: Report) -> dict[str, JsonValue]:
    """The report as JSON-safe data (times ISO 8601 UTC, durations in seconds)."""
    if isinstance(report, InvestigationReport):
        return _investigation_json(report)
    if isinstance(report, DisclosureAccounting):
        return _disclosures_json(report)
    if isinstance(report, RelayReport):
        return _relays_json(report)
    raise MalformedInputError(f"not a report: {type(report).__name__}")


def _investigation_json(r: InvestigationReport) -> dict[str, JsonValue]:
    s = r.scope
    return {
        "report": "breach-investigation",
        "scope": {
            "start": _t(s.start),
            "end": _t(s.end),
            "users": _strs(s.users),
            "facility": s.facility,
            "network_addresses": _strs(s.network_addresses),
        },
        "notification": {
            "threshold": r.threshold,
            "individuals": r.individuals,
            "unknown_state": r.unknown_state,
            "hhs_contemporaneous_notice": r.hhs_contemporaneous_notice,
            "hhs_rule": f"45 CFR 164.408(b): {r.threshold} or more individuals, all states "
            "together; otherwise the annual log of 164.408(c)",
            "media_notice_states": _strs(x.state for x in r.states if x.media_notice),
            "media_rule": f"45 CFR 164.406(a): more than {r.threshold} residents of one "
            "State or jurisdiction",
        },
        "states": [
            {
                "state": x.state,
                "residents": x.residents,
                "media_notice": x.media_notice,
                "media_notice_possible": x.media_notice_possible,
            }
            for x in r.states
        ],
        "patients": [
            {
                "patient_id": p.patient_id,
                "issuer": p.issuer,
                "state": p.state,
                "other_states": _strs(p.other_states),
                "first_access": _t(p.first_access),
                "last_access": _t(p.last_access),
                "phi_kinds": _strs(p.phi_kinds),
                "events": p.events,
                "users": _strs(p.users),
                "facilities": _strs(p.facilities),
            }
            for p in r.patients
        ],
        "attempted_only": [{"patient_id": p.id, "issuer": p.issuer} for p in r.attempted_only],
        "timeline": [
            {
                "event_id": str(e.event_id),
                "time": _t(e.event_time),
                "kind": e.kind,
                "ledger": _pos(e.position),
                "covered": e.covered,
                "completed": e.completed,
                "user_id": e.user_id,
                "user_role": e.user_role,
                "facility_id": e.facility_id,
                "patient_id": e.patient_id,
                "patient_issuer": e.patient_issuer,
                "dicom_event_id": e.dicom_event_id,
                "event_type_code": e.event_type_code,
                "action": e.action,
                "outcome": e.outcome,
                "study_uid": e.study_uid,
                "network_address": e.network_address,
                "purpose_of_use": e.purpose_of_use,
                "phi_kinds": _strs(e.phi_kinds),
            }
            for e in r.timeline
        ],
        "checkpoints": [
            {"log_id": c.log_id, "origin": c.origin, "size": c.size, "note": c.note}
            for c in r.checkpoints
        ],
        "uncovered_events": r.uncovered_events,
    }


def _disclosure_json(e: DisclosureEntry) -> dict[str, JsonValue]:
    return {
        "date": _t(e.disclosed_at),
        "recipient": {
            "name": e.recipient_name,
            "address": e.recipient_address,
            "organization": e.recipient_organization,
        },
        "description": e.description,
        "purpose": e.purpose,
        "purpose_code": e.purpose_code,
        "citation": e.citation,
        "needs_review": e.needs_review,
        "count": e.count,
        "last_date": _t(e.last_disclosed_at),
        "sources": [_event_ref(x) for x in e.sources],
    }


def _disclosures_json(a: DisclosureAccounting) -> dict[str, JsonValue]:
    return {
        "report": "accounting-of-disclosures",
        "patient": {"id": a.patient.id, "issuer": a.patient.issuer},
        "requested_at": _t(a.requested_at),
        "period_start": _t(a.period_start),
        "needs_review": a.needs_review,
        "entries": [_disclosure_json(e) for e in a.entries],
        "excluded": [
            {
                "source": _event_ref(x.source),
                "purpose_code": x.purpose_code,
                "reason": x.reason,
            }
            for x in a.excluded
        ],
    }


def _relays_json(r: RelayReport) -> dict[str, JsonValue]:
    return {
        "report": "critical-result-relays",
        "start": _t(r.start),
        "end": _t(r.end),
        "as_of": _t(r.now),
        "deadlines_seconds": {c: _s(d) for c, d in r.deadlines},
        "relays": r.relays,
        "categories": [
            {
                "category": c.category,
                "deadline_seconds": _s(c.deadline),
                "relays": c.relays,
                "communicated": c.communicated,
                "acknowledged": c.acknowledged,
                "on_time": c.on_time,
                "late": c.late,
                "overdue": c.overdue,
                "pending": c.pending,
                "no_read_back": c.no_read_back,
                "identified_to_communicated": _dstats(c.identified_to_communicated),
                "identified_to_acknowledged": _dstats(c.identified_to_acknowledged),
            }
            for c in r.categories
        ],
        "exceptions": [
            {
                "event_id": str(x.event_id),
                "ledger": _pos(x.position),
                "superseded": _strs(str(u) for u in x.superseded),
                "category": x.category,
                "facility_id": x.facility_id,
                "patient_id": x.patient_id,
                "patient_issuer": x.patient_issuer,
                "study_uid": x.study_uid,
                "sender_user_id": x.sender_user_id,
                "recipient": {"name": x.recipient_name, "role": x.recipient_role},
                "method": x.method,
                "identified_at": _t(x.identified_at),
                "communicated_at": _t(x.communicated_at),
                "acknowledged_at": _t(x.acknowledged_at),
                "deadline_seconds": _s(x.deadline),
                "delay_seconds": _s(x.delay),
                "attempts": x.attempts,
                "issues": _strs(x.issues),
            }
            for x in r.exceptions
        ],
    }


#: A cell starting with one of these is run as a formula by spreadsheet programs (OWASP
#: "CSV injection"); such cells get a leading apostrophe.
_FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return out.getvalue()


def to_csv(report: Report) -> str:
    """One CSV table (RFC 4180, CRLF): an investigation's patients, an accounting's entries,
    or a relay report's exceptions. Formula-like cells are prefixed with an apostrophe."""
    if isinstance(report, InvestigationReport):
        return _csv(
            (
                "patient_id",
                "issuer",
                "state",
                "other_states",
                "first_access",
                "last_access",
                "phi_kinds",
                "events",
                "users",
                "facilities",
            ),
            (
                (
                    p.patient_id,
                    p.issuer,
                    p.state,
                    ";".join(p.other_states),
                    _t(p.first_access),
                    _t(p.last_access),
                    ";".join(p.phi_kinds),
                    p.events,
                    ";".join(p.users),
                    ";".join(p.facilities),
                )
                for p in report.patients
            ),
        )
    if isinstance(report, DisclosureAccounting):
        return _csv(
            (
                "date",
                "recipient_name",
                "recipient_address",
                "recipient_organization",
                "description",
                "purpose",
                "purpose_code",
                "count",
                "last_date",
                "needs_review",
                "event_ids",
                "ledger_positions",
            ),
            (
                (
                    _t(e.disclosed_at),
                    e.recipient_name,
                    e.recipient_address,
                    e.recipient_organization,
                    e.description,
                    e.purpose,
                    e.purpose_code,
                    e.count,
                    _t(e.last_disclosed_at),
                    "yes" if e.needs_review else "no",
                    ";".join(str(s.event_id) for s in e.sources),
                    ";".join(f"{s.position.origin}#{s.position.leaf_index}" for s in e.sources),
                )
                for e in report.entries
            ),
        )
    if isinstance(report, RelayReport):
        return _csv(
            (
                "event_id",
                "origin",
                "leaf_index",
                "category",
                "facility_id",
                "patient_id",
                "issuer",
                "study_uid",
                "sender",
                "recipient",
                "recipient_role",
                "method",
                "identified_at",
                "communicated_at",
                "acknowledged_at",
                "deadline_seconds",
                "delay_seconds",
                "attempts",
                "issues",
            ),
            (
                (
                    x.event_id,
                    x.position.origin,
                    x.position.leaf_index,
                    x.category,
                    x.facility_id,
                    x.patient_id,
                    x.patient_issuer,
                    x.study_uid,
                    x.sender_user_id,
                    x.recipient_name,
                    x.recipient_role,
                    x.method,
                    _t(x.identified_at),
                    _t(x.communicated_at),
                    _t(x.acknowledged_at),
                    _s(x.deadline),
                    _s(x.delay),
                    x.attempts,
                    ";".join(x.issues),
                )
                for x in report.exceptions
            ),
        )
    raise MalformedInputError(f"not a report: {type(report).__name__}")


_HTML_STYLE: Final = """
body{font-family:Georgia,serif;margin:2em auto;max-width:60em;color:#111}
h1{font-size:1.4em}table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{border:1px solid #555;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#eee}.ref{font-family:monospace;font-size:.75em;color:#444}
.draft{border:2px solid #a00;color:#a00;padding:.5em;margin:1em 0}
@media print{.draft{border-color:#000;color:#000}}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _day(value: datetime) -> str:
    return value.date().isoformat()


def to_html(accounting: DisclosureAccounting) -> str:
    """The accounting as a printable, self-contained HTML page (no scripts, no external
    resources; a CSP forbids both). Every value is HTML-escaped. The excluded disclosures
    are not shown: they are the privacy officer's worksheet (``to_json``), not the
    individual's accounting. A page with entries needing review is marked DRAFT."""
    if not isinstance(accounting, DisclosureAccounting):
        raise MalformedInputError("to_html renders an accounting of disclosures")
    a = accounting
    patient = a.patient.id if a.patient.issuer is None else f"{a.patient.id} ({a.patient.issuer})"
    rows = []
    for e in a.entries:
        recipient = (
            "<br>".join(_e(v) for v in (e.recipient_name, e.recipient_organization) if v)
            or "Not recorded"
        )
        date_cell = _e(_day(e.disclosed_at))
        if e.count > 1:
            date_cell += (
                f"<br>{_e(e.count)} disclosures, the last on {_e(_day(e.last_disclosed_at))}"
            )
        refs = "<br>".join(
            f"{_e(s.event_id)} @ {_e(s.position.origin)}#{_e(s.position.leaf_index)}"
            for s in e.sources
        )
        rows.append(
            "<tr>"
            f"<td>{date_cell}</td><td>{recipient}</td>"
            f"<td>{_e(e.recipient_address) or 'Not recorded'}</td>"
            f"<td>{_e(e.description)}</td><td>{_e(e.purpose)}</td>"
            f'<td class="ref">{refs}</td>'
            "</tr>"
        )
    body = (
        "\n".join(rows)
        if rows
        else '<tr><td colspan="6">No disclosures to account for in this period.</td></tr>'
    )
    n = a.needs_review
    draft = (
        f'<p class="draft">DRAFT: {_e(n)} {"entry needs" if n == 1 else "entries need"} '
        "review by the privacy officer before this accounting is released.</p>\n"
        if n
        else ""
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        "<title>Accounting of disclosures of protected health information</title>\n"
        f"<style>{_HTML_STYLE}</style>\n</head>\n<body>\n"
        "<h1>Accounting of disclosures of protected health information</h1>\n"
        f"{draft}"
        f"<p>Patient: {_e(patient)}<br>"
        f"Period: {_e(_day(a.period_start))} to {_e(_day(a.requested_at))}<br>"
        f"Requested: {_e(a.requested_at.isoformat())}</p>\n"
        "<table>\n<thead><tr><th>Date</th><th>Recipient</th><th>Address</th>"
        "<th>Information disclosed</th><th>Purpose</th><th>Ledger reference</th></tr></thead>\n"
        f"<tbody>\n{body}\n</tbody>\n</table>\n"
        "<p>This accounting lists disclosures of your protected health information made in the "
        "period above, as 45 CFR 164.528 requires. It does not list disclosures for treatment, "
        "payment or health care operations, disclosures to you or made with your "
        "authorization, or the other disclosures 45 CFR 164.528(a)(1) excepts. Each ledger "
        "reference identifies the audit record, which can be verified against the signed "
        "audit log.</p>\n"
        "</body>\n</html>\n"
    )
