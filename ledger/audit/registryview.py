"""The registry as shown to people (``ledger registry show``, ``GET /v1/registry``): a
snapshot narrowed to one kind, user or facility, and each record as flat fields.

Invariant: pure. The JSON shapes here are the API's and ``ledger registry show
--format json``'s alike. Filtering keeps a record only if it names what was asked for (a user:
members, licenses and credentials of that user; a facility: the organization itself, its
BAAs, its members and the credentials held there); fields keep the schema's names, dates
as ``YYYY-MM-DD`` and an open end as None.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any, Final

from ledger.audit.registry import (
    Baa,
    Credential,
    License,
    Member,
    Organization,
    RegistryChangeRecord,
    RegistryEntry,
    RegistryRecord,
    RegistrySnapshot,
)
from ledger.audit.registrybook import RegistryRead
from ledger.errors import MalformedInputError

#: The kinds as people name them, with the snapshot attribute holding each.
KINDS: Final = {
    "organization": "organizations",
    "baa": "baas",
    "member": "members",
    "license": "licenses",
    "credential": "credentials",
}

Field = str | bool | None


def parse_kind(text: str | None) -> str | None:
    """``organization``, ``baa``, ``member``, ``license`` or ``credential`` (any case)."""
    if text is None:
        return None
    kind = text.strip().lower()
    if kind not in KINDS:
        raise MalformedInputError(f"kind must be one of {', '.join(KINDS)}")
    return kind


def narrowed(
    snapshot: RegistrySnapshot,
    *,
    kind: str | None = None,
    user: str | None = None,
    facility: str | None = None,
) -> RegistrySnapshot:
    """The records of ``snapshot`` of ``kind`` that name ``user`` and ``facility`` (each
    filter only when given)."""

    def keep(name: str, entries: tuple[RegistryEntry[Any], ...]) -> tuple[Any, ...]:
        if kind is not None and KINDS[kind] != name:
            return ()
        return tuple(e for e in entries if _names(e.record, user=user, facility=facility))

    return replace(
        snapshot,
        organizations=keep("organizations", snapshot.organizations),
        baas=keep("baas", snapshot.baas),
        members=keep("members", snapshot.members),
        licenses=keep("licenses", snapshot.licenses),
        credentials=keep("credentials", snapshot.credentials),
    )


def _names(record: RegistryRecord, *, user: str | None, facility: str | None) -> bool:
    users: tuple[str, ...] = ()
    facilities: tuple[str, ...] = ()
    match record:
        case Organization():
            facilities = (record.organization_id,)
        case Baa():
            facilities = (record.facility_id,)
        case Member():
            users, facilities = (record.user_id,), (record.organization_id,)
        case License():
            users = (record.user_id,)
        case Credential():
            users, facilities = (record.user_id,), (record.facility_id,)
    return (user is None or user in users) and (facility is None or facility in facilities)


def entries(snapshot: RegistrySnapshot) -> list[tuple[str, RegistryEntry[Any]]]:
    """Every (kind, entry) of the snapshot, kind by kind in ``KINDS`` order."""
    return [(kind, e) for kind, name in KINDS.items() for e in getattr(snapshot, name)]


def count(snapshot: RegistrySnapshot) -> int:
    return sum(len(getattr(snapshot, name)) for name in KINDS.values())


def fields(record: RegistryRecord) -> dict[str, Field]:
    """The record's fields by their schema names (``organization_kind`` for an
    organization's kind), dates ISO, open ends None."""
    match record:
        case Organization():
            return {
                "organization_id": record.organization_id,
                "name": record.name,
                "organization_kind": record.kind.value,
            }
        case Baa():
            return {
                "baa_id": record.baa_id,
                "facility_id": record.facility_id,
                "business_associate_id": record.business_associate_id,
                "effective_from": _day(record.effective_from),
                "effective_to": _day(record.effective_to),
                "scope": record.scope,
            }
        case Member():
            return {
                "user_id": record.user_id,
                "organization_id": record.organization_id,
                "role": record.role,
                "shared_or_generic": record.shared_or_generic,
                "employed_from": _day(record.employed_from),
                "employed_to": _day(record.employed_to),
            }
        case License():
            return {
                "license_id": record.license_id,
                "user_id": record.user_id,
                "state": record.state,
                "number": record.number,
                "valid_from": _day(record.valid_from),
                "valid_to": _day(record.valid_to),
            }
        case Credential():
            return {
                "credential_id": record.credential_id,
                "user_id": record.user_id,
                "facility_id": record.facility_id,
                "privilege": record.privilege,
                "valid_from": _day(record.valid_from),
                "valid_to": _day(record.valid_to),
            }


def _day(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def checkpoints_json(read: RegistryRead) -> list[dict[str, object]]:
    """Each registry log and the size (and signed note) it was read up to."""
    return [
        {"log_id": g.log_id, "origin": g.origin, "size": g.size, "note": g.checkpoint}
        for g in read.logs
    ]


def state_json(
    read: RegistryRead, snapshot: RegistrySnapshot, *, kind: str | None = None
) -> dict[str, object]:
    """The state answer: when, under which checkpoints, and every record per kind (only
    ``kind`` when given) with the change that set it."""
    origins = {g.log_id: g.origin for g in read.logs}
    by_kind: dict[str, list[object]] = {}
    for name, entry in entries(snapshot):
        by_kind.setdefault(name, []).append(entry_json(entry, origins))
    return {
        "as_of": iso(snapshot.as_of),
        "checkpoints": checkpoints_json(read),
        "records": {k: by_kind.get(k, []) for k in (KINDS if kind is None else (kind,))},
        "undecodable": read.undecodable,
    }


def position_json(log_id: int, leaf_index: int, origins: dict[int, str]) -> dict[str, object]:
    return {"log_id": log_id, "origin": origins.get(log_id), "leaf_index": leaf_index}


def entry_json(entry: RegistryEntry[Any], origins: dict[int, str]) -> dict[str, object]:
    return {
        **fields(entry.record),
        "known_since": iso(entry.event_time),
        "ledger": position_json(entry.position.log_id, entry.position.leaf_index, origins),
    }


def change_json(c: RegistryChangeRecord, origins: dict[int, str]) -> dict[str, object]:
    return {
        "event_time": iso(c.event_time),
        "operation": c.operation.lower(),
        "kind": c.kind.lower(),
        "record": fields(c.record),
        "author": {"user_id": c.author_user_id, "role": c.author_role},
        "ledger": position_json(c.position.log_id, c.position.leaf_index, origins),
    }


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()
