"""The PostgreSQL adapter of the HIPAA reports (role ``ledger_reader``: SELECT only).

Invariant: this adapter runs only the parameterised SELECTs of ``ledger.pg.sql.reports``,
each report inside one read-only REPEATABLE READ transaction, so the events and the
checkpoints a report names come from one snapshot. Events are *selected* through the
``events`` index, but every field a report uses is *decoded from the leaf* (the bytes the
Merkle tree commits to) with the stored writer schemas; a leaf that does not decode, or
decodes to another event id than its index row, raises ``VerificationError``. No report
reads more than ``max_rows`` events: past that it raises ``MalformedInputError`` asking
for a narrower request, before any leaf is read. The report logic itself is
``ledger.audit.reports`` (pure).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, TypedDict

import asyncpg

from ledger.audit.query import LedgerPosition
from ledger.audit.records import JsonValue, SchemaSet, StoredSchema
from ledger.audit.reports import (
    DEFAULT_RELAY_DEADLINES,
    DISCLOSURE_BASIS_DETAIL,
    KIND_ACCESS,
    KIND_LEDGER_READ,
    KIND_RELAY,
    KIND_SECURITY,
    MAX_LOOKBACK_YEARS,
    AccessRow,
    DisclosureAccounting,
    InvestigationReport,
    InvestigationScope,
    PatientRef,
    RecipientRef,
    RelayReport,
    RelayRow,
    ReportCheckpoint,
    StudyRef,
    accounting_period_start,
    build_disclosures,
    build_investigation,
    build_relay_report,
    check_identifier,
    check_window,
)
from ledger.errors import MalformedInputError, VerificationError
from ledger.log.leaf import decode_leaf
from ledger.pg import sql
from ledger.pg.pool import PooledAdapter, transient_as_unavailable
from ledger.pg.tree import Conn

PHI_ACCESS: Final = "philedger.audit.PhiAccessEvent"
RELAY: Final = "philedger.audit.CriticalResultRelay"
LEDGER_READ: Final = "philedger.audit.AuditLogUsed"
SECURITY: Final = "philedger.audit.SecurityEvent"

#: Default cap on the events one report reads.
DEFAULT_MAX_ROWS: Final = 50_000
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


@dataclass(frozen=True, slots=True, kw_only=True)
class _Decoded:
    """An event decoded from its leaf, with its id checked against its index row."""

    name: str
    rec: dict[str, JsonValue]
    event_id: uuid.UUID
    pos: LedgerPosition
    where: str


class PostgresReports(PooledAdapter):
    """Fetches what each report needs and builds it with ``ledger.audit.reports``.

    Connect it as ``ledger_reader`` (``LEDGER_READER_URL``): it only reads.
    """

    def __init__(
        self,
        *,
        dsn: str,
        pool_size: int = 4,
        command_timeout: float = 120.0,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be positive")
        super().__init__(dsn=dsn, pool_size=pool_size, command_timeout=command_timeout)
        self._max_rows = max_rows
        self._schemas: SchemaSet | None = None

    @property
    def max_rows(self) -> int:
        """The most events one report reads."""
        return self._max_rows

    # -------------------------------------------------------------- reports

    async def investigation(
        self, scope: InvestigationScope, *, threshold: int = 500
    ) -> InvestigationReport:
        """The breach investigation of ``scope``, against the latest checkpoint of each log
        it touches. Raises ``MalformedInputError`` when the scope matches more than
        ``max_rows`` events."""
        if not isinstance(scope, InvestigationScope):
            raise MalformedInputError("scope must be an InvestigationScope")
        cap = self._max_rows + 1
        async with self._snapshot() as conn:
            if scope.users:
                refs = await conn.fetch(
                    sql.INVESTIGATION_BY_USERS, list(scope.users), scope.start, scope.end,
                    scope.facility, list(scope.network_addresses), cap,
                )  # fmt: skip
            elif scope.network_addresses:
                refs = await conn.fetch(
                    sql.INVESTIGATION_BY_ADDRESSES, list(scope.network_addresses), scope.start,
                    scope.end, scope.facility, cap,
                )  # fmt: skip
            else:
                refs = await conn.fetch(
                    sql.INVESTIGATION_BY_FACILITY, scope.facility, scope.start, scope.end, cap
                )
            self._check_cap(
                refs, "the investigation scope; narrow the window or name fewer selectors"
            )
            rows = [_as_access(d) for d in await self._decode(conn, refs)]
            checkpoints = await self._checkpoints(conn, {r.position.log_id for r in rows})
        return build_investigation(scope, rows, checkpoints=checkpoints, threshold=threshold)

    async def disclosures(
        self,
        patient: PatientRef,
        *,
        now: datetime | None = None,
        lookback_years: int = MAX_LOOKBACK_YEARS,
        summarise_repeated: bool = False,
    ) -> DisclosureAccounting:
        """The accounting of disclosures of ``patient``'s PHI as requested at ``now``
        (default: the current time), over ``lookback_years`` (1-6)."""
        if not isinstance(patient, PatientRef):
            raise MalformedInputError("patient must be a PatientRef")
        when = datetime.now(UTC) if now is None else now
        start = accounting_period_start(when, lookback_years)
        async with self._snapshot() as conn:
            refs = await conn.fetch(
                sql.DISCLOSURE_CANDIDATES, patient.id, patient.issuer, start, when,
                self._max_rows + 1,
            )  # fmt: skip
            self._check_cap(refs, "this patient's accounting period; shorten the lookback")
            rows = [_as_access(_expect(d, PHI_ACCESS)) for d in await self._decode(conn, refs)]
        return build_disclosures(
            patient,
            rows,
            now=when,
            lookback_years=lookback_years,
            summarise_repeated=summarise_repeated,
        )

    async def relays(
        self,
        *,
        start: datetime,
        end: datetime,
        now: datetime | None = None,
        deadlines: Mapping[str, timedelta] = DEFAULT_RELAY_DEADLINES,
        facility: str | None = None,
        record_lag: timedelta = DEFAULT_RELAY_RECORD_LAG,
    ) -> RelayReport:
        """Critical-result relays identified in [start, end), optionally at one facility.

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
            refs = await conn.fetch(
                sql.RELAYS_RECORDED, start - RELAY_RECORD_LEAD, end + record_lag, facility,
                self._max_rows + 1,
            )  # fmt: skip
            self._check_cap(refs, "the relay window; narrow it or name a facility")
            rows = [_as_relay(_expect(d, RELAY)) for d in await self._decode(conn, refs)]
        return build_relay_report(rows, start=start, end=end, now=when, deadlines=deadlines)

    # -------------------------------------------------------------- plumbing

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

    async def _checkpoints(self, conn: Conn, log_ids: Iterable[int]) -> list[ReportCheckpoint]:
        ids = sorted(set(log_ids))
        if not ids:
            return []
        rows = await conn.fetch(sql.LATEST_CHECKPOINTS, ids)
        return [
            ReportCheckpoint(
                log_id=int(r["log_id"]), origin=r["origin"], size=int(r["size"]), note=r["note"]
            )
            for r in rows
        ]

    async def _decode(self, conn: Conn, refs: Sequence[asyncpg.Record]) -> list[_Decoded]:
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
        out: list[_Decoded] = []
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
            _check_id(record, event_id, where)
            if name not in (PHI_ACCESS, RELAY, LEDGER_READ, SECURITY):
                raise VerificationError(f"{where}: unexpected event schema {name}")
            out.append(_Decoded(name=name, rec=record, event_id=event_id, pos=pos, where=where))
        return out


