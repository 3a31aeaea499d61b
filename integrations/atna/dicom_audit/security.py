"""Map a security message (login, logout, emergency override, ...) to ``SecurityEvent`` values.

Invariant: a message this package wrote is a ``SecurityEvent`` if and only if its ledger
object says so; a foreign one when its EventID is in ``schemas.dicom.SECURITY_EVENT_IDS``
and it does not name both a patient and a study. It gives one event per patient named, or
one that names none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from types import MappingProxyType

from integrations.atna.dicom_audit.context import MessageContext
from integrations.atna.dicom_audit.fields import (
    details_of,
    purpose_of,
    split_patient_id,
    type_code_of,
)
from integrations.atna.dicom_audit.identity import LedgerObject, unmappable
from integrations.atna.dicom_audit.model import (
    MAX_DETAIL,
    SECURITY_SCHEMA,
    AuditMessage,
    ParticipantObject,
)
from producers import EventAction, Patient, SecurityEvent
from schemas import dicom

__all__ = ["is_security", "security_events"]


def is_security(
    code: str,
    ledger: LedgerObject | None,
    patients: Sequence[ParticipantObject],
    studies: Sequence[ParticipantObject],
) -> bool:
    """Whether the message is a ``SecurityEvent``. A message this module wrote says so in
    its ledger object; a foreign one is when its EventID is a security one and it does not
    name both a patient and a study (then it records access to that study's images, e.g.
    under an emergency override, and is a ``PhiAccessEvent``)."""
    if ledger is not None:
        return ledger.get("event-schema") == SECURITY_SCHEMA
    return code in dicom.SECURITY_EVENT_IDS and not (patients and studies)


def security_events(
    ctx: MessageContext, studies: list[ParticipantObject]
) -> tuple[SecurityEvent, ...]:
    """One event per patient named (an emergency override of several records), or one that
    names none (a login). Studies named without a patient go to ``details["study_uids"]``."""
    msg, ledger = ctx.msg, ctx.ledger
    found = details_of(msg, ledger, ctx.requestor, ctx.keep_producer)
    template = SecurityEvent(
        event_time=msg.event_time,
        producer_id=ctx.producer_id,
        producer_seq=ctx.producer_seq,
        facility=ctx.facility,
        actor=ctx.actor,
        dicom_event_id=msg.event_id.code,
        event_type_code=type_code_of(msg, ledger, found),
        action=_security_action(msg),
        outcome=ctx.outcome,
        network_address=ctx.network,
        purpose_of_use=purpose_of(msg, found),
    )
    if studies and ledger is None:
        uids = ",".join(o.object_id for o in studies)
        found["study_uids"] = uids if len(uids) <= MAX_DETAIL else uids[: MAX_DETAIL - 1] + "…"
    if ledger is not None and len(ctx.patients) > 1:
        raise unmappable("ambiguous_objects", "a message with the ledger object is one event")
    state = None if ledger is None else ledger.get("patient-state")
    targets: list[ParticipantObject | None] = list(ctx.patients) or [None]
    events: list[SecurityEvent] = []
    for index, obj in enumerate(targets):
        patient: Patient | None = None
        if obj is not None:
            pid, issuer = split_patient_id(obj)
            patient = Patient(id=pid, issuer=issuer, state=state)
        event = replace(
            template,
            event_id=ctx.event_id(index),
            patient=patient,
            details=MappingProxyType(dict(found)),
        )
        events.append(ctx.checked(event))
    return tuple(events)


def _security_action(msg: AuditMessage) -> EventAction:
    """EventActionCode; PS3.15 A.5.3 fixes it to E for every security EventID, so a message
    without one is taken as E."""
    if msg.action is None:
        return EventAction.EXECUTE
    try:
        return EventAction(msg.action)
    except ValueError as exc:
        raise unmappable(
            "invalid_event",
            f"EventActionCode {msg.action[:8]!r} is not C, R, U, D or E",
            "EventIdentification@EventActionCode",
        ) from exc
