"""The PostgreSQL side of the compliance report (role ``ledger_reader``: SELECT only).

Invariant: runs inside the report's one read-only REPEATABLE READ snapshot, after the
checkpoints were resolved: the facility's accesses, the registry log and the relays are
read from leaves below those checkpoints (decoded from the leaf, never from the index),
and the alert store only as recorded by the cut-off ``at``, which may not be later than
the database's clock (so no later alert can change a re-run). The registry reader here is
the report's own, kept small and replaceable by the shared one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import asyncpg

from ledger.audit.records import JsonValue
from ledger.audit.registry import REGISTRY_CHANGE, RegistryTimeline, parse_change
from ledger.audit.reports import (
    Closure,
    ComplianceReport,
    RegistryLog,
    ReportCheckpoint,
    build_relay_report,
)
from ledger.audit.reports.compliance import (
    CHECKLIST_RULES,
    AlertRow,
    ComplianceTally,
    build_compliance,
    month_window,
)
from ledger.audit.rules.checklist import ChecklistConfig
from ledger.audit.rules.model import AppendedEvent, Position
from ledger.errors import MalformedInputError, VerificationError
from ledger.pg import sql
from ledger.pg.reportrows import PHI_ACCESS, RELAY, Decoded, as_relay, expect
from ledger.pg.tree import Conn

#: Leaves of the registry log read per round trip, and accesses decoded per round trip.
_CHUNK = 5_000


class LeafDecoder(Protocol):
    """What the report adapter lends this module: leaf decoding with the writer schemas."""

    async def decode_refs(self, conn: Conn, refs: Sequence[asyncpg.Record]) -> list[Decoded]: ...

    async def decode_value(
        self, conn: Conn, leaf: bytes, where: str
    ) -> tuple[str, dict[str, JsonValue]]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ComplianceSettings:
    """What the report is computed with beyond its request: the checklist's configuration
    (time zone, roles), the relay deadlines, the registry log's topic and the row caps."""

    checklist: ChecklistConfig
    deadlines: Mapping[str, timedelta]
    registry_topic: str
    max_rows: int
    relay_lead: timedelta
    relay_lag: timedelta


def registry_checkpoint(cps: Sequence[ReportCheckpoint], topic: str) -> ReportCheckpoint | None:
    """The checkpoint of the registry's log (origin ``<ledger>/<topic>/0``), if named."""
    found = [c for c in cps if c.origin.rsplit("/", 2)[-2:] == [topic, "0"]]
    return found[0] if len(found) == 1 else None


async def read_registry(
    conn: Conn, decoder: LeafDecoder, cp: ReportCheckpoint | None
) -> RegistryTimeline:
    """Every registry change below the checkpoint, in leaf order."""
    timeline = RegistryTimeline()
    if cp is None:
        return timeline
    first = 0
    while first < cp.size:
        rows = await conn.fetch(sql.COMPLIANCE_REGISTRY_LEAVES, cp.log_id, first, cp.size, _CHUNK)
        if not rows:
            raise VerificationError(f"{cp.origin}: leaf {first} is missing below the checkpoint")
        for r in rows:
            index = int(r["leaf_index"])
            where = f"{cp.origin} leaf {index}"
            name, record = await decoder.decode_value(conn, bytes(r["leaf"]), where)
            if name != REGISTRY_CHANGE:
                raise VerificationError(f"{where}: not a registry change ({name})")
            event = AppendedEvent(
                position=Position(log_id=cp.log_id, leaf_index=index), schema=name, record=record
            )
            try:
                timeline.add(parse_change(event))
            except MalformedInputError as exc:
                raise VerificationError(f"{where}: {exc}") from exc
        first = int(rows[-1]["leaf_index"]) + 1
    return timeline


async def compute(
    conn: Conn,
    decoder: LeafDecoder,
    cps: Sequence[ReportCheckpoint],
    settings: ComplianceSettings,
    *,
    facility: str,
    month: str,
    at: datetime | None,
) -> ComplianceReport:
    """The report, as of ``cps`` and the cut-off ``at`` (default: the database's clock)."""
    start, end = month_window(month, settings.checklist.zone)
    clock: datetime = await conn.fetchval(sql.COMPLIANCE_NOW)
    when = clock if at is None else at
    if when > clock:
        raise MalformedInputError("at must not be later than now (later alerts would count)")
    bounds = ([c.log_id for c in cps], [c.size for c in cps])
    registry_cp = registry_checkpoint(cps, settings.registry_topic)
    tally = ComplianceTally(
        facility=facility,
        month=month,
        timeline=await read_registry(conn, decoder, registry_cp),
        config=settings.checklist,
        origins={c.log_id: c.origin for c in cps},
    )
    cap = settings.max_rows
    refs = await conn.fetch(sql.COMPLIANCE_ACCESSES, facility, start, end, cap + 1, *bounds)
    if len(refs) > cap:
        raise MalformedInputError(f"more than {cap} accesses at {facility} in {month}")
    for i in range(0, len(refs), _CHUNK):
        for d in await decoder.decode_refs(conn, refs[i : i + _CHUNK]):
            tally.add(_appended(expect(d, PHI_ACCESS)))
    relay_refs = await conn.fetch(
        sql.RELAYS_RECORDED, start - settings.relay_lead, end + settings.relay_lag, facility,
        cap + 1, *bounds,
    )  # fmt: skip
    if len(relay_refs) > cap:
        raise MalformedInputError(f"more than {cap} relay records at {facility} in {month}")
    relays = [as_relay(expect(d, RELAY)) for d in await decoder.decode_refs(conn, relay_refs)]
    return build_compliance(
        tally,
        at=when,
        alerts=await _alerts(conn, facility, when, bounds),
        evaluated_to={
            int(r["log_id"]): int(r["next_leaf"])
            for r in await conn.fetch(sql.COMPLIANCE_EVALUATED, bounds[0], when)
        },
        relays=build_relay_report(
            relays, start=start, end=end, now=when, deadlines=settings.deadlines, facility=facility
        ),
        ledger_reads=int(await conn.fetchval(sql.COMPLIANCE_LEDGER_READS, start, end, *bounds)),
        closures=await _closures(conn, facility, start, end, when),
        registry=None
        if registry_cp is None
        else RegistryLog(origin=registry_cp.origin, size=registry_cp.size),
    )


def _appended(d: Decoded) -> AppendedEvent:
    return AppendedEvent(
        position=Position(log_id=d.pos.log_id, leaf_index=d.pos.leaf_index),
        schema=d.name,
        record=d.rec,
    )


async def _alerts(
    conn: Conn, facility: str, when: datetime, bounds: tuple[list[int], list[int]]
) -> list[AlertRow]:
    rows = await conn.fetch(sql.COMPLIANCE_ALERTS, facility, list(CHECKLIST_RULES), when, *bounds)
    return [
        AlertRow(
            alert_id=int(r["alert_id"]),
            rule_id=r["rule_id"],
            rule_version=int(r["rule_version"]),
            trigger=Position(log_id=int(r["log_id"]), leaf_index=int(r["leaf_index"])),
            state=r["state"],
        )
        for r in rows
    ]


async def _closures(
    conn: Conn, facility: str, start: datetime, end: datetime, when: datetime
) -> list[Closure]:
    rows = await conn.fetch(sql.COMPLIANCE_CLOSURES, facility, start, end, when)
    return [
        Closure(
            alert_id=int(r["alert_id"]),
            rule_id=r["rule_id"],
            disposition=r["disposition"],
            closed_at=r["transitioned_at"],
            closed_by=r["transitioned_by"],
        )
        for r in rows
    ]
