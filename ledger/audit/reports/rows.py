"""Typed inputs of the reports: what the adapter decodes from the leaves.

Invariant: a row carries its ledger position (log origin and leaf index), so every
event a report names can be proven against the Merkle log; patient ids are validated on
construction and are unique only within their issuer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from ledger.audit.query import LedgerPosition
from ledger.audit.reports.checks import check_text

#: Event kinds of the index (``events.kind``).
KIND_ACCESS: Final = "phi_access"
KIND_RELAY: Final = "critical_result_relay"
KIND_LEDGER_READ: Final = "audit_log_used"
KIND_SECURITY: Final = "security_event"


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientRef:
    """A patient: an id is unique only within its issuer (assigning authority)."""

    id: str
    issuer: str | None = None

    def __post_init__(self) -> None:
        check_text("patient id", self.id)
        if self.issuer is not None:
            check_text("patient issuer", self.issuer)


@dataclass(frozen=True, slots=True, kw_only=True)
class StudyRef:
    """The study an event names (DICOM ParticipantObject type 2, role 3)."""

    uid: str
    accession: str | None = None
    modality: str | None = None
    sop_classes: tuple[str, ...] = ()
    instances: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DisclosedRef:
    """A patient an access's answer returned (PhiAccessEvent v2 ``disclosed``): the state
    of residence when the answer carried it, and the UIDs of the studies it returned."""

    id: str
    issuer: str | None = None
    state: str | None = None
    studies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_text("disclosed patient id", self.id)
        if self.issuer is not None:
            check_text("disclosed patient issuer", self.issuer)


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

    A PHI access (schema v2) may name no patient and list the patients its answer
    returned in ``disclosed``; ``disclosed_total`` is how many the answer returned when
    the list was truncated (None: as many as listed).
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
    #: The patients the answer returned (PhiAccessEvent v2), canonical order.
    disclosed: tuple[DisclosedRef, ...] = ()
    #: How many patients the answer returned, when more than ``disclosed`` lists.
    disclosed_total: int | None = None

    @property
    def unlisted(self) -> int:
        """How many patients the answer returned beyond those listed (0: none)."""
        if self.disclosed_total is None:
            return 0
        return max(self.disclosed_total - len(self.disclosed), 0)


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
    """A signed checkpoint a report was computed against: the note verbatim, as stored,
    with its root hash (hex) and the key ids that signed it (``name+hash``)."""

    log_id: int
    origin: str
    size: int
    note: str
    root_hash: str = ""
    key_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRef:
    """An event by id, time and ledger position."""

    event_id: uuid.UUID
    event_time: datetime
    position: LedgerPosition


def event_ref(row: AccessRow) -> EventRef:
    return EventRef(event_id=row.event_id, event_time=row.event_time, position=row.position)


def order_key(row: AccessRow) -> tuple[datetime, str, int]:
    return (row.event_time, row.position.origin, row.position.leaf_index)
