"""What ``ledger status`` reads from the ledger: per unsealed log, the Kafka position it
ingested, its size, and its latest signed checkpoint with its age (a sealed log is done:
docs/design/periods.md).

Invariant: one SELECT as the reader role; ages are measured with the database's clock,
the clock the checkpoints were stamped with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from ledger.pg import sql
from ledger.pg.pool import transient_as_unavailable


@dataclass(frozen=True, slots=True, kw_only=True)
class LogIngestion:
    origin: str
    topic: str
    partition: int
    #: The next Kafka offset the consumer will read (everything below is in the ledger).
    next_offset: int
    size: int
    checkpoint_size: int
    #: Age of the latest signed checkpoint (None: never signed).
    checkpoint_age: timedelta | None


async def ingestion_status(dsn: str) -> list[LogIngestion]:
    with transient_as_unavailable():
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(sql.INGESTION_STATUS)
        finally:
            await conn.close()
    return _ingestion(rows)


async def pooled_ingestion_status(pool: asyncpg.Pool) -> list[LogIngestion]:
    """``ingestion_status`` on a pool a process already holds (its metrics, each scrape)."""
    with transient_as_unavailable():
        async with pool.acquire() as conn:
            rows = await conn.fetch(sql.INGESTION_STATUS)
    return _ingestion(rows)


async def ping(pool: asyncpg.Pool) -> None:
    """One statement on the pool; raises ``UnavailableError`` when the database is away."""
    with transient_as_unavailable():
        async with pool.acquire() as conn:
            await conn.fetchval(sql.PING)


async def unready_reason(pool: asyncpg.Pool) -> str | None:
    """A readiness check's answer: None when the database answers on ``pool``, else why
    not (an exception's type name only: never a DSN or a server message)."""
    try:
        await ping(pool)
    except Exception as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        return f"PostgreSQL unavailable ({type(cause).__name__})"
    return None


def _ingestion(rows: list[asyncpg.Record]) -> list[LogIngestion]:
    return [
        LogIngestion(
            origin=r["origin"],
            topic=r["topic"],
            partition=r["kafka_partition"],
            next_offset=r["next_offset"] or 0,
            size=r["size"],
            checkpoint_size=r["checkpoint_size"] or 0,
            checkpoint_age=None if r["signed_at"] is None else r["db_now"] - r["signed_at"],
        )
        for r in rows
    ]
