"""What the proxy records: one immutable ``DicomOperation`` per DIMSE operation, handed to
an ``OperationRecorder``.

Invariant: a ``DicomOperation`` is a plain value (frozen, slotted, keyword-only; tuples,
not lists; aware UTC times); it says what was asked (criteria, patients and studies named
in the request) apart from what was disclosed or received (patients and studies in the
responses, retrieved or stored datasets), and the status the proxy answered. It is not a
ledger event: ``ledgerrecorder.LedgerRecorder`` turns it into one
(docs/design/dicom-audit-mapping.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = [
    "DicomOperation",
    "OperationKind",
    "OperationRecorder",
    "PatientRef",
    "SubOperations",
]


class OperationKind(enum.StrEnum):
    """The DIMSE-C service of an operation."""

    ECHO = "C-ECHO"
    FIND = "C-FIND"
    MOVE = "C-MOVE"
    GET = "C-GET"
    STORE = "C-STORE"


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class PatientRef:
    """A patient as DICOM names one: Patient ID (0010,0020) and, when present, Issuer of
    Patient ID (0010,0021)."""

    patient_id: str
    issuer: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubOperations:
    """The C-STORE sub-operation counts of a C-GET or C-MOVE final response."""

    completed: int = 0
    failed: int = 0
    warning: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DicomOperation:
    """One DIMSE operation seen by the proxy, from request to final response."""

    kind: OperationKind
    #: SOP Class UID of the presentation context (the information model for C-FIND,
    #: C-MOVE and C-GET; the stored instance's SOP class for C-STORE).
    sop_class_uid: str
    #: Calling AE title (the peer) and the called AE title it sent (the proxy's, or the
    #: association would have been rejected).
    calling_ae: str
    called_ae: str
    peer_address: str
    peer_port: int
    tls: bool
    #: Subject of the peer's certificate (RFC 4514 style) when it presented one.
    peer_certificate_subject: str | None
    #: Query/Retrieve Level (0008,0052) of the identifier; ``None`` for a worklist
    #: query, C-ECHO and C-STORE.
    query_level: str | None = None
    #: Matching keys of the identifier with a value: (keyword or dotted path, value).
    criteria: tuple[tuple[str, str], ...] = ()
    #: Patients and studies the request itself names.
    requested_patients: tuple[PatientRef, ...] = ()
    requested_studies: tuple[str, ...] = ()
    #: Patients and studies disclosed (C-FIND responses, C-GET/C-MOVE instances) or
    #: received (C-STORE dataset).
    result_patients: tuple[PatientRef, ...] = ()
    result_studies: tuple[str, ...] = ()
    #: Each result patient with the studies of theirs in the same responses or datasets
    #: (first-seen order, each once): what a ledger event lists as disclosed.
    result_sets: tuple[tuple[PatientRef, tuple[str, ...]], ...] = ()
    #: Number of C-FIND pending responses, or of instances fetched for C-GET/C-MOVE.
    result_count: int = 0
    move_destination: str | None = None
    #: The final DIMSE status the proxy answered; ``None`` when the association ended
    #: before a final response (abort, or refusal by abort).
    status: int | None = None
    sub_operations: SubOperations | None = None
    #: Why the proxy itself failed or refused the operation (``upstream_unavailable``,
    #: ``move_destination_unknown``, ``recorder_unavailable``, ``aborted``, ...); ``None``
    #: when the answer is the upstream's.
    proxy_error: str | None = None
    started_at: datetime
    ended_at: datetime


class OperationRecorder(Protocol):
    """Where the proxy hands each operation. ``record`` must not block (it runs on the
    association's thread, before the final answer goes out); it raises
    ``RecorderUnavailable`` when it cannot take the operation."""

    def record(self, op: DicomOperation) -> None: ...
