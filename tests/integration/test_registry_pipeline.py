"""The compliance registry through the real Kafka and PostgreSQL: ``ledger registry import``
reaches the registry's own log; a hostile file reaches nothing; a registry change off the
registry topic, and an audit event on it, are quarantined ``wrong_topic``; and a registry
change shows up in no access history or report, even when its author also reads studies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer, TopicPartition

from consumers.classify import REASON_WRONG_TOPIC
from consumers.consumer import ConsumerConfig, ConsumerStats, LedgerConsumer
from integrations.simulator import Simulator
from ledger.audit.query import HistoryKey, HistoryQuery
from ledger.http import create_app
from ledger.log.keys import load_signers
from ledger.log.leaf import decode_leaf
from ledger.pg import sql
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from ledger.pg.reader import PostgresReader
from ledgerctl.cliaudit import operator
from ledgerctl.infra import ensure_topics
from ledgerctl.replay import end_offsets
from ledgerctl.settings import KafkaRole
from producers.codec import Codec
from producers.events import PhiAccessEvent, event_key
from producers.registry import (
    REGISTRY_SCHEMA_NAME,
    Author,
    RegistryChange,
    StateLicense,
)
from tests.conftest import own_ledger
from tests.support import ROOT, Stack, export_and_verify, run_ledger, signed_headers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ORGS = """kind,organization_id,name,organization_kind
organization,stmarys,St Mary's Hospital,facility
organization,nightrad,NightRad Teleradiology,business_associate
"""
MEMBERS = """kind,user_id,organization_id,role,shared_or_generic,employed_from,employed_to
member,dr.lee,nightrad,radiologist,false,2023-01-01,
"""
MORE = """[
  {"kind": "baa", "baa_id": "baa-1", "facility_id": "stmarys",
   "business_associate_id": "nightrad", "effective_from": "2023-01-01",
   "effective_to": null, "scope": "teleradiology reads"},
  {"kind": "license", "license_id": "lic-1", "user_id": "dr.lee", "state": "CA",
   "number": "A12345", "valid_from": "2022-01-01", "valid_to": "2027-03-31"}
]
"""


@dataclasses.dataclass(frozen=True)
class Topics:
    access: str
    relay: str
    registry: str

    @property
    def all(self) -> tuple[str, str, str]:
        return (self.access, self.relay, self.registry)


async def make_topics(stack: Stack, name: str) -> Topics:
    access, relay = stack.topics(f"{name}-{uuid.uuid4().hex[:6]}")
    topics = Topics(access=access, relay=relay, registry=f"{access}-registry")
    await ensure_topics(stack.kafka_bootstrap, topics.all, 1, stack.kafka(KafkaRole.ADMIN))
    return topics


def registry_env(stack: Stack, topics: Topics, spool: Path) -> dict[str, str]:
    """`ledger registry import`'s environment: this stack, these topics, the registry
    producer's key. Its Kafka principal is ledger-registry once the broker has it
    (`deploy/local/kafka.sh acls` after deploy/local/kafka/acls.txt gained it); a broker
    started before that has only the other producers, so the operator's stands in (WRITE
    on the `t` scratch topics, as ledger-registry has)."""
    env = stack.env(
        LEDGER_ACCESS_TOPIC=topics.access,
        LEDGER_RELAY_TOPIC=topics.relay,
        LEDGER_REGISTRY_TOPIC=topics.registry,
        LEDGER_REGISTRY_PRODUCER_KEY_FILE=stack.producer_key("registry-local"),
        LEDGER_SPOOL_DIR=str(spool),
    )
    users = Path(env.get("LEDGER_KAFKA_CREDENTIALS_DIR", ROOT / ".local/secrets/kafka/users"))
    if users.is_dir() and not (users / KafkaRole.REGISTRY.value).is_file():
        env["KAFKA_SASL_USERNAME"] = KafkaRole.OPERATOR.value
        env["KAFKA_SASL_PASSWORD_FILE"] = str(users / KafkaRole.OPERATOR.value)
    return env


async def consume(
    stack: Stack, topics: Topics, records: int, *, sign: bool = False
) -> ConsumerStats:
    """Run the ledger consumer over ``topics`` until ``records`` records were handled
    (with ``sign``, signing a checkpoint after every leaf)."""
    appender = PostgresAppender(
        dsn=stack.appender_url,
        ledger_name="test.ledger.local",
        reference_topics=frozenset({topics.registry}),
    )
    config = ConsumerConfig(
        bootstrap_servers=stack.kafka_bootstrap,
        topics=topics.all,
        relay_topics=frozenset({topics.relay}),
        registry_topics=frozenset({topics.registry}),
        group_id=f"t{stack.run_id}-registry-{uuid.uuid4().hex[:6]}",
        kafka_security=stack.kafka(KafkaRole.CONSUMER),
    )
    await appender.start()
    checkpointer = None
    if sign:
        signers = load_signers(stack.signer_key_file)
        policy = CheckpointPolicy(every_leaves=1)
        checkpointer = Checkpointer(pool=appender.pool, signers=signers, policy=policy)
    consumer = LedgerConsumer(
        config=config,
        appender=appender,
        codec=Codec(),
        key_source=appender,
        checkpointer=checkpointer,
    )
    async with appender, consumer as c:
        runner = asyncio.create_task(c.run())
        for _ in range(900):
            if c.stats.appended + c.stats.quarantined >= records:
                break
            await asyncio.sleep(0.1)
        await c.stop()
        await runner
        return c.stats


async def registry_offset(stack: Stack, topics: Topics) -> int:
    ends = await end_offsets(
        stack.kafka_bootstrap, [topics.registry], stack.kafka(KafkaRole.CONSUMER)
    )
    return ends[TopicPartition(topics.registry, 0)]


async def test_an_import_reaches_the_registry_log_and_a_hostile_file_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    topics = await make_topics(stack, "regimp")
    env = registry_env(stack, topics, tmp_path / "spool")
    files = [tmp_path / "orgs.csv", tmp_path / "members.csv", tmp_path / "more.json"]
    for path, text in zip(files, (ORGS, MEMBERS, MORE), strict=True):
        path.write_text(text)

    done = await asyncio.to_thread(run_ledger, env, "registry", "import", *map(str, files))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == f"5 change(s) emitted to {topics.registry}"
    assert [line.split()[:3] for line in lines[:-1]] == [
        ["upsert", "organization", "stmarys"],
        ["upsert", "organization", "nightrad"],
        ["upsert", "member", "dr.lee@nightrad"],
        ["upsert", "baa", "baa-1"],
        ["upsert", "license", "lic-1"],
    ]
    stats = await consume(stack, topics, 5)
    assert (stats.appended, stats.quarantined) == (5, 0)

    conn = await asyncpg.connect(stack.owner_url)
    try:
        rows = await conn.fetch(
            "SELECT g.origin, e.kind, e.patient_id, e.facility_id, e.user_id, e.user_role, "
            "l.leaf FROM events e JOIN logs g USING (log_id) "
            "JOIN leaves l ON l.log_id = e.log_id AND l.leaf_index = e.leaf_index "
            "WHERE g.topic = $1 ORDER BY e.leaf_index",
            topics.registry,
        )
        schemas = await conn.fetch("SELECT full_name FROM writer_schemas")
    finally:
        await conn.close()
    assert {r["origin"] for r in rows} == {f"test.ledger.local/{topics.registry}/0"}
    assert {(r["kind"], r["patient_id"], r["facility_id"]) for r in rows} == {
        ("registry_change", None, "")
    }
    assert {(r["user_id"], r["user_role"]) for r in rows} == {(operator(), "operator")}
    keys = [decode_leaf(bytes(r["leaf"])).key for r in rows]
    assert keys == [b"stmarys", b"nightrad", b"dr.lee@nightrad", b"baa-1", b"lic-1"]
    assert REGISTRY_SCHEMA_NAME in {r["full_name"] for r in schemas}

    # Hostile files: every bad line named, nothing reaches Kafka.
    before = await registry_offset(stack, topics)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "kind,license_id,user_id,state,number,valid_from,valid_to\n"
        "license,lic-2,dr.lee,ZZ,A2,2028-01-01,\n"  # no such state
        "license,=HYPERLINK(1),dr.lee,NY,A3,2028-01-01,\n"  # formula injection
        "license,lic-4,dr.nobody,NY,A4,2028-01-01,\n"  # not a workforce member
        "license,lic-5,dr.lee,TX,A5,2028-01-01,\n"  # fine on its own
    )
    refused = await asyncio.to_thread(run_ledger, env, "registry", "import", str(bad))
    assert refused.returncode == 1
    assert [line.split(": ")[0] for line in refused.stdout.splitlines()] == [
        f"{bad}:2",
        f"{bad}:3",
        f"{bad}:4",
    ]
    assert "3 problem(s) in 1 file(s); nothing was emitted" in refused.stderr
    # Valid on its own, wrong against the stored registry (known from the ledger).
    stale = tmp_path / "stale.csv"
    stale.write_text(
        "kind,operation,license_id,user_id,state,number,valid_from,valid_to\n"
        "license,upsert,lic-6,dr.lee,CA,A6,2027-03-31,\n"  # overlaps lic-1's last day
        "license,retire,lic-7,dr.lee,CA,A7,2020-01-01,2020-12-31\n"  # never stored
        "license,upsert,lic-8,dr.lee,WA,A8,2020-01-01,\n"
    )
    refused = await asyncio.to_thread(run_ledger, env, "registry", "import", str(stale))
    assert refused.returncode == 1
    assert refused.stdout.splitlines() == [
        f"{stale}:2: valid_from: overlaps the stored license 'lic-1' for the same user and state",
        f"{stale}:3: operation: retires license 'lic-7', which the registry does not hold",
    ]
    assert await registry_offset(stack, topics) == before


async def send_raw(stack: Stack, sends: list[tuple[str, PhiAccessEvent | RegistryChange]]) -> None:
    """Records as a producer encodes them, signed by the producer they name, to the topics
    given (partition 0), keyed as the emitter keys them."""
    codec = Codec()
    records = [(topic, codec.encode(event)) for topic, event in sends]
    headers = signed_headers(stack.producer_key("reg-route"), records)
    producer = AIOKafkaProducer(**stack.kafka_client(KafkaRole.SIMULATOR), acks="all")
    await producer.start()
    try:
        for (topic, event), (_, value), header in zip(sends, records, headers, strict=True):
            key = event.record.record_id if isinstance(event, RegistryChange) else event_key(event)
            await producer.send_and_wait(
                topic, value, key=key.encode(), partition=0, headers=header
            )
    finally:
        await producer.stop()


async def test_misrouted_records_are_wrong_topic_and_a_change_is_in_no_history(
    stack: Stack,
) -> None:
    topics = await make_topics(stack, "regroute")
    access = next(e for e in Simulator(seed=31).events(50) if isinstance(e, PhiAccessEvent))
    assert access.patient is not None
    # A user of this test only: the session's ledger holds other tests' simulated events,
    # and a history page of the simulator's own user names could be full of theirs.
    access = dataclasses.replace(
        access, actor=dataclasses.replace(access.actor, user_id=f"rad-{uuid.uuid4().hex[:10]}")
    )
    assert access.patient is not None
    reader = access.actor.user_id
    # The radiologist who reads studies also changed the registry (as an administrator).
    change = RegistryChange(
        author=Author(user_id=reader, role="registry_admin"),
        record=StateLicense(
            license_id="lic-r", user_id=reader, state="CA", number="R1", valid_from=date(2024, 1, 1)
        ),
    )

    def stamped(
        event: PhiAccessEvent | RegistryChange, seq: int
    ) -> PhiAccessEvent | RegistryChange:
        return dataclasses.replace(event, event_id=uuid.uuid4(), producer_id="reg-route",
                                   producer_seq=seq)  # fmt: skip

    change_off, access_off = stamped(change, 0), stamped(access, 1)
    change_home, access_home = stamped(change, 2), stamped(access, 3)
    await send_raw(
        stack,
        [
            (topics.access, change_off),  # a registry change on the audit topic
            (topics.relay, stamped(change, 4)),  # ... and on the relay topic
            (topics.registry, access_off),  # an audit event on the registry topic
            (topics.registry, change_home),
            (topics.access, access_home),
        ],
    )
    stats = await consume(stack, topics, 5, sign=True)
    assert (stats.appended, stats.quarantined) == (2, 3)

    conn = await asyncpg.connect(stack.owner_url)
    try:
        quarantined = await conn.fetch(
            "SELECT topic, reason, detail FROM quarantine WHERE topic = ANY($1)", list(topics.all)
        )
        appended = await conn.fetch(
            "SELECT e.event_id, e.kind, g.topic FROM events e JOIN logs g USING (log_id) "
            "WHERE g.topic = ANY($1)",
            list(topics.all),
        )
        log_ids = [r["log_id"] for r in await conn.fetch("SELECT log_id FROM logs")]
        investigated = await conn.fetch(
            sql.INVESTIGATION_BY_USERS,
            [reader], change.event_time.replace(year=2000), change.event_time.replace(year=2100),
            None, [], 100, log_ids, [2**40] * len(log_ids),
        )  # fmt: skip
    finally:
        await conn.close()
    assert sorted((r["topic"], r["reason"]) for r in quarantined) == sorted(
        [(t, REASON_WRONG_TOPIC) for t in (topics.access, topics.relay, topics.registry)]
    )
    details = {r["topic"]: r["detail"] for r in quarantined}
    assert "RegistryChange event belongs only on a registry topic" in details[topics.access]
    assert "PhiAccessEvent event belongs never on a registry topic" in details[topics.registry]
    assert {(r["event_id"], r["kind"], r["topic"]) for r in appended} == {
        (change_home.event_id, "registry_change", topics.registry),
        (access_home.event_id, "phi_access", topics.access),
    }

    # The author's user history (what FHIR search by agent reads) and investigation hold
    # the access only; a patient history never meets a change (it names no patient).
    history = PostgresReader(dsn=stack.reader_url)
    await history.start()
    try:
        # The signed sizes: a listing pinned beyond them is refused (retry later).
        snapshot = await history.snapshot()
        by_user = await history.history(
            HistoryQuery(key=HistoryKey.USER, value=reader),
            snapshot=snapshot, limit=50, after=None,
        )  # fmt: skip
        by_patient = await history.history(
            HistoryQuery(key=HistoryKey.PATIENT, value=access.patient.id),
            snapshot=snapshot, limit=50, after=None,
        )  # fmt: skip
    finally:
        await history.stop()
    mine = {access_home.event_id}
    assert {e.event_id for e in by_user} & {change_home.event_id} == set()
    assert mine <= {e.event_id for e in by_user}
    assert mine <= {e.event_id for e in by_patient}
    assert change_home.event_id not in {e.event_id for e in by_patient}
    assert {r["event_id"] for r in investigated} & {change_home.event_id} == set()
    assert access_home.event_id in {r["event_id"] for r in investigated}

    # Through the API: histories and FHIR search by agent or patient, and a FHIR read.
    async with api(stack) as client:
        change_id, access_id = str(change_home.event_id), str(access_home.event_id)
        for path in (
            f"/v1/users/{reader}/accesses",
            f"/v1/patients/{access.patient.id}/accesses",
        ):
            got = await client.get(path, headers=stack.auth("investigator"))
            assert got.status == 200, path
            ids = {a["event_id"] for a in (await got.json())["accesses"]}
            assert access_id in ids, path
            assert change_id not in ids, path
        for query in (f"agent={reader}", f"patient={access.patient.id}"):
            got = await client.get(f"/fhir/AuditEvent?{query}", headers=stack.auth("investigator"))
            assert got.status == 200, query
            ids = {e["resource"]["id"] for e in (await got.json()).get("entry", [])}
            assert access_id in ids, query
            assert change_id not in ids, query
        read = await client.get(f"/fhir/AuditEvent/{change_id}", headers=stack.auth("investigator"))
        assert read.status == 404


class _NoRecorder:
    """The API's read records are another test's subject (tests/integration/
    test_api_fail_closed.py); here they are dropped."""

    async def record(self, read: object) -> None:
        return None


@contextlib.asynccontextmanager
async def api(stack: Stack) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with PostgresReader(dsn=stack.reader_url) as reader:
        app = create_app(reader=reader, tokens=reader, recorder=_NoRecorder())
        async with TestClient(TestServer(app)) as client:
            yield client


def test_a_ledger_with_a_registry_log_exports_and_verifies(stack: Stack, tmp_path: Path) -> None:
    """The verifier decodes registry leaves with their stored writer schema and finds
    their index rows as it projects them (``ledger.verify.projection``)."""
    with own_ledger(stack, f"ledger_regverify_{uuid.uuid4().hex[:8]}") as own:
        topics = asyncio.run(make_topics(own, "regverify"))
        access = next(e for e in Simulator(seed=5).events(50) if isinstance(e, PhiAccessEvent))
        change = RegistryChange(
            author=Author(user_id="officer", role="privacy_officer"),
            record=StateLicense(
                license_id="lic-v",
                user_id="dr.v",
                state="NY",
                number="V",
                valid_from=date(2024, 1, 1),
            ),
            producer_id="reg-route",
            producer_seq=0,
        )
        asyncio.run(
            send_raw(
                own,
                [
                    (topics.registry, change),
                    (topics.access, access.stamped(producer_id="reg-route", producer_seq=1)),
                ],
            )
        )
        stats = asyncio.run(consume(own, topics, 2, sign=True))
        assert (stats.appended, stats.quarantined) == (2, 0)
        env = stack.env(
            DATABASE_URL=own.owner_url,
            LEDGER_APPENDER_URL=own.appender_url,
            LEDGER_READER_URL=own.reader_url,
            LEDGER_CLI_PRODUCER_KEY_FILE=own.producer_key("ledger-cli"),
        )
        result = export_and_verify(env, tmp_path, "registry verify test")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{topics.registry}/0" in result.stdout


async def test_a_forged_unsigned_or_replayed_registry_change_never_becomes_a_second_leaf(
    stack: Stack,
) -> None:
    """Someone who can reach the registry topic but is not the producer a change names
    (another producer's key, or no signature at all) cannot add a license; and the same
    signed change sent twice is one leaf."""
    topics = await make_topics(stack, "regforge")
    owner = f"reg-owner-{uuid.uuid4().hex[:6]}"

    def change(license_id: str, seq: int) -> RegistryChange:
        return RegistryChange(
            author=Author(user_id="officer", role="privacy_officer"),
            record=StateLicense(license_id=license_id, user_id="dr.f", state="CA",
                                number=license_id, valid_from=date(2024, 1, 1)),
            producer_id=owner, producer_seq=seq,
        )  # fmt: skip

    codec = Codec()
    genuine, forged, unsigned = change("lic-ok", 0), change("lic-forged", 1), change("lic-u", 2)
    genuine_value = codec.encode(genuine)
    (genuine_header,) = signed_headers(
        stack.producer_key(owner), [(topics.registry, genuine_value)]
    )
    # Names the owner, but sealed with another registered producer's key.
    forged_value = codec.encode(forged)
    (forged_header,) = signed_headers(
        stack.producer_key(f"{owner}-other"), [(topics.registry, forged_value)]
    )
    sends = [
        (genuine_value, genuine_header),
        (forged_value, forged_header),
        (codec.encode(unsigned), []),
        (genuine_value, genuine_header),  # replayed as captured
    ]
    producer = AIOKafkaProducer(**stack.kafka_client(KafkaRole.SIMULATOR), acks="all")
    await producer.start()
    try:
        for value, header in sends:
            await producer.send_and_wait(topics.registry, value, key=b"lic", partition=0,
                                         headers=header)  # fmt: skip
    finally:
        await producer.stop()

    appender = PostgresAppender(
        dsn=stack.appender_url,
        ledger_name="test.ledger.local",
        reference_topics=frozenset({topics.registry}),
    )
    config = ConsumerConfig(
        bootstrap_servers=stack.kafka_bootstrap,
        topics=topics.all,
        relay_topics=frozenset({topics.relay}),
        registry_topics=frozenset({topics.registry}),
        group_id=f"t{stack.run_id}-regforge-{uuid.uuid4().hex[:6]}",
        kafka_security=stack.kafka(KafkaRole.CONSUMER),
    )
    consumer = LedgerConsumer(config=config, appender=appender, codec=Codec(),
                              key_source=appender)  # fmt: skip
    async with appender, consumer as c:
        runner = asyncio.create_task(c.run())
        for _ in range(600):
            s = c.stats
            if s.appended + s.quarantined + s.duplicates >= len(sends):
                break
            await asyncio.sleep(0.1)
        await c.stop()
        await runner
        stats = dataclasses.replace(c.stats)
    conn = await asyncpg.connect(stack.owner_url)
    try:
        leaves = await conn.fetchval(
            "SELECT count(*) FROM leaves l JOIN logs g USING (log_id) WHERE g.topic = $1",
            topics.registry,
        )
        rows = await conn.fetch("SELECT reason FROM quarantine WHERE topic = $1", topics.registry)
        reasons = sorted(r["reason"] for r in rows)
    finally:
        await conn.close()
    assert leaves == 1
    assert stats.appended == 1
    assert stats.appended + stats.quarantined + stats.duplicates == len(sends)
    # The forged seal and the missing one are refused as such (the replay is either a
    # duplicate of the stored change or a refused, already-used seal: never a leaf).
    assert {"unauthenticated"} <= set(reasons)
    assert set(reasons) & {"bad_signature", "producer_mismatch", "unknown_seal"}
