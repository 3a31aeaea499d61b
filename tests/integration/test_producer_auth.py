"""Producer authentication against the real broker and database.

Every way of writing an event without being its producer is refused: quarantined with
its reason, a security alert raised, never appended. Signed events from the real
Emitter (direct and re-sent from its spool) are appended with their place in their
seal, each partition's records under seals of their own; a consumer that restarts
after a seal finds it in the database.
Rotation: two keys are valid at once; a revoked key's records are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from consumers.consumer import ConsumerConfig, LedgerConsumer
from integrations.simulator import Simulator
from ledger.log.leaf import decode_leaf
from ledger.log.note import parse_verifier_key
from ledger.pg.appender import PostgresAppender
from ledger.pg.export import export_bundle
from ledger.pg.producerkeys import revoke_producer_key
from ledger.pg.shards import base_origin
from ledger.verify import Finding, verify_bundle
from ledger.verify.bundle import BundleReader
from ledger.verify.producerbundle import REFS_DIR, SEALS_FILE
from ledger.verify.producers import producer_check
from ledgerctl.infra import ensure_topics
from ledgerctl.settings import KafkaRole
from ledgerctl.verdict import verdict_line
from ledgerctl.verifying import event_checks
from producers.codec import Codec
from producers.emitter import Emitter, EmitterConfig
from producers.errors import EventValidationError
from producers.events import PhiAccessEvent
from producers.signing import (
    ENVELOPE_HEADER,
    ProducerKeyError,
    generate_producer_key,
    leaf_hash,
    load_producer_key,
    write_producer_key,
)
from tests.support import Stack, signed_headers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CODEC = Codec()


@dataclasses.dataclass
class Running:
    stack: Stack
    topics: tuple[str, str]
    producer: AIOKafkaProducer
    sim: Simulator

    def event(self, producer_id: str, seq: int = 0) -> PhiAccessEvent:
        return self.sim.access().stamped(producer_id=producer_id, producer_seq=seq)

    async def send(self, value: bytes, headers: list[tuple[str, bytes]] | None) -> int:
        meta = await self.producer.send_and_wait(
            self.topics[0], value=value, key=b"k", partition=0, headers=headers
        )
        return int(meta.offset)

    def emitter(self, producer_id: str, key_file: str, **kw: object) -> Emitter:
        return Emitter(
            EmitterConfig(
                bootstrap_servers=self.stack.kafka_bootstrap,
                producer_id=producer_id,
                access_topic=self.topics[0],
                relay_topic=self.topics[1],
                producer_key_file=key_file,
                kafka_security=self.stack.kafka(KafkaRole.SIMULATOR),
                **kw,  # type: ignore[arg-type]
            )
        )


@pytest.fixture
async def partitioned(stack: Stack) -> AsyncIterator[Running]:
    """A consumer on fresh topics of three partitions each."""
    async for r in consuming(stack, refresh_seconds=0.5, partitions=3):
        yield r


@pytest.fixture
async def running(stack: Stack) -> AsyncIterator[Running]:
    """A consumer on fresh topics that re-reads the key registry every 0.5 s."""
    async for r in consuming(stack, refresh_seconds=0.5):
        yield r


@pytest.fixture
async def slow_refresh(stack: Stack) -> AsyncIterator[Running]:
    """A consumer that re-reads the key registry only on an unknown key id."""
    async for r in consuming(stack, refresh_seconds=3600):
        yield r


async def consuming(
    stack: Stack,
    *,
    refresh_seconds: float,
    partitions: int = 1,
    topics: tuple[str, str] | None = None,
) -> AsyncGenerator[Running, None]:
    if topics is None:
        topics = stack.topics(f"auth{uuid.uuid4().hex[:6]}")
        await ensure_topics(stack.kafka_bootstrap, topics, partitions, stack.kafka(KafkaRole.ADMIN))
    appender = PostgresAppender(dsn=stack.appender_url, ledger_name="test.ledger.local")
    config = ConsumerConfig(
        bootstrap_servers=stack.kafka_bootstrap,
        topics=topics,
        relay_topics=frozenset({topics[1]}),
        group_id=f"t{stack.run_id}-auth-{uuid.uuid4().hex[:8]}",
        producer_keys_refresh_seconds=refresh_seconds,
        producer_keys_refresh_min_seconds=0.1,
        kafka_security=stack.kafka(KafkaRole.CONSUMER),
    )
    # Any authenticated Kafka client can write the topics: the signature is what counts.
    producer = AIOKafkaProducer(**stack.kafka_client(KafkaRole.SIMULATOR))
    await producer.start()
    consumer = LedgerConsumer(config=config, appender=appender, codec=CODEC, key_source=appender)
    async with appender, consumer:
        runner = asyncio.create_task(consumer.run())
        try:
            yield Running(stack, topics, producer, Simulator(seed=uuid.uuid4().int % 2**32))
        finally:
            await producer.stop()
            # Bounded: LedgerConsumer.stop() can deadlock with a rebalance still running
            # (it holds the batch lock that on_partitions_revoked waits for).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    await consumer.stop()
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await runner


async def outcome(stack: Stack, topic: str, offset: int) -> tuple[str | None, str | None]:
    """(quarantine reason, alert kind) of one record, once the consumer has handled it."""
    conn = await asyncpg.connect(stack.owner_url)
    try:
        for _ in range(300):
            done = await conn.fetchval(
                "SELECT max(p.next_offset) FROM ingest_positions p JOIN logs l USING (log_id) "
                "WHERE l.topic = $1 AND l.kafka_partition = 0",
                topic,
            )
            if done is not None and done > offset:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"the consumer did not reach offset {offset}")
        reason = await conn.fetchval(
            "SELECT reason FROM quarantine WHERE topic = $1 AND kafka_offset = $2", topic, offset
        )
        alert = await conn.fetchval(
            "SELECT kind FROM security_alerts WHERE topic = $1 AND kafka_offset = $2",
            topic,
            offset,
        )
        return reason, alert
    finally:
        await conn.close()


async def appended(stack: Stack, event_id: uuid.UUID) -> bool:
    conn = await asyncpg.connect(stack.owner_url)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM events WHERE event_id = $1", event_id))
    finally:
        await conn.close()


async def assert_refused(r: Running, event: PhiAccessEvent, offset: int, reason: str) -> None:
    got = await outcome(r.stack, r.topics[0], offset)
    assert got == (reason, f"producer_auth_{reason}")
    assert not await appended(r.stack, event.event_id)


def envelope(key_file: str, topic: str, value: bytes) -> list[tuple[str, bytes]]:
    return signed_headers(key_file, [(topic, value)])[0]


def unregistered_key_file(tmp_path: Path, producer_id: str) -> str:
    """A key nobody registered."""
    path = tmp_path / f"{uuid.uuid4().hex}.key"
    write_producer_key(path, generate_producer_key(producer_id))
    return str(path)


async def test_a_key_registered_after_the_consumer_started_is_accepted(
    slow_refresh: Running,
) -> None:
    """An unknown key id makes the consumer re-read the registry before it judges."""
    r = slow_refresh
    first = r.event("pa-early")
    value = CODEC.encode(first)
    await r.send(value, envelope(r.stack.producer_key("pa-early"), r.topics[0], value))
    for _ in range(300):
        if await appended(r.stack, first.event_id):
            break
        await asyncio.sleep(0.1)
    late = r.event("pa-late")  # its key is registered only now
    value = CODEC.encode(late)
    offset = await r.send(value, envelope(r.stack.producer_key("pa-late"), r.topics[0], value))
    assert await outcome(r.stack, r.topics[0], offset) == (None, None)
    assert await appended(r.stack, late.event_id)


async def test_no_envelope_is_refused(running: Running) -> None:
    event = running.event("pa-good")
    offset = await running.send(CODEC.encode(event), None)
    await assert_refused(running, event, offset, "unauthenticated")


async def test_a_garbage_envelope_is_refused(running: Running) -> None:
    event = running.event("pa-good")
    offset = await running.send(CODEC.encode(event), [(ENVELOPE_HEADER, b"\x01" * 90)])
    await assert_refused(running, event, offset, "bad_envelope")


async def test_a_forged_signature_is_refused(running: Running, tmp_path: Path) -> None:
    """Signed by a key nobody registered, posing under pa-good's key id."""
    good = load_producer_key(running.stack.producer_key("pa-good"))
    forger = dataclasses.replace(generate_producer_key("pa-good"), key_id=good.key_id)
    event = running.event("pa-good")
    value = CODEC.encode(event)
    (forged,) = forger.signer().envelopes([(running.topics[0], value)])
    offset = await running.send(value, [(ENVELOPE_HEADER, forged)])
    await assert_refused(running, event, offset, "bad_signature")


