"""The consumer's projection of an event onto the ledger's ``events`` index columns.

Invariant: ``index_fields`` / ``event_index`` compute each column from the validated record
alone. The verifier's ``ledger.verify.projection.project_event`` computes the same columns
on its own, on purpose: the verifier must not trust the code it checks. Neither imports
the other; ``tests/unit/test_projections_agree.py`` holds them equal for every event kind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final, TypedDict, cast

from ledger.audit import disclosure
from ledger.audit.ingest import IndexFields
from producers.events import (
    ACCESS_SCHEMA_NAME,
    AUDIT_LOG_USED_SCHEMA_NAME,
    SECURITY_SCHEMA_NAME,
    AuditEvent,
    Record,
    schema_name,
    to_record,
)
from producers.registry import REGISTRY_SCHEMA_NAME, RegistryChange, registry_to_record


class _Head(TypedDict):
    event_id: uuid.UUID
    event_time: datetime
    producer_id: str
    producer_seq: int
    facility_id: str


class _People(TypedDict):
    patient_id: str | None
    patient_issuer: str | None
    patient_state: str | None
    user_id: str
    user_name: str | None
    user_role: str | None
    user_org: str | None


def _head(record: Record) -> _Head:
    return _Head(
        event_id=cast(uuid.UUID, record["event_id"]),
        event_time=cast(datetime, record["event_time"]).astimezone(UTC),
        producer_id=cast(str, record["producer_id"]),
        producer_seq=cast(int, record["producer_seq"]),
        facility_id=cast(str, cast(Record, record["facility"])["id"]),
    )


def _people(record: Record, user_field: str) -> _People:
    """The user (``actor`` or ``sender``) and the patient, if the event names one."""
    user = cast(Record, record[user_field])
    patient = cast("Record | None", record.get("patient")) or {}
    return _People(
        patient_id=cast("str | None", patient.get("id")),
        patient_issuer=cast("str | None", patient.get("issuer")),
        patient_state=cast("str | None", patient.get("state")),
        user_id=cast(str, user["user_id"]),
        user_name=cast("str | None", user.get("name")),
        user_role=cast("str | None", user.get("role")),
        user_org=cast("str | None", user.get("organization")),
    )


def _study(record: Record) -> tuple[str | None, str | None]:
    """The study's UID and accession, if the event names a study."""
    study = cast("Record | None", record.get("study"))
    study_uid = None if study is None else cast(str, study["uid"])
    accession = None if study is None else cast("str | None", study.get("accession"))
    return study_uid, accession


def _audit_log_used(record: Record, head: _Head) -> IndexFields:
    return IndexFields(
        kind="audit_log_used",
        **head,
        **_people(record, "actor"),
        dicom_event_id="110101",
        action="R",
        outcome=cast(str, record["outcome"]),
        study_uid=None,
        accession=None,
        network_address=cast("str | None", record.get("network_address")),
        purpose_of_use=None,
        disclosed=tuple((r.origin, r.start, r.end) for r in disclosure.from_record(record)),
    )


def _security_event(record: Record, head: _Head) -> IndexFields:
    return IndexFields(
        kind="security_event",
        **head,
        **_people(record, "actor"),
        dicom_event_id=cast(str, record["dicom_event_id"]),
        action=cast(str, record["action"]),
        outcome=cast(str, record["outcome"]),
        study_uid=None,
        accession=None,
        network_address=cast("str | None", record.get("network_address")),
        purpose_of_use=cast("str | None", record.get("purpose_of_use")),
    )


def _disclosed_patients(
    record: Record,
) -> tuple[tuple[str | None, str, str | None, tuple[str, ...]], ...]:
    """PhiAccessEvent v2's ``disclosed`` as stored (validated canonical); none in v1."""
    patients = cast("list[Record] | None", record.get("disclosed")) or []
    return tuple(
        (
            cast("str | None", p.get("issuer")),
            cast(str, p["id"]),
            cast("str | None", p.get("state")),
            tuple(cast("list[str]", p.get("studies") or [])),
        )
        for p in patients
    )


def _phi_access(record: Record, head: _Head) -> IndexFields:
    study_uid, accession = _study(record)
    return IndexFields(
        kind="phi_access",
        **head,
        **_people(record, "actor"),
        dicom_event_id=cast(str, record["dicom_event_id"]),
        action=cast(str, record["action"]),
        outcome=cast(str, record["outcome"]),
        study_uid=study_uid,
        accession=accession,
        network_address=cast("str | None", record.get("network_address")),
        purpose_of_use=cast("str | None", record.get("purpose_of_use")),
        patients=_disclosed_patients(record),
    )


def _critical_result_relay(record: Record, head: _Head) -> IndexFields:
    """A relay's action, outcome and purpose of use are consumer policy, not event fields."""
    study_uid, accession = _study(record)
    return IndexFields(
        kind="critical_result_relay",
        **head,
        **_people(record, "sender"),
        dicom_event_id=None,
        action="E",
        outcome="SUCCESS" if record.get("communicated_at") is not None else "MINOR_FAILURE",
        study_uid=study_uid,
        accession=accession,
        network_address=None,
        purpose_of_use="TREAT",
    )


def _registry_change(record: Record) -> IndexFields:
    """A registry change names no patient and happens at no facility (``facility_id`` is
    empty); its user is its author. The audit queries never return it
    (docs/design/compliance-registry.md)."""
    author = cast(Record, record["author"])
    return IndexFields(
        event_id=cast(uuid.UUID, record["event_id"]),
        kind="registry_change",
        event_time=cast(datetime, record["event_time"]).astimezone(UTC),
        producer_id=cast(str, record["producer_id"]),
        producer_seq=cast(int, record["producer_seq"]),
        facility_id="",
        patient_id=None,
        patient_issuer=None,
        patient_state=None,
        user_id=cast(str, author["user_id"]),
        user_name=None,
        user_role=cast(str, author["role"]),
        user_org=None,
        dicom_event_id=None,
        action=None,
        outcome=None,
        study_uid=None,
        accession=None,
        network_address=None,
        purpose_of_use=None,
    )


#: The projection of each schema; any other (validated) schema is a relay's.
_BY_SCHEMA: Final[Mapping[str, Callable[[Record, _Head], IndexFields]]] = {
    AUDIT_LOG_USED_SCHEMA_NAME: _audit_log_used,
    SECURITY_SCHEMA_NAME: _security_event,
    ACCESS_SCHEMA_NAME: _phi_access,
}


def index_fields(full_name: str, record: Record) -> IndexFields:
    """Project a validated Avro record onto the ledger's query index.

    ``ledger.verify.project_event`` recomputes the same columns independently from the
    stored leaf; a test keeps the two in agreement for every kind.
    """
    if full_name == REGISTRY_SCHEMA_NAME:
        return _registry_change(record)
    head = _head(record)
    return _BY_SCHEMA.get(full_name, _critical_result_relay)(record, head)


def event_index(event: AuditEvent | RegistryChange) -> IndexFields:
    """The index row for a typed event (tests and tools; the consumer works on records)."""
    if isinstance(event, RegistryChange):
        return index_fields(REGISTRY_SCHEMA_NAME, registry_to_record(event))
    return index_fields(schema_name(event), to_record(event))
