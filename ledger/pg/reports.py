"""The PostgreSQL adapter of the HIPAA reports (role ``ledger_reader``: SELECT only).

Invariant: this adapter runs only the parameterised SELECTs of ``ledger.pg.sql.reports``,
each report inside one read-only REPEATABLE READ transaction, so the events and the
checkpoints a report names come from one snapshot; and every report is computed against a
set of signed checkpoints (``as_of``, default the latest of each log, checked by
``ledger.pg.asof``) and reads no event at or past their sizes, so the same request as of
the same checkpoints gives the same report however much the ledger has grown. Events
are *selected* through the ``events`` index, but every field a report uses is *decoded
from the leaf* (the bytes the Merkle tree commits to) with the stored writer schemas; a
leaf that does not decode, or decodes to another event id than its index row, raises
``VerificationError``. No report reads more than ``max_rows`` events: past that it raises
``MalformedInputError`` asking for a narrower request, before any leaf is read. The report
logic itself is ``ledger.audit.reports`` (pure).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg

from ledger.audit.query import LedgerPosition
from ledger.audit.records import JsonValue, SchemaSet, StoredSchema
from ledger.audit.reports import (
    DEFAULT_RELAY_DEADLINES,
    MAX_LOOKBACK_YEARS,
    ComplianceReport,
    DisclosureAccounting,
    InvestigationReport,
    InvestigationScope,
    PatientRef,
    RelayReport,
    ReportCheckpoint,
    Sealed,
    accounting_period_start,
    build_disclosures,
    build_investigation,
    build_relay_report,
    check_identifier,
    check_window,
    seal,
)
from ledger.audit.reports.asof import CheckpointRef
from ledger.audit.rules.checklist import ChecklistConfig
from ledger.errors import MalformedInputError, VerificationError
from ledger.log.leaf import decode_leaf
from ledger.log.note import Verifier
from ledger.pg import sql
from ledger.pg.asof import CheckpointResolver
from ledger.pg.compliancereport import ComplianceSettings, compute
from ledger.pg.pool import PooledAdapter, PoolSettings, transient_as_unavailable
from ledger.pg.reportrows import (
    PHI_ACCESS,
    RELAY,
    REPORTED_SCHEMAS,
    Decoded,
    as_access,
    as_relay,
    check_id,
    expect,
)
from ledger.pg.tree import Conn

#: Default cap on the events one report reads.
DEFAULT_MAX_ROWS: Final = 50_000
#: Default cap on one facility's accesses in a month (the compliance report decodes them
#: in chunks and keeps only counts and exceptions).
DEFAULT_MAX_COMPLIANCE_ROWS: Final = 500_000
#: The registry's topic (``LEDGER_REGISTRY_TOPIC``): its log is ``<ledger>/<topic>/0``.
DEFAULT_REGISTRY_TOPIC: Final = "compliance-registry"
#: Leaves fetched per round trip.
_LEAF_CHUNK: Final = 5_000
#: A relay record is made after the finding was identified; this much earlier is tolerated
#: (clock skew between the radiologist's workstation and the producer).
RELAY_RECORD_LEAD: Final = timedelta(days=1)
#: Default: how long after the window's end a relay record is still looked for (a late or
#: overdue relay may be recorded days after it was identified).
DEFAULT_RELAY_RECORD_LAG: Final = timedelta(days=30)


def _position(r: asyncpg.Record) -> tuple[uuid.UUID, LedgerPosition]:
    return r["event_id"], LedgerPosition(
        log_id=int(r["log_id"]), origin=r["origin"], leaf_index=int(r["leaf_index"])
    )


def _bounds(cps: Sequence[ReportCheckpoint]) -> tuple[list[int], list[int]]:
    """The log ids and sizes every report query is bounded by (leaf index < size)."""
    return [c.log_id for c in cps], [c.size for c in cps]


class PostgresReports(PooledAdapter):
    """Fetches what each report needs and builds it with ``ledger.audit.reports``.

    Connect it as ``ledger_reader`` (``LEDGER_READER_URL``): it only reads. With
    ``ledger_name``, a named checkpoint of another ledger is refused; with ``verifiers``
    (the trusted keys), so is one whose note does not verify with them. The compliance
    report is computed with ``checklist`` (the rules' time zone and roles),
    ``relay_deadlines`` and the registry log of ``registry_topic``.
    """

    def __init__(
        self,
        *,
        dsn: str,
        pool_size: int = 4,
        command_timeout: float = 120.0,
        max_rows: int = DEFAULT_MAX_ROWS,
        ledger_name: str | None = None,
        verifiers: Sequence[Verifier] = (),
        checklist: ChecklistConfig | None = None,
        relay_deadlines: Mapping[str, timedelta] = DEFAULT_RELAY_DEADLINES,
        registry_topic: str = DEFAULT_REGISTRY_TOPIC,
        max_compliance_rows: int = DEFAULT_MAX_COMPLIANCE_ROWS,
        pool: PoolSettings | None = None,
    ) -> None:
        if max_rows < 1 or max_compliance_rows < 1:
            raise ValueError("max_rows must be positive")
        super().__init__(dsn=dsn, pool_size=pool_size, command_timeout=command_timeout, pool=pool)
        self._max_rows = max_rows
        self._compliance = ComplianceSettings(
            checklist=checklist or ChecklistConfig(),
            deadlines=dict(relay_deadlines),
            registry_topic=registry_topic,
            max_rows=max_compliance_rows,
            relay_lead=RELAY_RECORD_LEAD,
            relay_lag=DEFAULT_RELAY_RECORD_LAG,
        )
        self._resolver = CheckpointResolver(ledger_name=ledger_name, verifiers=verifiers)
        self._schemas: SchemaSet | None = None

    @property
    def max_rows(self) -> int:
        """The most events one report reads."""
        return self._max_rows

    # -------------------------------------------------------------- reports

    async def investigation(
        self,
        scope: InvestigationScope,
        *,
        threshold: int = 500,
        as_of: Sequence[CheckpointRef] | None = None,
    ) -> InvestigationReport:
        """The breach investigation of ``scope`` (``sealed_investigation``'s report)."""
        return (await self.sealed_investigation(scope, threshold=threshold, as_of=as_of)).report

    async def sealed_investigation(
        self,
        scope: InvestigationScope,
        *,
        threshold: int = 500,
        as_of: Sequence[CheckpointRef] | None = None,
    ) -> Sealed[InvestigationReport]:
        """The breach investigation of ``scope`` as of ``as_of`` (default: the latest
        signed checkpoint of each log). Raises ``MalformedInputError`` when the scope
        matches more than ``max_rows`` events or a checkpoint is refused."""
        if not isinstance(scope, InvestigationScope):
            raise MalformedInputError("scope must be an InvestigationScope")
        cap = self._max_rows + 1
        async with self._snapshot() as conn:
            cps = await self._resolver.resolve(conn, as_of)
            b = _bounds(cps)
            if scope.users:
                refs = await conn.fetch(
                    sql.INVESTIGATION_BY_USERS, list(scope.users), scope.start, scope.end,
                    scope.facility, list(scope.network_addresses), cap, *b,
                )  # fmt: skip
            elif scope.network_addresses:
                refs = await conn.fetch(
                    sql.INVESTIGATION_BY_ADDRESSES, list(scope.network_addresses), scope.start,
                    scope.end, scope.facility, cap, *b,
                )  # fmt: skip
            else:
                refs = await conn.fetch(
                    sql.INVESTIGATION_BY_FACILITY, scope.facility, scope.start, scope.end, cap, *b
                )
            self._check_cap(
                refs, "the investigation scope; narrow the window or name fewer selectors"
            )
            rows = [as_access(d) for d in await self._decode(conn, refs)]
        report = build_investigation(scope, rows, checkpoints=cps, threshold=threshold)
        return seal(report, cps)

    async def disclosures(
        self,
        patient: PatientRef,
        *,
        now: datetime | None = None,
        lookback_years: int = MAX_LOOKBACK_YEARS,
        summarise_repeated: bool = False,
        as_of: Sequence[CheckpointRef] | None = None,
    ) -> DisclosureAccounting:
        """The accounting of disclosures of ``patient`` (``sealed_disclosures``'s)."""
        sealed = await self.sealed_disclosures(
            patient,
            now=now,
            lookback_years=lookback_years,
            summarise_repeated=summarise_repeated,
            as_of=as_of,
        )
        return sealed.report

    async def sealed_disclosures(
        self,
        patient: PatientRef,
        *,
        now: datetime | None = None,
        lookback_years: int = MAX_LOOKBACK_YEARS,
        summarise_repeated: bool = False,
        as_of: Sequence[CheckpointRef] | None = None,
    ) -> Sealed[DisclosureAccounting]:
        """The accounting of disclosures of ``patient``'s PHI as requested at ``now``
        (default: the current time), over ``lookback_years`` (1-6), as of ``as_of``."""
        if not isinstance(patient, PatientRef):
            raise MalformedInputError("patient must be a PatientRef")
        when = datetime.now(UTC) if now is None else now
        start = accounting_period_start(when, lookback_years)
        async with self._snapshot() as conn:
            cps = await self._resolver.resolve(conn, as_of)
            refs = await conn.fetch(
                sql.DISCLOSURE_CANDIDATES, patient.id, patient.issuer, start, when,
                self._max_rows + 1, *_bounds(cps),
            )  # fmt: skip
            self._check_cap(refs, "this patient's accounting period; shorten the lookback")
            rows = [as_access(expect(d, PHI_ACCESS)) for d in await self._decode(conn, refs)]
        report = build_disclosures(
            patient,
            rows,
            now=when,
            lookback_years=lookback_years,
            summarise_repeated=summarise_repeated,
        )
        return seal(report, cps)

    async def relays(
        self,
        *,
        start: datetime,
        end: datetime,
        now: datetime | None = None,
        deadlines: Mapping[str, timedelta] = DEFAULT_RELAY_DEADLINES,
        facility: str | None = None,
        record_lag: timedelta = DEFAULT_RELAY_RECORD_LAG,
        as_of: Sequence[CheckpointRef] | None = None,
    ) -> RelayReport:
        """Critical-result relays identified in [start, end) (``sealed_relays``'s)."""
        sealed = await self.sealed_relays(
            start=start, end=end, now=now, deadlines=deadlines, facility=facility,
            record_lag=record_lag, as_of=as_of,
        )  # fmt: skip
        return sealed.report

    async def sealed_relays(
        self,
        *,
        start: datetime,
        end: datetime,
        now: datetime | None = None,
        deadlines: Mapping[str, timedelta] = DEFAULT_RELAY_DEADLINES,
        facility: str | None = None,
        record_lag: timedelta = DEFAULT_RELAY_RECORD_LAG,
        as_of: Sequence[CheckpointRef] | None = None,
    ) -> Sealed[RelayReport]:
        """Critical-result relays identified in [start, end), optionally at one facility,
        as of ``as_of``.

        Relay records are found by when they were made: from ``RELAY_RECORD_LEAD`` before
        ``start`` to ``record_lag`` after ``end``; a relay recorded later than that is
        seen by a report with a later window end.
        """
        start, end = check_window(start, end)
        if facility is not None:
            check_identifier("facility", facility)
        if not timedelta(0) <= record_lag <= timedelta(days=366):
            raise MalformedInputError("record_lag must be between 0 and 366 days")
        when = datetime.now(UTC) if now is None else now
        async with self._snapshot() as conn:
            cps = await self._resolver.resolve(conn, as_of)
            refs = await conn.fetch(
                sql.RELAYS_RECORDED, start - RELAY_RECORD_LEAD, end + record_lag, facility,
                self._max_rows + 1, *_bounds(cps),
            )  # fmt: skip
            self._check_cap(refs, "the relay window; narrow it or name a facility")
            rows = [as_relay(expect(d, RELAY)) for d in await self._decode(conn, refs)]
        report = build_relay_report(
            rows, start=start, end=end, now=when, deadlines=deadlines, facility=facility
        )
        return seal(report, cps)

    async def sealed_compliance(
        self,
        *,
        facility: str,
        month: str,
        at: datetime | None = None,
        as_of: Sequence[CheckpointRef] | None = None,
    ) -> Sealed[ComplianceReport]:
        """The compliance report of ``facility`` for calendar month ``month`` (YYYY-MM, in
        the checklist's time zone) as of ``as_of``, with the alert store as recorded by
        ``at`` (default: now; a later one is refused)."""
        check_identifier("facility", facility)
        async with self._snapshot() as conn:
            cps = await self._resolver.resolve(conn, as_of)
            report = await compute(
                conn, self, cps, self._compliance, facility=facility, month=month, at=at
            )
        return seal(report, cps)

    # -------------------------------------------------------------- plumbing

    async def decode_refs(self, conn: Conn, refs: Sequence[asyncpg.Record]) -> list[Decoded]:
        """Each referenced event decoded from its leaf (``ledger.pg.compliancereport``)."""
        return await self._decode(conn, refs)

    async def decode_value(
        self, conn: Conn, leaf: bytes, where: str
    ) -> tuple[str, dict[str, JsonValue]]:
        """A leaf's record (any stored writer schema) and its schema's full name."""
        schemas = await self._schema_set(conn, reload=False)
        try:
            value = decode_leaf(leaf).value
            if schemas.name_of(value[2:10]) is None:
                schemas = await self._schema_set(conn, reload=True)
            return schemas.decode(value)
        except MalformedInputError as exc:
            raise VerificationError(f"{where} does not decode: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[Conn]:
        with transient_as_unavailable():
            async with (
                self.pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                yield conn

    def _check_cap(self, refs: Sequence[asyncpg.Record], what: str) -> None:
        if len(refs) > self._max_rows:
            raise MalformedInputError(f"more than {self._max_rows} events match {what}")

    async def _schema_set(self, conn: Conn, *, reload: bool) -> SchemaSet:
        if self._schemas is None or reload:
            rows = await conn.fetch(sql.REPORT_WRITER_SCHEMAS)
            self._schemas = SchemaSet(
                StoredSchema(
                    fingerprint=bytes(r["fingerprint"]),
                    full_name=r["full_name"],
                    schema_json=r["schema_json"],
                )
                for r in rows
            )
        return self._schemas

    async def _decode(self, conn: Conn, refs: Sequence[asyncpg.Record]) -> list[Decoded]:
        """Each referenced event, decoded from its leaf (in the order of ``refs``)."""
        wanted = [_position(r) for r in refs]
        leaves: dict[tuple[int, int], bytes] = {}
        for i in range(0, len(wanted), _LEAF_CHUNK):
            chunk = wanted[i : i + _LEAF_CHUNK]
            rows = await conn.fetch(
                sql.REPORT_LEAVES_AT,
                [p.log_id for _, p in chunk],
                [p.leaf_index for _, p in chunk],
            )
            for r in rows:
                leaves[(int(r["log_id"]), int(r["leaf_index"]))] = bytes(r["leaf"])
        schemas = await self._schema_set(conn, reload=False)
        out: list[Decoded] = []
        for event_id, pos in wanted:
            leaf = leaves.get((pos.log_id, pos.leaf_index))
            where = f"{pos.origin} leaf {pos.leaf_index}"
            if leaf is None:
                raise VerificationError(f"{where}: indexed event {event_id} has no leaf")
            try:
                value = decode_leaf(leaf).value
                if schemas.name_of(value[2:10]) is None:
                    schemas = await self._schema_set(conn, reload=True)
                name, record = schemas.decode(value)
            except MalformedInputError as exc:
                raise VerificationError(f"{where} does not decode: {exc}") from exc
            check_id(record, event_id, where)
            if name not in REPORTED_SCHEMAS:
                raise VerificationError(f"{where}: unexpected event schema {name}")
            out.append(Decoded(name=name, rec=record, event_id=event_id, pos=pos, where=where))
        return out
