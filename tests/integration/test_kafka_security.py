"""The broker `make up` and `make test` run refuses whoever is not allowed (docs/kafka.md).

Every refusal is checked against the real secured broker, next to a control that the
same client with the right settings gets through, so each test fails if the broker
accepted PLAINTEXT, ignored SASL passwords, skipped TLS or had no ACLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from ledgerctl.infra import ensure_topics
from ledgerctl.settings import KafkaRole, Settings
from producers.kafka_security import KafkaSecurity, client_kwargs
from tests.support import ROOT, Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PRODUCERS = (
    KafkaRole.API,
    KafkaRole.ATNA,
    KafkaRole.ORTHANC,
    KafkaRole.DICOMPROXY,
    KafkaRole.SIMULATOR,
)


@pytest.fixture(autouse=True)
def secured(stack: Stack) -> None:
    if not stack.kafka(KafkaRole.ADMIN).sasl:
        pytest.fail(
            "Kafka in .local/env is not SASL_SSL: start the secured broker with "
            "`deploy/local/stack.sh infra`",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def topic(stack: Stack) -> str:
    """A PHI topic of this session holding one record, written by a producer principal."""
    name = stack.topics("kafkasec")[0]

    async def setup() -> None:
        await ensure_topics(stack.kafka_bootstrap, (name,), 1, stack.kafka(KafkaRole.ADMIN))
        async with producer(stack, KafkaRole.SIMULATOR) as p:
            await p.send_and_wait(name, b"a record", key=b"k")

    asyncio.run(setup())
    return name


@contextlib.asynccontextmanager
async def producer(stack: Stack, role: KafkaRole) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(**stack.kafka_client(role), request_timeout_ms=10_000)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def refused_at_connect(
    stack: Stack, security: KafkaSecurity, caplog: pytest.LogCaptureFixture
) -> str:
    """Connect an admin client with ``security``; return why aiokafka could not connect."""
    kwargs = client_kwargs(security)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=stack.kafka_bootstrap, request_timeout_ms=5000, **kwargs
    )
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="aiokafka"):
        try:
            with pytest.raises(KafkaConnectionError):
                await asyncio.wait_for(admin.start(), 30)
        finally:
            await admin.close()
    return "\n".join(r.getMessage() for r in caplog.records)


async def connects(stack: Stack, security: KafkaSecurity) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap, **client_kwargs(security))
    try:
        await asyncio.wait_for(admin.start(), 30)
        await admin.list_topics()
        return True
    finally:
        await admin.close()


def password_file(path: Path, text: str) -> str:
    path.write_text(text + "\n")
    os.chmod(path, 0o600)
    return str(path)


async def test_a_plaintext_client_is_refused(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    why = await refused_at_connect(stack, KafkaSecurity(), caplog)
    assert "closed" in why  # the TLS listener hangs up on a client that does not speak TLS


async def test_a_wrong_password_is_refused(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    right = stack.kafka(KafkaRole.SIMULATOR)
    assert await connects(stack, right)
    wrong = replace(right, sasl_password_file=password_file(tmp_path / "pw", "not-the-password"))
    why = await refused_at_connect(stack, wrong, caplog)
    assert "SaslAuthenticationFailed" in why


async def test_an_unknown_user_is_refused(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A real principal's password, under a user name the broker does not know.
    right = stack.kafka(KafkaRole.SIMULATOR)
    stranger = replace(right, sasl_username="mallory")
    why = await refused_at_connect(stack, stranger, caplog)
    assert "SaslAuthenticationFailed" in why


async def test_a_client_that_does_not_trust_the_local_ca_is_refused(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    right = stack.kafka(KafkaRole.SIMULATOR)
    assert right.ca_file is not None
    # The system's CAs only: the broker's certificate does not chain to any of them, so
    # the client refuses to send its password to it (no downgrade to an unverified peer).
    why = await refused_at_connect(stack, replace(right, ca_file=None), caplog)
    assert "CERTIFICATE_VERIFY_FAILED" in why


@pytest.mark.parametrize("role", [*PRODUCERS, KafkaRole.ADMIN, KafkaRole.OPERATOR])
async def test_nobody_but_the_consumer_and_replay_reads_a_phi_topic(
    stack: Stack, topic: str, role: KafkaRole
) -> None:
    tp = TopicPartition(topic, 0)

    async def first_record(as_role: KafkaRole) -> bytes | None:
        consumer = AIOKafkaConsumer(**stack.kafka_client(as_role), request_timeout_ms=10_000)
        await consumer.start()
        try:
            consumer.assign([tp])
            consumer.seek(tp, 0)
            return (await asyncio.wait_for(consumer.getone(), 30)).value
        finally:
            await consumer.stop()

    assert await first_record(KafkaRole.CONSUMER) == b"a record"
    assert await first_record(KafkaRole.REPLAY) == b"a record"
    with pytest.raises(TopicAuthorizationFailedError):
        await first_record(role)


@pytest.mark.parametrize("role", [KafkaRole.CONSUMER, KafkaRole.REPLAY, KafkaRole.ADMIN])
async def test_a_reader_or_the_admin_cannot_write_an_event_topic(
    stack: Stack, topic: str, role: KafkaRole
) -> None:
    async with producer(stack, KafkaRole.API) as allowed:
        await allowed.send_and_wait(topic, b"from the API", key=b"k")
    async with producer(stack, role) as p:
        with pytest.raises(TopicAuthorizationFailedError):
            await p.send_and_wait(topic, b"forged", key=b"k")


@pytest.mark.parametrize("role", [*PRODUCERS, KafkaRole.REPLAY])
async def test_only_the_consumer_joins_the_consumer_group(
    stack: Stack, topic: str, role: KafkaRole
) -> None:
    group = f"t{stack.run_id}-kafkasec-group"

    async def join(as_role: KafkaRole) -> None:
        consumer = AIOKafkaConsumer(
            topic,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **stack.kafka_client(as_role),
        )
        try:
            await asyncio.wait_for(consumer.start(), 30)
            await asyncio.wait_for(consumer.getone(), 30)
        finally:
            await consumer.stop()

    await join(KafkaRole.CONSUMER)
    with pytest.raises(GroupAuthorizationFailedError):
        await join(role)


@pytest.mark.parametrize("role", [*PRODUCERS, KafkaRole.CONSUMER])
async def test_only_the_admin_creates_topics(stack: Stack, role: KafkaRole) -> None:
    name = f"t{stack.run_id}-kafkasec-new-{role.value}"
    with pytest.raises(TopicAuthorizationFailedError):
        await ensure_topics(stack.kafka_bootstrap, (name,), 1, stack.kafka(role))
    created = await ensure_topics(stack.kafka_bootstrap, (name,), 1, stack.kafka(KafkaRole.ADMIN))
    assert created == [name]


def test_kafka_secrets_are_owner_only(stack: Stack) -> None:
    """The CA key, the broker's key and every principal's password: mode 600 files in
    mode 700 directories; the broker's properties (its JAAS password) too."""
    ca_file = stack.kafka(KafkaRole.ADMIN).ca_file
    assert ca_file is not None
    secrets_dir = Path(ca_file).parent
    paths = [secrets_dir, *secrets_dir.rglob("*")]
    assert {p.name for p in paths} >= {"ca.key", "broker.key", "ledger-consumer", "kafka-broker"}
    loose = [str(p) for p in paths if p.stat().st_mode & 0o077]
    assert loose == []
    properties = ROOT / ".local" / "kafka" / "server.properties"
    assert "sasl.jaas.config" in properties.read_text()
    assert properties.stat().st_mode & 0o777 == 0o600


