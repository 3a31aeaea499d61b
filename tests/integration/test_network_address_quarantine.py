"""A Kafka record whose network_address is not an IP address or host name is quarantined
as invalid by the real consumer, never appended: the consumer validates with the
producer's code, so a client that skips the producer library gains nothing."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from consumers.consumer import ConsumerConfig, LedgerConsumer
from integrations.simulator import Simulator
from ledger.pg.appender import PostgresAppender
from ledgerctl.infra import ensure_topics
from ledgerctl.settings import KafkaRole
from producers.codec import Codec
from producers.events import PhiAccessEvent, event_key, to_record
from tests.support import Stack, signed_headers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_a_raw_record_with_a_bad_address_is_quarantined_not_appended(stack: Stack) -> None:
    topics = stack.topics("netaddr")
    await ensure_topics(stack.kafka_bootstrap, topics, 1, stack.kafka(KafkaRole.ADMIN))
    codec = Codec()
    good, bad = (
        dataclasses.replace(e, producer_id="netaddr-it", producer_seq=i)
        for i, e in enumerate(
            e for e in Simulator(seed=4242).events(50) if isinstance(e, PhiAccessEvent)
        )
        if i < 2
    )
    forged = to_record(bad) | {"network_address": "not an ip!"}
    raw_bad = codec._write(codec.writer_schema(bad), forged)  # what any Kafka client can send
    # Signed by the producer it names: only the address is wrong.
    bad_auth, good_auth = signed_headers(
        stack.producer_key("netaddr-it"), [(topics[0], raw_bad), (topics[0], codec.encode(good))]
    )
    producer = AIOKafkaProducer(**stack.kafka_client(KafkaRole.SIMULATOR))
    await producer.start()
    try:
        await producer.send_and_wait(
            topics[0], raw_bad, key=event_key(bad).encode(), headers=bad_auth
        )
        await producer.send_and_wait(
            topics[0], codec.encode(good), key=event_key(good).encode(), headers=good_auth
        )
    finally:
        await producer.stop()

    appender = PostgresAppender(dsn=stack.appender_url, ledger_name="test.ledger.local")
    config = ConsumerConfig(
        bootstrap_servers=stack.kafka_bootstrap,
        topics=topics,
        group_id=f"t{stack.run_id}-netaddr",
        kafka_security=stack.kafka(KafkaRole.CONSUMER),
    )
    consumer = LedgerConsumer(config=config, appender=appender, codec=codec, key_source=appender)
    async with appender, consumer as c:
        runner = asyncio.create_task(c.run())
        for _ in range(600):
            if c.stats.appended + c.stats.quarantined >= 2:
                break
            await asyncio.sleep(0.1)
        await c.stop()
        await runner

    conn = await asyncpg.connect(stack.owner_url)
    try:
        quarantined = await conn.fetch(
            "SELECT kafka_offset, reason, detail FROM quarantine WHERE topic = $1", topics[0]
        )
        stored = await conn.fetch(
            "SELECT e.event_id FROM events e JOIN logs g USING (log_id) WHERE g.topic = $1",
            topics[0],
        )
    finally:
        await conn.close()
    assert [(r["kafka_offset"], r["reason"]) for r in quarantined] == [(0, "invalid_event")]
    assert "network_address" in quarantined[0]["detail"]
    assert [str(r["event_id"]) for r in stored] == [str(good.event_id)]