async def test_another_producers_key_is_refused(running: Running) -> None:
    """The API's key cannot write an event that names the ATNA receiver (or vice versa)."""
    event = running.event("pa-good")
    value = CODEC.encode(event)
    other = running.stack.producer_key("pa-other")
    offset = await running.send(value, envelope(other, running.topics[0], value))
    await assert_refused(running, event, offset, "producer_mismatch")


async def test_an_unknown_key_is_refused(running: Running, tmp_path: Path) -> None:
    event = running.event("pa-good")
    value = CODEC.encode(event)
    unknown = unregistered_key_file(tmp_path, "pa-good")
    offset = await running.send(value, envelope(unknown, running.topics[0], value))
    await assert_refused(running, event, offset, "unknown_key")


async def test_a_tampered_value_under_a_valid_envelope_is_refused(running: Running) -> None:
    event = running.event("pa-good")
    signed = envelope(running.stack.producer_key("pa-good"), running.topics[0], CODEC.encode(event))
    tampered = dataclasses.replace(event, network_address="203.0.113.66")
    offset = await running.send(CODEC.encode(tampered), signed)
    await assert_refused(running, tampered, offset, "bad_signature")


async def test_an_envelope_for_another_topic_is_refused(running: Running) -> None:
    event = running.event("pa-good")
    value = CODEC.encode(event)
    signed = envelope(running.stack.producer_key("pa-good"), running.topics[1], value)
    offset = await running.send(value, signed)
    await assert_refused(running, event, offset, "bad_signature")


