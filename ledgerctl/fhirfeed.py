"""FHIR AuditEvent ingestion for the API: mapped by the producer library, sent through Kafka.

Invariant: a posted AuditEvent reaches the ledger only the way any producer's event
does (validated, emitted to Kafka or spooled); a transaction Bundle is all or
nothing (nothing is emitted unless every entry maps); a batch answers per entry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from integrations.fhir import events_from_fhir
from ledger.audit.fhir import (
    EntryOutcome,
    Issue,
    Resource,
    batch_response_bundle,
    operation_outcome,
)
from producers.emitter import Emitter
from producers.errors import EventValidationError, ProducerError

logger = logging.getLogger(__name__)


def _invalid(exc: EventValidationError) -> Issue:
    return Issue(severity="error", code="invalid", diagnostics=str(exc), expression=exc.field)


class EmitterFhirSubmitter:
    """``FhirSubmitter`` on the API's emitter (the events are stamped with its producer id)."""

    def __init__(self, emitter: Emitter) -> None:
        self._emitter = emitter

    async def submit(self, document: Mapping[str, object]) -> tuple[int, Resource]:
        try:
            submission = events_from_fhir(document)
        except EventValidationError as exc:
            return 400, operation_outcome([_invalid(exc)])
        if submission.kind == "transaction" and not submission.ok:
            issues = [_invalid(r.error) for r in submission.results if r.error is not None]
            return 400, operation_outcome(issues)
        outcomes: list[EntryOutcome] = []
        for result in submission.results:
            if result.event is None or result.error is not None:
                error = result.error or EventValidationError("not mapped", field="AuditEvent")
                outcomes.append(EntryOutcome(status="400 Bad Request", issues=(_invalid(error),)))
                continue
            try:
                await self._emitter.emit(result.event)
            except EventValidationError as exc:
                outcomes.append(EntryOutcome(status="400 Bad Request", issues=(_invalid(exc),)))
                continue
            except ProducerError as exc:
                logger.error("cannot emit a posted AuditEvent: %s", type(exc).__name__)
                issue = Issue(
                    severity="error",
                    code="transient",
                    diagnostics="the event could not be queued for the ledger; retry",
                )
                if submission.kind == "resource":
                    return 503, operation_outcome([issue])
                outcomes.append(EntryOutcome(status="503 Service Unavailable", issues=(issue,)))
                continue
            outcomes.append(
                EntryOutcome(status="201 Created", location=f"AuditEvent/{result.event.event_id}")
            )
        if submission.kind == "resource":
            only = outcomes[0]
            if only.status.startswith("201"):
                note = Issue(
                    severity="information",
                    code="informational",
                    diagnostics=f"accepted as {only.location}; readable once the ledger "
                    "has appended and signed it",
                )
                return 201, operation_outcome([note])
            return 400, operation_outcome(list(only.issues))
        return 200, batch_response_bundle(outcomes, transaction=submission.kind == "transaction")
