"""The ingest's baselines without Kafka or a consumer: pre-classified events written by
a raw COPY (``_write_rows``) or by the real appender, with PostgreSQL's CPU per event.

The two differ by the appender's own work (the duplicate lookup, the log lock and epoch,
positions, seals); the appender on several partitions at once against one partition
shows what concurrent transactions cost PostgreSQL on this machine's cores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import secrets
import time

import asyncpg

from benchmarks.pgrows import one_row
from benchmarks.proofs import on_db
from benchmarks.stackcpu import stack_cpu
from consumers.classify import classify
from integrations.simulator import Simulator
from ledger.audit.ingest import Accepted
from ledger.log.leaf import KafkaRecord
from ledger.pg import sql
from ledger.pg.appender import PostgresAppender, _write_rows
from ledger.pg.batch import BatchRows
from producers.codec import Codec
from producers.events import event_key, new_event_id


def accepted(n: int, topic: str, partitions: int = 1) -> dict[int, list[Accepted]]:
    """n simulated events, classified as the consumer does, dealt round-robin to
    ``partitions`` (offsets from 0 in each), each with a seal reference (leaves are signed;
    the seal row itself is not written)."""
    codec = Codec()
    seal_id = secrets.token_bytes(32)
    dealt: dict[int, list[Accepted]] = {p: [] for p in range(partitions)}
    for i, e in enumerate(Simulator(seed=99).events(n)):
        event = dataclasses.replace(e, event_id=new_event_id())  # as a producer makes them
        value = codec.encode(event.stamped(producer_id="baseline", producer_seq=i))
        items = dealt[i % partitions]
        record = KafkaRecord(topic=topic, partition=i % partitions, offset=len(items),
                             timestamp_ms=int(time.time() * 1000), timestamp_type=0,
                             key=event_key(e).encode(), value=value)  # fmt: skip
        item = classify(record, codec)
        if not isinstance(item, Accepted):
            raise SystemExit(f"a simulated event was not accepted: {item}")
        items.append(dataclasses.replace(item, seal_ref=(seal_id, i % 1000)))
    return dealt


def _postgres_cpu() -> float:
    return stack_cpu().get("PostgreSQL", math.nan)


async def raw_copy(url: str, n: int) -> tuple[float, float]:
    """COPY the rows the consumer writes for n events, on one connection, into an empty
    ledger: leaves (with their seal references), index rows, disclosed ranges and
    patients, the tiles they complete and one position row per batch, in transactions of
    5,000, through the appender's own write path (``_write_rows``): the same rows into the
    same indexed tables, without Kafka, decoding, validation, the duplicate lookup, the
    log lock or checkpoints. Rows are built before the clock starts. Returns (rows/s,
    PostgreSQL's CPU seconds per row)."""
    items = accepted(n, "copy")[0]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO logs (origin, topic, kafka_partition, period, period_end, first_offset)"
            " SELECT 'copy/0', 'copy', 0, m, (m + interval '1 month')::date, 0"
            " FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date) AS t(m)"
        )
        log_id, period = await one_row(conn, "SELECT log_id, period FROM logs")
        batches = []
        for start in range(0, n, 5000):
            batch = BatchRows(log_id=log_id, period=period, topic="copy", partition=0,
                              next_leaf=start, existing={})  # fmt: skip
            for item in items[start : start + 5000]:
                batch.add(item)
            batches.append(batch)
        t, cpu = time.perf_counter(), _postgres_cpu()
        for batch in batches:
            async with conn.transaction():
                await _write_rows(conn, batch)
                await conn.execute(
                    sql.INSERT_POSITION, log_id, batch.next_leaf + len(batch.leaves),
                    batch.next_leaf, len(batch.leaves), 0, 0,
                )  # fmt: skip
        elapsed, cpu = time.perf_counter() - t, _postgres_cpu() - cpu
        return n / elapsed, cpu / n
    finally:
        await conn.close()


async def appender_alone(
    url: str, n: int, *, partitions: int, concurrent: bool, batch: int = 2000
) -> tuple[float, float]:
    """The real appender (``PostgresAppender.append``, as the consumer calls it) on n
    pre-classified events in batches of ``batch`` per partition, the partitions' appends
    at once (one connection each) or one after another. Returns (events/s, PostgreSQL's
    CPU seconds per event)."""
    topic = "alone"
    dealt = accepted(n, topic, partitions)
    async with PostgresAppender(dsn=url, ledger_name="bench.ledger.local") as appender:
        epochs = {
            p: await appender.claim(topic=topic, partition=p, writer_id="bench") for p in dealt
        }

        async def one(p: int) -> None:
            for start in range(0, len(dealt[p]), batch):
                part = dealt[p][start : start + batch]
                await appender.append(topic=topic, partition=p, items=part, epoch=epochs[p])

        t, cpu = time.perf_counter(), _postgres_cpu()
        if concurrent:
            await asyncio.gather(*(one(p) for p in dealt))
        else:
            for p in dealt:
                await one(p)
        elapsed, cpu = time.perf_counter() - t, _postgres_cpu() - cpu
    return n / elapsed, cpu / n


def appender_url(settings: dict[str, str], db: str) -> str:
    return on_db(settings["LEDGER_APPENDER_URL"], db)
