"""The context every event type is mapped from: the shared fields, mapped once.

Invariant: ``message_context`` maps the fields in a fixed order, so the first failure
names the reason; ``MessageContext.checked`` validates an event as the emitter would
(producer fields aside unless ``keep_producer``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from integrations.atna.dicom_audit.fields import (
    actor_of,
    facility_of,
    find_requestor,
    is_patient,
    network_of,
    outcome_of,
    producer_of,
)
from integrations.atna.dicom_audit.identity import (
    LedgerObject,
    event_id_for,
    is_ledger,
    unmappable,
)
from integrations.atna.dicom_audit.model import (
    AuditMessage,
    MappedEvent,
    Participant,
    ParticipantObject,
)
from producers import Actor, EventOutcome, EventValidationError, Facility, validate

__all__ = ["MessageContext", "check_event", "message_context"]

_E = TypeVar("_E", bound=MappedEvent)


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageContext:
    """What every event type takes from one message (``message_context``)."""

    msg: AuditMessage
    payload: bytes
    ledger: LedgerObject | None
    requestor: Participant
    outcome: EventOutcome
    producer_id: str | None
    producer_seq: int | None
    facility: Facility
    actor: Actor
    network: str | None
    patients: tuple[ParticipantObject, ...]
    keep_producer: bool
    now: datetime | None
    check: bool

    def event_id(self, index: int = 0) -> uuid.UUID:
        """The id of the ``index``-th event: the ledger object's, else derived."""
        if self.ledger is not None:
            return self.ledger.event_id
        return event_id_for(self.payload, index)

    def checked(self, event: _E) -> _E:
        """``event``, validated unless the caller leaves that to the emitter."""
        if self.check:
            check_event(event, self.now)
        return event


def message_context(
    msg: AuditMessage,
    payload: bytes,
    *,
    default_facility: str | None,
    keep_producer: bool,
    now: datetime | None,
    check: bool,
) -> MessageContext:
    ledgers = [o for o in msg.objects if is_ledger(o)]
    if len(ledgers) > 1:
        raise unmappable("ambiguous_objects", "more than one ledger object")
    ledger = LedgerObject(ledgers[0]) if ledgers else None
    requestor = find_requestor(msg)
    outcome = outcome_of(msg)
    producer_id, producer_seq = producer_of(msg, ledger, keep_producer)
    facility = facility_of(msg, ledger, default_facility)
    actor = actor_of(requestor, ledger)
    network = network_of(msg, requestor)
    patients = tuple(o for o in msg.objects if is_patient(o) and o.object_id != "<none>")
    return MessageContext(
        msg=msg,
        payload=payload,
        ledger=ledger,
        requestor=requestor,
        outcome=outcome,
        producer_id=producer_id,
        producer_seq=producer_seq,
        facility=facility,
        actor=actor,
        network=network,
        patients=patients,
        keep_producer=keep_producer,
        now=now,
        check=check,
    )


def check_event(event: MappedEvent, now: datetime | None) -> None:
    probe = event
    if event.producer_id is None or event.producer_seq is None:
        probe = replace(event, producer_id="atna-receiver", producer_seq=0)
    try:
        validate(probe, now=now)
    except EventValidationError as exc:
        raise unmappable("invalid_event", str(exc), exc.field) from exc
