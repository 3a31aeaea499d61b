"""A batch read before a re-claim is never appended under the new claim.

Regression (seen once in CI, `tests/faults`: 1 of 20,000 events never reached the
ledger): the consumer keeps up to two polls in hand. Around a rebalance, the older poll
could be dropped (its partition not claimed at that moment) while the newer one was
appended after the partition was claimed again, under the new epoch. The claim seeks to
the stored position, which was the older poll's first offset, so the append moved the
position past the older poll's records; read again, they were below it and skipped:
lost. A batch now carries the epoch it was read under and is appended only under that
same claim.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from consumers.consumer import ConsumerConfig, LedgerConsumer
from integrations.simulator import Simulator
from ledger.pg.appender import PostgresAppender
from ledgerctl.infra import ensure_topics
from ledgerctl.settings import KafkaRole
from producers.codec import Codec
from producers.events import PhiAccessEvent
from tests.integration.test_consumer_claims import publish
from tests.support import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EVENTS = 600


async def test_a_poll_read_before_a_re_claim_is_read_again_not_appended(stack: Stack) -> None:
    topics = stack.topics("stale")
    await ensure_topics(stack.kafka_bootstrap, topics, 1, stack.kafka(KafkaRole.ADMIN))
    codec = Codec()
    events = [e for e in Simulator(seed=88).events(EVENTS) if isinstance(e, PhiAccessEvent)]
    await publish(stack, topics, events, "stale")

    appender = PostgresAppender(dsn=stack.appender_url, ledger_name="test.ledger.local")
    config = ConsumerConfig(
        bootstrap_servers=stack.kafka_bootstrap,
        topics=topics,
        relay_topics=frozenset({topics[1]}),
        group_id=f"t{stack.run_id}-stale",
        kafka_security=stack.kafka(KafkaRole.CONSUMER),
        max_batch=100,
    )
    consumer = LedgerConsumer(config=config, appender=appender, codec=codec, key_source=appender)
    async with appender, consumer as c:
        consumer = c._consumer
        assert consumer is not None
        # Two polls in hand, as run() keeps them (one appending, one handed over).
        first = []
        while not first:
            first = await c._poll()
        second = await c._poll()
        assert [p.items[0].record.offset for p in first + second] == [0, 100]
        (tp,) = {p.tp for p in first + second}

        # The rebalance: the partition is revoked (the claim dropped) and the first poll
        # is due meanwhile, so it is dropped; then it is assigned to us again: a new
        # claim, and a seek to the stored position (offset 0).
        async with c._batch_lock:
            c._epochs.pop(tp)
        await c._append_partition(consumer, first[0])
        async with c._batch_lock:
            await c._seek_assigned([tp])
        # The second poll is due now, under the new claim: it must not be appended.
        await c._append_partition(consumer, second[0])
        assert c.stats.appended == 0
        assert c.stats.unclaimed == 200

        runner = asyncio.create_task(c.run())
        for _ in range(300):
            if c.stats.appended >= len(events):
                break
            await asyncio.sleep(0.1)
        await c.stop()
        await runner

    conn = await asyncpg.connect(stack.owner_url)
    try:
        stored = await conn.fetch(
            "SELECT e.event_id FROM events e JOIN logs g USING (log_id) WHERE g.topic = $1",
            topics[0],
        )
    finally:
        await conn.close()
    assert sorted(str(r["event_id"]) for r in stored) == sorted(str(e.event_id) for e in events)
    assert (c.stats.appended, c.stats.skipped) == (len(events), 0)
