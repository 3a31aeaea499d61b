"""Access events that disclose many patients, or none, against the real PostgreSQL.

A ledger of its own: log 0 holds PhiAccessEvent v2 queries (one that returned patients A,
B and C, one that matched nobody, one that named A and returned A and B), a v1 access of A,
an access of D and a transfer of E's study to an outside party naming no patient; log 1 a
read of the ledger that returned the three-patient query. The projection stores one
event_patients row per disclosed patient, each patient's history lists the queries that
returned them marked "disclosed" (and the read of such a query), the empty query is in
its user's history, the reports count the patients returned, and `ledger verify` reports
tampered rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from consumers.classify import classify
from ledger.audit.auth import Role
from ledger.audit.ingest import Accepted, WriterSchemaInfo
from ledger.audit.producerauth import ProducerAuthenticator
from ledger.audit.query import HistoryKey, HistoryQuery
from ledger.audit.reports import InvestigationScope, PatientRef
from ledger.log.keys import load_signers
from ledger.log.leaf import KafkaRecord
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from ledger.pg.migrate import apply_migrations
from ledger.pg.reader import PostgresReader
from ledger.pg.reports import PostgresReports
from ledgerctl.tokens import create_token
from producers.codec import Codec, load_shipped_schemas
from producers.events import (
    Actor,
    AuditEvent,
    AuditLogUsed,
    DisclosedPatient,
    DisclosedRange,
    EventAction,
    Facility,
    LedgerQuery,
    Patient,
    PhiAccessEvent,
    Recipient,
    Study,
)
from tests.conftest import drop_database
from tests.support import (
    Stack,
    export_and_verify,
    signed_headers,
    superuser_url,
    with_database,
)

pytestmark = pytest.mark.integration

TOPIC = "multi-phi-access"
NAME = "test.ledger.local"
ORIGIN0 = f"{NAME}/{TOPIC}/0/2026-09"  # records stamped 1_790_000_000_000 ms
CODEC = Codec()
V1_CODEC = Codec(
    s
    for s in load_shipped_schemas()
    if s.fingerprint.hex() not in ("1f7e8aa358e48ee9", "e6ba5b1e5a454708")  # v2, v3
)
STUDY = "1.2.826.0.1.3680043.8.498"


def _access(user: str, **kw: object) -> PhiAccessEvent:
    base = PhiAccessEvent(
        facility=Facility(id="stmarys"),
        actor=Actor(user_id=user, role="radiologist"),
        dicom_event_id="110112",
        action=EventAction.EXECUTE,
        patient=None,
        details={"query": "PatientName=SMITH*"},
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


A, B, C, D, E = (Patient(id=f"MULTI-{x}", issuer="hosp") for x in "ABCDE")
EVENTS: dict[str, PhiAccessEvent] = {
    "three": _access(
        "dr.q",
        disclosed=(
            DisclosedPatient(id=A.id, issuer="hosp", studies=(f"{STUDY}.1", f"{STUDY}.2")),
            DisclosedPatient(id=B.id, issuer="hosp", state="MA"),
            DisclosedPatient(id=C.id, issuer="hosp", studies=(f"{STUDY}.3",)),
        ),
        disclosed_truncated=True,
        disclosed_total=7,
    ),
    "nothing": _access("dr.q", details={"query": "StudyDate=20261206"}),
    "named_a": _access(
        "dr.n",
        patient=A,
        disclosed=(
            DisclosedPatient(id=A.id, issuer="hosp"),
            DisclosedPatient(id=B.id, issuer="hosp"),
        ),
    ),
    "v1_a": _access("dr.n", dicom_event_id="110103", action=EventAction.READ, patient=A),
    "d": _access(
        "dr.n",
        dicom_event_id="110103",
        action=EventAction.READ,
        patient=D,
        study=Study(uid=f"{STUDY}.1", accession="ACC-D"),
    ),
    # A transfer to an outside party of E's study, naming no patient in the request.
    "transfer": _access(
        "dr.t",
        dicom_event_id="110104",
        action=EventAction.READ,
        purpose_of_use="LEGAL",
        recipient=Recipient(name="outside-archive"),
        disclosed=(DisclosedPatient(id=E.id, issuer="hosp", studies=(f"{STUDY}.9",)),),
        details={},
    ),
}


@dataclass(frozen=True)
class Ledger:
    owner_url: str
    reader_url: str
    superuser_url: str
    env: dict[str, str]
    leaves: dict[str, int]  # event name -> leaf index in log 0
    read_id: uuid.UUID


def _record(partition: int, offset: int, event: AuditEvent, codec: Codec) -> KafkaRecord:
    value = codec.encode(event.stamped(producer_id="multi", producer_seq=partition * 1000 + offset))
    return KafkaRecord(topic=TOPIC, partition=partition, offset=offset,
                       timestamp_ms=1_790_000_000_000 + offset, timestamp_type=0,
                       key=b"k", value=value)  # fmt: skip


async def build(stack: Stack, database: str) -> Ledger:
    owner = await asyncpg.connect(stack.owner_url)
    try:
        await owner.execute(f'CREATE DATABASE "{database}"')
    finally:
        await owner.close()
    apply_migrations(with_database(stack.owner_url, database))
    names = list(EVENTS)
    read = AuditLogUsed(
        facility=Facility(id=NAME),
        actor=Actor(user_id="auditor.one", role="auditor"),
        query=LedgerQuery(method="GET", path="/v1/users/dr.q/accesses", status=200, results=1),
        disclosed=(DisclosedRange(log=ORIGIN0, start=0, end=1),),  # the three-patient query
    )
    own = dataclasses.replace(
        stack, owner_url=with_database(stack.owner_url, database), database=database
    )
    key_file = await asyncio.to_thread(own.producer_key, "multi")
    signer = load_signers(stack.signer_key_file)[0]
    async with PostgresAppender(
        dsn=with_database(stack.appender_url, database), ledger_name=NAME
    ) as appender:
        auth = ProducerAuthenticator(await appender.producer_keys())
        await appender.register_schemas([
            WriterSchemaInfo(fingerprint=s.fingerprint, full_name=s.full_name,
                             canonical_form=s.canonical_form, schema_json=s.schema_json)
            for s in CODEC.schemas
        ])  # fmt: skip
        checkpointer = Checkpointer(
            pool=appender.pool, signers=[signer], policy=CheckpointPolicy(every_leaves=1)
        )
        records0 = [
            _record(0, i, EVENTS[n], V1_CODEC if n == "v1_a" else CODEC)
            for i, n in enumerate(names)
        ]
        for partition, records in ((0, records0), (1, [_record(1, 0, read, CODEC)])):
            headers = signed_headers(key_file, [(r.topic, r.value) for r in records])
            items = [
                classify(r, CODEC, auth=auth, envelope=envelope)
                for r, ((_, envelope),) in zip(records, headers, strict=True)
            ]
            assert all(isinstance(i, Accepted) for i in items), items
            result = await appender.append(topic=TOPIC, partition=partition, items=items)
            assert result.appended == len(items)
            assert await checkpointer.checkpoint(result.log_id) is not None

    token = await create_token(
        with_database(stack.owner_url, database), subject="multi-auditor", role=Role.AUDITOR,
        ttl=None, note="multi-patient test",
    )  # fmt: skip
    return Ledger(
        owner_url=with_database(stack.owner_url, database),
        reader_url=with_database(stack.reader_url, database),
        superuser_url=with_database(superuser_url(stack), database),
        env=stack.env(
            DATABASE_URL=with_database(stack.owner_url, database),
            LEDGER_READER_URL=with_database(stack.reader_url, database),
            LEDGER_API_TOKEN=token.text,
        ),
        leaves={n: i for i, n in enumerate(names)},
        read_id=read.event_id,
    )


@pytest.fixture(scope="module")
def ledger(stack: Stack) -> Iterator[Ledger]:
    database = f"ledger_multi_{secrets.token_hex(4)}"
    yield asyncio.run(build(stack, database))

    asyncio.run(drop_database(stack.owner_url, database))


async def history(
    ledger: Ledger, key: HistoryKey, value: str, **narrowing: str
) -> dict[uuid.UUID, bool]:
    """The history: event id -> whether it is there by disclosure."""
    query = HistoryQuery(key=key, value=value, **narrowing)  # type: ignore[arg-type]
    async with PostgresReader(dsn=ledger.reader_url) as reader:
        snapshot = await reader.snapshot()
        entries = await reader.history(query, snapshot=snapshot, limit=1000, after=None)
    return {e.event_id: e.via_disclosure for e in entries}


async def test_the_projection_stores_one_row_per_disclosed_patient(ledger: Ledger) -> None:
    conn = await asyncpg.connect(ledger.owner_url)
    try:
        rows = await conn.fetch(
            "SELECT event_id, patient_issuer, patient_id, patient_state, study_uids "
            "FROM event_patients ORDER BY event_id, patient_id"
        )
    finally:
        await conn.close()
    stored: dict[uuid.UUID, list[tuple[object, ...]]] = {}
    for r in rows:
        stored.setdefault(r[0], []).append((r[1], r[2], r[3], list(r[4])))
    assert stored == {
        EVENTS["three"].event_id: [
            ("hosp", A.id, None, [f"{STUDY}.1", f"{STUDY}.2"]),
            ("hosp", B.id, "MA", []),
            ("hosp", C.id, None, [f"{STUDY}.3"]),
        ],
        EVENTS["named_a"].event_id: [("hosp", A.id, None, []), ("hosp", B.id, None, [])],
        EVENTS["transfer"].event_id: [("hosp", E.id, None, [f"{STUDY}.9"])],
    }


async def test_each_disclosed_patient_sees_the_query_marked_disclosed(ledger: Ledger) -> None:
    three, named_a = EVENTS["three"].event_id, EVENTS["named_a"].event_id
    seen_a = await history(ledger, HistoryKey.PATIENT, A.id)
    assert seen_a == {
        three: True,
        named_a: False,  # named by the request: "named", once
        EVENTS["v1_a"].event_id: False,  # a v1 event: still there
        ledger.read_id: True,  # a read that returned the query's leaf
    }
    seen_b = await history(ledger, HistoryKey.PATIENT, B.id)
    assert seen_b == {three: True, named_a: True, ledger.read_id: True}
    seen_c = await history(ledger, HistoryKey.PATIENT, C.id)
    assert seen_c == {three: True, ledger.read_id: True}
    assert await history(ledger, HistoryKey.PATIENT, D.id) == {EVENTS["d"].event_id: False}


async def test_a_query_that_matched_nobody_is_in_its_users_history(ledger: Ledger) -> None:
    seen = await history(ledger, HistoryKey.USER, "dr.q")
    assert seen == {EVENTS["three"].event_id: False, EVENTS["nothing"].event_id: False}


async def test_a_study_s_history_lists_the_answers_that_returned_it(ledger: Ledger) -> None:
    """/v1/studies/{uid}/accesses and FHIR AuditEvent?entity=: the events that name the
    study, and those whose answer listed it in a patient's studies, marked "disclosed"
    (index event_patients_studies, migration 0011)."""
    three, d = EVENTS["three"].event_id, EVENTS["d"].event_id
    assert await history(ledger, HistoryKey.STUDY, f"{STUDY}.1") == {three: True, d: False}
    assert await history(ledger, HistoryKey.STUDY, f"{STUDY}.3") == {three: True}
    assert await history(ledger, HistoryKey.STUDY, f"{STUDY}.9") == {
        EVENTS["transfer"].event_id: True
    }
    assert await history(ledger, HistoryKey.STUDY, f"{STUDY}.4") == {}
    # The accession narrows the events that name the study; an answer lists UIDs only.
    by_accession = await history(ledger, HistoryKey.STUDY, f"{STUDY}.1", qualifier="ACC-D")
    assert by_accession == {three: True, d: False}
    other = await history(ledger, HistoryKey.STUDY, f"{STUDY}.1", qualifier="ACC-X")
    assert other == {three: True}


async def test_an_accession_s_history_is_the_events_that_name_it(ledger: Ledger) -> None:
    """/v1/accessions/{accession}/accesses (index events_accession_time, migration 0015):
    the events naming the accession, whatever their study; an answer that returned the
    study names its UID alone, so it is in the study's history, not the accession's."""
    assert await history(ledger, HistoryKey.ACCESSION, "ACC-D") == {EVENTS["d"].event_id: False}
    assert await history(ledger, HistoryKey.ACCESSION, "ACC-X") == {}


async def test_a_history_narrowed_by_study_keeps_the_answers_that_returned_it(
    ledger: Ledger,
) -> None:
    """FHIR AuditEvent?patient=&entity=: the study narrowing matches a disclosed study."""
    seen = await history(ledger, HistoryKey.PATIENT, A.id, study=f"{STUDY}.1")
    assert seen == {EVENTS["three"].event_id: True}
    assert await history(ledger, HistoryKey.USER, "dr.n", study=f"{STUDY}.1") == {
        EVENTS["d"].event_id: False
    }


def test_a_clean_ledger_with_queries_verifies(ledger: Ledger, tmp_path: Path) -> None:
    result = export_and_verify(ledger.env, tmp_path, "multi-patient test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "patients_mismatch" not in result.stdout


def test_tampered_patient_rows_are_reported(ledger: Ledger, tmp_path: Path) -> None:
    """A DBA hides a query from B's history, changes the studies C was shown, and pins a
    patient on D's access: each is a finding at that leaf."""

    async def tamper() -> None:
        su = await asyncpg.connect(ledger.superuser_url)
        try:
            async with su.transaction():
                await su.execute("SET LOCAL session_replication_role = replica")  # triggers off
                await su.execute(
                    "DELETE FROM event_patients WHERE event_id = $1 AND patient_id = $2",
                    EVENTS["named_a"].event_id,
                    B.id,
                )
                await su.execute(
                    "UPDATE event_patients SET study_uids = '{}' WHERE event_id = $1 "
                    "AND patient_id = $2",
                    EVENTS["three"].event_id,
                    C.id,
                )
                await su.execute(
                    "INSERT INTO event_patients (event_id, patient_id, patient_issuer, period) "
                    "SELECT $1, $2, 'hosp', period FROM events WHERE event_id = $1",
                    EVENTS["d"].event_id,
                    A.id,
                )
        finally:
            await su.close()

    asyncio.run(tamper())
    result = export_and_verify(ledger.env, tmp_path, "multi-patient test")
    assert result.returncode == 1, result.stdout + result.stderr
    findings = [line for line in result.stdout.splitlines() if "patients_mismatch" in line]
    text = "\n".join(findings)
    assert len(findings) == 3, result.stdout
    for name in ("named_a", "three", "d"):
        assert any(f" {ledger.leaves[name]} " in line for line in findings), (name, text)
    assert MULTI_NAMES_ABSENT(text)


