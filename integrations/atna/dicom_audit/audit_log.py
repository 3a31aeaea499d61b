"""Map an Audit Log Used message (EventID 110101) to ``AuditLogUsed`` values: one, or one
per patient a foreign message names.

Invariant: the role 13 object's ParticipantObjectID (a path or URL) gives the query's path
and parameters. A message this package wrote carries the method, status and results in
its ledger object; a foreign one has none, so it is a ``GET`` with the status of its
outcome (200 / 400 / 500).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from integrations.atna.dicom_audit.context import MessageContext
from integrations.atna.dicom_audit.fields import split_patient_id
from integrations.atna.dicom_audit.identity import LedgerObject, unmappable
from integrations.atna.dicom_audit.model import ParticipantObject
from producers import AuditLogUsed, EventOutcome, LedgerQuery, Patient
from schemas import dicom

__all__ = ["audit_log_used"]

#: HTTP status a foreign Audit Log Used message stands for, by outcome.
_STATUS_OF_OUTCOME: Final[Mapping[EventOutcome, int]] = MappingProxyType(
    {
        EventOutcome.SUCCESS: 200,
        EventOutcome.MINOR_FAILURE: 400,
        EventOutcome.SERIOUS_FAILURE: 500,
        EventOutcome.MAJOR_FAILURE: 500,
    }
)


def audit_log_used(ctx: MessageContext) -> tuple[AuditLogUsed, ...]:
    """The event of an Audit Log Used message: one, or one per patient when a foreign
    message names several (an ``AuditLogUsed`` names at most one)."""
    msg, ledger, outcome, patients = ctx.msg, ctx.ledger, ctx.outcome, ctx.patients
    logs = [o for o in msg.objects if o.role == dicom.ROLE_SECURITY_RESOURCE]
    if not logs:
        raise unmappable(
            "invalid_event",
            "Audit Log Used needs the audit log as a participant object (role 13)",
            "ParticipantObjectIdentification",
        )
    if ledger is not None and len(patients) > 1:
        raise unmappable("ambiguous_objects", "a message with the ledger object is one event")
    if ledger is not None:
        query = _written_query(logs[0], ledger, outcome)
    else:
        query = _foreign_query(logs[0], outcome)
    state = None if ledger is None else ledger.get("patient-state")
    targets: list[ParticipantObject | None] = list(patients) or [None]
    events: list[AuditLogUsed] = []
    for index, obj in enumerate(targets):
        patient: Patient | None = None
        if obj is not None:
            pid, issuer = split_patient_id(obj)
            patient = Patient(id=pid, issuer=issuer, state=state)
        log_used = AuditLogUsed(
            event_time=msg.event_time,
            facility=ctx.facility,
            actor=ctx.actor,
            query=query,
            outcome=outcome,
            network_address=ctx.network,
            patient=patient,
        )
        log_used = replace(
            log_used,
            event_id=ctx.event_id(index),
            producer_id=ctx.producer_id,
            producer_seq=ctx.producer_seq,
        )
        events.append(ctx.checked(log_used))
    return tuple(events)


def _written_query(
    log: ParticipantObject, ledger: LedgerObject, outcome: EventOutcome
) -> LedgerQuery:
    status = ledger.integer("query-status")
    return LedgerQuery(
        method=ledger.get("query-method") or "GET",
        path=log.object_id,
        status=status if status is not None else _STATUS_OF_OUTCOME[outcome],
        parameters=MappingProxyType(dict(ledger.pairs.get("query-parameter", []))),
        results=ledger.integer("query-results"),
    )


def _foreign_query(log: ParticipantObject, outcome: EventOutcome) -> LedgerQuery:
    ident = log.object_id
    if ident.startswith("/"):
        path, _, query = ident.partition("?")
    elif "://" in ident:
        parts = urlsplit(ident)
        path, query = parts.path or "/", parts.query
    else:
        raise unmappable(
            "invalid_event",
            "the audit log's ParticipantObjectID is neither a path nor a URL",
            "ParticipantObjectIdentification@ParticipantObjectID",
        )
    parameters: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        parameters.setdefault(key, value)
    return LedgerQuery(
        method="GET",
        path=path,
        status=_STATUS_OF_OUTCOME[outcome],
        parameters=MappingProxyType(parameters),
        results=None,
    )
