"""A replicated Kafka cluster under faults: the ledger neither loses nor duplicates anything.

The tests start their own 3-broker KRaft cluster (own ports, data, secrets; never the
shared stack's broker), create the topics as `ledger topics` does on a cluster
(replication factor 3, min.insync.replicas 2), and stream FAULT_EVENTS simulated events
through a real producer process into a real `ledger consume` while (1) the leader of the
busiest partition is SIGKILLed mid-stream and later brought back, (2) one broker is
down for the whole stream, and (3) every broker is stopped mid-stream and started
again. Then they check the invariants of tests/faults/conftest.py: every event exactly
once, quarantine exactly the injected records, gapless logs, every consumed offset
accounted for, and `ledger export` + `ledger verify` clean.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from ledger.pg.migrate import apply_migrations
from ledgerctl.settings import KafkaRole
from tests.conftest import drop_database
from tests.faults.conftest import EVENTS, FaultLedger, kill, read_ids
from tests.kafka_cluster import KafkaCluster, free_base_port, replication_of
from tests.support import Stack, run_ledger, with_database

# The cluster's start (about a minute on 2 shared cores) counts in the first test's time.
pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    home = tmp_path_factory.mktemp("kafka-cluster")
    cluster = KafkaCluster(home=home, port=free_base_port(3), brokers=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_ledger(stack: Stack, cluster: KafkaCluster, tmp_path: Path) -> Iterator[FaultLedger]:
    """A scratch ledger (own database on the shared PostgreSQL) fed by the cluster."""
    cluster.start()  # every node up again, whatever the previous test did
    database = f"ledger_kcluster_{secrets.token_hex(4)}"
    on_cluster = dataclasses.replace(
        stack, kafka_bootstrap=cluster.bootstrap, kafka_env=cluster.kafka_env
    )
    name = f"kcluster{secrets.token_hex(3)}"
    topics = on_cluster.topics(name)
    registry = on_cluster.registry_topic(name)

    async def create_database() -> None:
        conn = await asyncpg.connect(stack.owner_url)
        try:
            await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()

    asyncio.run(create_database())
    apply_migrations(with_database(stack.owner_url, database))
    own = dataclasses.replace(
        on_cluster, owner_url=with_database(stack.owner_url, database), database=database
    )
    env = on_cluster.env(
        LEDGER_CLI_PRODUCER_KEY_FILE=own.producer_key("ledger-cli"),
        DATABASE_URL=with_database(stack.owner_url, database),
        LEDGER_APPENDER_URL=with_database(stack.appender_url, database),
        LEDGER_READER_URL=with_database(stack.reader_url, database),
        LEDGER_ACCESS_TOPIC=topics[0],
        LEDGER_RELAY_TOPIC=topics[1],
        LEDGER_REGISTRY_TOPIC=registry,
        LEDGER_CONSUMER_GROUP=f"t{stack.run_id}-kcluster-{secrets.token_hex(4)}",
        LEDGER_CONSUMER_SESSION_TIMEOUT_MS="6000",
        # What `make up KAFKA_BROKERS=3` writes to .local/env; `ledger topics` reads it.
        LEDGER_TOPIC_REPLICATION_FACTOR="3",
        LEDGER_TOPIC_MIN_INSYNC_REPLICAS="2",
    )
    ledger = FaultLedger(
        stack=on_cluster, database=database, env=env, topics=topics, workdir=tmp_path
    )
    try:
        created = run_ledger(env, "topics")
        assert created.returncode == 0, created.stderr
        yield ledger
    finally:
        for proc in ledger.processes:
            kill(proc, signal.SIGTERM)

        asyncio.run(drop_database(stack.owner_url, database))


def stream_timeout() -> float:
    return 180 + EVENTS / 1000


def finish(proc: subprocess.Popen[bytes], ledger: FaultLedger, name: str) -> None:
    try:
        code = proc.wait(timeout=stream_timeout())
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} did not finish:\n{ledger.log_tail(name)}")
    assert code == 0, f"{name} exited {code}:\n{ledger.log_tail(name)}"


async def positions(ledger: FaultLedger) -> dict[int, int]:
    """partition of the access topic -> the next offset the ledger will consume there."""
    conn = await asyncpg.connect(ledger.owner_url)
    try:
        rows = await conn.fetch(
            "SELECT g.kafka_partition, max(p.next_offset) AS next_offset "
            "FROM ingest_positions p JOIN logs g USING (log_id) WHERE g.topic = $1 "
            "GROUP BY g.kafka_partition",
            ledger.topics[0],
        )
        return {r["kafka_partition"]: int(r["next_offset"]) for r in rows}
    finally:
        await conn.close()


async def settle_and_check(ledger: FaultLedger, ids: list[uuid.UUID]) -> None:
    await ledger.wait_for_ids(ids, timeout=stream_timeout())
    await asyncio.sleep(2)
    await ledger.check_invariants(ids)
    ledger.verify()


async def wait_until(what: str, check: Callable[[], Awaitable[bool]], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} after {timeout:.0f}s")
        await asyncio.sleep(0.2)


async def test_leader_of_a_busy_partition_sigkilled_mid_stream_then_back(
    cluster: KafkaCluster, cluster_ledger: FaultLedger, tmp_path: Path
) -> None:
    ids_file = tmp_path / "ids.txt"
    topic = cluster_ledger.topics[0]
    admin = cluster.client(KafkaRole.ADMIN)
    for created in (*cluster_ledger.topics, cluster_ledger.env["LEDGER_REGISTRY_TOPIC"]):
        assert await replication_of(admin, created) == ({3}, 2)  # as `ledger topics` made it
    assert all(len(isr) == 3 for _, isr in (await cluster.partitions(topic)).values())
    cluster_ledger.consumer()
    await cluster_ledger.inject_bad_records(5)
    producer = cluster_ledger.simulate(EVENTS, seed=4701, ids=ids_file)

    async def busy() -> bool:
        return sum((await positions(cluster_ledger)).values()) >= min(EVENTS // 20, 1000)

    await wait_until("the stream never got going", busy)
    # The busiest partition so far, and the broker leading it: SIGKILL, mid-stream.
    progress = await positions(cluster_ledger)
    partition = max(progress, key=lambda p: progress[p])
    leader, _ = (await cluster.partitions(topic))[partition]
    before = await positions(cluster_ledger)
    await asyncio.to_thread(cluster.kill, leader)
    assert producer.poll() is None, "the leader died after the stream, not in it"

    async def new_leader() -> bool:
        now, isr = (await cluster.partitions(topic))[partition]
        return now not in (leader, -1) and leader not in isr

    await wait_until(f"partition {partition} never got a new leader", new_leader)
    # The stream goes on through the new leader: the ledger appends past the kill.

    async def appended_past() -> bool:
        return (await positions(cluster_ledger)).get(partition, 0) > before[partition]

    await wait_until(f"nothing appended to partition {partition} after the kill", appended_past)
    await cluster_ledger.inject_bad_records(5)
    await asyncio.sleep(2)
    # The dead leader comes back, catches up and rejoins every in-sync replica set.
    await asyncio.to_thread(cluster.start)

    async def rejoined() -> bool:
        return all(leader in isr for _, isr in (await cluster.partitions(topic)).values())

    await wait_until(f"broker {leader} never rejoined the in-sync replicas", rejoined)
    await asyncio.to_thread(finish, producer, cluster_ledger, "simulate")
    ids = read_ids(ids_file)
    assert len(ids) == EVENTS
    await settle_and_check(cluster_ledger, ids)


async def test_one_broker_down_for_the_whole_stream(
    cluster: KafkaCluster, cluster_ledger: FaultLedger, tmp_path: Path
) -> None:
    ids_file = tmp_path / "ids.txt"
    topic = cluster_ledger.topics[0]
    down = 2
    await asyncio.to_thread(cluster.kill, down)

    async def fenced() -> bool:
        return all(down not in isr for _, isr in (await cluster.partitions(topic)).values())

    await wait_until(f"broker {down} was never removed from the in-sync replicas", fenced)
    cluster_ledger.consumer()
    await cluster_ledger.inject_bad_records(5)
    producer = cluster_ledger.simulate(EVENTS, seed=4702, ids=ids_file)
    await asyncio.to_thread(finish, producer, cluster_ledger, "simulate")
    await cluster_ledger.inject_bad_records(5)
    ids = read_ids(ids_file)
    assert len(ids) == EVENTS
    await settle_and_check(cluster_ledger, ids)
    # Two copies of every acknowledged event, never fewer: min.insync.replicas held.
    partitions = await cluster.partitions(topic)
    assert all(len(isr) == 2 and down not in isr for _, isr in partitions.values())
    assert cluster.pid(down) is None


async def test_every_broker_stopped_mid_stream_then_started(
    cluster: KafkaCluster, cluster_ledger: FaultLedger, tmp_path: Path
) -> None:
    """The whole cluster goes away under a producer and a consumer and comes back: the
    producer spools or retries, the consumer waits, nothing is lost or doubled."""
    ids_file = tmp_path / "ids.txt"
    cluster_ledger.consumer()
    producer = cluster_ledger.simulate(EVENTS, seed=4402, ids=ids_file)
    await cluster_ledger.inject_bad_records(5)

    async def busy() -> bool:
        return sum((await positions(cluster_ledger)).values()) >= min(EVENTS // 20, 1000)

    await wait_until("the stream never got going", busy)
    try:
        await asyncio.to_thread(cluster.stop)
        assert all(cluster.pid(node) is None for node in cluster.nodes)
        assert producer.poll() is None, "the cluster stopped after the stream, not in it"
        await asyncio.sleep(3)
    finally:
        await asyncio.to_thread(cluster.start)
    await cluster_ledger.inject_bad_records(5)
    await asyncio.to_thread(finish, producer, cluster_ledger, "simulate")
    ids = read_ids(ids_file)
    assert len(ids) == EVENTS
    await settle_and_check(cluster_ledger, ids)
