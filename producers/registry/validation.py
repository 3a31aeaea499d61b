"""Validation of registry changes, on the Avro record shape (as events are validated).

Invariant: ``validate_registry_record`` is the one definition of a valid change: the
producer applies it to ``registry_to_record(change)`` before encoding and the codec to
every record it decodes, so both sides accept exactly the same changes. It returns
``None`` or raises ``RegistryValidationError`` naming the first bad field.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Final, cast

from producers.errors import EventValidationError, RegistryValidationError
from producers.events.fields import check_text as _shared_check_text
from producers.events.fields import check_time
from producers.events.limits import MAX_FUTURE_SKEW, MAX_ID_CHARS, MAX_TEXT_CHARS
from producers.events.model import utc_now
from producers.events.records import Record
from producers.registry.model import (
    OrganizationKind,
    RegistryChange,
    RegistryKind,
    RegistryOperation,
    kind_of,
)
from producers.registry.records import KIND_FIELDS, registry_to_record

#: USPS codes of the states, the District of Columbia and the territories whose boards
#: license physicians: what ``StateLicense.state`` may hold.
_USPS: Final = (
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH "
    "NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR VI GU AS MP"
)
US_STATES: Final[frozenset[str]] = frozenset(_USPS.split())
#: Oldest day a period may start (no registry record predates it).
MIN_DAY: Final = date(1900, 1, 1)

#: Each kind's fields: (name, what), what being "id", "text", "long", "day", "open_day",
#: "bool", "state" or "org_kind". Order is the CSV column order (``files``).
KIND_COLUMNS: Final[Mapping[RegistryKind, tuple[tuple[str, str], ...]]] = {
    RegistryKind.ORGANIZATION: (
        ("organization_id", "id"),
        ("name", "text"),
        ("organization_kind", "org_kind"),
    ),
    RegistryKind.BAA: (
        ("baa_id", "id"),
        ("facility_id", "id"),
        ("business_associate_id", "id"),
        ("effective_from", "day"),
        ("effective_to", "open_day"),
        ("scope", "long"),
    ),
    RegistryKind.MEMBER: (
        ("user_id", "id"),
        ("organization_id", "id"),
        ("role", "text"),
        ("shared_or_generic", "bool"),
        ("employed_from", "day"),
        ("employed_to", "open_day"),
    ),
    RegistryKind.LICENSE: (
        ("license_id", "id"),
        ("user_id", "id"),
        ("state", "state"),
        ("number", "id"),
        ("valid_from", "day"),
        ("valid_to", "open_day"),
    ),
    RegistryKind.CREDENTIAL: (
        ("credential_id", "id"),
        ("user_id", "id"),
        ("facility_id", "id"),
        ("privilege", "long"),
        ("valid_from", "day"),
        ("valid_to", "open_day"),
    ),
}


def fail(path: str, problem: str) -> RegistryValidationError:
    return RegistryValidationError(f"{path}: {problem}", field=path)


def validate_change(change: RegistryChange, *, now: datetime | None = None) -> None:
    """Return ``None`` if the change may be sent, else raise ``RegistryValidationError``."""
    validated_registry_record(change, now=now)


def validated_registry_record(
    change: RegistryChange, *, now: datetime | None = None, stamp: tuple[str, int] | None = None
) -> Record:
    """The change's Avro record once it passed every rule (what the codec encodes)."""
    if not isinstance(change, RegistryChange):
        raise fail("<event>", f"unsupported change type {type(change).__name__}")
    if not isinstance(change.operation, RegistryOperation):
        raise fail("operation", f"must be a RegistryOperation, not {change.operation!r}")
    try:
        kind_of(change.record)
    except KeyError:
        raise fail("record", f"{type(change.record).__name__} is not a registry record") from None
    organization = getattr(change.record, "organization_kind", None)
    if organization is not None and not isinstance(organization, OrganizationKind):
        raise fail("organization.organization_kind", f"{organization!r} is not an OrganizationKind")
    record = registry_to_record(change)
    if stamp is not None:
        record["producer_id"], record["producer_seq"] = stamp
    validate_registry_record(record, now=now)
    return record


def validate_registry_record(
    record: Record,
    *,
    now: datetime | None = None,
    max_future_skew: timedelta = MAX_FUTURE_SKEW,
) -> None:
    """Validate a change in its Avro record shape (as encoded, or as just decoded)."""
    try:
        _validate(record, (now or utc_now()) + max_future_skew)
    except RegistryValidationError:
        raise
    except EventValidationError as exc:  # the shared field rules raise the audit kind
        raise RegistryValidationError(str(exc), field=exc.field) from exc


