"""An event is appended only from the topic its schema belongs to.

Attack: anyone who can write to the relay topic (whose readers and retention may
differ) sends a valid PHI access event there, or a relay to the access topic. Producers
route by schema, so such a record did not come from one: the consumer quarantines it
with reason ``wrong_topic`` and appends the correctly routed ones next to it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from consumers.classify import REASON_WRONG_TOPIC
from consumers.consumer import ConsumerConfig, LedgerConsumer
from integrations.simulator import Simulator
from ledger.pg.appender import PostgresAppender
from ledgerctl.infra import ensure_topics
from ledgerctl.settings import KafkaRole
from producers.codec import Codec
from producers.events import AuditEvent, CriticalResultRelay, PhiAccessEvent, event_key
from tests.support import Stack, signed_headers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def one_of_each() -> tuple[PhiAccessEvent, CriticalResultRelay]:
    events = list(Simulator(seed=12).events(400))
    access = next(e for e in events if isinstance(e, PhiAccessEvent))
    relay = next(e for e in events if isinstance(e, CriticalResultRelay))
    return (
        access.stamped(producer_id="wrong-topic", producer_seq=0),
        relay.stamped(producer_id="wrong-topic", producer_seq=1),
    )


async def send_raw(stack: Stack, sends: list[tuple[str, AuditEvent]]) -> None:
    """Raw Kafka records, bytes as a producer would encode them, to the topics given, each
    signed by the producer they name (so only the topic is wrong)."""
    codec = Codec()
    records = [(topic, codec.encode(event)) for topic, event in sends]
    headers = signed_headers(stack.producer_key("wrong-topic"), records)
    producer = AIOKafkaProducer(**stack.kafka_client(KafkaRole.SIMULATOR), acks="all")
    await producer.start()
    try:
        for (topic, event), (_, value), header in zip(sends, records, headers, strict=True):
            await producer.send_and_wait(
                topic, value, key=event_key(event).encode(), partition=0, headers=header
            )
    finally:
        await producer.stop()


async def test_an_event_on_the_wrong_topic_is_quarantined_not_appended(stack: Stack) -> None:
    access_topic, relay_topic = topics = stack.topics(f"route-{uuid.uuid4().hex[:6]}")
    await ensure_topics(stack.kafka_bootstrap, topics, 1, stack.kafka(KafkaRole.ADMIN))
    access, relay = one_of_each()
    misrouted_access, misrouted_relay = access, relay
    routed_access = dataclasses.replace(access, event_id=uuid.uuid4())
    routed_relay = dataclasses.replace(relay, event_id=uuid.uuid4())
    await send_raw(
        stack,
        [
            (relay_topic, misrouted_access),  # PHI access on the relay topic
            (access_topic, misrouted_relay),  # relay on the access topic
            (access_topic, routed_access),
            (relay_topic, routed_relay),
        ],
    )

    appender = PostgresAppender(dsn=stack.appender_url, ledger_name="test.ledger.local")
    config = ConsumerConfig(
        bootstrap_servers=stack.kafka_bootstrap,
        topics=topics,
        relay_topics=frozenset({relay_topic}),
        group_id=f"t{stack.run_id}-route-{uuid.uuid4().hex[:6]}",
        kafka_security=stack.kafka(KafkaRole.CONSUMER),
    )
    consumer = LedgerConsumer(config=config, appender=appender, codec=Codec(), key_source=appender)
    async with appender, consumer as c:
        runner = asyncio.create_task(c.run())
        for _ in range(600):
            if c.stats.appended + c.stats.quarantined >= 4:
                break
            await asyncio.sleep(0.1)
        await c.stop()
        await runner
        stats = c.stats

    conn = await asyncpg.connect(stack.owner_url)
    try:
        quarantined = await conn.fetch(
            "SELECT topic, reason, detail, record_value FROM quarantine WHERE topic = ANY($1)",
            list(topics),
        )
        appended = await conn.fetch(
            "SELECT e.event_id, g.topic FROM events e JOIN logs g USING (log_id) "
            "WHERE g.topic = ANY($1)",
            list(topics),
        )
    finally:
        await conn.close()

    assert (stats.appended, stats.quarantined) == (2, 2)
    assert {(r["topic"], r["reason"]) for r in quarantined} == {
        (relay_topic, REASON_WRONG_TOPIC),
        (access_topic, REASON_WRONG_TOPIC),
    }
    codec = Codec()
    kept = {r["topic"]: r for r in quarantined}
    assert bytes(kept[relay_topic]["record_value"]) == codec.encode(misrouted_access)
    assert "PhiAccessEvent" in kept[relay_topic]["detail"]
    assert {(r["event_id"], r["topic"]) for r in appended} == {
        (routed_access.event_id, access_topic),
        (routed_relay.event_id, relay_topic),
    }, "the misrouted events are not in the ledger; the routed ones are"
