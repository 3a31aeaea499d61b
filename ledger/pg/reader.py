"""The PostgreSQL reader: the API's read-only queries (role ledger_reader).

Invariant: this adapter only ever runs SELECTs; it connects as a role that may
do nothing else, so a bug here cannot change the ledger. A listing's entries are read
in one read-only transaction that first sees the signed sizes it is pinned to, so on a
streaming replica that has not replayed them yet it answers "retry" rather than an
incomplete page (docs/postgres.md).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Final, cast

import asyncpg

from ledger.audit.auth import Principal, Role, TokenHash
from ledger.audit.disclosure import index_cells
from ledger.audit.query import (
    AccessEntry,
    AccessRow,
    Cursor,
    EventProof,
    HistoryQuery,
    LedgerPosition,
    LogInfo,
    LogSeal,
    SignedCheckpoint,
    Snapshot,
    StoredEvent,
)
from ledger.audit.unreadable import UnreadablePeriod
from ledger.errors import MalformedInputError, PushbackError, UnavailableError
from ledger.log import tiles
from ledger.pg import sql, tree
from ledger.pg.pool import PooledAdapter, PoolSettings, unavailable_when_transient
from ledger.pg.sql.periods import DETACHED_PERIODS

logger = logging.getLogger("ledger.pg.reader")

#: SQLSTATE of ``ledger_require_signed`` (migration 0020): this server does not yet have
#: the signed sizes a listing is pinned to. A replica behind the server that gave the
#: snapshot would otherwise answer a page with entries missing; signed sizes only grow,
#: and checkpoints commit after their leaves, so once they are seen every leaf they
#: cover is visible in the same snapshot.
NOT_YET_SIGNED: Final = "LDG01"
_BEHIND: Final = (
    "this database server has not yet replayed the signed checkpoints the listing is pinned to"
)
_NOT_MIGRATED: Final = (
    "the database schema is older than this version (ledger_require_signed, migration "
    "0020, is missing): run `ledger migrate`"
)

#: How long a snapshot of the signed sizes is reused (a checkpoint is signed every ~1 s).
SNAPSHOT_TTL: Final = 0.25
#: How long a token lookup is reused: a revocation takes effect within this time.
PRINCIPAL_TTL: Final = 30.0


def _entry(r: asyncpg.Record) -> AccessEntry:
    return AccessEntry(
        event_id=r["event_id"],
        kind=r["kind"],
        event_time=r["event_time"],
        facility_id=r["facility_id"],
        patient_id=r["patient_id"],
        patient_issuer=r["patient_issuer"],
        patient_state=r["patient_state"],
        user_id=r["user_id"],
        user_name=r["user_name"],
        user_role=r["user_role"],
        user_org=r["user_org"],
        dicom_event_id=r["dicom_event_id"],
        action=r["action"],
        outcome=r["outcome"],
        study_uid=r["study_uid"],
        accession=r["accession"],
        network_address=r["network_address"],
        purpose_of_use=r["purpose_of_use"],
        position=LedgerPosition(log_id=r["log_id"], origin=r["origin"], leaf_index=r["leaf_index"]),
        via_disclosure=bool(r.get("via_disclosure", False)),
    )


def _label(start: date) -> str:
    """A detached period's label: ``2021-03`` for a month (its first day), else the day."""
    return f"{start.year:04d}-{start.month:02d}" if start.day == 1 else start.isoformat()


