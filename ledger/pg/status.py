"""What ``ledger status`` reads from the ledger: per log, the Kafka position it ingested,
its size, and its latest signed checkpoint with its age.

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
