"""The PostgreSQL side of the rules evaluator and of alert triage (role ledger_appender).

Invariant: the evaluator reads leaves in index order and decodes them with the stored
writer schemas, as the verifier and export do; ``commit`` writes a batch's new alerts,
their evidence, their first transition (open) and the log's cursor in one transaction,
under the log's evaluator lock, so a crash leaves either all of it or none. A triage
transition is one inserted row, checked against the alert's latest state in the same
transaction; a concurrent transition from the same state fails on the (alert, seq) key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ledger.audit.alertbook import AlertQuery
from ledger.audit.records import SchemaSet, StoredSchema
from ledger.audit.rules import (
    AlertState,
    AppendedEvent,
    Disposition,
    Finding,
    LeafBatch,
    Position,
    Transition,
    check_transition,
)
from ledger.audit.rules.alerts import (
    AlertDetail,
    AlertFilter,
    StoredAlert,
    StoredEvidence,
    StoredTransition,
)
from ledger.audit.rules.latechanges import LATER_ROLE, AlertTarget
from ledger.errors import ConflictError, LedgerError, MalformedInputError
from ledger.log.leaf import decode_leaf
from ledger.pg import sql
from ledger.pg.pool import PooledAdapter, PoolSettings, transient_as_unavailable

Conn = asyncpg.Connection | PoolConnectionProxy

#: Who opens an alert: the evaluator itself.
EVALUATOR: Final = "rules-evaluator"
OPENED_NOTE: Final = "raised by the rules evaluator"
DEFAULT_REGISTRY_TOPIC: Final = "compliance-registry"


class PostgresRulesStore(PooledAdapter):
    """``RulesStore`` and ``RegistryStore`` on PostgreSQL, plus the alert triage queries
    (``AlertBook`` and ``AlertTriage`` of ``ledger.audit.alertbook``: the API reads with a
    ``ledger_reader`` DSN, transitions need ``ledger_appender``). ``registry_topic`` names
    the registry's logs (setting LEDGER_REGISTRY_TOPIC)."""

    def __init__(
        self,
        *,
        dsn: str,
        pool_size: int = 2,
        command_timeout: float = 60.0,
        registry_topic: str = DEFAULT_REGISTRY_TOPIC,
        pool: PoolSettings | None = None,
    ) -> None:
        super().__init__(dsn=dsn, pool_size=pool_size, command_timeout=command_timeout, pool=pool)
        self._schemas: SchemaSet | None = None
        self._registry_topic = registry_topic

    # ----------------------------------------------------------- evaluator

    async def log_ids(self) -> Sequence[int]:
        with transient_as_unavailable():
            return [int(r["log_id"]) for r in await self.pool.fetch(sql.RULES_LOG_IDS)]

    async def cursor(self, log_id: int) -> int:
        with transient_as_unavailable():
            return int(await self.pool.fetchval(sql.RULES_CURSOR, log_id))

    async def leaves(self, log_id: int, first: int, limit: int) -> LeafBatch:
        with transient_as_unavailable():
            rows = await self.pool.fetch(sql.RULES_LEAVES, log_id, first, limit)
        if not rows:
            return LeafBatch(events=(), next_leaf=first)
        events: list[AppendedEvent] = []
        undecodable = 0
        for r in rows:
            event = await self._decode(log_id, int(r["leaf_index"]), bytes(r["leaf"]))
            if event is None:
                undecodable += 1
            else:
                events.append(event)
        return LeafBatch(
            events=tuple(events),
            next_leaf=int(rows[-1]["leaf_index"]) + 1,
            undecodable=undecodable,
        )

    async def _decode(self, log_id: int, index: int, leaf: bytes) -> AppendedEvent | None:
        try:
            value = decode_leaf(leaf).value
            try:
                name, record = (await self._schema_set(reload=False)).decode_native(value)
            except MalformedInputError:  # a schema registered after the set was loaded
                name, record = (await self._schema_set(reload=True)).decode_native(value)
        except LedgerError:
            return None  # `ledger verify` reports it; no rule can read it
        return AppendedEvent(
            position=Position(log_id=log_id, leaf_index=index), schema=name, record=record
        )

    async def _schema_set(self, *, reload: bool) -> SchemaSet:
        if self._schemas is None or reload:
            with transient_as_unavailable():
                rows = await self.pool.fetch(sql.RULES_WRITER_SCHEMAS)
            self._schemas = SchemaSet(
                StoredSchema(
                    fingerprint=bytes(r["fingerprint"]),
                    full_name=r["full_name"],
                    schema_json=r["schema_json"],
                )
                for r in rows
            )
        return self._schemas

    async def commit(self, log_id: int, next_leaf: int, findings: Sequence[Finding]) -> int:
        with transient_as_unavailable():
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(sql.RULES_LOCK_LOG, log_id)
                raised = 0
                for f in findings:
                    raised += await _insert_finding(conn, f)
                await conn.execute(sql.INSERT_RULE_CURSOR, log_id, next_leaf, raised)
        return raised

    # ------------------------------------------------------------ registry

    async def registry_log_ids(self) -> Sequence[int]:
        with transient_as_unavailable():
            rows = await self.pool.fetch(sql.RULES_REGISTRY_LOG_IDS, self._registry_topic)
        return [int(r["log_id"]) for r in rows]

    async def later_candidates(
        self,
        rule_ids: Sequence[str],
        users: Sequence[str],
        facilities: Sequence[str],
        since: datetime,
        until: datetime,
    ) -> Sequence[AlertTarget]:
        with transient_as_unavailable():
            rows = await self.pool.fetch(
                sql.RULES_LATER_CANDIDATES, list(rule_ids), list(users), list(facilities),
                since, until,
            )  # fmt: skip
        return [
            AlertTarget(
                rule_id=r["rule_id"],
                user_id=r["user_id"] or "",
                facility_id=r["facility_id"] or "",
                at=r["event_time"],
                state=r["patient_state"],
                alert_id=int(r["alert_id"]),
            )
            for r in rows
        ]

    async def commit_registry(
        self, log_id: int, next_leaf: int, evidence: Sequence[tuple[int, Position]]
    ) -> int:
        with transient_as_unavailable():
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(sql.RULES_LOCK_LOG, log_id)
                added = 0
                for alert_id, pos in evidence:
                    done = await conn.execute(
                        sql.INSERT_LATE_EVIDENCE, alert_id, pos.log_id, pos.leaf_index,
                        LATER_ROLE,
                    )  # fmt: skip
                    added += done.endswith(" 1")
                await conn.execute(sql.INSERT_RULE_CURSOR, log_id, next_leaf, 0)
        return added

    # -------------------------------------------------------------- triage

    async def alerts(self, where: AlertFilter) -> list[StoredAlert]:
        state = None if where.state is None else where.state.value
        with transient_as_unavailable():
            rows = await self.pool.fetch(
                sql.ALERTS_LIST, state, where.rule_id, where.user_id, where.limit
            )
        return [_alert(r) for r in rows]

    async def page(self, query: AlertQuery) -> list[StoredAlert]:
        """``AlertBook.page``: the API's filtered, keyset-paged listing."""
        state = None if query.state is None else query.state.value
        with transient_as_unavailable():
            rows = await self.pool.fetch(
                sql.ALERTS_QUERY, state, query.rule_id, query.facility_id, query.user_id,
                query.since, query.until, query.before, query.limit,
            )  # fmt: skip
        return [_alert(r) for r in rows]

    async def alert(self, alert_id: int) -> AlertDetail | None:
        with transient_as_unavailable():
            async with (
                self.pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                row = await conn.fetchrow(sql.ALERT_ONE, alert_id)
                if row is None:
                    return None
                evidence = await conn.fetch(sql.ALERT_EVIDENCE, alert_id)
                transitions = await conn.fetch(sql.ALERT_TRANSITIONS, alert_id)
        return AlertDetail(
            alert=_alert(row),
            evidence=tuple(
                StoredEvidence(
                    log_id=int(e["log_id"]),
                    origin=e["origin"],
                    leaf_index=int(e["leaf_index"]),
                    role=e["role"],
                )
                for e in evidence
            ),
            transitions=tuple(_transition(t) for t in transitions),
        )

    async def transition(self, alert_id: int, wanted: Transition) -> StoredTransition:
        """Append ``wanted`` to the alert's transitions; ``ConflictError`` when its current
        state does not allow it (or another transition got there first),
        ``MalformedInputError`` when there is no such alert."""
        with transient_as_unavailable():
            async with self.pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(sql.ALERT_ONE, alert_id)
                if row is None:
                    raise MalformedInputError(f"no alert {alert_id}")
                current = _alert(row)
                check_transition(alert_id, current.state, wanted)
                try:
                    await conn.execute(
                        sql.INSERT_ALERT_TRANSITION, alert_id, current.seq + 1,
                        wanted.state.value,
                        None if wanted.disposition is None else wanted.disposition.value,
                        wanted.note, wanted.by,
                    )  # fmt: skip
                except asyncpg.UniqueViolationError as exc:
                    raise ConflictError(
                        f"alert {alert_id} changed while this transition was made; look again"
                    ) from exc
                done = await conn.fetch(sql.ALERT_TRANSITIONS, alert_id)
        return _transition(done[-1])


async def _insert_finding(conn: Conn, f: Finding) -> int:
    alert_id = await conn.fetchval(
        sql.INSERT_RULE_ALERT, f.rule_id, f.rule_version, f.severity.value, f.facility_id,
        f.user_id, None if f.patient is None else f.patient.id,
        None if f.patient is None else f.patient.issuer, f.summary, f.trigger.log_id,
        f.trigger.leaf_index, json.dumps(dict(f.thresholds), sort_keys=True),
    )  # fmt: skip
    if alert_id is None:
        return 0  # raised before (a re-evaluation or a replayed stretch)
    evidence = sorted({(e.position.log_id, e.position.leaf_index, e.role) for e in f.evidence})
    await conn.executemany(sql.INSERT_ALERT_EVIDENCE, [(alert_id, *e) for e in evidence])
    await conn.execute(
        sql.INSERT_ALERT_TRANSITION, alert_id, 1, AlertState.OPEN.value, None, OPENED_NOTE,
        EVALUATOR,
    )  # fmt: skip
    return 1


def _alert(r: asyncpg.Record) -> StoredAlert:
    return StoredAlert(
        alert_id=int(r["alert_id"]),
        rule_id=r["rule_id"],
        rule_version=int(r["rule_version"]),
        severity=r["severity"],
        facility_id=r["facility_id"],
        user_id=r["user_id"],
        patient_id=r["patient_id"],
        patient_issuer=r["patient_issuer"],
        summary=r["summary"],
        log_id=int(r["log_id"]),
        origin=r["origin"],
        leaf_index=int(r["leaf_index"]),
        thresholds=json.loads(r["thresholds"]),
        raised_at=r["raised_at"],
        state=AlertState(r["state"]),
        disposition=None if r["disposition"] is None else Disposition(r["disposition"]),
        seq=int(r["seq"]),
    )


def _transition(t: asyncpg.Record) -> StoredTransition:
    return StoredTransition(
        seq=int(t["seq"]),
        state=AlertState(t["state"]),
        disposition=None if t["disposition"] is None else Disposition(t["disposition"]),
        note=t["note"],
        by=t["transitioned_by"],
        at=t["transitioned_at"],
    )