# ------------------------------------------------------------------ decoded record -> rows


def _get(rec: Mapping[str, JsonValue], key: str, where: str) -> JsonValue:
    if key not in rec:
        raise VerificationError(f"{where}: decoded event has no field {key!r}")
    return rec[key]


def _str(rec: Mapping[str, JsonValue], key: str, where: str) -> str:
    value = _get(rec, key, where)
    if not isinstance(value, str):
        raise VerificationError(f"{where}: field {key!r} is not a string")
    return value


def _opt_str(rec: Mapping[str, JsonValue], key: str, where: str) -> str | None:
    value = rec.get(key)
    if value is not None and not isinstance(value, str):
        raise VerificationError(f"{where}: field {key!r} is not a string")
    return value


def _opt_int(rec: Mapping[str, JsonValue], key: str, where: str) -> int | None:
    value = rec.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise VerificationError(f"{where}: field {key!r} is not an integer")
    return value


def _map(rec: Mapping[str, JsonValue], key: str, where: str) -> dict[str, JsonValue]:
    value = _get(rec, key, where)
    if not isinstance(value, dict):
        raise VerificationError(f"{where}: field {key!r} is not a record")
    return value


def _opt_map(rec: Mapping[str, JsonValue], key: str, where: str) -> dict[str, JsonValue] | None:
    value = rec.get(key)
    if value is not None and not isinstance(value, dict):
        raise VerificationError(f"{where}: field {key!r} is not a record")
    return value


