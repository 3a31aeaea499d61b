"""`ledger topics` replicates what it creates as the settings say, and refuses what the
brokers cannot hold (the one-broker stack here; the cluster in tests/faults)."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from ledgerctl.settings import KafkaRole
from tests.kafka_cluster import replication_of
from tests.support import Stack, run_ledger

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def topics_env(stack: Stack, **extra: str) -> tuple[dict[str, str], tuple[str, str, str]]:
    name = f"repl{secrets.token_hex(3)}"
    access, relay = stack.topics(name)
    registry = stack.registry_topic(name)
    env = stack.env(
        LEDGER_ACCESS_TOPIC=access, LEDGER_RELAY_TOPIC=relay, LEDGER_REGISTRY_TOPIC=registry,
        **extra,
    )  # fmt: skip
    return env, (access, relay, registry)


def test_one_broker_gets_one_copy_by_default(stack: Stack) -> None:
    env, topics = topics_env(stack)
    done = run_ledger(env, "topics")
    assert done.returncode == 0, done.stderr
    assert "topics created" in done.stderr
    assert "warning" not in done.stderr
    for topic in topics:
        replicas, min_isr = asyncio.run(replication_of(stack.kafka_client(KafkaRole.ADMIN), topic))
        assert (replicas, min_isr) == ({1}, 1)


def test_more_copies_than_brokers_is_the_brokers_refusal(stack: Stack) -> None:
    env, topics = topics_env(
        stack, LEDGER_TOPIC_REPLICATION_FACTOR="3", LEDGER_TOPIC_MIN_INSYNC_REPLICAS="2"
    )
    done = run_ledger(env, "topics")
    assert done.returncode != 0
    said = " ".join((done.stderr + done.stdout).split())
    assert f"cannot create topic {topics[0]}" in said
    assert "replication factor" in said.lower()


def test_more_in_sync_replicas_than_copies_is_refused_before_kafka(stack: Stack) -> None:
    env, _ = topics_env(
        stack,
        LEDGER_TOPIC_REPLICATION_FACTOR="1",
        LEDGER_TOPIC_MIN_INSYNC_REPLICAS="2",
        KAFKA_BOOTSTRAP="127.0.0.1:9",  # nothing listens: the refusal must come first
    )
    done = run_ledger(env, "topics")
    assert done.returncode != 0
    assert "LEDGER_TOPIC_MIN_INSYNC_REPLICAS" in done.stderr + done.stdout


def test_an_existing_topic_below_the_settings_is_named_not_altered(stack: Stack) -> None:
    env, topics = topics_env(stack)
    assert run_ledger(env, "topics").returncode == 0  # one copy each, as on one broker
    raised = {
        **env,
        "LEDGER_TOPIC_REPLICATION_FACTOR": "3",
        "LEDGER_TOPIC_MIN_INSYNC_REPLICAS": "2",
    }
    done = run_ledger(raised, "topics")
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    assert "topics created: none (all exist)" in said
    for topic in topics:
        assert f"warning: topic {topic} has 1 replica(s) and min.insync.replicas 1" in said
        replicas, min_isr = asyncio.run(replication_of(stack.kafka_client(KafkaRole.ADMIN), topic))
        assert (replicas, min_isr) == ({1}, 1)