def test_no_process_has_a_kafka_password_in_its_arguments(stack: Stack) -> None:
    """The broker, the consumer, the API, the ATNA receiver, the Orthanc relay: each one
    reads its password from a file; none is ever an argument (visible in ps)."""
    ca_file = stack.kafka(KafkaRole.ADMIN).ca_file
    assert ca_file is not None
    passwords = {p.name: p.read_text().strip() for p in (Path(ca_file).parent / "users").iterdir()}
    assert len(passwords) >= 9
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found += [f"{name} in pid {proc.name}" for name, pw in passwords.items() if pw in argv]
    assert found == []


@pytest.mark.parametrize("role", PRODUCERS)
async def test_no_event_producer_writes_the_registry_topic(stack: Stack, role: KafkaRole) -> None:
    """A PACS, the ATNA receiver or the API cannot forge a license or a BAA: only the
    registry principal writes the registry topic (the stack's real one; refused writes
    leave nothing in it)."""
    async with producer(stack, role) as p:
        with pytest.raises(TopicAuthorizationFailedError):
            await p.send_and_wait(_default("registry_topic"), b"forged", key=b"k")


async def test_the_registry_principal_writes_no_event_topic(stack: Stack) -> None:
    async with producer(stack, KafkaRole.REGISTRY) as p:
        for topic in (_default("access_topic"), _default("relay_topic")):
            with pytest.raises(TopicAuthorizationFailedError):
                await p.send_and_wait(topic, b"forged", key=b"k")


def _default(field: str) -> str:
    """The stack's topic names (`make up` creates them with the settings' defaults)."""
    value = Settings.model_fields[field].default
    assert isinstance(value, str)
    return value
