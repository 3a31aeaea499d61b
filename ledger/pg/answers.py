"""Which event triggered each alert, for checking a simulation's answer file, and which
of a simulation's events the ledger holds.

Invariant: SELECT only, as the reader role; it reads alert ids, rule ids and the
triggering event's id and producer, never a user, a patient or a summary.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from ledger.pg import sql


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertTrigger:
    alert_id: int
    rule_id: str
    rule_version: int
    #: None when the triggering leaf has no index row (not an audit event).
    event_id: str | None
    producer_id: str | None


async def alert_triggers(dsn: str) -> list[AlertTrigger]:
    """Every compliance alert with its triggering event, oldest first."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(sql.ALERT_TRIGGERS)
    finally:
        await conn.close()
    return [
        AlertTrigger(
            alert_id=int(r["alert_id"]),
            rule_id=str(r["rule_id"]),
            rule_version=int(r["rule_version"]),
            event_id=None if r["event_id"] is None else str(r["event_id"]),
            producer_id=r["producer_id"],
        )
        for r in rows
    ]


async def events_present(dsn: str, event_ids: Sequence[uuid.UUID]) -> int:
    """How many of ``event_ids`` the ledger has appended (and indexed)."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql.EVENTS_PRESENT, list(event_ids)))
    finally:
        await conn.close()


async def unevaluated(dsn: str, event_ids: Sequence[uuid.UUID]) -> int:
    """How many of ``event_ids`` the rules evaluator has not passed yet (appended at or
    after its cursor in their log)."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql.EVENTS_UNEVALUATED, list(event_ids)))
    finally:
        await conn.close()
