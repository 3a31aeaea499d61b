"""The Avro record mapping of events: schema names, ``to_record`` and the Kafka key.

Invariant: ``to_record`` is lossless (``codec.from_record`` inverts it) and builds the
record shape that ``validation.validate_record`` checks and the codec encodes.
"""

from __future__ import annotations

from typing import Final

from producers.events.model import (
    Actor,
    AuditEvent,
    AuditLogUsed,
    CriticalResultRelay,
    DisclosedPatient,
    DisclosedRange,
    Patient,
    PhiAccessEvent,
    SecurityEvent,
    Study,
    Transport,
)

#: Avro record types are plain dicts; the alias keeps signatures honest.
Record = dict[str, object]

ACCESS_SCHEMA_NAME: Final = "philedger.audit.PhiAccessEvent"
RELAY_SCHEMA_NAME: Final = "philedger.audit.CriticalResultRelay"


AUDIT_LOG_USED_SCHEMA_NAME: Final = "philedger.audit.AuditLogUsed"
SECURITY_SCHEMA_NAME: Final = "philedger.audit.SecurityEvent"


def schema_name(event: AuditEvent) -> str:
    """The Avro full name of the event's record type."""
    if isinstance(event, PhiAccessEvent):
        return ACCESS_SCHEMA_NAME
    if isinstance(event, CriticalResultRelay):
        return RELAY_SCHEMA_NAME
    if isinstance(event, SecurityEvent):
        return SECURITY_SCHEMA_NAME
    return AUDIT_LOG_USED_SCHEMA_NAME


def _actor(a: Actor) -> Record:
    return {
        "user_id": a.user_id,
        "name": a.name,
        "role": a.role,
        "organization": a.organization,
        "npi": a.npi,
    }


def _patient(p: Patient) -> Record:
    return {"id": p.id, "issuer": p.issuer, "state": p.state}


def _study(s: Study) -> Record:
    return {
        "uid": s.uid,
        "accession": s.accession,
        "modality": s.modality,
        "sop_classes": list(s.sop_classes),
        "instances": s.instances,
    }


def _disclosed(ranges: tuple[DisclosedRange, ...]) -> list[Record]:
    by_log: dict[str, list[Record]] = {}
    for r in ranges:
        by_log.setdefault(r.log, []).append({"start": r.start, "end": r.end})
    return [{"log": log, "ranges": items} for log, items in by_log.items()]


def event_key(event: AuditEvent) -> str:
    """The Kafka message key of an event: one patient's events stay in one partition (an
    event that names no patient is keyed by its user, ``user|<user id>``)."""
    if isinstance(event, AuditLogUsed | SecurityEvent | PhiAccessEvent):
        return event.key
    return event.patient.key


def to_record(event: AuditEvent) -> Record:
    """The Avro record (plain dict) for an event."""
    if isinstance(event, AuditLogUsed):
        return _audit_log_used(event)
    if isinstance(event, SecurityEvent):
        return _security(event)
    if isinstance(event, PhiAccessEvent):
        return _access(event)
    return _relay(event)


def _head(event: AuditEvent) -> Record:
    """The fields every record starts with: identity, time, producer and facility."""
    return {
        "event_id": event.event_id,
        "event_time": event.event_time,
        "producer_id": event.producer_id,
        "producer_seq": event.producer_seq,
        "facility": {"id": event.facility.id, "name": event.facility.name},
    }


def _audit_log_used(event: AuditLogUsed) -> Record:
    q = event.query
    return _head(event) | {
        "actor": _actor(event.actor),
        "outcome": event.outcome.value,
        "network_address": event.network_address,
        "query": {
            "method": q.method,
            "path": q.path,
            "parameters": dict(q.parameters),
            "status": q.status,
            "results": q.results,
        },
        "patient": None if event.patient is None else _patient(event.patient),
        "disclosed": _disclosed(event.disclosed),
        "disclosed_coarsened": event.disclosed_coarsened,
    }


def _security(event: SecurityEvent) -> Record:
    return _head(event) | {
        "actor": _actor(event.actor),
        "dicom_event_id": event.dicom_event_id,
        "event_type_code": event.event_type_code,
        "action": event.action.value,
        "outcome": event.outcome.value,
        "network_address": event.network_address,
        "patient": None if event.patient is None else _patient(event.patient),
        "purpose_of_use": event.purpose_of_use,
        "details": dict(event.details),
    }


def _disclosed_patients(patients: tuple[DisclosedPatient, ...]) -> list[Record]:
    return [
        {"id": p.id, "issuer": p.issuer, "state": p.state, "studies": list(p.studies)}
        for p in patients
    ]


def _access(event: PhiAccessEvent) -> Record:
    total = event.disclosed_total
    return _head(event) | {
        "patient": None if event.patient is None else _patient(event.patient),
        "actor": _actor(event.actor),
        "dicom_event_id": event.dicom_event_id,
        "event_type_code": event.event_type_code,
        "action": event.action.value,
        "outcome": event.outcome.value,
        "study": None if event.study is None else _study(event.study),
        "network_address": event.network_address,
        "purpose_of_use": event.purpose_of_use,
        "recipient": None
        if event.recipient is None
        else {
            "name": event.recipient.name,
            "address": event.recipient.address,
            "organization": event.recipient.organization,
        },
        "details": dict(event.details),
        "disclosed": _disclosed_patients(event.disclosed),
        "disclosed_truncated": event.disclosed_truncated,
        "disclosed_total": len(event.disclosed) if total is None else total,
        "transport": None if event.transport is None else _transport(event.transport),
    }


def _transport(t: Transport) -> Record:
    return {"channel": t.channel.value, "encrypted": t.encrypted}


def _relay(event: CriticalResultRelay) -> Record:
    return _head(event) | {
        "patient": _patient(event.patient),
        "category": event.category.value,
        "finding": event.finding,
        "study": _study(event.study),
        "identified_at": event.identified_at,
        "communicated_at": event.communicated_at,
        "acknowledged_at": event.acknowledged_at,
        "sender": _actor(event.sender),
        "recipient": {
            "name": event.recipient.name,
            "role": event.recipient.role,
            "npi": event.recipient.npi,
        },
        "method": event.method.value,
        "read_back": event.read_back,
        "attempts": [
            {"at": a.at, "method": a.method.value, "outcome": a.outcome.value, "note": a.note}
            for a in event.attempts
        ],
    }
