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
from typing import Any, Final, cast

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

#: A validated record as the projection reads it: every field was checked by
#: ``validate_record`` before, so the projection indexes it without casts (a ``cast`` is
#: a call at run time, and this runs for every event).
_Valid = dict[str, Any]


def _event(kind: str, r: _Valid, user: _Valid, patient: _Valid | None, **rest: Any) -> IndexFields:
    """The columns every kind shares (identity, time, producer, facility, user, patient)
    and the kind's own (``rest``)."""
    p = patient or {}
    return IndexFields(
        event_id=r["event_id"],
        kind=kind,
        event_time=r["event_time"].astimezone(UTC),
        producer_id=r["producer_id"],
        producer_seq=r["producer_seq"],
        facility_id=r["facility"]["id"],
        patient_id=p.get("id"),
        patient_issuer=p.get("issuer"),
        patient_state=p.get("state"),
        user_id=user["user_id"],
        user_name=user.get("name"),
        user_role=user.get("role"),
        user_org=user.get("organization"),
        **rest,
    )


def _audit_log_used(r: _Valid) -> IndexFields:
    return _event(
        "audit_log_used", r, r["actor"], r.get("patient"),
        dicom_event_id="110101",
        action="R",
        outcome=r["outcome"],
        study_uid=None,
        accession=None,
        network_address=r.get("network_address"),
        purpose_of_use=None,
        disclosed=tuple((d.origin, d.start, d.end) for d in disclosure.from_record(r)),
    )  # fmt: skip


def _security_event(r: _Valid) -> IndexFields:
    return _event(
        "security_event", r, r["actor"], r.get("patient"),
        dicom_event_id=r["dicom_event_id"],
        action=r["action"],
        outcome=r["outcome"],
        study_uid=None,
        accession=None,
        network_address=r.get("network_address"),
        purpose_of_use=r.get("purpose_of_use"),
    )  # fmt: skip


def _disclosed_patients(
    r: _Valid,
) -> tuple[tuple[str | None, str, str | None, tuple[str, ...]], ...]:
    """PhiAccessEvent v2's ``disclosed`` as stored (validated canonical); none in v1."""
    patients = r.get("disclosed")
    if not patients:
        return ()
    return tuple(
        (p.get("issuer"), p["id"], p.get("state"), tuple(p.get("studies") or ())) for p in patients
    )


def _phi_access(r: _Valid) -> IndexFields:
    study = r.get("study")
    return _event(
        "phi_access", r, r["actor"], r.get("patient"),
        dicom_event_id=r["dicom_event_id"],
        action=r["action"],
        outcome=r["outcome"],
        study_uid=None if study is None else study["uid"],
        accession=None if study is None else study.get("accession"),
        network_address=r.get("network_address"),
        purpose_of_use=r.get("purpose_of_use"),
        patients=_disclosed_patients(r),
    )  # fmt: skip


def _critical_result_relay(r: _Valid) -> IndexFields:
    """A relay's action, outcome and purpose of use are consumer policy, not event fields."""
    study = r.get("study")
    return _event(
        "critical_result_relay", r, r["sender"], r.get("patient"),
        dicom_event_id=None,
        action="E",
        outcome="SUCCESS" if r.get("communicated_at") is not None else "MINOR_FAILURE",
        study_uid=None if study is None else study["uid"],
        accession=None if study is None else study.get("accession"),
        network_address=None,
        purpose_of_use="TREAT",
    )  # fmt: skip


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
_BY_SCHEMA: Final[Mapping[str, Callable[[_Valid], IndexFields]]] = {
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
    return _BY_SCHEMA.get(full_name, _critical_result_relay)(record)


def event_index(event: AuditEvent | RegistryChange) -> IndexFields:
    """The index row for a typed event (tests and tools; the consumer works on records)."""
    if isinstance(event, RegistryChange):
        return index_fields(REGISTRY_SCHEMA_NAME, registry_to_record(event))
    return index_fields(schema_name(event), to_record(event))
