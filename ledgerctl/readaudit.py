"""The API's read recorder: each read of the ledger becomes an AuditLogUsed event.

Invariant: ``record`` returns only once the producer library accepted the event
(handed to Kafka, or fsynced in the API's own spool when Kafka is unreachable); if
it cannot, it raises ``UnavailableError`` and the API withholds its answer.
"""

from __future__ import annotations

import logging

from ledger.audit.readlog import LedgerRead
from ledger.errors import UnavailableError
from producers.emitter import Emitter
from producers.errors import ProducerError
from producers.events import (
    Actor,
    AuditLogUsed,
    DisclosedRange,
    EventOutcome,
    Facility,
    LedgerQuery,
    Patient,
)

logger = logging.getLogger(__name__)


def outcome_of(status: int) -> EventOutcome:
    if status < 400:
        return EventOutcome.SUCCESS
    if status < 500:
        return EventOutcome.MINOR_FAILURE
    return EventOutcome.SERIOUS_FAILURE


def audit_event(read: LedgerRead, *, ledger_name: str) -> AuditLogUsed:
    return AuditLogUsed(
        event_id=read.read_id,
        event_time=read.at,
        facility=Facility(id=ledger_name, name="PHI audit ledger API"),
        actor=Actor(user_id=read.subject, role=read.role),
        query=LedgerQuery(
            method=read.method,
            path=read.path,
            status=read.status,
            parameters=read.parameters,
            results=read.results,
        ),
        outcome=outcome_of(read.status),
        network_address=read.client,
        patient=None
        if read.patient_id is None
        else Patient(id=read.patient_id, issuer=read.patient_issuer),
        disclosed=tuple(
            DisclosedRange(log=r.origin, start=r.start, end=r.end) for r in read.disclosed.ranges
        ),
        disclosed_coarsened=read.disclosed.coarsened,
    )


class EmitterReadRecorder:
    """``ReadRecorder`` on top of the producer library's emitter (and its spool)."""

    def __init__(self, emitter: Emitter, *, ledger_name: str) -> None:
        self._emitter = emitter
        self._ledger_name = ledger_name

    async def record(self, read: LedgerRead) -> None:
        try:
            await self._emitter.emit(audit_event(read, ledger_name=self._ledger_name))
        except ProducerError as exc:
            # The class name only: the message may quote request values.
            logger.error("cannot record a read of the ledger: %s", type(exc).__name__)
            raise UnavailableError("this read of the ledger cannot be recorded; retry") from exc
