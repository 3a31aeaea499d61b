"""The compliance registry as the ledger reads it: records decoded from appended
RegistryChange leaves, each with the position and the time it became known.

Invariant: pure values parsed from a leaf's decoded record (``ledger.audit.records``
renders dates as ``YYYY-MM-DD`` and instants as ISO 8601); a record that does not have
the RegistryChange shape is refused with ``MalformedInputError``, never half-read.
The producer side of the same record is ``producers.registry`` (the ledger never
imports it): docs/design/compliance-registry.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Final, Generic, TypeVar

from ledger.audit.rules.model import AppendedEvent, Position
from ledger.errors import MalformedInputError

#: The full name of the RegistryChange schema (schemas/registry_change.v1.avsc).
REGISTRY_CHANGE: Final = "philedger.registry.RegistryChange"


class OrgKind(StrEnum):
    FACILITY = "FACILITY"
    BUSINESS_ASSOCIATE = "BUSINESS_ASSOCIATE"
    COVERED_ENTITY = "COVERED_ENTITY"


@dataclass(frozen=True, slots=True, kw_only=True)
class Organization:
    organization_id: str
    name: str
    kind: OrgKind


@dataclass(frozen=True, slots=True, kw_only=True)
class Baa:
    baa_id: str
    facility_id: str
    business_associate_id: str
    effective_from: date
    effective_to: date | None
    scope: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    user_id: str
    organization_id: str
    role: str
    shared_or_generic: bool
    employed_from: date
    employed_to: date | None


@dataclass(frozen=True, slots=True, kw_only=True)
class License:
    license_id: str
    user_id: str
    state: str
    number: str
    valid_from: date
    valid_to: date | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    credential_id: str
    user_id: str
    facility_id: str
    privilege: str
    valid_from: date
    valid_to: date | None


RegistryRecord = Organization | Baa | Member | License | Credential
R = TypeVar("R", Organization, Baa, Member, License, Credential)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryEntry(Generic[R]):
    """A live record and the change that set it (its position proves it)."""

    record: R
    position: Position
    event_time: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryChangeRecord:
    """One appended change: UPSERT replaces the record with its identity from
    ``event_time`` on, RETIRE withdraws it."""

    position: Position
    event_time: datetime
    operation: str
    kind: str
    record: RegistryRecord
    author_user_id: str
    author_role: str

    @property
    def identity(self) -> tuple[str, ...]:
        return identity_of(self.record)


def identity_of(record: RegistryRecord) -> tuple[str, ...]:
    """The key a later change of the same record carries (kind first)."""
    match record:
        case Organization():
            return ("ORGANIZATION", record.organization_id)
        case Baa():
            return ("BAA", record.baa_id)
        case Member():
            return ("MEMBER", record.user_id, record.organization_id)
        case License():
            return ("LICENSE", record.license_id)
        case Credential():
            return ("CREDENTIAL", record.credential_id)


def in_period(day: date, start: date, end: date | None) -> bool:
    """Whether ``day`` is inside [start, end], both ends inclusive, None an open end."""
    return start <= day and (end is None or day <= end)


Obj = Mapping[str, Any]


def parse_change(event: AppendedEvent) -> RegistryChangeRecord:
    """The registry change an appended leaf carries; ``MalformedInputError`` otherwise."""
    if event.schema != REGISTRY_CHANGE:
        raise MalformedInputError(f"leaf {event.position.leaf_index} is not a registry change")
    r = event.record
    operation, kind = _text(r, "operation"), _text(r, "kind")
    if operation not in ("UPSERT", "RETIRE"):
        raise MalformedInputError(f"unknown registry operation {operation!r}")
    author = _obj(r, "author")
    when = event.event_time
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return RegistryChangeRecord(
        position=event.position,
        event_time=when.astimezone(UTC),
        operation=operation,
        kind=kind,
        record=_record(kind, r),
        author_user_id=_text(author, "user_id"),
        author_role=_text(author, "role"),
    )


def _record(kind: str, r: Obj) -> RegistryRecord:
    sub = _obj(r, kind.lower())
    if kind == "ORGANIZATION":
        try:
            org_kind = OrgKind(_text(sub, "organization_kind"))
        except ValueError as exc:
            raise MalformedInputError("unknown organization_kind") from exc
        return Organization(
            organization_id=_text(sub, "organization_id"), name=_text(sub, "name"), kind=org_kind
        )
    if kind == "BAA":
        return Baa(
            baa_id=_text(sub, "baa_id"),
            facility_id=_text(sub, "facility_id"),
            business_associate_id=_text(sub, "business_associate_id"),
            effective_from=_day(sub, "effective_from"),
            effective_to=_oday(sub, "effective_to"),
            scope=_text(sub, "scope"),
        )
    if kind == "MEMBER":
        shared = sub.get("shared_or_generic")
        if not isinstance(shared, bool):
            raise MalformedInputError("member.shared_or_generic is not a boolean")
        return Member(
            user_id=_text(sub, "user_id"),
            organization_id=_text(sub, "organization_id"),
            role=_text(sub, "role"),
            shared_or_generic=shared,
            employed_from=_day(sub, "employed_from"),
            employed_to=_oday(sub, "employed_to"),
        )
    if kind == "LICENSE":
        return License(
            license_id=_text(sub, "license_id"),
            user_id=_text(sub, "user_id"),
            state=_text(sub, "state"),
            number=_text(sub, "number"),
            valid_from=_day(sub, "valid_from"),
            valid_to=_oday(sub, "valid_to"),
        )
    if kind == "CREDENTIAL":
        return Credential(
            credential_id=_text(sub, "credential_id"),
            user_id=_text(sub, "user_id"),
            facility_id=_text(sub, "facility_id"),
            privilege=_text(sub, "privilege"),
            valid_from=_day(sub, "valid_from"),
            valid_to=_oday(sub, "valid_to"),
        )
    raise MalformedInputError(f"unknown registry kind {kind!r}")


def _obj(r: Obj, key: str) -> Obj:
    value = r.get(key)
    if not isinstance(value, Mapping):
        raise MalformedInputError(f"registry change has no {key} record")
    return value


def _text(r: Obj, key: str) -> str:
    value = r.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedInputError(f"registry field {key} is missing or not text")
    return value


def _day(r: Obj, key: str) -> date:
    native = r.get(key)
    if isinstance(native, date) and not isinstance(native, datetime):
        return native  # decoded without rendering (the evaluator's records)
    try:
        return date.fromisoformat(_text(r, key))
    except ValueError as exc:
        raise MalformedInputError(f"registry field {key} is not a date") from exc


def _oday(r: Obj, key: str) -> date | None:
    return None if r.get(key) is None else _day(r, key)
