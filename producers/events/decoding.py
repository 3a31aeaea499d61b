"""From Avro records back to events: the inverse of ``records.to_record``.

Invariant: ``from_record(schema_name(e), to_record(e)) == e`` for every event; a record
that is not the shape of its schema raises ``KeyError``, ``TypeError`` or ``ValueError``
(the codec turns them into ``DecodeError``), never builds a partial event.
"""

from __future__ import annotations

from types import MappingProxyType

from producers.events.model import (
    AcrCategory,
    Actor,
    AttemptOutcome,
    AuditEvent,
    AuditLogUsed,
    CriticalResultRelay,
    DisclosedPatient,
    DisclosedRange,
    EventAction,
    EventOutcome,
    Facility,
    LedgerQuery,
    Patient,
    PhiAccessEvent,
    Recipient,
    RelayAttempt,
    RelayMethod,
    RelayRecipient,
    SecurityEvent,
    Study,
    Transport,
    TransportChannel,
)
from producers.events.readers import instant as _t
from producers.events.readers import integer as _int
from producers.events.readers import optional_instant as _ot
from producers.events.readers import optional_text as _os
from producers.events.readers import record_at as _d
from producers.events.readers import text as _s
from producers.events.readers import uuid_at as _uuid
from producers.events.records import (
    ACCESS_SCHEMA_NAME,
    AUDIT_LOG_USED_SCHEMA_NAME,
    RELAY_SCHEMA_NAME,
    SECURITY_SCHEMA_NAME,
    Record,
)


def from_record(full_name: str, record: Record) -> AuditEvent:
    """The event for a decoded Avro record of the named schema."""
    facility = _d(record, "facility")
    if full_name == AUDIT_LOG_USED_SCHEMA_NAME:
        return _audit_log_used(record, facility)
    if full_name == SECURITY_SCHEMA_NAME:
        return _security(record, facility)
    patient = record.get("patient")
    if full_name != ACCESS_SCHEMA_NAME or patient is not None:
        patient = _d(record, "patient")  # a relay names its patient; v1 access events too
    common = {
        "event_id": _uuid(record, "event_id"),
        "event_time": _t(record, "event_time"),
        "producer_id": _s(record, "producer_id"),
        "producer_seq": _int(record, "producer_seq"),
        "facility": Facility(id=_s(facility, "id"), name=_os(facility, "name")),
        "patient": _patient_from(patient) if isinstance(patient, dict) else None,
    }
    if full_name == ACCESS_SCHEMA_NAME:
        return _access(record, common)
    if full_name == RELAY_SCHEMA_NAME:
        return _relay(record, common)
    raise KeyError(f"no event type for schema {full_name}")


def _audit_log_used(record: Record, facility: Record) -> AuditLogUsed:
    actor = _d(record, "actor")
    query = _d(record, "query")
    patient = record.get("patient")
    parameters = query.get("parameters") or {}
    results = query.get("results")
    if not isinstance(parameters, dict) or (results is not None and not isinstance(results, int)):
        raise TypeError("query is malformed")
    return AuditLogUsed(
        facility=Facility(id=_s(facility, "id"), name=_os(facility, "name")),
        actor=_actor_from(actor),
        query=LedgerQuery(
            method=_s(query, "method"),
            path=_s(query, "path"),
            status=_int(query, "status"),
            parameters=MappingProxyType({str(k): str(v) for k, v in parameters.items()}),
            results=results,
        ),
        outcome=EventOutcome(_s(record, "outcome")),
        network_address=_os(record, "network_address"),
        patient=_patient_from(patient) if isinstance(patient, dict) else None,
        disclosed=_disclosed_from(record.get("disclosed")),
        disclosed_coarsened=record.get("disclosed_coarsened") is True,
        event_id=_uuid(record, "event_id"),
        event_time=_t(record, "event_time"),
        producer_id=_s(record, "producer_id"),
        producer_seq=_int(record, "producer_seq"),
    )


def _security(record: Record, facility: Record) -> SecurityEvent:
    patient = record.get("patient")
    details = record.get("details") or {}
    if not isinstance(details, dict):
        raise TypeError("details is not a map")
    return SecurityEvent(
        facility=Facility(id=_s(facility, "id"), name=_os(facility, "name")),
        actor=_actor_from(_d(record, "actor")),
        dicom_event_id=_s(record, "dicom_event_id"),
        event_type_code=_os(record, "event_type_code"),
        action=EventAction(_s(record, "action")),
        outcome=EventOutcome(_s(record, "outcome")),
        network_address=_os(record, "network_address"),
        patient=_patient_from(patient) if isinstance(patient, dict) else None,
        purpose_of_use=_os(record, "purpose_of_use"),
        details=MappingProxyType({str(k): str(v) for k, v in details.items()}),
        event_id=_uuid(record, "event_id"),
        event_time=_t(record, "event_time"),
        producer_id=_s(record, "producer_id"),
        producer_seq=_int(record, "producer_seq"),
    )


