"""The compliance report end to end on a scratch ledger: real RegistryChange and
PhiAccessEvent leaves appended by the real appender and signed by the real checkpointer,
alerts in the real alert tables, read through ``create_app`` with ``PostgresReports``.

The report's numbers, its alert matching, a byte-identical re-run as of the same
checkpoints and cut-off after the ledger and the alert store grew, the CLI's bytes, and a
refused role (403, recorded).
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from consumers.classify import classify
from ledger.audit.auth import Role
from ledger.audit.ingest import Accepted, IndexFields, WriterSchemaInfo
from ledger.audit.reports import digest_of
from ledger.http import create_app
from ledger.log.keys import load_signers
from ledger.log.leaf import KafkaRecord, encode_leaf
from ledger.log.note import parse_verifier_key
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from ledger.pg.migrate import apply_migrations
from ledger.pg.reader import PostgresReader
from ledger.pg.reports import PostgresReports
from ledgerctl.tokens import create_token
from producers import (
    Author,
    Baa,
    Credential,
    Organization,
    OrganizationKind,
    RegistryChange,
    RegistryOperation,
    RegistryRecord,
    StateLicense,
    WorkforceMember,
    registry_codec,
)
from producers.events import (
    AcrCategory,
    EventOutcome,
    Facility,
    Patient,
    Transport,
    TransportChannel,
)
from tests.conftest import drop_database
from tests.integration.test_reports_asof import KeptReads
from tests.integration.test_reports_pg import CODEC, Writer, phi, relay
from tests.support import APPENDED_MS, Stack, run_ledger, with_database

pytestmark = pytest.mark.integration

LEDGER_NAME = "compliance.ledger.local"
REGISTRY_TOPIC = "compliance-registry"  # the log the report reads the registry from
PHI_TOPIC, RELAY_TOPIC = "cr-phi", "cr-relay"
REGISTRY_CODEC = registry_codec()


def previous_month(now: datetime) -> tuple[str, datetime]:
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (first - timedelta(days=1)).replace(day=1)
    return f"{start.year:04d}-{start.month:02d}", start


@dataclass
class World:
    database: str
    owner_url: str
    appender_url: str
    reader_url: str
    tokens: dict[str, str]
    month: str
    start: datetime
    facility: Facility
    reads: KeptReads = field(default_factory=KeptReads)
    writer_seq: int = 0
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def world(stack: Stack) -> AsyncIterator[World]:
    database = f"ledger_cr_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(stack.owner_url)
    try:
        await owner.execute(f'CREATE DATABASE "{database}"')
    finally:
        await owner.close()
    owner_url = with_database(stack.owner_url, database)
    try:
        apply_migrations(owner_url)
        tokens = {}
        for role in (Role.AUDITOR, Role.INVESTIGATOR):
            issued = await create_token(
                owner_url, subject=f"cr-{role.value}", role=role, ttl=None, note="tests"
            )
            tokens[role.value] = issued.text
        month, start = previous_month(datetime.now(UTC))
        yield World(
            database=database,
            owner_url=owner_url,
            appender_url=with_database(stack.appender_url, database),
            reader_url=with_database(stack.reader_url, database),
            tokens=tokens,
            month=month,
            start=start,
            facility=Facility(id=f"cr-{uuid.uuid4().hex[:6]}", name="Compliance test site"),
        )
    finally:
        await drop_database(stack.owner_url, database)


def registry_item(change: RegistryChange, offset: int) -> Accepted:
    """A registry change as the consumer appends it. Until the registry pipeline's
    projection is in main, ``classify`` cannot index a RegistryChange; the leaf is the
    same either way (the report reads the registry log's leaves, never its index rows),
    so the stand-in index row names no patient and no facility."""
    record = KafkaRecord(
        topic=REGISTRY_TOPIC, partition=0, offset=offset,
        timestamp_ms=APPENDED_MS, timestamp_type=0,
        key=b"registry", value=REGISTRY_CODEC.encode(change),
    )  # fmt: skip
    try:
        item = classify(record, REGISTRY_CODEC)
        assert isinstance(item, Accepted), item
        return item
    except KeyError:
        pass
    index = IndexFields(
        event_id=change.event_id, kind="security_event", event_time=change.event_time,
        producer_id=change.producer_id or "registry-local", producer_seq=offset + 1,
        facility_id="", patient_id=None, patient_issuer=None, patient_state=None,
        user_id=change.author.user_id, user_name=None, user_role=None, user_org=None,
        dicom_event_id=None, action=None, outcome=None, study_uid=None, accession=None,
        network_address=None, purpose_of_use=None,
    )  # fmt: skip
    return Accepted(record=record, leaf=encode_leaf(record), index=index)


async def grow(
    stack: Stack, w: World, *, registry: Sequence[RegistryRecord], events: Sequence[Any]
) -> None:
    """Append registry changes, accesses and relays, then sign every log."""
    async with PostgresAppender(
        dsn=w.appender_url, ledger_name=LEDGER_NAME, reference_topics=frozenset({REGISTRY_TOPIC})
    ) as app:
        await app.register_schemas(
            [
                WriterSchemaInfo(fingerprint=s.fingerprint, full_name=s.full_name,
                                 canonical_form=s.canonical_form, schema_json=s.schema_json)
                for s in (*CODEC.schemas, *REGISTRY_CODEC.schemas)
            ]
        )  # fmt: skip
        writer = Writer(
            app,
            Checkpointer(
                pool=app.pool,
                signers=load_signers(stack.signer_key_file),
                policy=CheckpointPolicy(every_leaves=1, every_ms=0),
            ),
        )
        writer._seq, writer._offsets = w.writer_seq, dict(w.offsets)
        if registry:
            first = w.offsets.get((REGISTRY_TOPIC, 0), 0)
            items = [
                registry_item(
                    RegistryChange(
                        author=Author(user_id="compliance.officer", role="compliance"),
                        record=r, operation=RegistryOperation.UPSERT,
                        event_time=w.start - timedelta(days=1),
                        producer_id="registry-local", producer_seq=first + i + 1,
                    ),
                    first + i,
                )
                for i, r in enumerate(registry)
            ]  # fmt: skip
            result = await app.append(topic=REGISTRY_TOPIC, partition=0, items=items)
            writer.logs.add(result.log_id)
            writer._offsets[(REGISTRY_TOPIC, 0)] = first + len(items)
        accesses = [e for e in events if not hasattr(e, "category")]
        relays = [e for e in events if hasattr(e, "category")]
        if accesses:
            await writer.append(PHI_TOPIC, 0, accesses)
        if relays:
            await writer.append(RELAY_TOPIC, 0, relays)
        await writer.sign_all()
        w.writer_seq, w.offsets = writer._seq, dict(writer._offsets)


def registry_records(facility: str) -> list[RegistryRecord]:
    return [
        Organization(organization_id="nightrad", name="NightRad",
                     organization_kind=OrganizationKind.BUSINESS_ASSOCIATE),
        WorkforceMember(user_id="dr.lee", organization_id="nightrad", role="radiologist",
                        shared_or_generic=False, employed_from=date(2023, 1, 1)),
        Baa(baa_id="baa-1", facility_id=facility, business_associate_id="nightrad",
            effective_from=date(2023, 1, 1), effective_to=None, scope="reads"),
        StateLicense(license_id="lic-1", user_id="dr.lee", state="CA", number="A1",
                     valid_from=date(2024, 1, 1), valid_to=None),
        Credential(credential_id="cred-1", user_id="dr.lee", facility_id=facility,
                   privilege="read", valid_from=date(2024, 1, 1)),
    ]  # fmt: skip


def patient(i: int, state: str | None) -> Patient:
    return Patient(id=f"CR-{i}", issuer="cr", state=state)


def first_round(w: World) -> list[Any]:
    t = w.start + timedelta(days=2, hours=10)
    f = w.facility
    secure = dataclasses.replace(
        phi(user="dr.lee", patient=patient(0, "CA"), when=t, facility=f),
        transport=Transport.of(TransportChannel.HTTPS),
    )
    return [
        secure,  # leaf 0: every item covered
        phi(user="dr.lee", patient=patient(1, "NY"), when=t + timedelta(hours=1), facility=f),
        phi(user="dr.lee", patient=patient(2, None), when=t + timedelta(hours=2), facility=f),
        phi(user="ghost", patient=patient(3, "CA"), when=t + timedelta(hours=3), facility=f),
        phi(user="dr.lee", patient=patient(4, "CA"), when=t + timedelta(hours=4), facility=f,
            outcome=EventOutcome.MAJOR_FAILURE),
        relay(facility=f, patient=patient(0, "CA"), category=AcrCategory.CAT1,
              identified=t, communicated=timedelta(hours=2), recorded=t + timedelta(hours=2)),
    ]  # fmt: skip


async def plant_alerts(w: World) -> int:
    """The license alert of leaf 1 (raised and closed with a breach investigation in the
    month), and the evaluator's cursor at leaf 2 of the access log."""
    conn = await asyncpg.connect(w.owner_url)
    try:
        log_id = await conn.fetchval(
            "SELECT log_id FROM logs WHERE origin = $1", f"{LEDGER_NAME}/{PHI_TOPIC}/0/2026-09"
        )
        raised = w.start + timedelta(days=2, hours=12)
        alert_id = await conn.fetchval(
            "INSERT INTO alerts (rule_id, rule_version, severity, facility_id, user_id, summary,"
            " log_id, leaf_index, thresholds, raised_at) VALUES ('registry.license_missing',"
            " 1, 'critical', $1, 'dr.lee', 'no NY license', $2, 1, '{}', $3) RETURNING alert_id",
            w.facility.id, log_id, raised,
        )  # fmt: skip
        await conn.executemany(
            "INSERT INTO alert_transitions (alert_id, seq, state, disposition, note,"
            " transitioned_by, transitioned_at) VALUES ($1, $2, $3, $4, 'n', $5, $6)",
            [
                (alert_id, 1, "open", None, "rules-evaluator", raised),
                (alert_id, 2, "closed", "breach_investigation", "privacy.officer",
                 raised + timedelta(days=1)),
            ],
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO rule_cursors (log_id, next_leaf, alerts_raised, committed_at)"
            " VALUES ($1, 2, 1, $2)",
            log_id, raised,
        )  # fmt: skip
        return int(alert_id)
    finally:
        await conn.close()


@pytest.fixture
async def api(stack: Stack, world: World) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with (
        PostgresReader(dsn=world.reader_url) as reader,
        PostgresReports(
            dsn=world.reader_url,
            ledger_name=LEDGER_NAME,
            verifiers=[parse_verifier_key(stack.verifier_key)],
        ) as reports,
    ):
        app = create_app(reader=reader, tokens=reader, recorder=world.reads, report_source=reports)
        async with TestClient(TestServer(app)) as client:
            yield client


async def fetch(
    client: TestClient,  # type: ignore[type-arg]
    w: World,
    params: Sequence[tuple[str, str]] = (),
    *,
    role: str = "auditor",
) -> tuple[int, bytes, str]:
    async with client.get(
        "/v1/reports/compliance",
        params=[("facility", w.facility.id), ("month", w.month), *params],
        headers={"Authorization": f"Bearer {w.tokens[role]}"},
    ) as resp:
        return resp.status, await resp.read(), resp.headers.get("Report-Digest", "")


def pinned(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [("as_of", f"{c['origin']}:{c['size']}") for c in body["as_of_checkpoints"]] + [
        ("at", body["at"])
    ]


def items(body: dict[str, Any]) -> dict[str, tuple[int, int, int, int]]:
    return {
        i["item"]: (i["covered"], i["exception"], i["not_applicable"], i["undecidable"])
        for i in body["items"]
    }


async def test_the_compliance_report_counts_each_item_and_reruns_byte_for_byte(
    stack: Stack,
    world: World,
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    await grow(
        stack, world, registry=registry_records(world.facility.id), events=first_round(world)
    )
    alert_id = await plant_alerts(world)
    status, raw, header = await fetch(api, world)
    assert status == 200, raw
    body = json.loads(raw)
    assert body["digest"] == header == digest_of(body)
    assert body["registry"] == {"origin": f"{LEDGER_NAME}/{REGISTRY_TOPIC}/0", "size": 5}
    assert body["accesses"] == {"recorded": 5, "checked": 4}
    assert items(body) == {
        "baa": (3, 0, 1, 0),
        "license": (1, 1, 1, 1),
        "credential": (3, 0, 1, 0),
        "unique_user": (3, 1, 0, 0),
        "encrypted": (1, 0, 0, 3),
    }
    got = [(x["ledger"]["leaf_index"], x["item"], x["rule_id"], x["alert"])
           for x in body["exceptions"]]  # fmt: skip
    assert got == [
        (1, "license", "registry.license_missing",
         {"status": "raised", "alert_id": alert_id, "state": "closed"}),
        (3, "unique_user", "account.unknown",
         {"status": "not_evaluated", "alert_id": None, "state": None}),
    ]  # fmt: skip
    (cat1,) = [c for c in body["relays"]["categories"] if c["category"] == "CAT1"]
    assert (cat1["relays"], cat1["met"], cat1["missed"]) == (1, 0, 1)
    assert body["breach_process"]["closed"]["breach_investigation"] == 1
    assert [b["alert_id"] for b in body["breach_process"]["breach_investigations"]] == [alert_id]
    assert body["config"]["timezone"] == "UTC"
    read = world.reads.reads[-1]
    assert (read.status, read.path, read.parameters["month"]) == (
        200, "/v1/reports/compliance", world.month,
    )  # fmt: skip
    first = {fmt: await fetch(api, world, [*pinned(body), ("format", fmt)])
             for fmt in ("json", "csv", "html")}  # fmt: skip
    assert first["json"][1] == raw

    # The ledger grows (another NY read the same day, another unknown user, a registry
    # change) and so does the alert store (an alert raised now, after the cut-off).
    t = world.start + timedelta(days=2, hours=16)
    await grow(
        stack, world,
        registry=[StateLicense(license_id="lic-2", user_id="dr.lee", state="NY", number="B2",
                               valid_from=date(2024, 1, 1), valid_to=None)],
        events=[phi(user="dr.lee", patient=patient(5, "NY"), when=t, facility=world.facility),
                phi(user="ghost", patient=patient(6, "CA"), when=t, facility=world.facility)],
    )  # fmt: skip
    conn = await asyncpg.connect(world.owner_url)
    try:
        later = await conn.fetchval(
            "INSERT INTO alerts (rule_id, rule_version, severity, facility_id, user_id, summary,"
            " log_id, leaf_index, thresholds) SELECT 'account.unknown', 1, 'high', $1, 'ghost',"
            " 'unknown', log_id, 3, '{}' FROM logs WHERE origin = $2 RETURNING alert_id",
            world.facility.id, f"{LEDGER_NAME}/{PHI_TOPIC}/0/2026-09",
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO alert_transitions (alert_id, seq, state, note, transitioned_by)"
            " VALUES ($1, 1, 'open', 'raised', 'rules-evaluator')",
            later,
        )
    finally:
        await conn.close()
    for fmt in ("json", "csv", "html"):
        assert await fetch(api, world, [*pinned(body), ("format", fmt)]) == first[fmt], fmt

    # As of the newest checkpoints: the new accesses, the new alert, and the NY license,
    # whose change says it was made before the month, so the registry as known at each
    # read holds it (a late upload's time would be after the reads: it would not cover).
    status, raw_latest, _ = await fetch(api, world)
    assert status == 200
    latest = json.loads(raw_latest)
    assert latest["accesses"] == {"recorded": 7, "checked": 6}
    assert latest["registry"]["size"] == 6
    assert items(latest)["license"] == (3, 0, 2, 1)
    assert [(x["ledger"]["leaf_index"], x["item"], x["alert"]["status"])
            for x in latest["exceptions"]] == [(3, "unique_user", "raised"),
                                               (6, "unique_user", "same_day")]  # fmt: skip


async def test_csv_and_html_of_the_compliance_report(
    stack: Stack,
    world: World,
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    if not world.writer_seq:
        await grow(stack, world, registry=registry_records(world.facility.id),
                   events=first_round(world))  # fmt: skip
    status, raw, header = await fetch(api, world, [("format", "csv")])
    assert status == 200
    rows = list(csv.reader(io.StringIO(raw.decode())))
    assert len({len(r) for r in rows}) == 1
    assert rows[-1] == ["#digest", header] + [""] * (len(rows[0]) - 2)
    assert rows[
        next(i for i, r in enumerate(rows) if r[:3] == ["checklist", "license", "exception"])
    ][:3] == ["checklist", "license", "exception"]
    status, page, header = await fetch(api, world, [("format", "html")])
    assert status == 200
    text = page.decode()
    assert f"Content digest: {header}" in text
    assert f"Compliance report: {world.facility.id}, {world.month}" in text


async def test_a_role_without_the_compliance_permission_is_refused_and_recorded(
    world: World,
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    before = len(world.reads.reads)
    status, _, _ = await fetch(api, world, role="investigator")
    assert status == 403
    (read,) = world.reads.reads[before:]
    assert (read.status, read.path, read.role) == (403, "/v1/reports/compliance", "investigator")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ([("month", "2026-13")], "month"),
        ([("at", "2999-01-01T00:00:00Z")], "at must not be later than now"),
    ],
)
async def test_a_bad_month_or_a_future_cut_off_is_refused_and_recorded(
    world: World,
    api: TestClient,  # type: ignore[type-arg]
    params: list[tuple[str, str]],
    message: str,
) -> None:
    before = len(world.reads.reads)
    base = {"facility": world.facility.id, "month": world.month}
    async with api.get(
        "/v1/reports/compliance",
        params=[*(base | dict(params)).items()],
        headers={"Authorization": f"Bearer {world.tokens['auditor']}"},
    ) as resp:
        status, body = resp.status, await resp.json()
    assert status == 400
    assert message in body["error"]["message"]
    (read,) = world.reads.reads[before:]
    assert read.status == 400


async def test_the_cli_writes_the_apis_bytes(
    stack: Stack,
    world: World,
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    if not world.writer_seq:
        await grow(stack, world, registry=registry_records(world.facility.id),
                   events=first_round(world))  # fmt: skip
    _, raw, header = await fetch(api, world)
    body = json.loads(raw)
    env = stack.env(
        LEDGER_API_URL=str(api.make_url("")).rstrip("/"), LEDGER_API_TOKEN=world.tokens["auditor"]
    )
    args = ["report", "compliance", "--facility", world.facility.id, "--month", world.month,
            "--at", body["at"]]  # fmt: skip
    for _, value in pinned(body)[:-1]:
        args += ["--as-of", value]
    done = await asyncio.to_thread(run_ledger, env, *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.encode() == raw
    assert f"digest: {header}" in done.stderr
    assert "--at " + body["at"] in done.stderr
