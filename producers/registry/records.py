"""The Avro record mapping of registry changes, both ways.

Invariant: ``registry_from_record(registry_to_record(c)) == c`` for every change; the
record is the shape ``validation.validate_registry_record`` checks and the codec encodes;
a record that is not that shape raises ``KeyError``, ``TypeError`` or ``ValueError``
(the codec turns them into ``DecodeError``), never builds a partial change.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Final

from producers.events.readers import instant as _t
from producers.events.readers import integer as _int
from producers.events.readers import record_at as _d
from producers.events.readers import text as _s
from producers.events.readers import uuid_at as _uuid
from producers.events.records import Record
from producers.registry.model import (
    Author,
    Baa,
    Credential,
    Organization,
    OrganizationKind,
    RegistryChange,
    RegistryKind,
    RegistryOperation,
    RegistryRecord,
    StateLicense,
    WorkforceMember,
)

REGISTRY_SCHEMA_NAME: Final = "philedger.registry.RegistryChange"

#: The record field that carries each kind (the other four are null).
KIND_FIELDS: Final[dict[RegistryKind, str]] = {
    RegistryKind.ORGANIZATION: "organization",
    RegistryKind.BAA: "baa",
    RegistryKind.MEMBER: "member",
    RegistryKind.LICENSE: "license",
    RegistryKind.CREDENTIAL: "credential",
}


def _subject(record: RegistryRecord) -> Record:
    if isinstance(record, Organization):
        return {
            "organization_id": record.organization_id,
            "name": record.name,
            "organization_kind": record.organization_kind.value,
        }
    if isinstance(record, Baa):
        return {
            "baa_id": record.baa_id,
            "facility_id": record.facility_id,
            "business_associate_id": record.business_associate_id,
            "effective_from": record.effective_from,
            "effective_to": record.effective_to,
            "scope": record.scope,
        }
    if isinstance(record, WorkforceMember):
        return {
            "user_id": record.user_id,
            "organization_id": record.organization_id,
            "role": record.role,
            "shared_or_generic": record.shared_or_generic,
            "employed_from": record.employed_from,
            "employed_to": record.employed_to,
        }
    if isinstance(record, StateLicense):
        return {
            "license_id": record.license_id,
            "user_id": record.user_id,
            "state": record.state,
            "number": record.number,
            "valid_from": record.valid_from,
            "valid_to": record.valid_to,
        }
    return {
        "credential_id": record.credential_id,
        "user_id": record.user_id,
        "facility_id": record.facility_id,
        "privilege": record.privilege,
        "valid_from": record.valid_from,
        "valid_to": record.valid_to,
    }


def registry_to_record(change: RegistryChange) -> Record:
    """The Avro record (plain dict) of a change."""
    kind = change.kind
    out: Record = {
        "event_id": change.event_id,
        "event_time": change.event_time,
        "producer_id": change.producer_id,
        "producer_seq": change.producer_seq,
        "author": {"user_id": change.author.user_id, "role": change.author.role},
        "operation": change.operation.value,
        "kind": kind.value,
    }
    for k, name in KIND_FIELDS.items():
        out[name] = _subject(change.record) if k is kind else None
    return out


def registry_from_record(record: Record) -> RegistryChange:
    """The change of a decoded (and validated) Avro record."""
    kind = RegistryKind(_s(record, "kind"))
    author = _d(record, "author")
    return RegistryChange(
        event_id=_uuid(record, "event_id"),
        event_time=_t(record, "event_time"),
        producer_id=_s(record, "producer_id"),
        producer_seq=_int(record, "producer_seq"),
        author=Author(user_id=_s(author, "user_id"), role=_s(author, "role")),
        operation=RegistryOperation(_s(record, "operation")),
        record=_record_of(kind, _d(record, KIND_FIELDS[kind])),
    )


def _record_of(kind: RegistryKind, r: Record) -> RegistryRecord:
    if kind is RegistryKind.ORGANIZATION:
        return Organization(
            organization_id=_s(r, "organization_id"),
            name=_s(r, "name"),
            organization_kind=OrganizationKind(_s(r, "organization_kind")),
        )
    if kind is RegistryKind.BAA:
        return Baa(
            baa_id=_s(r, "baa_id"),
            facility_id=_s(r, "facility_id"),
            business_associate_id=_s(r, "business_associate_id"),
            effective_from=_date(r, "effective_from"),
            effective_to=_odate(r, "effective_to"),
            scope=_s(r, "scope"),
        )
    if kind is RegistryKind.MEMBER:
        shared = r["shared_or_generic"]
        if type(shared) is not bool:
            raise TypeError("shared_or_generic is not a boolean")
        return WorkforceMember(
            user_id=_s(r, "user_id"),
            organization_id=_s(r, "organization_id"),
            role=_s(r, "role"),
            shared_or_generic=shared,
            employed_from=_date(r, "employed_from"),
            employed_to=_odate(r, "employed_to"),
        )
    if kind is RegistryKind.LICENSE:
        return StateLicense(
            license_id=_s(r, "license_id"),
            user_id=_s(r, "user_id"),
            state=_s(r, "state"),
            number=_s(r, "number"),
            valid_from=_date(r, "valid_from"),
            valid_to=_odate(r, "valid_to"),
        )
    return Credential(
        credential_id=_s(r, "credential_id"),
        user_id=_s(r, "user_id"),
        facility_id=_s(r, "facility_id"),
        privilege=_s(r, "privilege"),
        valid_from=_date(r, "valid_from"),
        valid_to=_odate(r, "valid_to"),
    )


def _date(record: Record, key: str) -> date:
    value = record[key]
    if not isinstance(value, date) or isinstance(value, datetime):
        raise TypeError(f"{key} is not a date")
    return value


def _odate(record: Record, key: str) -> date | None:
    return None if record.get(key) is None else _date(record, key)