def _access(record: Record, common: dict[str, object]) -> PhiAccessEvent:
    study = record.get("study")
    recipient = record.get("recipient")
    details = record.get("details") or {}
    if not isinstance(details, dict):
        raise TypeError("details is not a map")
    disclosed, truncated, total = _disclosed_patients_from(record)
    return PhiAccessEvent(
        actor=_actor_from(_d(record, "actor")),
        dicom_event_id=_s(record, "dicom_event_id"),
        event_type_code=_os(record, "event_type_code"),
        action=EventAction(_s(record, "action")),
        outcome=EventOutcome(_s(record, "outcome")),
        study=_study_from(study) if isinstance(study, dict) else None,
        network_address=_os(record, "network_address"),
        purpose_of_use=_os(record, "purpose_of_use"),
        recipient=Recipient(
            name=_s(recipient, "name"),
            address=_os(recipient, "address"),
            organization=_os(recipient, "organization"),
        )
        if isinstance(recipient, dict)
        else None,
        details=MappingProxyType({str(k): str(v) for k, v in details.items()}),
        disclosed=disclosed,
        disclosed_truncated=truncated,
        disclosed_total=total,
        transport=_transport_from(record.get("transport")),
        **common,  # type: ignore[arg-type]
    )


def _disclosed_patients_from(
    record: Record,
) -> tuple[tuple[DisclosedPatient, ...], bool, int | None]:
    """Schema v2's result set (a v1 record has none): patients, truncation, total."""
    raw = record.get("disclosed") or []
    if not isinstance(raw, list):
        raise TypeError("disclosed is not a list")
    patients: list[DisclosedPatient] = []
    for p in raw:
        studies = p.get("studies") or []
        if not isinstance(studies, list):
            raise TypeError("disclosed studies are not a list")
        patients.append(
            DisclosedPatient(
                id=_s(p, "id"),
                issuer=_os(p, "issuer"),
                state=_os(p, "state"),
                studies=tuple(str(uid) for uid in studies),
            )
        )
    truncated = record.get("disclosed_truncated") is True
    total = record.get("disclosed_total")
    if total is not None and not isinstance(total, int):
        raise TypeError("disclosed_total is not an integer")
    # Lossless for valid records: an untruncated total is the list's length.
    return tuple(patients), truncated, total if truncated else None


def _transport_from(raw: object) -> Transport | None:
    """Schema v3's ``transport``; a v1 or v2 record has none."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TypeError("transport is not a record")
    encrypted = raw.get("encrypted")
    if encrypted is not None and not isinstance(encrypted, bool):
        raise TypeError("transport.encrypted is not a boolean")
    return Transport(channel=TransportChannel(_s(raw, "channel")), encrypted=encrypted)


def _relay(record: Record, common: dict[str, object]) -> CriticalResultRelay:
    recipient = _d(record, "recipient")
    attempts = record.get("attempts") or []
    if not isinstance(attempts, list):
        raise TypeError("attempts is not an array")
    return CriticalResultRelay(
        category=AcrCategory(_s(record, "category")),
        finding=_os(record, "finding"),
        study=_study_from(_d(record, "study")),
        identified_at=_t(record, "identified_at"),
        communicated_at=_ot(record, "communicated_at"),
        acknowledged_at=_ot(record, "acknowledged_at"),
        sender=_actor_from(_d(record, "sender")),
        recipient=RelayRecipient(
            name=_s(recipient, "name"), role=_s(recipient, "role"), npi=_os(recipient, "npi")
        ),
        method=RelayMethod(_s(record, "method")),
        read_back=bool(record["read_back"]),
        attempts=tuple(
            RelayAttempt(
                at=_t(a, "at"),
                method=RelayMethod(_s(a, "method")),
                outcome=AttemptOutcome(_s(a, "outcome")),
                note=_os(a, "note"),
            )
            for a in attempts
        ),
        **common,  # type: ignore[arg-type]
    )


def _actor_from(r: Record) -> Actor:
    return Actor(
        user_id=_s(r, "user_id"),
        name=_os(r, "name"),
        role=_s(r, "role"),
        organization=_os(r, "organization"),
        npi=_os(r, "npi"),
    )


def _patient_from(r: Record) -> Patient:
    return Patient(id=_s(r, "id"), issuer=_os(r, "issuer"), state=_os(r, "state"))


def _study_from(r: Record) -> Study:
    sops = r.get("sop_classes") or []
    instances = r.get("instances")
    if not isinstance(sops, list) or (instances is not None and not isinstance(instances, int)):
        raise TypeError("study is malformed")
    return Study(
        uid=_s(r, "uid"),
        accession=_os(r, "accession"),
        modality=_os(r, "modality"),
        sop_classes=tuple(str(x) for x in sops),
        instances=instances,
    )


def _disclosed_from(raw: object) -> tuple[DisclosedRange, ...]:
    """Schema v2's ``disclosed`` as ranges; a v1 record has none."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise TypeError("disclosed is not a list")
    out: list[DisclosedRange] = []
    for entry in raw:
        ranges = entry["ranges"]
        if not isinstance(ranges, list):
            raise TypeError("disclosed ranges are not a list")
        log = _s(entry, "log")
        out += [DisclosedRange(log=log, start=_int(r, "start"), end=_int(r, "end")) for r in ranges]
    return tuple(out)