def MULTI_NAMES_ABSENT(text: str) -> bool:
    """Findings carry no PHI: no patient id appears in them."""
    return all(p.id not in text for p in (A, B, C, D, E))


async def test_an_investigation_of_the_user_counts_every_patient_their_queries_returned(
    ledger: Ledger,
) -> None:
    """The three-patient query (truncated: 7 returned) and the empty query are on dr.q's
    timeline; A, B and C are affected (B with the state the answer carried), and the four
    patients the answer returned unlisted are counted, not dropped."""
    now = datetime.now(UTC)
    scope = InvestigationScope(start=now - timedelta(days=1), end=now, users=("dr.q",))
    async with PostgresReports(dsn=ledger.reader_url) as reports:
        report = await reports.investigation(scope)
    assert {e.event_id for e in report.timeline} == {
        EVENTS["three"].event_id,
        EVENTS["nothing"].event_id,
    }
    assert [(p.patient_id, p.state, p.disclosed_events) for p in report.patients] == [
        (A.id, None, 1),
        (B.id, "MA", 1),
        (C.id, None, 1),
    ]
    assert [(s.state, s.residents) for s in report.states] == [("MA", 1)]
    assert report.unknown_state == 2
    assert report.unlisted_patients == 4
    assert report.individuals_at_most == 7
    (t,) = report.truncated_answers
    assert (t.source.event_id, t.listed, t.total) == (EVENTS["three"].event_id, 3, 7)


async def test_an_accounting_lists_a_transfer_to_the_patient_it_returned(ledger: Ledger) -> None:
    async with PostgresReports(dsn=ledger.reader_url) as reports:
        accounting = await reports.disclosures(PatientRef(id=E.id, issuer="hosp"))
        others = await reports.disclosures(PatientRef(id=A.id, issuer="hosp"))
    (entry,) = accounting.entries
    assert entry.sources[0].event_id == EVENTS["transfer"].event_id
    assert entry.recipient_name == "outside-archive"
    assert f"{STUDY}.9" in entry.description
    assert others.entries == ()