def _validate(record: Record, latest: datetime) -> None:
    if not isinstance(record.get("event_id"), uuid.UUID):
        raise fail("event_id", "must be a UUID")
    check_time("event_time", record.get("event_time"), latest=latest)
    check_text("producer_id", record.get("producer_id"), required=True)
    seq = record.get("producer_seq")
    if type(seq) is not int or not 0 <= seq < 2**63:
        raise fail("producer_seq", "must be a non-negative 64-bit integer")
    author = record.get("author")
    if not isinstance(author, Mapping):
        raise fail("author", "is required")
    check_id("author.user_id", author.get("user_id"))
    check_text("author.role", author.get("role"), required=True)
    check_symbol("operation", record.get("operation"), RegistryOperation)
    kind = check_symbol("kind", record.get("kind"), RegistryKind)
    name = KIND_FIELDS[RegistryKind(kind)]
    for other in KIND_FIELDS.values():
        if other != name and record.get(other) is not None:
            raise fail(other, f"must be null in a {kind} change (exactly one record per change)")
    subject = record.get(name)
    if not isinstance(subject, Mapping):
        raise fail(name, f"is required in a {kind} change")
    check_subject(name, RegistryKind(kind), subject)


def check_subject(prefix: str, kind: RegistryKind, subject: Mapping[str, object]) -> None:
    """The fields of one registry record, then its period (from <= to)."""
    for column, what in KIND_COLUMNS[kind]:
        check_value(f"{prefix}.{column}", what, subject.get(column))
    start, end = period_of(kind, subject)
    if isinstance(start, date) and isinstance(end, date) and end < start:
        column = next(c for c, w in KIND_COLUMNS[kind] if w == "open_day")
        raise fail(f"{prefix}.{column}", f"{end.isoformat()} is before {start.isoformat()}")


def period_of(kind: RegistryKind, subject: Mapping[str, object]) -> tuple[object, object]:
    """The (from, to) values of a record's period; (None, None) for an organization."""
    days = [c for c, w in KIND_COLUMNS[kind] if w in ("day", "open_day")]
    if not days:
        return None, None
    return subject.get(days[0]), subject.get(days[1])


def check_value(path: str, what: str, value: object) -> None:
    """One registry field by its kind of value (see ``KIND_COLUMNS``)."""
    if what == "id":
        check_id(path, value)
    elif what in ("text", "long"):
        check_text(
            path, value, required=True, limit=MAX_TEXT_CHARS if what == "long" else MAX_ID_CHARS
        )
    elif what in ("day", "open_day"):
        _check_day(path, value, required=what == "day")
    elif what == "bool":
        if type(value) is not bool:
            raise fail(path, "must be a boolean")
    elif what == "state":
        if value not in US_STATES:
            raise fail(path, f"{value!r} is not a two-letter US state, district or territory")
    else:
        check_symbol(path, value, OrganizationKind)


def check_text(path: str, value: object, *, required: bool, limit: int = MAX_ID_CHARS) -> None:
    """The audit events' text rule (``producers.events.fields``), raising the registry's
    error kind."""
    try:
        _shared_check_text(path, value, required=required, limit=limit)
    except EventValidationError as exc:
        raise RegistryValidationError(str(exc), field=exc.field) from exc


def check_id(path: str, value: object) -> None:
    """An identifier: text without surrounding blanks or control characters."""
    check_text(path, value, required=True, limit=MAX_ID_CHARS)
    text = cast(str, value)  # check_text refused anything else
    if text != text.strip():
        raise fail(path, "must not start or end with blanks")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text):
        raise fail(path, "must not contain control characters")


def check_symbol(path: str, value: object, kind: type[StrEnum]) -> str:
    allowed = [member.value for member in kind]
    if not isinstance(value, str) or value not in allowed:
        raise fail(path, f"must be a {kind.__name__} ({', '.join(allowed)}), not {value!r}")
    return value


def _check_day(path: str, value: object, *, required: bool) -> None:
    if value is None:
        if required:
            raise fail(path, "is required")
        return
    if not isinstance(value, date) or isinstance(value, datetime):
        raise fail(path, "must be a calendar date")
    if value < MIN_DAY:
        raise fail(path, f"{value.isoformat()} is before {MIN_DAY.isoformat()}")