async def wait_appended(stack: Stack, event_id: uuid.UUID) -> None:
    for _ in range(300):
        if await appended(stack, event_id):
            return
        await asyncio.sleep(0.1)


async def test_signed_events_are_appended_with_their_seal(running: Running) -> None:
    key_file = running.stack.producer_key("pa-emitter")
    events = [running.sim.access() for _ in range(50)]
    async with running.emitter("pa-emitter", key_file) as emitter:
        for e in events:
            await emitter.emit(e)
        await emitter.flush()
    await wait_appended(running.stack, events[-1].event_id)
    conn = await asyncpg.connect(running.stack.owner_url)
    try:
        rows = await conn.fetch(
            "SELECT v.leaf, v.seal_id, v.seal_index, s.key_id, s.leaf_hashes "
            "FROM events e JOIN leaves v USING (log_id, leaf_index) "
            "JOIN producer_seals s USING (seal_id) WHERE e.event_id = ANY($1::uuid[])",
            [e.event_id for e in events],
        )
    finally:
        await conn.close()
    key = load_producer_key(key_file)
    assert len(rows) == len(events), "every leaf refers to a stored seal"
    assert {r["key_id"] for r in rows} == {key.key_id}
    # One seal covers many of them: fewer distinct seals than events.
    assert len({bytes(r["seal_id"]) for r in rows}) < len(events)
    for r in rows:
        i = int(r["seal_index"])
        value = decode_leaf(bytes(r["leaf"])).value
        assert bytes(r["leaf_hashes"])[32 * i : 32 * i + 32] == leaf_hash(
            "pa-emitter", running.topics[0], value
        )


