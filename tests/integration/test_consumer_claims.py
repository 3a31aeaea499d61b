"""The consumer appends only to logs it has claimed, from the stored position.

Regression: aiokafka starts fetching a new assignment while the rebalance callback
is still claiming the partitions' writer epochs. The consumer used to append those
early batches with no epoch (bypassing the fencing check) and then re-read them
after the seek. Every append must now carry this writer's epoch, and a fresh
consumer on a backlog must never re-read what it already appended.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from consumers.consumer import ConsumerConfig, LedgerConsumer
from integrations.simulator import Simulator
from ledger.audit.ingest import AppendResult, BatchItem
from ledger.pg.appender import PostgresAppender
from ledgerctl.infra import ensure_topics
from ledgerctl.settings import KafkaRole
from producers.codec import Codec
from producers.events import AuditEvent, CriticalResultRelay, event_key
from tests.support import Stack, kafka_proxy, signed_headers

pytestmark = pytest.mark.integration

EVENTS = 6_000


class RecordingAppender(PostgresAppender):
    """The real appender, noting the epoch and offsets of every append call."""

    def __init__(self, *, dsn: str, ledger_name: str) -> None:
        super().__init__(dsn=dsn, ledger_name=ledger_name)
        self.calls: list[tuple[str, int, int | None, int, int]] = []

    async def append(
        self, *, topic: str, partition: int, items: Sequence[BatchItem], epoch: int | None = None
    ) -> AppendResult:
        self.calls.append(
            (topic, partition, epoch, items[0].record.offset, items[-1].record.offset)
        )
        return await super().append(topic=topic, partition=partition, items=items, epoch=epoch)


async def publish(
    stack: Stack, topics: tuple[str, str], events: Sequence[AuditEvent], producer_id: str
) -> None:
    """Stamp (0, 1, ...), sign and send the events straight to their topics, keyed by
    patient."""
    codec = Codec()
    stamped = [e.stamped(producer_id=producer_id, producer_seq=i) for i, e in enumerate(events)]
    records = [
        (topics[1] if isinstance(e, CriticalResultRelay) else topics[0], codec.encode(e))
        for e in stamped
    ]
    keys = [event_key(e).encode() for e in stamped]
    producer = AIOKafkaProducer(**stack.kafka_client(KafkaRole.SIMULATOR), linger_ms=20)
    await producer.start()
    try:
        # One seal per partition batch, as the emitter signs: each record's partition is
        # the one aiokafka's partitioner picks for its key.
        partitions = []
        for (topic, _), key in zip(records, keys, strict=True):
            available = sorted(await producer.partitions_for(topic))
            partitions.append(DefaultPartitioner()(key, available, available))
        headers = signed_headers(stack.producer_key(producer_id), records, partitions)
        for (topic, value), key, partition, header in zip(
            records, keys, partitions, headers, strict=True
        ):
            await producer.send(topic, value, key=key, partition=partition, headers=header)
        await producer.flush()
    finally:
        await producer.stop()


async def test_every_append_is_claimed_and_nothing_is_read_twice(stack: Stack) -> None:
    topics = stack.topics("claims")
    await ensure_topics(stack.kafka_bootstrap, topics, 4, stack.kafka(KafkaRole.ADMIN))
    codec = Codec()
    await publish(stack, topics, list(Simulator(seed=77).events(EVENTS)), "claims")

    appender = RecordingAppender(dsn=stack.appender_url, ledger_name="test.ledger.local")
    config = ConsumerConfig(
        bootstrap_servers=stack.kafka_bootstrap,
        topics=topics,
        relay_topics=frozenset({topics[1]}),
        group_id=f"t{stack.run_id}-claims",
        kafka_security=stack.kafka(KafkaRole.CONSUMER),
        max_batch=500,  # many polls, so some land while the assignment is being claimed
    )
    conn = await asyncpg.connect(stack.owner_url)
    try:
        consumer = LedgerConsumer(
            config=config, appender=appender, codec=codec, key_source=appender
        )
        async with appender, consumer as c:
            runner = asyncio.create_task(c.run())
            for _ in range(600):
                if c.stats.appended >= EVENTS:
                    break
                await asyncio.sleep(0.1)
            await c.stop()
            await runner
            stats = dataclasses.replace(c.stats)
        claimed = await conn.fetch(
            "SELECT g.topic, g.kafka_partition, max(w.epoch) AS epoch FROM log_writers w "
            "JOIN logs g USING (log_id) WHERE g.topic = ANY($1) "
            "GROUP BY g.topic, g.kafka_partition",
            list(topics),
        )
    finally:
        await conn.close()

    assert stats.appended == EVENTS
    assert stats.skipped == 0, "records appended before the claim were read a second time"
    assert stats.duplicates == 0
    epochs = {(r["topic"], r["kafka_partition"]): r["epoch"] for r in claimed}
    assert appender.calls
    for topic, partition, epoch, _, _ in appender.calls:
        assert epoch is not None, f"{topic}/{partition} appended without a writer claim"
        assert epoch == epochs[(topic, partition)]
    # Per log, each append starts where the previous one ended: nothing read twice.
    ends: dict[tuple[str, int], int] = {}
    for topic, partition, _, first, last in appender.calls:
        assert first == ends.get((topic, partition), 0)
        ends[(topic, partition)] = last + 1


async def test_a_consumer_started_while_kafka_is_away_waits_for_it(stack: Stack) -> None:
    """Started (or restarted by its supervisor) while the broker is down, the consumer
    retries until the broker is back, then ingests everything; it does not exit."""
    topics = (f"t{stack.run_id}-away-phi-access", f"t{stack.run_id}-away-relay")
    await ensure_topics(stack.kafka_bootstrap, topics, 4, stack.kafka(KafkaRole.ADMIN))
    events = list(Simulator(seed=78).events(300))
    await publish(stack, topics, events, "away")
    appender = RecordingAppender(dsn=stack.appender_url, ledger_name="test.ledger.local")
    async with kafka_proxy(stack.kafka_bootstrap) as proxy:
        await proxy.cut()  # nothing listens on the proxy's port: Kafka is unreachable
        config = ConsumerConfig(
            bootstrap_servers=proxy.bootstrap,
            topics=topics,
            relay_topics=frozenset({topics[1]}),
            group_id=f"t{stack.run_id}-away",
            kafka_security=stack.kafka(KafkaRole.CONSUMER),
        )
        consumer = LedgerConsumer(config=config, appender=appender, codec=Codec(),
                                  key_source=appender)  # fmt: skip
        async with appender:
            starting = asyncio.create_task(consumer.start())
            await asyncio.sleep(3)
            assert not starting.done(), "the consumer gave up while Kafka was away"
            await proxy.restore()
            await asyncio.wait_for(starting, 60)
            runner = asyncio.create_task(consumer.run())
            for _ in range(600):
                if consumer.stats.appended >= len(events):
                    break
                await asyncio.sleep(0.1)
            await consumer.stop()
            await runner
    assert consumer.stats.appended == len(events)
