"""The compliance registry's records and the change event that carries one of them.

Invariant: values are immutable (frozen, slotted, keyword-only dataclasses); periods are
calendar days (``datetime.date``), both ends inclusive, ``None`` for an open end; the
enums are the Avro schema's symbols. Rules about the values live in ``validation``, the
Avro shape in ``records`` (docs/design/compliance-registry.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum

from producers.events.model import utc_now


class RegistryOperation(StrEnum):
    """Create or replace the record with this id, or withdraw it (history keeps both)."""

    UPSERT = "UPSERT"
    RETIRE = "RETIRE"


class RegistryKind(StrEnum):
    """Which record a change carries."""

    ORGANIZATION = "ORGANIZATION"
    BAA = "BAA"
    MEMBER = "MEMBER"
    LICENSE = "LICENSE"
    CREDENTIAL = "CREDENTIAL"


class OrganizationKind(StrEnum):
    FACILITY = "FACILITY"
    BUSINESS_ASSOCIATE = "BUSINESS_ASSOCIATE"
    COVERED_ENTITY = "COVERED_ENTITY"


@dataclass(frozen=True, slots=True, kw_only=True)
class Author:
    """The authenticated person who made a change."""

    user_id: str
    role: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Organization:
    organization_id: str
    name: str
    organization_kind: OrganizationKind

    @property
    def record_id(self) -> str:
        return self.organization_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Baa:
    """A Business Associate Agreement between a facility and a business associate."""

    baa_id: str
    facility_id: str
    business_associate_id: str
    effective_from: date
    scope: str
    effective_to: date | None = None

    @property
    def record_id(self) -> str:
        return self.baa_id


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkforceMember:
    """A user's membership of an organization's workforce; one per (user, organization)."""

    user_id: str
    organization_id: str
    role: str
    employed_from: date
    shared_or_generic: bool = False
    employed_to: date | None = None

    @property
    def record_id(self) -> str:
        return f"{self.user_id}@{self.organization_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class StateLicense:
    license_id: str
    user_id: str
    state: str
    number: str
    valid_from: date
    valid_to: date | None = None

    @property
    def record_id(self) -> str:
        return self.license_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    """A credential or privilege a facility granted a user."""

    credential_id: str
    user_id: str
    facility_id: str
    privilege: str
    valid_from: date
    valid_to: date | None = None

    @property
    def record_id(self) -> str:
        return self.credential_id


RegistryRecord = Organization | Baa | WorkforceMember | StateLicense | Credential

_KIND_OF: dict[type, RegistryKind] = {
    Organization: RegistryKind.ORGANIZATION,
    Baa: RegistryKind.BAA,
    WorkforceMember: RegistryKind.MEMBER,
    StateLicense: RegistryKind.LICENSE,
    Credential: RegistryKind.CREDENTIAL,
}


def kind_of(record: RegistryRecord) -> RegistryKind:
    """The kind of a registry record (``KeyError`` for anything else)."""
    return _KIND_OF[type(record)]


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryChange:
    """One change to the registry (schema ``philedger.registry.RegistryChange``).

    ``producer_id``/``producer_seq`` are stamped by the emitter, as for audit events.
    """

    author: Author
    record: RegistryRecord
    operation: RegistryOperation = RegistryOperation.UPSERT
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
    event_time: datetime = field(default_factory=utc_now)
    producer_id: str | None = None
    producer_seq: int | None = None

    @property
    def kind(self) -> RegistryKind:
        return kind_of(self.record)

    def stamped(self, *, producer_id: str, producer_seq: int) -> RegistryChange:
        return replace(self, producer_id=producer_id, producer_seq=producer_seq)
