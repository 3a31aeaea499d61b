"""Map a parsed audit message to ledger events: dispatch by event type, and PHI access.

Invariant: ``map_audit_message`` is a pure function of the message, its bytes and its
arguments; it returns events that passed ``producers.validate`` (unless ``check=False``)
or raises ``AtnaUnmappableError``. EventID 110101 goes to ``audit_log``, a security
message to ``security``, any other to a ``PhiAccessEvent`` per patient and study here.
docs/design/dicom-audit-mapping.md has the mapping field by field.
"""

from __future__ import annotations

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
from integrations.atna.dicom_audit.identity import unmappable
from integrations.atna.dicom_audit.model import AuditMessage, MappedEvent, ParticipantObject
from integrations.atna.dicom_audit.security import is_security, security_events
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
        return (audit_log_used(ctx),)
    studies = [o for o in msg.objects if is_study(o)]
    if is_security(code.code, ctx.ledger, ctx.patients, studies):
        return security_events(ctx, studies)
    return _phi_access_events(ctx, studies)


def _phi_access_events(
    ctx: MessageContext, studies: list[ParticipantObject]
) -> tuple[PhiAccessEvent, ...]:
    """One event per study of the one patient (or one without a study), or one per patient
    when several are named without a study."""
    msg, ledger, patients = ctx.msg, ctx.ledger, ctx.patients
    code = msg.event_id.code
    _check_objects(code, patients, studies)
    action = _phi_action(msg)
    found = details_of(msg, ledger, ctx.requestor, ctx.keep_producer)
    type_code = type_code_of(msg, ledger, found)
    purpose = purpose_of(msg, found)
    details = MappingProxyType(found)
    recipient = recipient_of(msg, ledger, ctx.requestor)
    pairs = _patient_study_pairs(patients, studies)
    if ledger is not None and len(pairs) > 1:
        raise unmappable("ambiguous_objects", "a message with the ledger object is one event")
    state = None if ledger is None else ledger.get("patient-state")
    events: list[PhiAccessEvent] = []
    for index, (patient_obj, study_obj) in enumerate(pairs):
        pid, issuer = split_patient_id(patient_obj)
        event = PhiAccessEvent(
            event_id=ctx.event_id(index),
            event_time=msg.event_time,
            producer_id=ctx.producer_id,
            producer_seq=ctx.producer_seq,
            facility=ctx.facility,
            actor=ctx.actor,
            dicom_event_id=code,
            event_type_code=type_code,
            action=action,
            outcome=ctx.outcome,
            patient=Patient(id=pid, issuer=issuer, state=state),
            study=None if study_obj is None else study_of(study_obj, ledger),
            network_address=ctx.network,
            purpose_of_use=purpose,
            recipient=recipient,
            details=details,
        )
        events.append(ctx.checked(event))
    return tuple(events)


def _check_objects(
    code: str, patients: tuple[ParticipantObject, ...], studies: list[ParticipantObject]
) -> None:
    """A PHI access names a patient, and says whose each study is."""
    if not patients:
        raise unmappable(
            "no_patient",
            f"EventID {code} ({dicom.EVENT_IDS[code]}) names no patient; PhiAccessEvent needs one",
        )
    if len(patients) > 1 and studies:
        raise unmappable(
            "ambiguous_objects",
            f"{len(patients)} patients and {len(studies)} studies: which study is whose "
            "is not stated",
        )


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
    if len(patients) == 1:
        return [(patients[0], s) for s in studies] or [(patients[0], None)]
    return [(p, None) for p in patients]
