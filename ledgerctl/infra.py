"""Infrastructure helpers for the CLI: readiness checks and topic creation.

Invariant: every wait is bounded by an explicit timeout and reports what it
waited for; topic creation is idempotent.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from ledgerctl.replication import TopicReplication
from producers.kafka_security import KafkaSecurity, client_kwargs

#: One broker: one copy, and an acks=all write needs only it.
SINGLE_BROKER = TopicReplication(factor=1, min_insync=1)


async def kafka_ready(
    bootstrap: str, timeout: float, security: KafkaSecurity | None = None
) -> None:
    """Return once a metadata request succeeds (authenticated, with ``security``); raise
    TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=3000,
            **client_kwargs(security or KafkaSecurity()),
        )
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    raise TimeoutError(f"Kafka at {bootstrap} not ready after {timeout}s: {last!r}")


async def ensure_topics(
    bootstrap: str,
    topics: tuple[str, ...],
    partitions: int,
    security: KafkaSecurity | None = None,
    *,
    replication: TopicReplication = SINGLE_BROKER,
) -> list[str]:
    """Create missing topics (``replication``: factor and min.insync.replicas, 1 and 1 by
    default, for one broker); return the names created.

    ``security`` is the admin principal's (it needs CREATE and DESCRIBE on the topics).
    A topic the broker refuses (not authorised, invalid) raises that broker error: the
    admin client reports it per topic in the response instead of raising."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        **client_kwargs(security or KafkaSecurity()),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=t,
                num_partitions=partitions,
                replication_factor=replication.factor,
                topic_configs=replication.topic_configs(),
            )
            for t in topics
            if t not in existing
        ]
        if wanted:
            response = await admin.create_topics(wanted)
            for name, code, *message in response.topic_errors:
                if code and code != TopicAlreadyExistsError.errno:  # created concurrently
                    detail = message[0] if message and message[0] else name
                    raise for_code(code)(f"cannot create topic {name}: {detail}")
            await _wait_for_leaders(admin, [t.name for t in wanted])
        return [t.name for t in wanted]
    finally:
        await admin.close()


async def under_replicated(
    bootstrap: str,
    topics: tuple[str, ...],
    replication: TopicReplication,
    security: KafkaSecurity | None = None,
) -> list[str]:
    """One sentence per existing topic replicated below ``replication`` (fewer replicas
    or a lower min.insync.replicas): `ledger topics` never alters a topic, so a topic
    created before the settings changed keeps what it had."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, **client_kwargs(security or KafkaSecurity())
    )
    await admin.start()
    try:
        found = []
        described = await admin.describe_topics(list(topics))
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t["topic"]) for t in described]
        )
        min_isr = {
            resource[3]: int(value)
            for response in configs
            for resource in response.resources
            for name, value, *_ in resource[4]
            if name == "min.insync.replicas"
        }
        for topic in described:
            name = topic["topic"]
            replicas = min((len(p["replicas"]) for p in topic["partitions"]), default=0)
            if replicas < replication.factor or min_isr.get(name, 0) < replication.min_insync:
                found.append(
                    f"{name} has {replicas} replica(s) and min.insync.replicas "
                    f"{min_isr.get(name, '?')}, below the configured {replication.factor} and "
                    f"{replication.min_insync}"
                )
        return found
    finally:
        await admin.close()


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, names: list[str], timeout: float = 30.0
) -> None:
    """Wait until every partition of the new topics has a leader: a consumer that
    subscribes before that is assigned none of their partitions until its next metadata
    refresh (minutes later), so the first registry change would wait that long."""
    deadline = time.monotonic() + timeout
    while True:
        described = await admin.describe_topics(names)
        ready = all(
            t["error_code"] == 0
            and t["partitions"]
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
            for t in described
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {', '.join(names)} have no leader after {timeout:.0f}s")
        await asyncio.sleep(0.2)


async def postgres_ready(dsn: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            conn = await asyncpg.connect(dsn, timeout=3)
            await conn.close()
            return
        except (OSError, asyncpg.PostgresError) as exc:
            last = exc
        await asyncio.sleep(0.5)
    raise TimeoutError(f"PostgreSQL not ready after {timeout}s: {type(last).__name__}")


async def api_ready(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(3)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.3)
    raise TimeoutError(f"API at {url} not ready after {timeout}s")
