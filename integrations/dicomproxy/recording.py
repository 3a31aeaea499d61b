"""From an association and a request to a ``DicomOperation``, and the recorder gate.

Invariants: ``Draft`` collects the facts of one operation as they become known and
``finish`` turns them into one immutable ``DicomOperation`` (times are aware UTC);
``Gate.admit`` hands an operation to the recorder and says whether the proxy may answer:
always in fail-open mode (a lost record is logged at ERROR, without PHI), only when
the recorder took it in fail-closed mode. A recorder that raises anything but
``RecorderUnavailable`` is treated the same way (and logged with its traceback).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydicom.dataset import Dataset

from integrations.dicomproxy.errors import RecorderUnavailable
from integrations.dicomproxy.identifiers import (
    criteria_of,
    patients_of,
    query_level_of,
    studies_of,
    unique,
)
from integrations.dicomproxy.operations import (
    DicomOperation,
    OperationKind,
    OperationRecorder,
    PatientRef,
    SubOperations,
)
from integrations.dicomproxy.tls import certificate_subject

__all__ = ["Draft", "Gate", "Peer", "identifier_of"]

logger = logging.getLogger(__name__)


def now() -> datetime:
    return datetime.now(UTC)


def identifier_of(event: Any) -> Dataset | None:
    """The request's identifier, fully decoded, or ``None`` when it cannot be (a hostile
    or broken identifier: the caller refuses the operation and records why)."""
    try:
        identifier = event.identifier
        criteria_of(identifier)  # decodes every element, sequences included
    except Exception as exc:
        # The exception's type only: its text may quote element values (PHI).
        logger.warning(
            "undecodable identifier from %s (%s)", event.assoc.requestor.address, type(exc).__name__
        )
        return None
    return identifier if isinstance(identifier, Dataset) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """Who is on the other end of an inbound association."""

    calling_ae: str
    called_ae: str
    address: str
    port: int
    tls: bool
    certificate_subject: str | None

    @classmethod
    def of(cls, assoc: Any) -> Peer:
        requestor = assoc.requestor
        primitive = getattr(requestor, "primitive", None)
        called = getattr(primitive, "called_ae_title", None) or assoc.acceptor.ae_title
        sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
        tls, subject = certificate_subject(sock)
        return cls(
            calling_ae=str(requestor.ae_title).strip(),
            called_ae=str(called).strip(),
            address=str(requestor.address),
            port=int(requestor.port),
            tls=tls,
            certificate_subject=subject,
        )


@dataclass(slots=True)
class Draft:
    """The facts of one operation in progress (mutable, owned by one thread)."""

    kind: OperationKind
    sop_class_uid: str
    peer: Peer
    started_at: datetime = field(default_factory=now)
    query_level: str | None = None
    criteria: tuple[tuple[str, str], ...] = ()
    requested_patients: tuple[PatientRef, ...] = ()
    requested_studies: tuple[str, ...] = ()
    result_patients: list[PatientRef] = field(default_factory=list)
    result_studies: list[str] = field(default_factory=list)
    #: Result patient -> their studies (dicts as ordered sets).
    result_sets: dict[PatientRef, dict[str, None]] = field(default_factory=dict)
    result_count: int = 0
    move_destination: str | None = None
    proxy_error: str | None = None

    def request(self, identifier: Dataset | None) -> Draft:
        """Note what a C-FIND, C-GET or C-MOVE identifier asks for."""
        self.query_level = query_level_of(identifier)
        self.criteria = criteria_of(identifier)
        self.requested_patients = patients_of(identifier)
        self.requested_studies = studies_of(identifier)
        return self

    def result(self, dataset: Dataset | None) -> None:
        """Note a response identifier, or a retrieved or stored dataset."""
        self.result_count += 1
        patients, studies = patients_of(dataset), studies_of(dataset)
        self.result_patients.extend(patients)
        self.result_studies.extend(studies)
        for patient in patients:
            self.result_sets.setdefault(patient, {}).update(dict.fromkeys(studies))

    def finish(
        self, status: int | None, sub_operations: SubOperations | None = None
    ) -> DicomOperation:
        p = self.peer
        return DicomOperation(
            kind=self.kind,
            sop_class_uid=self.sop_class_uid,
            calling_ae=p.calling_ae,
            called_ae=p.called_ae,
            peer_address=p.address,
            peer_port=p.port,
            tls=p.tls,
            peer_certificate_subject=p.certificate_subject,
            query_level=self.query_level,
            criteria=self.criteria,
            requested_patients=self.requested_patients,
            requested_studies=self.requested_studies,
            result_patients=unique(self.result_patients),
            result_studies=unique(self.result_studies),
            result_sets=tuple((p, tuple(s)) for p, s in self.result_sets.items()),
            result_count=self.result_count,
            move_destination=self.move_destination,
            status=status,
            sub_operations=sub_operations,
            proxy_error=self.proxy_error,
            started_at=self.started_at,
            ended_at=now(),
        )


class Gate:
    """Hands operations to the recorder and applies the fail-open/fail-closed choice."""

    def __init__(self, recorder: OperationRecorder, *, fail_closed: bool) -> None:
        self._recorder = recorder
        self.fail_closed = fail_closed
        self._lock = threading.Lock()
        #: Operations refused (fail-closed) or answered without a record (fail-open).
        self.refused = 0
        self.lost = 0

    def admit(self, op: DicomOperation) -> bool:
        """Record ``op``; True when the proxy may give its answer."""
        try:
            self._recorder.record(op)
            return True
        except RecorderUnavailable as exc:
            reason = str(exc) or "recorder unavailable"
        except Exception as exc:
            logger.exception("the operation recorder failed")
            reason = f"recorder error: {type(exc).__name__}"
        what = f"{op.kind} from {op.calling_ae}@{op.peer_address}:{op.peer_port}"
        with self._lock:
            if self.fail_closed:
                self.refused += 1
            else:
                self.lost += 1
        if self.fail_closed:
            logger.error("refusing %s: it cannot be recorded (%s)", what, reason)
            return False
        logger.error("fail-open: answering %s without a record (%s)", what, reason)
        return True
