"""From a ``DicomOperation`` to the PhiAccessEvent (v3) that records it in the ledger.

Invariant: ``event_of`` is a pure function of the operation and the facility (the event id
is fresh): it returns an event the producer's rules accept -- values the rules would
refuse (an over-long patient id, a study UID that is not a UID) are left out and counted
in ``details`` -- with the criteria of a request but never the content of an answer
(only which patients and studies it disclosed). The mapping and why: docs/design/
dicom-audit-mapping.md ("The DICOM proxy's operations").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from integrations.dicomproxy.operations import DicomOperation, OperationKind, PatientRef
from producers import (
    Actor,
    DisclosedPatient,
    EventAction,
    EventOutcome,
    Facility,
    Patient,
    PhiAccessEvent,
    Recipient,
    Study,
    Transport,
    TransportChannel,
)

__all__ = ["AE_ROLE", "MAX_QUERY_KEYS", "event_of", "outcome_of"]

#: The actor role of a DICOM application entity (as the Orthanc plugin records a C-STORE's).
AE_ROLE: Final = "dicom-application-entity"
QUERY: Final = "110112"
TRANSFERRED: Final = "110104"
#: Most criteria kept in ``details`` (``query.<keyword>``); the rest are counted.
MAX_QUERY_KEYS: Final = 40
#: Most patients and study UIDs listed in ``disclosed`` (the ledger's bounds) ...
_MAX_PATIENTS: Final = 1000
_MAX_STUDIES: Final = 1000
#: ... and most bytes of their ids, so that the encoded event stays under 60,000 bytes
#: with the criteria (at most 40 x ~300 bytes) and the rest of the event.
_DISCLOSED_BUDGET: Final = 34_000
_UID: Final = re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*")
_CN: Final = re.compile(r"(?:^|,)\s*CN=((?:[^,\\]|\\.)+)", re.IGNORECASE)


def event_of(op: DicomOperation, facility: Facility) -> PhiAccessEvent:
    """The ledger event recording ``op``."""
    details = _details(op)
    named = _patient(op)
    disclosed, truncated, total = _disclosed(op, details)
    study = _study(op)
    event_id, action = _event_id_and_action(op, named, disclosed)
    recipient = None
    if op.kind is OperationKind.MOVE and op.move_destination:
        recipient = Recipient(name=op.move_destination)
    return PhiAccessEvent(
        facility=facility,
        actor=_actor(op),
        dicom_event_id=event_id,
        action=action,
        patient=named,
        outcome=outcome_of(op.status),
        study=study,
        network_address=op.peer_address,
        recipient=recipient,
        details=details,
        disclosed=disclosed,
        disclosed_truncated=truncated,
        disclosed_total=total if truncated else None,
        # The workstation's association with the proxy: TLS or plain DICOM, always known.
        transport=Transport.of(TransportChannel.DICOM_TLS if op.tls else TransportChannel.DICOM),
        event_time=op.started_at,
    )


def _event_id_and_action(
    op: DicomOperation, named: Patient | None, disclosed: tuple[DisclosedPatient, ...]
) -> tuple[str, EventAction]:
    """C-FIND and C-ECHO: Query (E). C-GET, C-MOVE: Instances Transferred (R); C-STORE:
    Instances Transferred (C). An operation that names and discloses no patient is a
    Query whatever its service (the ledger's rule: nothing else may name nobody)."""
    if op.kind in (OperationKind.FIND, OperationKind.ECHO) or (named is None and not disclosed):
        return QUERY, EventAction.EXECUTE
    if op.kind is OperationKind.STORE:
        return TRANSFERRED, EventAction.CREATE
    return TRANSFERRED, EventAction.READ


def outcome_of(status: int | None) -> EventOutcome:
    """DIMSE status -> DICOM EventOutcomeIndicator: success 0; warning or cancel 4 (the
    operation ended, partly done); failure, refusal or no final response 8."""
    if status == 0x0000:
        return EventOutcome.SUCCESS
    if status is not None and (
        status in (0x0001, 0x0107, 0x0116, 0xFE00) or 0xB000 <= status <= 0xBFFF
    ):
        return EventOutcome.MINOR_FAILURE
    return EventOutcome.SERIOUS_FAILURE


def user_of(op: DicomOperation) -> str:
    """The actor's user id: the CN of the client certificate when mutual TLS
    authenticated the peer, else the calling AE title."""
    subject = op.peer_certificate_subject
    if subject:
        found = _CN.search(subject)
        cn = found.group(1).replace("\\", "").strip() if found else subject.strip()
        if _storable(cn):
            return cn
    return op.calling_ae


def _actor(op: DicomOperation) -> Actor:
    return Actor(user_id=user_of(op), role=AE_ROLE)


def _storable(text: str | None, limit: int = 256) -> bool:
    return bool(text) and text is not None and len(text) <= limit and text.isprintable()


def _patient_of(ref: PatientRef) -> Patient | None:
    if not _storable(ref.patient_id) or (ref.issuer is not None and not _storable(ref.issuer)):
        return None
    return Patient(id=ref.patient_id, issuer=ref.issuer)


def _patient(op: DicomOperation) -> Patient | None:
    """The patient the request names (exactly one; a C-FIND wildcard names nobody), or
    for a C-STORE the stored one."""
    refs = op.result_patients if op.kind is OperationKind.STORE else op.requested_patients
    if len(refs) != 1:
        return None
    if op.kind is OperationKind.FIND and any(c in refs[0].patient_id for c in "*?"):
        return None
    return _patient_of(refs[0])


def _uids(uids: Iterable[str]) -> list[str]:
    return [u for u in uids if len(u) <= 64 and _UID.fullmatch(u)]


def _study(op: DicomOperation) -> Study | None:
    """The one study the request names (a C-STORE: the stored instance's)."""
    source = op.result_studies if op.kind is OperationKind.STORE else op.requested_studies
    if op.kind in (OperationKind.GET, OperationKind.MOVE) and not source:
        source = op.result_studies
    uids = _uids(source)
    if len(source) != 1 or len(uids) != 1:
        return None
    if op.kind is OperationKind.STORE:
        return Study(uid=uids[0], sop_classes=(op.sop_class_uid,), instances=1)
    if op.kind in (OperationKind.GET, OperationKind.MOVE):
        return Study(uid=uids[0], instances=op.result_count)
    return Study(uid=uids[0])


def _disclosed(
    op: DicomOperation, details: dict[str, str]
) -> tuple[tuple[DisclosedPatient, ...], bool, int]:
    """The patients the answer returned (C-FIND responses, C-GET/C-MOVE instances) with
    their studies, canonical; the first ones in answer order that fit the bounds."""
    if op.kind not in (OperationKind.FIND, OperationKind.GET, OperationKind.MOVE):
        return (), False, 0
    kept: list[DisclosedPatient] = []
    studies = size = dropped = 0
    valid = [(p, s) for ref, s in op.result_sets if (p := _patient_of(ref)) is not None]
    dropped = len(op.result_sets) - len(valid)
    for patient, uids in valid:
        good = sorted(set(_uids(uids)))
        cost = len(patient.id) + len(patient.issuer or "") + 8 + sum(len(u) + 2 for u in good)
        full = len(kept) >= _MAX_PATIENTS or studies + len(good) > _MAX_STUDIES
        if full or size + cost > _DISCLOSED_BUDGET:
            if kept:
                break
            good = good[: max(0, min(_MAX_STUDIES, (_DISCLOSED_BUDGET - 300) // 66))]
            details["disclosed_studies_cut"] = "true"
        kept.append(DisclosedPatient(id=patient.id, issuer=patient.issuer, studies=tuple(good)))
        studies += len(good)
        size += cost
    if dropped:
        details["unrecordable_patients"] = str(dropped)
    kept.sort(key=lambda d: d.sort_key)
    total = len(valid)
    return tuple(kept), total > len(kept), total


def _details(op: DicomOperation) -> dict[str, str]:
    """What DICOM said besides patients and studies: AE titles, TLS, SOP class, level,
    criteria (``query.<keyword>``), status, counts. Never a response's content."""
    d = {
        "dimse": op.kind.value,
        "calling_ae": op.calling_ae,
        "called_ae": op.called_ae,
        "peer_port": str(op.peer_port),
        "tls": "true" if op.tls else "false",
        "sop_class": op.sop_class_uid,
        "status": "none" if op.status is None else f"0x{op.status:04X}",
    }
    if op.peer_certificate_subject and _storable(op.peer_certificate_subject, 1024):
        d["tls_subject"] = op.peer_certificate_subject
    if op.query_level:
        d["query_level"] = op.query_level[:64]
    if op.proxy_error:
        d["proxy_error"] = op.proxy_error
    if op.move_destination:
        d["move_destination"] = op.move_destination
    if op.kind is not OperationKind.ECHO:
        d["result_count"] = str(op.result_count)
    if op.sub_operations is not None:
        s = op.sub_operations
        d["sub_operations"] = f"completed={s.completed} failed={s.failed} warning={s.warning}"
    criteria = [(k, v) for k, v in op.criteria if _storable(k, 200) and "\x00" not in v]
    for keyword, value in criteria[:MAX_QUERY_KEYS]:
        d[f"query.{keyword}"] = value
    if len(op.criteria) > MAX_QUERY_KEYS or len(criteria) < len(op.criteria):
        d["query_keys"] = str(len(op.criteria))
    return d
