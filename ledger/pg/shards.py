"""Which log of a Kafka partition a record goes to: one log per partition per period.

Invariant: a partition's logs cover contiguous, increasing ranges of its offsets; a record
goes to the partition's current log unless its broker timestamp lies at or past that log's
period end, in which case the partition moves on to the log of the record's period (made
here, starting at that record's offset) and never back. Runs under the partition's lock
(its first log's advisory lock), inside the append transaction. docs/design/periods.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ledger.audit.ingest import BatchItem
from ledger.errors import ConflictError, UnavailableError
from ledger.log.periods import Period, PeriodLength, period_of, period_of_ms
from ledger.pg import sql

Conn = asyncpg.Connection | PoolConnectionProxy

#: The period of a reference log (the compliance registry): one log for ever, never
#: sealed, named ``<ledger>/<topic>/<partition>``, its rows in a partition of their own.
REFERENCE_START = date(1970, 1, 1)
REFERENCE_END = date(9999, 12, 31)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardLog:
    """One log of a partition: ``[period, period_end)``, named ``origin``."""

    log_id: int
    origin: str
    period: date
    period_end: date


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """The consecutive records of a batch that go to one log."""

    log: ShardLog
    items: Sequence[BatchItem]


def base_origin(ledger_name: str, topic: str, partition: int) -> str:
    """``<ledger name>/<topic>/<partition>``: the partition's logs are named under it."""
    return f"{ledger_name}/{topic}/{partition}"


def shard_origin(ledger_name: str, topic: str, partition: int, period: Period) -> str:
    """The origin of one period's log: ``<ledger name>/<topic>/<partition>/<period>``."""
    return f"{base_origin(ledger_name, topic, partition)}/{period.label}"


def _log(row: asyncpg.Record) -> ShardLog:
    return ShardLog(
        log_id=int(row["log_id"]),
        origin=row["origin"],
        period=row["period"],
        period_end=row["period_end"],
    )


async def first_log(
    conn: Conn,
    *,
    ledger_name: str,
    topic: str,
    partition: int,
    first_ms: int | None,
    length: PeriodLength | None,
) -> int:
    """The partition's first log (made for the period of ``first_ms``, or of now; for a
    reference topic, ``length`` None, its only log)."""
    base = base_origin(ledger_name, topic, partition)
    async with conn.transaction():
        await conn.execute(sql.LOCK_PARTITION, topic, partition)
        row = await conn.fetchrow(sql.FIRST_LOG, topic, partition)
        if row is None and length is None:
            row = await conn.fetchrow(
                sql.OPEN_LOG, base, topic, partition, REFERENCE_START, REFERENCE_END, 0
            )
        elif row is None and length is not None:
            at = datetime.now(UTC) if first_ms is None or first_ms < 0 else None
            period = period_of(at, length) if at else period_of_ms(first_ms or 0, length)
            if await conn.fetchval(sql.MONTH_ARCHIVED, period.start):
                # A new partition whose first record is stamped in a month that was
                # archived: that month is closed for good, the record goes to this one.
                period = period_of(datetime.now(UTC), length)
            row = await conn.fetchrow(
                sql.OPEN_LOG, shard_origin(ledger_name, topic, partition, period),
                topic, partition, period.start, period.end, 0,
            )  # fmt: skip
    if row is None:
        raise UnavailableError(f"log for {topic}/{partition} vanished")
    origin = row["origin"]
    if origin != base and not origin.startswith(base + "/"):
        raise ConflictError(
            f"log {topic}/{partition} has origin {origin!r}, not under {base!r}: "
            "this database belongs to another ledger name"
        )
    return int(row["log_id"])


async def segments(
    conn: Conn,
    *,
    ledger_name: str,
    topic: str,
    partition: int,
    items: Sequence[BatchItem],
    length: PeriodLength | None,
) -> list[Segment]:
    """Split ``items`` (in offset order) over the partition's current log and the logs of
    later periods their timestamps reach, making those logs (``length`` None: a reference
    topic, whose one log takes everything)."""
    row = await conn.fetchrow(sql.CURRENT_LOG, topic, partition)
    if row is None:
        raise UnavailableError(f"{topic}/{partition} has no log")
    current = _log(row)
    if length is None:
        return [Segment(log=current, items=items)]
    out: list[Segment] = []
    run: list[BatchItem] = []
    for item in items:
        ms = item.record.timestamp_ms
        at = period_of_ms(ms, length) if ms is not None and ms >= 0 else None
        if at is not None and at.start >= current.period_end:
            if run:
                out.append(Segment(log=current, items=run))
            origin = shard_origin(ledger_name, topic, partition, at)
            opened = await conn.fetchrow(
                sql.OPEN_LOG, origin, topic, partition, at.start, at.end, item.record.offset
            )
            if opened is None:
                raise UnavailableError(f"{topic}/{partition}: the {at.label} log was not made")
            current = _log(opened)
            run = []
        run.append(item)
    if run:
        out.append(Segment(log=current, items=run))
    return out