def _time(rec: Mapping[str, JsonValue], key: str, where: str) -> datetime:
    value = _opt_time(rec, key, where)
    if value is None:
        raise VerificationError(f"{where}: field {key!r} is missing")
    return value


def _opt_time(rec: Mapping[str, JsonValue], key: str, where: str) -> datetime | None:
    text = _opt_str(rec, key, where)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise VerificationError(f"{where}: field {key!r} is not a time") from exc
    if value.tzinfo is None:
        raise VerificationError(f"{where}: field {key!r} has no time zone")
    return value.astimezone(UTC)


def _study(rec: Mapping[str, JsonValue] | None, where: str) -> StudyRef | None:
    if rec is None:
        return None
    sops = rec.get("sop_classes") or []
    if not isinstance(sops, list) or not all(isinstance(s, str) for s in sops):
        raise VerificationError(f"{where}: study.sop_classes is not a list of strings")
    return StudyRef(
        uid=_str(rec, "uid", where),
        accession=_opt_str(rec, "accession", where),
        modality=_opt_str(rec, "modality", where),
        sop_classes=tuple(str(s) for s in sops),
        instances=_opt_int(rec, "instances", where),
    )


def _expect(d: _Decoded, name: str) -> _Decoded:
    if d.name != name:
        raise VerificationError(f"{d.where}: the index kind does not match the leaf ({d.name})")
    return d


def _check_id(rec: Mapping[str, JsonValue], event_id: uuid.UUID, where: str) -> None:
    decoded_id = _str(rec, "event_id", where)
    try:
        same = uuid.UUID(decoded_id) == event_id
    except ValueError:
        same = False
    if not same:
        raise VerificationError(
            f"{where}: the index says event {event_id} but the leaf holds {decoded_id}"
        )


class _Who(TypedDict):
    patient_id: str | None
    patient_issuer: str | None
    patient_state: str | None
    user_id: str
    user_name: str | None
    user_role: str | None
    user_org: str | None


def _who(
    rec: Mapping[str, JsonValue], user_field: str, where: str, *, patient_required: bool = False
) -> _Who:
    """The user and the patient of an event (which may name no patient, unless required)."""
    user = _map(rec, user_field, where)
    named = _map(rec, "patient", where) if patient_required else _opt_map(rec, "patient", where)
    return _Who(
        patient_id=None if named is None else _str(named, "id", where),
        patient_issuer=None if named is None else _opt_str(named, "issuer", where),
        patient_state=None if named is None else _opt_str(named, "state", where),
        user_id=_str(user, "user_id", where),
        user_name=_opt_str(user, "name", where),
        user_role=_opt_str(user, "role", where),
        user_org=_opt_str(user, "organization", where),
    )


