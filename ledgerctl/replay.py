"""`ledger replay`: rebuild the ledger from the Kafka topics into an empty database.

Invariant: the target must be empty; the replay reads every partition from its
first offset with a fresh consumer group up to (at least) the end offsets seen at the
start, which include the replay's own read record (sent before them),
through the same consumer and appender as live ingestion, so (the leaf being a
pure function of the Kafka record) it produces identical leaves and roots.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from consumers.consumer import ConsumerConfig, LedgerConsumer
from ledger.errors import ConflictError, UnavailableError
from ledger.log.note import Signer
from ledger.pg import sql, tree
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from ledger.pg.migrate import apply_migrations
from ledger.pg.producerkeys import copy_producer_keys
from producers.codec import Codec
from producers.kafka_security import KafkaSecurity, client_kwargs


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayedLog:
    origin: str
    size: int
    root: bytes


async def source_roots(
    reader_url: str, logs: Sequence[ReplayedLog], *, catch_up_seconds: float = 10.0
) -> dict[str, bytes | None]:
    """The source ledger's root at each replayed log's size (None: no such log or too small).

    The source is live: its consumer may not yet have appended the newest records the
    replay read (the replay's own read record among them), so this waits up to
    ``catch_up_seconds`` for every source log to reach the replayed size.
    """
    conn = await asyncpg.connect(reader_url)
    try:
        deadline = time.monotonic() + catch_up_seconds
        while True:
            rows = {r["origin"]: r for r in await conn.fetch(sql.LOGS)}
            behind = [g for g in logs if g.origin in rows and int(rows[g.origin]["size"]) < g.size]
            if not behind or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        out: dict[str, bytes | None] = {}
        for log in logs:
            row = rows.get(log.origin)
            if row is None or int(row["size"]) < log.size or log.size == 0:
                out[log.origin] = None
                continue
            out[log.origin] = await tree.root_at(
                conn, int(row["log_id"]), log.size, int(row["size"])
            )
        return out
    finally:
        await conn.close()


def on_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


async def end_offsets(
    bootstrap: str, topics: Sequence[str], security: KafkaSecurity
) -> dict[TopicPartition, int]:
    """The next offset to be written in every partition of ``topics``, now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs(security))
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    parts = [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        for p in t.get("partitions", [])
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **client_kwargs(security))
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(parts)) if parts else {}
    finally:
        await consumer.stop()


async def replay(
    *,
    owner_url: str,
    appender_url: str,
    database: str,
    bootstrap: str,
    topics: Sequence[str],
    relay_topics: frozenset[str],
    ledger_name: str,
    signers: Sequence[Signer],
    timeout: float,
    registry_topics: frozenset[str] = frozenset(),
    before_reading: Callable[[], Awaitable[None]] | None = None,
    security: KafkaSecurity | None = None,
) -> list[ReplayedLog]:
    """Replay ``topics`` into ``database``; ``before_reading`` runs once the target is known
    to be empty, before the end offsets are taken and the first record is read (a raise
    there stops the replay with nothing read). ``security``: a principal that may READ
    the topics and the ``replay-*`` groups."""
    security = security or KafkaSecurity()
    target_owner = await _empty_target(owner_url, database)
    if before_reading is not None:
        await before_reading()
    # The same producers are trusted (and the same keys revoked) as in the source ledger.
    await copy_producer_keys(owner_url, target_owner)
    try:
        targets = await end_offsets(bootstrap, topics, security)
    except KafkaError as exc:
        raise UnavailableError(f"cannot read the topics' end offsets from {bootstrap}") from exc
    if not any(targets.values()):
        return []  # empty topics: nothing to read (and no consumer to stop mid-join)
    appender = PostgresAppender(dsn=on_database(appender_url, database), ledger_name=ledger_name)
    await appender.start()
    checkpointer = Checkpointer(pool=appender.pool, signers=signers, policy=CheckpointPolicy())
    consumer = _replay_consumer(
        appender, checkpointer, bootstrap=bootstrap, topics=topics, relay_topics=relay_topics,
        registry_topics=registry_topics, security=security,
    )  # fmt: skip
    try:
        await _consume_to(consumer, appender, topics, targets, timeout)
        return await _signed_roots(appender, checkpointer)
    finally:
        await appender.stop()


def _replay_consumer(
    appender: PostgresAppender,
    checkpointer: Checkpointer,
    *,
    bootstrap: str,
    topics: Sequence[str],
    relay_topics: frozenset[str],
    registry_topics: frozenset[str],
    security: KafkaSecurity,
) -> LedgerConsumer:
    """The live ingestion consumer, in a fresh ``replay-*`` group (so from the first offset)."""
    return LedgerConsumer(
        config=ConsumerConfig(
            bootstrap_servers=bootstrap,
            topics=tuple(topics),
            relay_topics=relay_topics,
            registry_topics=registry_topics,
            group_id=f"replay-{secrets.token_hex(6)}",
            kafka_security=security,
        ),
        appender=appender,
        codec=Codec(),
        checkpointer=checkpointer,
        key_source=appender,
    )


async def _empty_target(owner_url: str, database: str) -> str:
    """Create ``database`` if missing and migrate it; refuse it unless it holds no log.

    Returns the schema owner's URL of the target database."""
    create = sql.create_database(database)  # refuses a name that is not a plain identifier
    admin = await asyncpg.connect(owner_url)
    try:
        if not await admin.fetchval(sql.DATABASE_EXISTS, database):
            await admin.execute(create)
    finally:
        await admin.close()
    target_owner = on_database(owner_url, database)
    await asyncio.to_thread(apply_migrations, target_owner)
    check = await asyncpg.connect(target_owner)
    try:
        if await check.fetchval(sql.COUNT_LOGS):
            raise ConflictError(f"database {database} is not empty; replay needs an empty one")
    finally:
        await check.close()
    return target_owner


async def _consume_to(
    consumer: LedgerConsumer,
    appender: PostgresAppender,
    topics: Sequence[str],
    targets: dict[TopicPartition, int],
    timeout: float,
) -> None:
    """Run ``consumer`` until every partition's committed offset reaches its target."""
    async with consumer:
        runner = asyncio.create_task(consumer.run())
        deadline = time.monotonic() + timeout
        while not await _reached(appender, topics, targets):
            if runner.done() or time.monotonic() > deadline:
                raise UnavailableError("replay did not reach the end offsets in time")
            await asyncio.sleep(0.2)
        await consumer.stop()
        await asyncio.gather(runner, return_exceptions=True)


async def _reached(
    appender: PostgresAppender, topics: Sequence[str], targets: dict[TopicPartition, int]
) -> bool:
    """Whether the target database committed every non-empty partition up to its target."""
    done = True
    for topic in topics:
        parts = [tp.partition for tp in targets if tp.topic == topic]
        stored = await appender.committed_offsets(topic, parts)
        for tp in (t for t in targets if t.topic == topic):
            if targets[tp] > 0 and stored.get(tp.partition, 0) < targets[tp]:
                done = False
    return done


async def _signed_roots(
    appender: PostgresAppender, checkpointer: Checkpointer
) -> list[ReplayedLog]:
    """Sign a checkpoint of every replayed log at its full size; return the sizes and roots."""
    out = []
    async with appender.pool.acquire() as conn:
        logs = await conn.fetch(sql.LOGS)
    for log in logs:
        log_id, size = int(log["log_id"]), int(log["size"])
        await checkpointer.checkpoint(log_id, force=True)
        async with appender.pool.acquire() as conn:
            root = await tree.root_at(conn, log_id, size, size)
        out.append(ReplayedLog(origin=log["origin"], size=size, root=root))
    return out