async def test_each_partition_gets_its_own_seals(partitioned: Running) -> None:
    """The emitter groups each signed batch per destination partition (as aiokafka's
    partitioner would place each record), so every record's seal reaches its partition
    first: all are appended, none is refused, no seal spans two partitions."""
    r = partitioned
    key_file = r.stack.producer_key("pa-parts")
    events = [r.sim.access() for _ in range(120)]
    async with r.emitter("pa-parts", key_file) as emitter:
        for e in events:
            await emitter.emit(e)
        await emitter.flush()
    for e in events:
        await wait_appended(r.stack, e.event_id)
        assert await appended(r.stack, e.event_id)
    conn = await asyncpg.connect(r.stack.owner_url)
    try:
        rows = await conn.fetch(
            "SELECT v.seal_id, l.kafka_partition FROM events e "
            "JOIN leaves v USING (log_id, leaf_index) JOIN logs l USING (log_id) "
            "WHERE e.event_id = ANY($1::uuid[])",
            [e.event_id for e in events],
        )
        refused = await conn.fetchval(
            "SELECT count(*) FROM quarantine WHERE topic = $1", r.topics[0]
        )
    finally:
        await conn.close()
    assert refused == 0
    assert len({r["kafka_partition"] for r in rows}) > 1, "the events span partitions"
    partitions_of: dict[bytes, set[int]] = {}
    for row in rows:
        partitions_of.setdefault(bytes(row["seal_id"]), set()).add(row["kafka_partition"])
    assert all(len(p) == 1 for p in partitions_of.values())


async def test_a_reference_to_an_unknown_seal_is_refused(running: Running) -> None:
    """A record that refers to a seal nobody sent (its seal-carrying first record never
    arrived, or the reference is forged) is quarantined, with an alert."""
    events = [running.event("pa-good", i) for i in range(2)]
    values = [CODEC.encode(e) for e in events]
    headers = signed_headers(
        running.stack.producer_key("pa-good"), [(running.topics[0], v) for v in values]
    )
    offset = await running.send(values[1], headers[1])  # without the first (the seal)
    await assert_refused(running, events[1], offset, "unknown_seal")


async def test_a_refused_first_record_still_deposits_its_seal(running: Running) -> None:
    """The seal-carrying record is refused (its value changed) but its seal verifies: the
    seal is stored, and the batch's other records are appended."""
    events = [running.event("pa-good", i) for i in range(3)]
    values = [CODEC.encode(e) for e in events]
    headers = signed_headers(
        running.stack.producer_key("pa-good"), [(running.topics[0], v) for v in values]
    )
    tampered = dataclasses.replace(events[0], network_address="203.0.113.66")
    offset = await running.send(CODEC.encode(tampered), headers[0])
    for value, h in zip(values[1:], headers[1:], strict=True):
        await running.send(value, h)
    await assert_refused(running, tampered, offset, "bad_signature")
    for e in events[1:]:
        await wait_appended(running.stack, e.event_id)
        assert await appended(running.stack, e.event_id)
    conn = await asyncpg.connect(running.stack.owner_url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM producer_seals WHERE seal_id = $1", headers[0][0][1][9:25]
        )
    finally:
        await conn.close()
    assert stored == 1