def _as_access(d: _Decoded) -> AccessRow:
    """An event as an investigation or an accounting sees it. A relay appears as its
    sender's access to the finding, as the index projects it (action E, purpose TREAT,
    outcome SUCCESS once communicated, else MINOR_FAILURE); a read of the ledger as its
    caller's Audit Log Used (110101, action R), naming a patient only if its query did; a
    security event as its user's, naming a patient only if it did."""
    rec, where = d.rec, d.where
    event_time = _time(rec, "event_time", where)
    facility_id = _str(_map(rec, "facility", where), "id", where)
    if d.name == SECURITY:
        return AccessRow(
            event_id=d.event_id,
            kind=KIND_SECURITY,
            event_time=event_time,
            position=d.pos,
            facility_id=facility_id,
            **_who(rec, "actor", where),
            dicom_event_id=_str(rec, "dicom_event_id", where),
            event_type_code=_opt_str(rec, "event_type_code", where),
            action=_str(rec, "action", where),
            outcome=_str(rec, "outcome", where),
            network_address=_opt_str(rec, "network_address", where),
            purpose_of_use=_opt_str(rec, "purpose_of_use", where),
        )
    if d.name == LEDGER_READ:
        return AccessRow(
            event_id=d.event_id,
            kind=KIND_LEDGER_READ,
            event_time=event_time,
            position=d.pos,
            facility_id=facility_id,
            **_who(rec, "actor", where),
            dicom_event_id="110101",
            action="R",
            outcome=_str(rec, "outcome", where),
            network_address=_opt_str(rec, "network_address", where),
        )
    if d.name == RELAY:
        communicated = _opt_time(rec, "communicated_at", where)
        return AccessRow(
            event_id=d.event_id,
            event_time=event_time,
            position=d.pos,
            facility_id=facility_id,
            kind=KIND_RELAY,
            **_who(rec, "sender", where, patient_required=True),
            action="E",
            outcome="SUCCESS" if communicated is not None else "MINOR_FAILURE",
            study=_study(_map(rec, "study", where), where),
            purpose_of_use="TREAT",
        )
    recipient = _opt_map(rec, "recipient", where)
    details = _opt_map(rec, "details", where) or {}
    basis = details.get(DISCLOSURE_BASIS_DETAIL)
    return AccessRow(
        event_id=d.event_id,
        event_time=event_time,
        position=d.pos,
        facility_id=facility_id,
        kind=KIND_ACCESS,
        **_who(rec, "actor", where, patient_required=True),
        dicom_event_id=_str(rec, "dicom_event_id", where),
        event_type_code=_opt_str(rec, "event_type_code", where),
        action=_str(rec, "action", where),
        outcome=_str(rec, "outcome", where),
        study=_study(_opt_map(rec, "study", where), where),
        network_address=_opt_str(rec, "network_address", where),
        purpose_of_use=_opt_str(rec, "purpose_of_use", where),
        recipient=None
        if recipient is None
        else RecipientRef(
            name=_str(recipient, "name", where),
            address=_opt_str(recipient, "address", where),
            organization=_opt_str(recipient, "organization", where),
        ),
        disclosure_basis=basis if isinstance(basis, str) else None,
    )


def _as_relay(d: _Decoded) -> RelayRow:
    rec, where = d.rec, d.where
    patient = _map(rec, "patient", where)
    attempts = _get(rec, "attempts", where)
    if not isinstance(attempts, list):
        raise VerificationError(f"{where}: attempts is not a list")
    read_back = _get(rec, "read_back", where)
    if not isinstance(read_back, bool):
        raise VerificationError(f"{where}: read_back is not a boolean")
    recipient = _map(rec, "recipient", where)
    return RelayRow(
        event_id=d.event_id,
        event_time=_time(rec, "event_time", where),
        position=d.pos,
        facility_id=_str(_map(rec, "facility", where), "id", where),
        patient_id=_str(patient, "id", where),
        patient_issuer=_opt_str(patient, "issuer", where),
        study_uid=_str(_map(rec, "study", where), "uid", where),
        category=_str(rec, "category", where),
        identified_at=_time(rec, "identified_at", where),
        communicated_at=_opt_time(rec, "communicated_at", where),
        acknowledged_at=_opt_time(rec, "acknowledged_at", where),
        read_back=read_back,
        method=_str(rec, "method", where),
        sender_user_id=_str(_map(rec, "sender", where), "user_id", where),
        recipient_name=_str(recipient, "name", where),
        recipient_role=_str(recipient, "role", where),
        attempts=len(attempts),
        escalations=sum(
            1 for a in attempts if isinstance(a, dict) and a.get("outcome") == "ESCALATED"
        ),
    )