class PostgresReader(PooledAdapter):
    def __init__(self, *, dsn: str, pool_size: int = 8, pool: PoolSettings | None = None) -> None:
        # No JIT: every query here is a short, indexed lookup, and PostgreSQL's cost guess
        # for "ranges containing a point" is high enough to trigger JIT compilation that
        # costs more than the query (benchmarks/attribution.py).
        super().__init__(
            dsn=dsn,
            pool_size=pool_size,
            command_timeout=30,
            server_settings={"jit": "off"},
            pool=pool,
            # SELECTs in transactions only: nothing of a session outlives its use.
            stateless_sessions=True,
        )
        self._tiles = tree.TileCache()
        self._snapshot: tuple[float, Snapshot] | None = None
        self._origins: dict[int, str] = {}
        self._principals: dict[TokenHash, tuple[float, Principal | None]] = {}

    @property
    def _p(self) -> asyncpg.Pool:
        return self.pool

    @unavailable_when_transient
    async def snapshot(self, *, fresh: bool = False) -> Snapshot:
        now = time.monotonic()
        cached = self._snapshot
        if cached is not None and now - cached[0] < SNAPSHOT_TTL and not fresh:
            return cached[1]
        rows = await self._p.fetch(sql.SIGNED_SIZES)
        top = max((int(r["log_id"]) for r in rows), default=0)
        sizes = [0] * top
        for r in rows:
            sizes[int(r["log_id"]) - 1] = int(r["size"])
            self._origins[int(r["log_id"])] = str(r["origin"])
        snap = Snapshot(sizes=tuple(sizes))
        self._snapshot = (now, snap)
        return snap

    @unavailable_when_transient
    async def origins(self) -> Mapping[int, str]:
        if not self._origins:
            await self.snapshot()
        return self._origins

    @unavailable_when_transient
    async def history(
        self, query: HistoryQuery, *, snapshot: Snapshot, limit: int, after: Cursor | None
    ) -> Sequence[AccessEntry]:
        return [_entry(r) for r in await self._signed_rows(query, snapshot, limit, after)]

    @unavailable_when_transient
    async def history_rows(
        self, query: HistoryQuery, *, snapshot: Snapshot, limit: int, after: Cursor | None
    ) -> Sequence[AccessRow]:
        """``history`` as rows: the statements' columns are in ``AccessRow``'s order, and a
        ``Record`` indexes and unpacks as a tuple does."""
        return cast(Sequence[AccessRow], await self._signed_rows(query, snapshot, limit, after))

    async def _signed_rows(
        self, query: HistoryQuery, snapshot: Snapshot, limit: int, after: Cursor | None
    ) -> list[asyncpg.Record]:
        """One statement: it refuses, before any row, when this server lacks the signed
        sizes the snapshot pins (migration 0020), else returns the page, both in one
        snapshot (#19: one round trip, where BEGIN, check, page, COMMIT took four)."""
        try:
            async with self._p.acquire() as conn:
                return await self._history_rows(conn, query, snapshot, limit, after)
        except asyncpg.UndefinedFunctionError as exc:
            logger.error("%s", _NOT_MIGRATED)  # the fix, for the operator (no PHI in it)
            raise UnavailableError(_NOT_MIGRATED) from exc
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == NOT_YET_SIGNED:
                raise PushbackError(_BEHIND, retry_after=1.0) from exc
            raise

    @staticmethod
    async def _history_rows(
        conn: tree.Conn,
        query: HistoryQuery,
        snapshot: Snapshot,
        limit: int,
        after: Cursor | None,
    ) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await conn.fetch(
            sql.HISTORY_BY[query.key.value],
            query.value,
            query.qualifier,
            list(snapshot.sizes),
            query.since,
            query.until,
            query.action,
            query.facility,
            query.outcome,
            None if after is None else after.event_time,
            None if after is None else after.event_id,
            limit,
            query.user,
            query.study,
            list(query.event_types) or None,
            list(query.actions) or None,
            list(query.outcomes) or None,
            list(query.facilities) or None,
            list(query.producers) or None,
            query.address_prefix,
            query.user_name_prefix,
        )
        return rows

    @unavailable_when_transient
    async def detached_periods(self) -> Sequence[UnreadablePeriod]:
        # Not cached: an answer reads this after its rows, so a period detached while it
        # ran is named (the table is tiny and append-only).
        rows = await self._p.fetch(DETACHED_PERIODS)
        return [
            UnreadablePeriod(
                period=_label(r["period"]),
                state=str(r["state"]),
                archive=bytes(r["manifest_digest"]).hex(),
                first_event_time=r["first_event_time"],
                last_event_time=r["last_event_time"],
            )
            for r in rows
        ]

    @unavailable_when_transient
    async def leaves_at(
        self, positions: Sequence[LedgerPosition]
    ) -> Mapping[tuple[int, int], bytes]:
        rows = await self._p.fetch(
            sql.LEAVES_AT,
            [p.log_id for p in positions],
            [p.leaf_index for p in positions],
        )
        return {(r["log_id"], r["leaf_index"]): bytes(r["leaf"]) for r in rows}

    @unavailable_when_transient
    async def principal(self, token_hash: TokenHash) -> Principal | None:
        now = time.monotonic()
        hit = self._principals.get(token_hash)
        if hit is not None and now - hit[0] < PRINCIPAL_TTL:
            return hit[1]
        r = await self._p.fetchrow(sql.PRINCIPAL_BY_TOKEN_HASH, token_hash)
        principal = (
            None
            if r is None
            else Principal(token_id=r["token_id"], subject=r["subject"], role=Role(r["role"]))
        )
        if len(self._principals) >= 1024:
            self._principals.clear()
        self._principals[token_hash] = (now, principal)
        return principal

    @unavailable_when_transient
    async def event(self, event_id: uuid.UUID) -> StoredEvent | None:
        r = await self._p.fetchrow(sql.EVENT_BY_ID, event_id)
        if r is None:
            return None
        return StoredEvent(
            entry=_entry(r),
            producer_id=r["producer_id"],
            producer_seq=r["producer_seq"],
            leaf=bytes(r["leaf"]),
            leaf_hash=bytes(r["leaf_hash"]),
        )

    @unavailable_when_transient
    async def logs(self) -> Sequence[LogInfo]:
        rows = await self._p.fetch(sql.LOGS)
        return [_log(r) for r in rows]

    @unavailable_when_transient
    async def log(self, log_id: int) -> LogInfo | None:
        r = await self._p.fetchrow(sql.LOG_INFO, log_id)
        return None if r is None else _log(r)

    @unavailable_when_transient
    async def checkpoints(
        self, log_id: int, *, after: int, limit: int
    ) -> Sequence[SignedCheckpoint]:
        rows = await self._p.fetch(sql.CHECKPOINTS_AFTER, log_id, after, limit)
        return [SignedCheckpoint(size=int(r["size"]), note=r["note"]) for r in rows]

    @unavailable_when_transient
    async def latest_checkpoint(self, log_id: int) -> SignedCheckpoint | None:
        r = await self._p.fetchrow(sql.LATEST_COSIGNED_CHECKPOINT, log_id)
        return None if r is None else SignedCheckpoint(size=int(r["size"]), note=r["note"])

    @unavailable_when_transient
    async def tile(self, log_id: int, level: int, index: int, width: int) -> bytes | None:
        async with self._p.acquire() as conn:
            size = await tree.log_size(conn, log_id)
            if tiles.tile_width((level, index), size) < width:
                return None
            fetched = await tree.fetch_tiles(conn, log_id, [(level, index)], size)
        return b"".join(fetched[(level, index)][:width])

    @unavailable_when_transient
    async def entries(self, log_id: int, index: int, width: int) -> bytes | None:
        start = index * tiles.TILE_WIDTH
        rows = await self._p.fetch(sql.LEAVES_RANGE, log_id, start, start + width)
        if len(rows) < width:
            return None
        return tiles.entry_bundle(bytes(r["leaf"]) for r in rows)

    @unavailable_when_transient
    async def inclusion(
        self, log_id: int, index: int, tree_size: int, current_size: int
    ) -> tuple[bytes, ...]:
        size = current_size
        _check_sizes(tree_size, size)
        async with self._p.acquire() as conn:
            if not 0 <= index < tree_size:
                raise MalformedInputError(f"index must be in [0, tree_size={tree_size})")
            return await tree.inclusion_hashes(conn, log_id, index, tree_size, size, self._tiles)

    @unavailable_when_transient
    async def consistency(
        self, log_id: int, first: int, second: int, current_size: int
    ) -> tuple[bytes, ...]:
        size = current_size
        _check_sizes(second, size)
        async with self._p.acquire() as conn:
            if not 1 <= first <= second:
                raise MalformedInputError("need 1 <= first <= second")
            return await tree.consistency_hashes(conn, log_id, first, second, size, self._tiles)

    @unavailable_when_transient
    async def leaves(self, log_id: int, *, start: int, end: int) -> Sequence[tuple[int, bytes]]:
        rows = await self._p.fetch(sql.LEAVES_RANGE, log_id, start, end)
        return [(int(r["leaf_index"]), bytes(r["leaf"])) for r in rows]

    @unavailable_when_transient
    async def index_rows(
        self, log_id: int, *, start: int, limit: int
    ) -> Sequence[Mapping[str, object]]:
        rows = await self._p.fetch(sql.INDEX_RANGE, log_id, start, limit)
        return [index_cells(r.items()) for r in rows]

    @unavailable_when_transient
    async def quarantine(
        self, *, after: int, limit: int, reason: str | None
    ) -> Sequence[Mapping[str, object]]:
        rows = await self._p.fetch(sql.QUARANTINE_PAGE, after, reason, limit)
        return [dict(r.items()) for r in rows]

    @unavailable_when_transient
    async def alerts(self, *, after: int, limit: int) -> Sequence[Mapping[str, object]]:
        rows = await self._p.fetch(sql.ALERTS_PAGE, after, limit)
        return [dict(r.items()) for r in rows]

    @unavailable_when_transient
    async def event_proof(self, event_id: uuid.UUID) -> EventProof | None:
        async with self._p.acquire() as conn:
            row = await conn.fetchrow(sql.EVENT_POSITION, event_id)
            if row is None:
                return None
            log_id, index = int(row["log_id"]), int(row["leaf_index"])
            cp = await conn.fetchrow(sql.CHECKPOINT_COVERING, log_id, index)
            if cp is None:
                raise PushbackError(
                    "the event is in the ledger but no signed checkpoint covers it yet",
                    retry_after=1.0,
                )
            size = await tree.log_size(conn, log_id)
            hashes = await tree.inclusion_hashes(
                conn, log_id, index, int(cp["size"]), size, self._tiles
            )
        info = await self.log(log_id)
        if info is None:
            return None
        return EventProof(
            log=info,
            leaf_index=index,
            leaf=bytes(row["leaf"]),
            hashes=hashes,
            checkpoint=SignedCheckpoint(size=int(cp["size"]), note=cp["note"]),
        )

    @unavailable_when_transient
    async def writer_schemas(self) -> Sequence[tuple[bytes, str, str]]:
        rows = await self._p.fetch(sql.WRITER_SCHEMAS)
        return [(bytes(r["fingerprint"]), r["full_name"], r["schema_json"]) for r in rows]


def _check_sizes(tree_size: int, current: int) -> None:
    if not 1 <= tree_size <= current:
        raise MalformedInputError(f"tree size must be in [1, {current}] (the log's size)")


def _log(r: asyncpg.Record) -> LogInfo:
    seal, archive = _seal(r), r.get("archive")
    return LogInfo(
        log_id=r["log_id"],
        origin=r["origin"],
        topic=r["topic"],
        partition=r["kafka_partition"],
        # A detached log's entries are in its archive: its size is the sealed one.
        size=seal.size if archive is not None and seal is not None else r["size"],
        checkpoint_size=r["checkpoint_size"],
        checkpoint_age=r.get("checkpoint_age"),
        period=r.get("period"),
        first_offset=r.get("first_offset"),
        seal=seal,
        archive=archive,
    )


def _seal(r: asyncpg.Record) -> LogSeal | None:
    if r.get("seal_note") is None:
        return None
    return LogSeal(
        size=int(r["seal_size"]),
        note=r["seal_note"],
        next_log_id=int(r["next_log_id"]),
        next_origin=r["next_origin"],
        next_first_offset=int(r["next_first_offset"]),
    )