async def test_a_restarted_consumer_finds_an_earlier_seal_in_the_database(
    stack: Stack,
) -> None:
    """The seal-carrying record was appended by one consumer, which then stopped; the
    next consumer (nothing cached) starts at the stored position, after the seal, and
    reads a later record of that batch: it finds the seal in the database."""
    first_run = consuming(stack, refresh_seconds=0.5)
    r = await anext(first_run)
    events = [r.event("pa-good", i) for i in range(3)]
    values = [CODEC.encode(e) for e in events]
    headers = signed_headers(stack.producer_key("pa-good"), [(r.topics[0], v) for v in values])
    for value, h in zip(values[:2], headers[:2], strict=True):
        await r.send(value, h)
    await wait_appended(stack, events[1].event_id)
    assert await appended(stack, events[1].event_id)
    await first_run.aclose()
    second_run = consuming(stack, refresh_seconds=0.5, topics=r.topics)
    second = await anext(second_run)
    try:
        offset = await second.send(values[2], headers[2])
        assert await outcome(stack, r.topics[0], offset) == (None, None)
        assert await appended(stack, events[2].event_id)
    finally:
        await second_run.aclose()


async def test_spooled_events_are_signed_when_re_sent(running: Running, tmp_path: Path) -> None:
    """Spooled while Kafka is unreachable, re-sent (and signed then) by the next start."""
    key_file = running.stack.producer_key("pa-spool")
    spool = str(tmp_path / "spool")
    events = [running.sim.access() for _ in range(5)]
    offline = dataclasses.replace(
        running.emitter("pa-spool", key_file, spool_dir=spool, max_block_seconds=0.5).config,
        bootstrap_servers="127.0.0.1:9",
        connect_timeout_seconds=0.5,
    )
    async with Emitter(offline) as emitter:
        for e in events:
            await emitter.emit(e)
        assert emitter.health().spooled == len(events)
    async with running.emitter("pa-spool", key_file, spool_dir=spool) as emitter:
        await emitter.flush()
    for _ in range(300):
        if await appended(running.stack, events[-1].event_id):
            break
        await asyncio.sleep(0.1)
    for e in events:
        assert await appended(running.stack, e.event_id)


async def test_rotation_two_keys_then_the_old_one_revoked(running: Running) -> None:
    stack = running.stack
    old = stack.producer_key("pa-rotating")
    new_stack = dataclasses.replace(stack, producer_keys={})  # a second key, same producer
    new = new_stack.producer_key("pa-rotating")
    assert load_producer_key(old).key_id != load_producer_key(new).key_id
    first, second = running.event("pa-rotating", 1), running.event("pa-rotating", 2)
    for key_file, e in ((old, first), (new, second)):
        value = CODEC.encode(e)
        await running.send(value, envelope(key_file, running.topics[0], value))
    for e in (first, second):
        for _ in range(300):
            if await appended(stack, e.event_id):
                break
            await asyncio.sleep(0.1)
        assert await appended(stack, e.event_id), "both keys are valid during a rotation"

    await revoke_producer_key(stack.owner_url, key_id=load_producer_key(old).key_id, reason="t")
    await asyncio.sleep(1.0)  # the consumer re-reads the registry every 0.5 s here
    late, current = running.event("pa-rotating", 3), running.event("pa-rotating", 4)
    late_value = CODEC.encode(late)
    offset = await running.send(late_value, envelope(old, running.topics[0], late_value))
    value = CODEC.encode(current)
    await running.send(value, envelope(new, running.topics[0], value))
    await assert_refused(running, late, offset, "revoked_key")
    for _ in range(300):
        if await appended(stack, current.event_id):
            break
        await asyncio.sleep(0.1)
    assert await appended(stack, current.event_id)


