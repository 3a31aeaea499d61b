"""The detach procedure's database side, as the owner role: read a month, record it as
archived, detach its partitions, record it as detached, in one transaction.

Invariant: the partitions of a month are detached only after ``check_detachable`` and
``check_matches_bundle`` passed and in the same transaction that stores its 'archived'
row (which the superuser-installed event trigger ``ledger_detach_guard`` requires), so
either the month is archived, detached and recorded, or nothing changed. Referencing
tables are detached before the tables they reference. docs/archive.md.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import asyncpg

from ledger.audit.retention import DetachRefused, PeriodContents, PeriodLog
from ledger.errors import UnavailableError
from ledger.pg.sql import detach as sql

#: Referencing tables first: read_disclosures and event_patients reference events.
DETACH_ORDER: tuple[str, ...] = ("read_disclosures", "event_patients", "events", "tiles", "leaves")
_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchiveRecord:
    """What the 'archived' and 'detached' rows say besides the month's contents."""

    manifest_digest: bytes
    record_event_id: uuid.UUID
    actor: str
    copies: str


def next_month(month: date) -> date:
    year, m = divmod(month.month, 12)
    return date(month.year + year, m + 1, 1)


async def period_contents(conn: asyncpg.Connection, month: date) -> PeriodContents:
    """The month's logs (with sizes and seals), event count and span, and states."""
    end = next_month(month)
    logs = await conn.fetch(sql.PERIOD_LOGS, month, end)
    span = await conn.fetchrow(sql.PERIOD_EVENT_SPAN, month, end)
    states = await conn.fetch(sql.PERIOD_STATES, month)
    return PeriodContents(
        month=month,
        logs=tuple(_period_log(r) for r in logs),
        events=0 if span is None else int(span["events"]),
        first_event_time=None if span is None else span["first"],
        last_event_time=None if span is None else span["last"],
        states=frozenset(r["state"] for r in states),
    )


def _period_log(r: asyncpg.Record) -> PeriodLog:
    sealed = r["sealed_size"]
    return PeriodLog(
        log_id=int(r["log_id"]),
        origin=r["origin"],
        size=int(r["size"]),
        sealed_size=None if sealed is None else int(sealed),
        seal_note=r["seal_note"],
    )


async def event_recorded(conn: asyncpg.Connection, event_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(sql.EVENT_RECORDED, event_id))


async def detach_month(
    conn: asyncpg.Connection, contents: PeriodContents, record: ArchiveRecord
) -> list[str]:
    """Store 'archived', detach every partition of the month, store 'detached'; return
    the detached tables (still in the database, now outside the ledger's tables).
    Nothing changes unless all of it does (``UnavailableError`` naming the failure)."""
    try:
        return await _detach_month(conn, contents, record)
    except asyncpg.PostgresError as exc:
        raise UnavailableError(
            f"{contents.month:%Y-%m} was not detached ({type(exc).__name__}: {exc}); "
            "nothing changed"
        ) from exc


async def _detach_month(
    conn: asyncpg.Connection, contents: PeriodContents, record: ArchiveRecord
) -> list[str]:
    async with conn.transaction():
        again = await period_contents(conn, contents.month)
        if again != contents:
            raise DetachRefused(f"{contents.month:%Y-%m} changed while it was being checked")
        await _insert_state(conn, contents, record, "archived")
        rows = await conn.fetch(sql.MONTH_PARTITIONS, list(DETACH_ORDER), contents.month)
        children = {r["parent"]: r["child"] for r in rows}
        missing = [p for p in DETACH_ORDER if p not in children]
        if missing:
            raise UnavailableError(
                f"{contents.month:%Y-%m} has no partition of {', '.join(missing)}: "
                "is the database migrated (0018) and the month's partitions made?"
            )
        detached = []
        for parent in DETACH_ORDER:
            child = _ident(children[parent])
            await conn.execute(f"ALTER TABLE {_ident(parent)} DETACH PARTITION {child}")
            for fk in await conn.fetch(sql.FOREIGN_KEYS_OF, child):
                await conn.execute(f'ALTER TABLE {child} DROP CONSTRAINT "{fk["conname"]}"')
            detached.append(child)
        await _insert_state(conn, contents, record, "detached")
    return detached


async def _insert_state(
    conn: asyncpg.Connection, contents: PeriodContents, record: ArchiveRecord, state: str
) -> None:
    await conn.execute(
        sql.INSERT_PERIOD_STATE, contents.month, state, record.manifest_digest,
        len(contents.logs), contents.events, contents.first_event_time,
        contents.last_event_time, record.record_event_id, record.actor, record.copies,
    )  # fmt: skip


def _ident(name: str) -> str:
    """A catalog name we put into DDL: plain lower-case identifiers only."""
    if not _IDENT.fullmatch(name):
        raise UnavailableError(f"unexpected table name {name!r}: refusing to build DDL with it")
    return name


def origins(contents: PeriodContents) -> Sequence[str]:
    return [g.origin for g in contents.logs]
