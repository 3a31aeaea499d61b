"""Readiness follows the real dependencies: a consumer whose brokers go away (a cuttable
proxy in front of the real Kafka) becomes not ready and says so, then ready again when
they return; a pool whose PostgreSQL goes away (a cuttable relay) says so; an emitter
that spools because Kafka is unreachable, or whose spool is nearly full, is not ready."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from consumers.consumer import ConsumerConfig, LedgerConsumer
from consumers.metrics import kafka_check
from integrations.simulator import Simulator
from ledger.pg.appender import PostgresAppender
from ledger.pg.reader import PostgresReader
from ledger.pg.status import unready_reason
from ledgerctl.infra import ensure_topics
from ledgerctl.settings import KafkaRole
from producers.codec import Codec
from producers.emitter import Emitter, EmitterConfig
from producers.ops import emitter_checks
from tests.ports import free_port as _closed_port
from tests.support import Stack, kafka_proxy
from tests.tcp_relay import TcpRelay

pytestmark = pytest.mark.integration


async def settles(check: Callable[[], Awaitable[str | None]], *, ready: bool) -> str | None:
    """Poll ``check`` until it is (not) ready; its last answer."""
    deadline = time.monotonic() + 60
    answer = await check()
    while (answer is None) != ready:
        assert time.monotonic() < deadline, f"still {answer!r}"
        await asyncio.sleep(0.3)
        answer = await check()
    return answer


async def test_consumer_readiness_follows_the_brokers(stack: Stack) -> None:
    name = f"ready{uuid.uuid4().hex[:6]}"
    topics = stack.topics(name)
    await ensure_topics(stack.kafka_bootstrap, topics, 1, stack.kafka(KafkaRole.ADMIN))
    appender = PostgresAppender(dsn=stack.appender_url, ledger_name="test.ledger.local")
    async with kafka_proxy(stack.kafka_bootstrap) as proxy, appender:
        config = ConsumerConfig(
            bootstrap_servers=proxy.bootstrap,
            topics=topics,
            relay_topics=frozenset({topics[1]}),
            group_id=f"t{stack.run_id}-{name}",
            kafka_security=stack.kafka(KafkaRole.CONSUMER),
        )
        consumer = LedgerConsumer(
            config=config, appender=appender, codec=Codec(), key_source=appender
        )
        check = kafka_check(consumer)
        assert await check() == "Kafka poll failing (not started)"
        async with consumer:
            running = asyncio.create_task(consumer.run())
            try:
                assert await settles(check, ready=True) is None
                await proxy.cut()
                assert await settles(check, ready=False) in {
                    "no Kafka broker answers a metadata request",
                    # the metadata request may hang until the check's own deadline
                    "Kafka poll failing (KafkaConnectionError)",
                }
                await proxy.restore()
                assert await settles(check, ready=True) is None
            finally:
                # aiokafka's fetcher can re-raise the cancellation of a fetch it was
                # retrying after the cut while it closes: the consumer is stopped anyway.
                with contextlib.suppress(asyncio.CancelledError):
                    await consumer.stop()
                await asyncio.gather(running, return_exceptions=True)


def _through(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    credentials, _, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{port}"))


async def test_database_readiness_says_when_postgresql_is_gone(stack: Stack) -> None:
    upstream = urlsplit(stack.reader_url)
    with TcpRelay(upstream.hostname or "127.0.0.1", upstream.port or 5432) as relay:
        async with PostgresReader(dsn=_through(stack.reader_url, relay.port), pool_size=1) as r:
            assert await unready_reason(r.pool) is None
            relay.cut()
            reason = await unready_reason(r.pool)
    assert reason is not None
    assert reason.startswith("PostgreSQL unavailable (")
    assert "@" not in reason  # never the DSN


async def test_an_emitter_spooling_or_nearly_full_is_not_ready(
    stack: Stack, tmp_path: Path
) -> None:
    config = EmitterConfig(
        bootstrap_servers=f"127.0.0.1:{_closed_port()}",
        producer_id=f"ready-{uuid.uuid4().hex[:6]}",
        access_topic=f"t{stack.run_id}-ready-phi-access",
        relay_topic=f"t{stack.run_id}-ready-relay",
        max_block_seconds=0.2,
        spool_after_seconds=0.2,
        connect_timeout_seconds=0.5,
        spool_dir=str(tmp_path / "spool"),
    )
    async with Emitter(config) as emitter:
        checks = emitter_checks(emitter, max_bytes=config.spool_max_bytes)
        await emitter.emit(next(iter(Simulator(seed=9_181).events(1))))
        kafka = await settles(checks["kafka"], ready=False)
        assert kafka is not None
        assert kafka.startswith("Kafka unreachable; ")
        assert kafka.endswith("event(s) spooled")
        assert await checks["spool"]() is None
        tiny = emitter_checks(emitter, max_bytes=10)
        spool = await tiny["spool"]()
        assert spool is not None
        assert spool.startswith("spool ")
        assert spool.endswith("of 10 bytes used")
