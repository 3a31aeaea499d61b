"""The checks across the lines of registry files: ids, references, overlapping periods.

Invariant: ``cross_check`` looks at valid rows only (each already passed ``rows``) and
returns one problem per offending line, naming the other line it conflicts with; it
never drops a row, so the caller refuses the whole import on any problem.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from datetime import date

from producers.errors import RegistryProblem
from producers.registry.model import (
    Baa,
    Credential,
    Organization,
    OrganizationKind,
    RegistryOperation,
    StateLicense,
    WorkforceMember,
    kind_of,
)
from producers.registry.rows import RegistryRow

_FACILITY_KINDS = frozenset({OrganizationKind.FACILITY, OrganizationKind.COVERED_ENTITY})


@dataclass(frozen=True, slots=True, kw_only=True)
class KnownRegistryIds:
    """Ids the registry already holds: lines may name them without defining them."""

    organizations: frozenset[str] = field(default_factory=frozenset)
    users: frozenset[str] = field(default_factory=frozenset)


def cross_check(rows: Iterable[RegistryRow], known: KnownRegistryIds) -> list[RegistryProblem]:
    """Every duplicate id, unknown reference and overlapping period among the rows."""
    rows = list(rows)
    problems = _duplicates(rows)
    upserts = [r for r in rows if r.operation is RegistryOperation.UPSERT]
    problems += _references(upserts, known)
    problems += _overlaps(upserts)
    return problems


def _at(row: RegistryRow) -> str:
    return f"{row.file}:{row.line}"


def _problem(row: RegistryRow, field_name: str, reason: str) -> RegistryProblem:
    return RegistryProblem(file=row.file, line=row.line, field=field_name, reason=reason)


def _id_field(row: RegistryRow) -> str:
    if isinstance(row.record, WorkforceMember):
        return "user_id"  # a member is one (user_id, organization_id)
    return {
        Organization: "organization_id",
        Baa: "baa_id",
        StateLicense: "license_id",
        Credential: "credential_id",
    }[type(row.record)]


def _duplicates(rows: list[RegistryRow]) -> list[RegistryProblem]:
    """A record id twice in one import: which line wins would depend on the order."""
    first: dict[tuple[str, str], RegistryRow] = {}
    problems = []
    for row in rows:
        key = (kind_of(row.record).value, row.record.record_id)
        seen = first.setdefault(key, row)
        if seen is not row:
            what = kind_of(row.record).value.lower()
            problems.append(
                _problem(
                    row,
                    _id_field(row),
                    f"duplicate {what} {row.record.record_id!r} (first at {_at(seen)})",
                )
            )
    return problems


def _references(rows: list[RegistryRow], known: KnownRegistryIds) -> list[RegistryProblem]:
    """Organizations and users a line names must be defined in the files or known."""
    organizations = {
        r.record.organization_id: r.record.organization_kind
        for r in rows
        if isinstance(r.record, Organization)
    }
    users = {r.record.user_id for r in rows if isinstance(r.record, WorkforceMember)}
    problems: list[RegistryProblem] = []

    def organization(row: RegistryRow, name: str, org_id: str, kinds: frozenset[str]) -> None:
        kind = organizations.get(org_id)
        if kind is None and org_id not in known.organizations:
            problems.append(_problem(row, name, f"names organization {org_id!r}, not defined"))
        elif kind is not None and kind not in kinds:
            wanted = " or ".join(sorted(k.lower() for k in kinds))
            problems.append(_problem(row, name, f"{org_id!r} is a {kind.lower()}, not a {wanted}"))

    def user(row: RegistryRow, user_id: str) -> None:
        if user_id not in users and user_id not in known.users:
            problems.append(
                _problem(row, "user_id", f"names user {user_id!r}, not a workforce member")
            )

    every = frozenset(OrganizationKind)
    for row in rows:
        r = row.record
        if isinstance(r, Baa):
            organization(row, "facility_id", r.facility_id, _FACILITY_KINDS)
            organization(
                row,
                "business_associate_id",
                r.business_associate_id,
                frozenset({OrganizationKind.BUSINESS_ASSOCIATE}),
            )
        elif isinstance(r, WorkforceMember):
            organization(row, "organization_id", r.organization_id, every)
        elif isinstance(r, StateLicense):
            user(row, r.user_id)
        elif isinstance(r, Credential):
            user(row, r.user_id)
            organization(row, "facility_id", r.facility_id, _FACILITY_KINDS)
    return problems


def _period_key(record: object) -> tuple[Hashable, str, str, str] | None:
    """The key under which two periods of one kind may not overlap, the period's columns
    and what the key means; None for a kind without that rule."""
    if isinstance(record, Baa):
        key: Hashable = ("baa", record.facility_id, record.business_associate_id)
        return key, "effective_from", "effective_to", "the same facility and business associate"
    if isinstance(record, StateLicense):
        return (
            ("license", record.user_id, record.state),
            "valid_from",
            "valid_to",
            ("the same user and state"),
        )
    if isinstance(record, Credential):
        key = ("credential", record.user_id, record.facility_id, record.privilege)
        return key, "valid_from", "valid_to", "the same user, facility and privilege"
    return None


def _overlaps(rows: list[RegistryRow]) -> list[RegistryProblem]:
    """Two periods of one key that share a day (both ends inclusive, None open).

    Sorted by start, each period is compared with the one reaching furthest before it,
    so a hostile file of many periods for one key costs n log n, not n squared.
    """
    groups: dict[Hashable, list[tuple[RegistryRow, str, str, str]]] = {}
    for row in rows:
        found = _period_key(row.record)
        if found is not None:
            key, start, end, same = found
            groups.setdefault(key, []).append((row, start, end, same))
    problems = []
    for group in groups.values():
        group.sort(key=lambda item: getattr(item[0].record, item[1]))
        reach: RegistryRow | None = None
        reach_end = date.min
        for row, start, end, same in group:
            begins: date = getattr(row.record, start)
            ends: date = getattr(row.record, end) or date.max
            if reach is not None and begins <= reach_end:
                problems.append(
                    _problem(
                        row,
                        start,
                        f"overlaps {reach.record.record_id!r} ({_at(reach)}) for {same}",
                    )
                )
            if reach is None or ends > reach_end:
                reach, reach_end = row, ends
    problems.sort(key=lambda p: (p.file, p.line))
    return problems