async def test_the_emitter_refuses_what_the_ledger_would(tmp_path: Path) -> None:
    """Fail early: a signing emitter neither starts under another producer's key nor sends
    an event stamped by another producer."""
    path = tmp_path / "k.key"
    write_producer_key(path, generate_producer_key("pa-self"))
    config = EmitterConfig(
        bootstrap_servers="127.0.0.1:9",
        producer_id="someone-else",
        producer_key_file=str(path),
        spool_dir=str(tmp_path / "spool"),
        connect_timeout_seconds=0.5,
    )
    with pytest.raises(ProducerKeyError, match="not 'someone-else'"):
        await Emitter(config).start()
    own = dataclasses.replace(config, producer_id="pa-self")
    foreign = Simulator(seed=5).access().stamped(producer_id="someone-else", producer_seq=1)
    async with Emitter(own) as emitter:
        with pytest.raises(EventValidationError, match="signs as 'pa-self'"):
            await emitter.emit(foreign)


async def test_offline_verify_flags_a_tampered_seal_in_an_export(
    running: Running, tmp_path: Path
) -> None:
    """`ledger export` carries the registry, the seals and every leaf's seal reference; the
    offline check (`ledger verify --bundle`) passes on the export as written, names the leaf
    whose reference was altered in it, and every leaf under a seal whose signature was."""
    key_file = running.stack.producer_key("pa-export")
    events = [running.sim.access() for _ in range(20)]
    async with running.emitter("pa-export", key_file) as emitter:
        for e in events:
            await emitter.emit(e)
        await emitter.flush()
    for _ in range(300):
        if await appended(running.stack, events[-1].event_id):
            break
        await asyncio.sleep(0.1)
    bundle = tmp_path / "bundle"
    await export_bundle(dsn=running.stack.reader_url, path=bundle, ledger_name="test.ledger.local")
    base = base_origin("test.ledger.local", running.topics[0], 0)
    log_id = next(g.log_id for g in BundleReader(bundle).logs if g.origin.startswith(base + "/"))
    verifiers = [parse_verifier_key(running.stack.verifier_key)]

    def producer_findings() -> list[Finding]:
        """What `ledger verify --bundle` reports about producers for this log."""
        (report,) = verify_bundle(
            bundle, verifiers, check_index=False, log_ids={log_id}, checks=(producer_check,)
        )
        return [f for f in report.findings if f.kind.startswith("producer_")]

    def verdict() -> str:
        """The CLI's verdict line for this log, with the checks the CLI composes."""
        reports = verify_bundle(
            bundle, verifiers, check_index=True, log_ids={log_id},
            checks=event_checks(check_index=True),
        )  # fmt: skip
        return verdict_line(reports)

    assert producer_findings() == []
    assert verdict().startswith("VERDICT OK: 1 log(s)")
    refs_file = bundle / REFS_DIR / f"{log_id}.jsonl"
    rows = [json.loads(line) for line in refs_file.read_text().splitlines()]
    assert len(rows) == len(events)
    victim = next(r for r in rows if r["entry"] > 0)
    victim["entry"] -= 1  # the leaf now claims its neighbour's entry of the seal
    refs_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [(f.kind, f.leaf_index) for f in producer_findings()] == [
        ("producer_bad_signature", victim["leaf_index"])
    ]
    # The verdict line (and so the exit code) counts it: nothing else is wrong here.
    assert verdict() == "VERDICT FAILED: 1 finding(s) in 1 of 1 log(s)"
    victim["entry"] += 1
    refs_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert producer_findings() == []
    # A seal whose signature was altered fails every leaf under it, checked once.
    seals_file = bundle / SEALS_FILE
    seals = [json.loads(line) for line in seals_file.read_text().splitlines()]
    mine_seal = next(x for x in seals if x["seal_id"] == rows[0]["seal_id"])
    mine_seal["signature"] = ("00" if mine_seal["signature"][:2] != "00" else "01") + mine_seal[
        "signature"
    ][2:]
    seals_file.write_text("".join(json.dumps(x) + "\n" for x in seals))
    under = sorted(r["leaf_index"] for r in rows if r["seal_id"] == rows[0]["seal_id"])
    forged = producer_findings()
    assert {f.kind for f in forged} == {"producer_bad_signature"}
    assert sorted(f.leaf_index for f in forged if f.leaf_index is not None) == under
