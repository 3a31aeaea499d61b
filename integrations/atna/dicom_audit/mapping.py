"""Map a parsed audit message to ledger events: dispatch by event type, and PHI access.

Invariant: ``map_audit_message`` is a pure function of the message, its bytes and its
arguments; it returns events that passed ``producers.validate`` (unless ``check=False``)
or raises ``AtnaUnmappableError``. EventID 110101 goes to ``audit_log``, a security
message to ``security``, any other to ``PhiAccessEvent`` values here: per patient and
study, or one Query whose patients are its result set (``resultset``).
docs/design/dicom-audit-mapping.md has the mapping field by field.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from types import MappingProxyType

from integrations.atna.dicom_audit.audit_log import audit_log_used
from integrations.atna.dicom_audit.context import MessageContext, message_context
from integrations.atna.dicom_audit.fields import (
    details_of,
    is_study,
    purpose_of,
    recipient_of,
    split_patient_id,
    study_of,
    type_code_of,
)
from integrations.atna.dicom_audit.identity import LedgerObject, unmappable
from integrations.atna.dicom_audit.model import (
    MAX_DETAIL,
    AuditMessage,
    MappedEvent,
    ParticipantObject,
)
from integrations.atna.dicom_audit.resultset import foreign_result, written_result
from integrations.atna.dicom_audit.security import is_security, security_events
from integrations.atna.dicom_audit.transport import foreign_transport, written_transport
from producers import EventAction, Patient, PhiAccessEvent
from schemas import dicom

__all__ = ["map_audit_message"]


def map_audit_message(
    msg: AuditMessage,
    payload: bytes,
    *,
    default_facility: str | None = None,
    keep_producer: bool = False,
    now: datetime | None = None,
    check: bool = True,
) -> tuple[MappedEvent, ...]:
    """The events of one parsed message (``payload`` = its bytes, for the event ids).

    Every returned event passed ``producers.events.validate`` (producer fields aside
    unless ``keep_producer``); raises ``AtnaUnmappableError`` otherwise. ``check=False``
    skips that validation, for a caller that hands the events to ``Emitter.emit``, which
    validates them anyway (``EventValidationError``).
    """
    code = msg.event_id
    if code.system != dicom.DCM or code.code not in dicom.EVENT_IDS:
        raise unmappable(
            "unsupported_event",
            f"EventID {code.system}|{code.code} is not a DICOM EventID (DCM 110100-110114)",
            "EventIdentification/EventID",
        )
    ctx = message_context(
        msg,
        payload,
        default_facility=default_facility,
        keep_producer=keep_producer,
        now=now,
        check=check,
    )
    if code.code == dicom.AUDIT_LOG_USED:
        return audit_log_used(ctx)
    studies = [o for o in msg.objects if is_study(o)]
    if is_security(code.code, ctx.ledger, ctx.patients, studies):
        return security_events(ctx, studies)
    return _phi_access_events(ctx, studies)


def _phi_access_events(
    ctx: MessageContext, studies: list[ParticipantObject]
) -> tuple[PhiAccessEvent, ...]:
    """A message this package wrote: its one event. A foreign Query that names no patient
    or several: one event, its patients the result set. Otherwise one event per study of
    the one patient (or one without a study), or one per patient when several are named
    (their studies, whose is not stated, listed in ``details["study_uids"]``)."""
    msg, ledger, patients = ctx.msg, ctx.ledger, ctx.patients
    code = msg.event_id.code
    found = details_of(msg, ledger, ctx.requestor, ctx.keep_producer)
    template = PhiAccessEvent(
        event_time=msg.event_time,
        producer_id=ctx.producer_id,
        producer_seq=ctx.producer_seq,
        facility=ctx.facility,
        actor=ctx.actor,
        dicom_event_id=code,
        event_type_code=type_code_of(msg, ledger, found),
        action=_phi_action(msg),
        outcome=ctx.outcome,
        patient=None,
        network_address=ctx.network,
        purpose_of_use=purpose_of(msg, found),
        recipient=recipient_of(msg, ledger, ctx.requestor),
        transport=foreign_transport(msg) if ledger is None else written_transport(ledger),
    )
    if ledger is not None:
        return (_written_event(ctx, ledger, template, found, studies),)
    if code == dicom.QUERY and len(patients) != 1:
        result = foreign_result(patients)
        study = None
        if len(studies) == 1 and not patients:
            study = study_of(studies[0], None)
        elif studies:
            found["study_uids"] = _study_uids(studies)
        event = replace(
            template,
            event_id=ctx.event_id(0),
            study=study,
            details=MappingProxyType(found),
            disclosed=result.disclosed,
            disclosed_truncated=result.truncated,
            disclosed_total=result.total,
        )
        return (ctx.checked(event),)
    if not patients:
        raise unmappable(
            "no_patient",
            f"EventID {code} ({dicom.EVENT_IDS[code]}) names no patient and is not a Query",
        )
    if len(patients) > 1 and studies:
        found["study_uids"] = _study_uids(studies)
    events: list[PhiAccessEvent] = []
    for index, (patient_obj, study_obj) in enumerate(_patient_study_pairs(patients, studies)):
        pid, issuer = split_patient_id(patient_obj)
        event = replace(
            template,
            event_id=ctx.event_id(index),
            patient=Patient(id=pid, issuer=issuer),
            study=None if study_obj is None else study_of(study_obj, None),
            details=MappingProxyType(dict(found)),
        )
        events.append(ctx.checked(event))
    return tuple(events)


def _written_event(
    ctx: MessageContext,
    ledger: LedgerObject,
    template: PhiAccessEvent,
    found: dict[str, str],
    studies: list[ParticipantObject],
) -> PhiAccessEvent:
    """The one event of a message this package wrote (its ledger object says the rest)."""
    if len(studies) > 1:
        raise unmappable("ambiguous_objects", "a message with the ledger object is one event")
    result = written_result(ledger, ctx.patients)
    event = replace(
        template,
        event_id=ctx.event_id(0),
        patient=result.patient,
        study=study_of(studies[0], ledger) if studies else None,
        details=MappingProxyType(found),
        disclosed=result.disclosed,
        disclosed_truncated=result.truncated,
        disclosed_total=result.total,
    )
    return ctx.checked(event)


def _study_uids(studies: list[ParticipantObject]) -> str:
    """The studies of a message that does not say whose they are, as one detail."""
    uids = ",".join(o.object_id for o in studies)
    return uids if len(uids) <= MAX_DETAIL else uids[: MAX_DETAIL - 1] + "…"


def _phi_action(msg: AuditMessage) -> EventAction:
    """EventActionCode, which a PHI access message must have."""
    action_text = msg.action
    if action_text is None:
        raise unmappable(
            "invalid_event", "EventActionCode is required", "EventIdentification@EventActionCode"
        )
    try:
        return EventAction(action_text)
    except ValueError as exc:
        raise unmappable(
            "invalid_event",
            f"EventActionCode {action_text[:8]!r} is not C, R, U, D or E",
            "EventIdentification@EventActionCode",
        ) from exc


def _patient_study_pairs(
    patients: tuple[ParticipantObject, ...], studies: list[ParticipantObject]
) -> list[tuple[ParticipantObject, ParticipantObject | None]]:
    """One patient: one pair per study (or one without). Several: one each, no study."""
    if len(patients) == 1:
        return [(patients[0], s) for s in studies] or [(patients[0], None)]
    return [(p, None) for p in patients]
