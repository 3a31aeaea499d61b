"""The PostgreSQL appender: one transaction per partition batch.

Invariant: leaves, their index rows, quarantined records and the batch's Kafka
position commit in one transaction, under a per-log advisory lock, so
(a) leaf indexes are gapless and assigned in commit order, and (b) every
consumed offset is, exactly once, appended, a counted duplicate, or quarantined.
Records at offsets below the stored position were applied before and are skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ledger.audit.ingest import Accepted, AppendResult, BatchItem, WriterSchemaInfo
from ledger.audit.producerauth import RegisteredKey, Seal
from ledger.errors import ConflictError, FencedError, UnavailableError
from ledger.log import tiles
from ledger.log.periods import PeriodLength
from ledger.pg import shards, sql
from ledger.pg.batch import BatchRows, Recorded
from ledger.pg.pool import PooledAdapter, PoolSettings, transient_as_unavailable
from ledger.pg.producerkeys import fetch_producer_keys, fetch_producer_seals, seal_columns

Conn = asyncpg.Connection | PoolConnectionProxy


class PostgresAppender(PooledAdapter):
    """Implements ``ledger.audit.ingest.Appender`` (and ``ProducerKeySource``) on an
    asyncpg pool."""

    def __init__(
        self,
        *,
        dsn: str,
        ledger_name: str,
        pool_size: int = 4,
        pool: PoolSettings | None = None,
        period: PeriodLength = PeriodLength.MONTH,
        reference_topics: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(dsn=dsn, pool_size=pool_size, command_timeout=60, pool=pool)
        self._ledger_name = ledger_name
        self._period = period
        #: Topics whose partitions are one log for ever (the compliance registry: small,
        #: and every compliance decision needs its whole history).
        self._reference_topics = reference_topics
        #: Each partition's first log: its advisory lock and writer epochs.
        self._anchors: dict[tuple[str, int], int] = {}

    async def register_schemas(self, schemas: Sequence[WriterSchemaInfo]) -> None:
        with transient_as_unavailable():
            await self._register_schemas(schemas)

    async def _register_schemas(self, schemas: Sequence[WriterSchemaInfo]) -> None:
        async with self.pool.acquire() as conn:
            await conn.executemany(
                sql.REGISTER_SCHEMA,
                [(s.fingerprint, s.full_name, s.canonical_form, s.schema_json) for s in schemas],
            )

    async def producer_seals(self, seal_ids: Sequence[bytes]) -> Sequence[Seal]:
        with transient_as_unavailable():
            async with self.pool.acquire() as conn:
                return await fetch_producer_seals(conn, seal_ids)

    async def producer_keys(self) -> Sequence[RegisteredKey]:
        with transient_as_unavailable():
            async with self.pool.acquire() as conn:
                return await fetch_producer_keys(conn)

    async def committed_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        with transient_as_unavailable():
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(sql.NEXT_OFFSETS_FOR_TOPIC, topic, list(partitions))
        return {int(r[0]): int(r[1]) for r in rows}

    def _length(self, topic: str) -> PeriodLength | None:
        return None if topic in self._reference_topics else self._period

    async def _anchor(
        self, conn: Conn, topic: str, partition: int, items: Sequence[BatchItem] = ()
    ) -> int:
        key = (topic, partition)
        cached = self._anchors.get(key)
        if cached is None:
            cached = await shards.first_log(
                conn, ledger_name=self._ledger_name, topic=topic, partition=partition,
                first_ms=items[0].record.timestamp_ms if items else None,
                length=self._length(topic),
            )  # fmt: skip
            self._anchors[key] = cached
        return cached

    async def claim(self, *, topic: str, partition: int, writer_id: str) -> int:
        with transient_as_unavailable():
            async with self.pool.acquire() as conn:
                anchor = await self._anchor(conn, topic, partition)
                async with conn.transaction():
                    await conn.execute(sql.LOCK_LOG, anchor)
                    return int(await conn.fetchval(sql.CLAIM_LOG, anchor, writer_id))

    async def append(
        self,
        *,
        topic: str,
        partition: int,
        items: Sequence[BatchItem],
        epoch: int | None = None,
    ) -> AppendResult:
        if not items:
            raise ValueError("empty batch")
        try:
            with transient_as_unavailable():
                return await self._append(topic, partition, items, epoch)
        except asyncpg.UniqueViolationError as exc:
            # Another log's writer recorded one of these event ids concurrently; the
            # whole batch rolled back, and a retry will see that event as a duplicate.
            raise ConflictError(f"concurrent append of the same event id: {exc.detail}") from exc

    async def _append(
        self, topic: str, partition: int, items: Sequence[BatchItem], epoch: int | None
    ) -> AppendResult:
        async with self.pool.acquire() as conn:
            anchor = await self._anchor(conn, topic, partition, items)
            async with conn.transaction():
                await conn.execute(sql.LOCK_LOG, anchor)
                if epoch is not None:
                    current = await conn.fetchval(sql.CURRENT_EPOCH, anchor)
                    if current != epoch:
                        raise FencedError(
                            f"{topic}/{partition}: writer epoch {epoch} was superseded "
                            f"by epoch {current}; another consumer owns this log now"
                        )
                return await self._append_locked(conn, topic, partition, items)

    async def _append_locked(
        self, conn: Conn, topic: str, partition: int, items: Sequence[BatchItem]
    ) -> AppendResult:
        stored = await conn.fetchval(sql.NEXT_OFFSET, topic, partition)
        stored_next = -1 if stored is None else int(stored)
        fresh = [i for i in items if i.record.offset >= stored_next]
        skipped = len(items) - len(fresh)
        if not fresh:
            current = await conn.fetchrow(sql.CURRENT_LOG, topic, partition)
            if current is None:
                raise UnavailableError(f"{topic}/{partition} has no log")
            return AppendResult(
                log_id=int(current["log_id"]),
                next_offset=max(stored_next, 0),
                appended=0,
                duplicates=0,
                quarantined=0,
                skipped=skipped,
                first_leaf=int(await conn.fetchval(sql.NEXT_LEAF_INDEX, current["log_id"])),
            )
        parts = await shards.segments(
            conn, ledger_name=self._ledger_name, topic=topic, partition=partition,
            items=fresh, length=self._length(topic),
        )  # fmt: skip
        results = [await _append_segment(conn, topic, partition, part) for part in parts]
        return _combined(results, skipped=skipped)


async def _append_segment(
    conn: Conn, topic: str, partition: int, part: shards.Segment
) -> AppendResult:
    """One log's share of a batch: its rows, tiles and Kafka position. The existing
    events are read after any earlier segment's rows were written (same transaction),
    so an event id repeated across a period boundary is a duplicate, not a second leaf."""
    log_id = part.log.log_id
    batch = BatchRows(
        log_id=log_id,
        period=part.log.period,
        topic=topic,
        partition=partition,
        next_leaf=int(await conn.fetchval(sql.NEXT_LEAF_INDEX, log_id)),
        existing=await _existing_events(conn, part.items),
    )
    for item in part.items:
        batch.add(item)
    await _write_rows(conn, batch)
    next_offset = part.items[-1].record.offset + 1
    await _write_position(conn, batch, part.items, next_offset)
    return batch.result(next_offset=next_offset, skipped=0)


def _combined(results: Sequence[AppendResult], *, skipped: int) -> AppendResult:
    """One result for the batch: the last log's position, every segment's counts.
    ``first_leaf`` and ``log_id`` are the last segment's; ``appended`` counts them all
    (a checkpoint asked for past the log's size is clamped to it)."""
    last = results[-1]
    return dataclasses.replace(
        last,
        appended=sum(r.appended for r in results),
        duplicates=sum(r.duplicates for r in results),
        quarantined=sum(r.quarantined for r in results),
        alerts=sum(r.alerts for r in results),
        skipped=skipped,
    )


async def _existing_events(conn: Conn, fresh: Sequence[BatchItem]) -> dict[object, Recorded]:
    """The batch's accepted event ids already recorded in any log, by event id."""
    accepted = [i for i in fresh if isinstance(i, Accepted)]
    if not accepted:
        return {}
    rows = await conn.fetch(sql.EXISTING_EVENTS, [a.index.event_id for a in accepted])
    return {r["event_id"]: (int(r["log_id"]), int(r["leaf_index"]), bytes(r["leaf"])) for r in rows}


async def _write_rows(conn: Conn, batch: BatchRows) -> None:
    """Leaves, index rows, disclosed ranges and patients, and the tiles they complete;
    then quarantine and alerts (same transaction, in this order)."""
    if batch.leaves:
        await conn.copy_records_to_table(
            sql.LEAF_TABLE, records=batch.leaves, columns=sql.SIGNED_LEAF_COLUMNS
        )
        await conn.copy_records_to_table(
            sql.EVENT_TABLE, records=batch.events, columns=sql.EVENT_COLUMNS
        )
        if batch.disclosed:
            await conn.copy_records_to_table(
                sql.DISCLOSURE_TABLE, records=batch.disclosed, columns=sql.DISCLOSURE_COLUMNS
            )
        if batch.patients:
            await conn.copy_records_to_table(
                sql.EVENT_PATIENT_TABLE, records=batch.patients, columns=sql.EVENT_PATIENT_COLUMNS
            )
        new_hashes = [h for _, _, _, h, _, _ in batch.leaves]
        await _integrate(conn, batch.log_id, batch.next_leaf, new_hashes)
    if batch.quarantine:
        await conn.executemany(sql.INSERT_QUARANTINE, batch.quarantine)
    if batch.alerts:
        await conn.executemany(sql.INSERT_ALERT, batch.alerts)


async def _write_position(
    conn: Conn, batch: BatchRows, fresh: Sequence[BatchItem], next_offset: int
) -> None:
    """The batch's Kafka position and counts, last in the transaction."""
    position = (batch.log_id, next_offset, batch.next_leaf, len(batch.leaves),
                batch.duplicates, batch.quarantined)  # fmt: skip
    # Every verified seal the batch carried, appended, duplicate or refused alike:
    # the batch's other records (maybe in a later transaction) refer to it. Stored
    # by the same statement as the position (one round trip fewer per batch).
    seals = {i.seal.seal_id: i.seal for i in fresh if i.seal is not None}
    if seals:
        await conn.execute(sql.INSERT_POSITION_AND_SEALS, *position, *seal_columns(seals))
    else:
        await conn.execute(sql.INSERT_POSITION, *position)


async def _integrate(conn: Conn, log_id: int, old_size: int, new_hashes: list[bytes]) -> None:
    """Write every tile the new leaves complete, bottom level first (same transaction).

    Integration therefore never lags sequencing: a committed leaf is in the tree.
    """
    new_size = old_size + len(new_hashes)
    completed = tiles.completed_tiles(old_size, new_size)
    if not completed:
        return
    roots: dict[tiles.TileKey, bytes] = {}
    rows = []
    width = tiles.TILE_WIDTH
    for level, index in completed:
        start = index * width
        if level == 0:
            entries: list[bytes] = []
            if start < old_size:
                stored = await conn.fetch(sql.LEAF_HASH_RANGE, log_id, start, old_size)
                entries = [bytes(r[0]) for r in stored]
            entries += new_hashes[max(0, start - old_size) : start + width - old_size]
        else:
            below = {
                i: roots[(level - 1, i)]
                for i in range(start, start + width)
                if (level - 1, i) in roots
            }
            if len(below) < width:
                stored = await conn.fetch(
                    sql.TILE_ROOT_RANGE, log_id, level - 1, start, start + width
                )
                for r in stored:
                    below.setdefault(int(r["tile_index"]), bytes(r["root"]))
            entries = [below[i] for i in sorted(below)]
        if len(entries) != width:
            raise UnavailableError(
                f"log {log_id}: tile {(level, index)} has {len(entries)} entries, not {width}"
            )
        root = tiles.perfect_root(entries)
        roots[(level, index)] = root
        rows.append((log_id, level, index, b"".join(entries), root))
    await conn.copy_records_to_table(sql.TILE_TABLE, records=rows, columns=sql.TILE_COLUMNS)
