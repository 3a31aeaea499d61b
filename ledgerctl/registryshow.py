"""``ledger registry show``: the compliance registry as known at a time, read straight
from the database, and its renderings (table, JSON, CSV).

Invariant: the read is recorded in the ledger (``record_now``, with the operator's OS user
and --reason, disclosing the registry logs up to the sizes read) before a byte of it is
printed; it reads below each registry log's latest signed checkpoint and names it, so
the answer can be re-read and proven. Renderings are pure: a CSV cell that a spreadsheet
would run as a formula is quoted with a leading apostrophe.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime
from typing import Any, Final

from rich.console import Console
from rich.table import Table

from ledger.audit.registry import RegistryEntry, RegistrySnapshot
from ledger.audit.registrybook import RegistryRead
from ledger.audit.registryview import (
    KINDS,
    count,
    entries,
    fields,
    narrowed,
    parse_kind,
    state_json,
)
from ledger.errors import MalformedInputError
from ledger.pg.registrybook import PostgresRegistry
from ledgerctl.cliaudit import LogHead, cli_read, record_now
from ledgerctl.settings import Settings

FORMATS: Final = ("table", "json", "csv")
#: Shown for an open end (a BAA, employment, license or credential with no end date).
OPEN: Final = "open"
_FORMULA: Final = ("=", "+", "-", "@", "\t", "\r")


def parse_as_of(text: str | None, *, now: datetime | None = None) -> datetime:
    """``now`` (default), an ISO 8601 instant with an offset, or a date (00:00 UTC)."""
    if text is None or text.strip().lower() == "now":
        return now or datetime.now(UTC)
    raw = text.strip()
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise MalformedInputError(
            f"--as-of must be 'now' or an ISO 8601 time like 2026-03-01T12:00:00Z, not {raw!r}"
        ) from exc
    if value.tzinfo is None:
        if len(raw) != 10:
            raise MalformedInputError("--as-of needs a UTC offset (Z or +hh:mm), or a date")
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def show_registry(
    settings: Settings,
    *,
    reason: str,
    as_of: datetime,
    kind: str | None,
    user: str | None,
    facility: str | None,
) -> tuple[RegistryRead, RegistrySnapshot]:
    """Read the registry, record the read, then return what may be printed."""
    kind = parse_kind(kind)

    async def fetch() -> RegistryRead:
        async with PostgresRegistry(
            dsn=settings.require("reader_url"), registry_topic=settings.registry_topic
        ) as book:
            return await book.read(signed=True)

    read = asyncio.run(fetch())
    known = read.timeline.known_at(as_of).snapshot()
    snapshot = narrowed(known, kind=kind, user=user, facility=facility)
    params = {"as_of": as_of.isoformat()}
    params.update({k: v for k, v in (("kind", kind), ("user", user), ("facility", facility)) if v})
    record_now(
        settings,
        cli_read(
            command="registry/show",
            reason=reason,
            parameters=params,
            heads=[LogHead(origin=g.origin, size=g.size) for g in read.logs if g.size],
            results=count(snapshot),
        ),
    )
    return read, snapshot


# ------------------------------------------------------------------ renderings


def render_json(read: RegistryRead, snapshot: RegistrySnapshot, kind: str | None = None) -> str:
    return json.dumps(state_json(read, snapshot, kind=kind), indent=2, sort_keys=False)


def _columns(kind: str | None) -> list[str]:
    names: list[str] = []
    for k in KINDS if kind is None else (kind,):
        for name in _KIND_FIELDS[k]:
            if name not in names:
                names.append(name)
    return names


def render_csv(read: RegistryRead, snapshot: RegistrySnapshot, kind: str | None = None) -> str:
    """One row per record: ``kind``, the fields of the kinds shown (the registry file's
    column names; empty where a kind has no such column, and for an open end), when the
    record became known, and the ledger position of the change that set it."""
    origins = {g.log_id: g.origin for g in read.logs}
    columns = _columns(kind)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["kind", *columns, "known_since", "log", "leaf_index"])
    for name, entry in entries(snapshot):
        values = fields(entry.record)
        writer.writerow(
            [
                name,
                *(_cell(values.get(c)) for c in columns),
                entry.event_time.astimezone(UTC).isoformat(),
                origins.get(entry.position.log_id, str(entry.position.log_id)),
                str(entry.position.leaf_index),
            ]
        )
    return out.getvalue()


def _cell(value: str | bool | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"'{value}" if value.startswith(_FORMULA) else value


def print_table(
    out: Console, read: RegistryRead, snapshot: RegistrySnapshot, kind: str | None = None
) -> None:
    """A table per kind: dates as YYYY-MM-DD, an open end as "open", and the change that
    set each record; first when and under which checkpoint it was read."""
    out.print(f"registry as known at {snapshot.as_of.astimezone(UTC).isoformat()}")
    if not read.logs:
        out.print("  no registry log in this ledger yet")
    for g in read.logs:
        if g.checkpoint:
            out.print(f"  read under the signed checkpoint {g.origin}:{g.size}")
        else:
            out.print(f"  {g.origin}: no signed checkpoint yet (nothing read)")
    if read.undecodable:
        out.print(f"  {read.undecodable} registry leaf(s) could not be read (run `ledger verify`)")
    origins = {g.log_id: g.origin for g in read.logs}
    for name in KINDS if kind is None else (kind,):
        rows = [e for k, e in entries(snapshot) if k == name]
        out.print(_table(name, rows, origins))


def _table(name: str, rows: list[RegistryEntry[Any]], origins: dict[int, str]) -> Table:
    columns = _KIND_FIELDS[name]
    table = Table(title=f"{KINDS[name]} ({len(rows)})", title_justify="left")
    for column in (*columns, "known since", "set by"):
        table.add_column(column, overflow="fold")
    for entry in rows:
        values = fields(entry.record)
        where = entry.position
        table.add_row(
            *(_shown(c, values.get(c)) for c in columns),
            entry.event_time.astimezone(UTC).isoformat()[:19].replace("T", " "),
            f"{origins.get(where.log_id, where.log_id)} #{where.leaf_index}",
        )
    return table


def _shown(column: str, value: str | bool | None) -> str:
    if value is None:
        return OPEN if column.endswith("_to") else ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


#: The columns of each kind, as in a registry file (docs/design/compliance-registry.md).
_KIND_FIELDS: Final = {
    "organization": ("organization_id", "name", "organization_kind"),
    "baa": (
        "baa_id", "facility_id", "business_associate_id", "effective_from", "effective_to",
        "scope",
    ),
    "member": (
        "user_id", "organization_id", "role", "shared_or_generic", "employed_from",
        "employed_to",
    ),
    "license": ("license_id", "user_id", "state", "number", "valid_from", "valid_to"),
    "credential": (
        "credential_id", "user_id", "facility_id", "privilege", "valid_from", "valid_to",
    ),
}  # fmt: skip
