"""Reads attributed to every patient they disclosed, against the real PostgreSQL.

A ledger of its own: log 0 holds accesses of patients A, B and C; log 1 holds reads of the
ledger (AuditLogUsed v2, and one v1 read written before v2 existed). The projection stores
each read's ranges, a patient's history includes the reads that returned the patient's
entries (and only those), and `ledger verify` reports a tampered range row, from an export
and through the API.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from consumers.classify import classify
from integrations.simulator import Simulator
from ledger.audit import disclosure
from ledger.audit.auth import Role
from ledger.audit.ingest import Accepted, BatchItem, WriterSchemaInfo
from ledger.audit.producerauth import ProducerAuthenticator
from ledger.audit.query import HistoryKey, HistoryQuery
from ledger.log.keys import load_signers
from ledger.log.leaf import KafkaRecord
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from ledger.pg.migrate import apply_migrations
from ledger.pg.reader import PostgresReader
from ledgerctl.tokens import create_token
from producers.codec import Codec, load_shipped_schemas
from producers.events import (
    Actor,
    AuditEvent,
    AuditLogUsed,
    DisclosedRange,
    Facility,
    LedgerQuery,
    Patient,
    PhiAccessEvent,
)
from tests.conftest import drop_database
from tests.ports import free_port
from tests.support import (
    ROOT,
    Stack,
    export_and_verify,
    run_ledger,
    signed_headers,
    superuser_url,
    with_database,
)

pytestmark = pytest.mark.integration

LEDGER = str(Path(sys.executable).with_name("ledger"))
TOPIC = "attr-phi-access"
NAME = "test.ledger.local"
ORIGIN0 = f"{NAME}/{TOPIC}/0/2026-09"  # records stamped 1_790_000_000_000 ms
PATIENTS = ("ATTR-A", "ATTR-B", "ATTR-C")
CODEC = Codec()
#: A codec that knows AuditLogUsed v1 only: what a producer wrote before v2 existed.
V1_CODEC = Codec(s for s in load_shipped_schemas() if s.fingerprint.hex() != "c99b86cb05106cbe")


def _read(**kw: object) -> AuditLogUsed:
    base = AuditLogUsed(
        facility=Facility(id=NAME),
        actor=Actor(user_id="auditor.one", role="auditor"),
        query=LedgerQuery(method="GET", path="/v1/logs/1/index", status=200, results=20),
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


#: Leaves of log 0: patient PATIENTS[i % 3] at leaf i.
LOG0 = 30
A_AND_B = disclosure.of_positions((ORIGIN0, i) for i in range(LOG0) if i % 3 != 2)
READS = {
    # an index page that returned A's and B's entries, not C's
    "a_and_b": _read(
        disclosed=tuple(
            DisclosedRange(log=r.origin, start=r.start, end=r.end) for r in A_AND_B.ranges
        ),
    ),
    # an export: all of log 0
    "everything": _read(disclosed=(DisclosedRange(log=ORIGIN0, start=0, end=LOG0),)),
    # a read of another ledger's log: nobody here
    "elsewhere": _read(disclosed=(DisclosedRange(log="other.ledger/x/0", start=0, end=99),)),
}


@dataclass(frozen=True)
class Ledger:
    owner_url: str
    reader_url: str
    superuser_url: str
    env: dict[str, str]
    read_leaves: dict[str, int]  # read name -> leaf index in log 1
    read_ids: dict[str, uuid.UUID]


def _record(partition: int, offset: int, event: AuditEvent, codec: Codec) -> KafkaRecord:
    value = codec.encode(event.stamped(producer_id="attr", producer_seq=partition * 1000 + offset))
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
    sim = Simulator(seed=int(secrets.token_hex(3), 16), patients=5)
    accesses: list[AuditEvent] = []
    for i, event in enumerate(sim.events(LOG0, relay_every=0)):
        assert isinstance(event, PhiAccessEvent)
        accesses.append(dataclasses.replace(event, patient=Patient(id=PATIENTS[i % 3])))
    named_c = _read(patient=Patient(id="ATTR-C"), query=LedgerQuery(
        method="GET", path="/v1/patients/ATTR-C/accesses", status=200))  # fmt: skip
    reads = [*READS.values(), named_c]
    # Signed like any producer's events, so the export carries a seal reference per leaf.
    own = dataclasses.replace(
        stack, owner_url=with_database(stack.owner_url, database), database=database
    )
    key_file = await asyncio.to_thread(own.producer_key, "attr")
    records1 = [_record(1, i, e, CODEC) for i, e in enumerate(reads[:-1])]
    records1.append(_record(1, len(reads) - 1, named_c, V1_CODEC))
    signer = load_signers(stack.signer_key_file)[0]
    async with PostgresAppender(
        dsn=with_database(stack.appender_url, database), ledger_name=NAME
    ) as appender:
        auth = ProducerAuthenticator(await appender.producer_keys())

        def signed(records: list[KafkaRecord], codec: Codec) -> list[BatchItem]:
            headers = signed_headers(key_file, [(r.topic, r.value) for r in records])
            return [
                classify(r, codec, auth=auth, envelope=envelope)
                for r, ((_, envelope),) in zip(records, headers, strict=True)
            ]

        items1 = [*signed(records1[:-1], CODEC), *signed(records1[-1:], V1_CODEC)]
        assert all(isinstance(i, Accepted) for i in items1), items1
        await appender.register_schemas([
            WriterSchemaInfo(fingerprint=s.fingerprint, full_name=s.full_name,
                             canonical_form=s.canonical_form, schema_json=s.schema_json)
            for s in CODEC.schemas
        ])  # fmt: skip
        checkpointer = Checkpointer(
            pool=appender.pool, signers=[signer], policy=CheckpointPolicy(every_leaves=1)
        )
        items0 = signed([_record(0, i, e, CODEC) for i, e in enumerate(accesses)], CODEC)
        for partition, items in ((0, items0), (1, items1)):
            result = await appender.append(topic=TOPIC, partition=partition, items=items)
            assert result.appended == len(items)
            assert await checkpointer.checkpoint(result.log_id) is not None
    names = [*READS, "named_c"]
    token = await create_token(
        with_database(stack.owner_url, database), subject="attr-auditor", role=Role.AUDITOR,
        ttl=None, note="read attribution test",
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
        read_leaves={n: i for i, n in enumerate(names)},
        read_ids={n: e.event_id for n, e in zip(names, reads, strict=True)},
    )


@pytest.fixture(scope="module")
def ledger(stack: Stack) -> Iterator[Ledger]:
    database = f"ledger_attr_{secrets.token_hex(4)}"
    yield asyncio.run(build(stack, database))

    asyncio.run(drop_database(stack.owner_url, database))


async def history(ledger: Ledger, patient: str) -> dict[uuid.UUID, bool]:
    """The patient's history: event id -> whether it is there by disclosure."""
    async with PostgresReader(dsn=ledger.reader_url) as reader:
        snapshot = await reader.snapshot()
        entries = await reader.history(
            HistoryQuery(key=HistoryKey.PATIENT, value=patient),
            snapshot=snapshot, limit=1000, after=None,
        )  # fmt: skip
    return {e.event_id: e.via_disclosure for e in entries}


async def test_the_projection_stores_each_reads_canonical_ranges(ledger: Ledger) -> None:
    conn = await asyncpg.connect(ledger.owner_url)
    try:
        rows = await conn.fetch(
            "SELECT event_id, origin, first_leaf, end_leaf FROM read_disclosures "
            "ORDER BY event_id, origin, first_leaf"
        )
    finally:
        await conn.close()
    stored: dict[uuid.UUID, list[tuple[str, int, int]]] = {}
    for r in rows:
        stored.setdefault(r["event_id"], []).append((r[1], r[2], r[3]))
    assert stored == {
        ledger.read_ids["a_and_b"]: [(r.origin, r.start, r.end) for r in A_AND_B.ranges],
        ledger.read_ids["everything"]: [(ORIGIN0, 0, LOG0)],
        ledger.read_ids["elsewhere"]: [("other.ledger/x/0", 0, 99)],
    }
    # A and B alternate with C: 20 entries, 10 ranges of two.
    assert len(A_AND_B.ranges) == 10


async def test_a_read_is_in_the_history_of_each_patient_it_disclosed(ledger: Ledger) -> None:
    ids = ledger.read_ids
    for patient in ("ATTR-A", "ATTR-B"):
        seen = await history(ledger, patient)
        assert seen[ids["a_and_b"]] is True, patient
        assert seen[ids["everything"]] is True, patient
        assert ids["named_c"] not in seen
        assert ids["elsewhere"] not in seen
        assert sum(1 for bulk in seen.values() if not bulk) == 10  # the patient's own
    seen_c = await history(ledger, "ATTR-C")
    assert ids["a_and_b"] not in seen_c  # it never returned C's entries
    assert seen_c[ids["everything"]] is True
    assert seen_c[ids["named_c"]] is False  # a v1 read, named: still there
    assert await history(ledger, "ATTR-NOBODY") == {}


def test_a_clean_ledger_with_reads_verifies(ledger: Ledger, tmp_path: Path) -> None:
    result = export_and_verify(ledger.env, tmp_path, "attribution test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "disclosure_mismatch" not in result.stdout


def test_a_tampered_range_row_is_reported(ledger: Ledger, tmp_path: Path) -> None:
    """A DBA hides a read from B's history (drops one of its ranges), widens another read,
    and pins a range on an access event: each is a finding at that leaf."""

    async def tamper() -> int:
        su = await asyncpg.connect(ledger.superuser_url)
        try:
            async with su.transaction():
                await su.execute("SET LOCAL session_replication_role = replica")  # triggers off
                await su.execute(
                    "DELETE FROM read_disclosures WHERE event_id = $1 AND first_leaf = 3",
                    ledger.read_ids["a_and_b"],
                )
                await su.execute(
                    "UPDATE read_disclosures SET end_leaf = 31 WHERE event_id = $1",
                    ledger.read_ids["everything"],
                )
                victim = await su.fetchrow(
                    "SELECT e.event_id, e.leaf_index FROM events e JOIN logs g USING (log_id) "
                    "WHERE g.kafka_partition = 0 AND e.leaf_index = 5"
                )
                await su.execute(
                    "INSERT INTO read_disclosures (event_id, origin, first_leaf, end_leaf, period)"
                    " SELECT $1, $2, 0, 1, period FROM events WHERE event_id = $1",
                    victim[0],
                    ORIGIN0,
                )
            return int(victim[1])
        finally:
            await su.close()

    victim_leaf = asyncio.run(tamper())
    result = export_and_verify(ledger.env, tmp_path, "attribution test")
    assert result.returncode == 1, result.stdout + result.stderr
    findings = [line for line in result.stdout.splitlines() if "disclosure_mismatch" in line]
    text = "\n".join(findings)
    assert len(findings) == 3, result.stdout
    assert any(f" {ledger.read_leaves['a_and_b']} " in line and "1 missing" in line
               for line in findings), text  # fmt: skip
    assert any(f" {ledger.read_leaves['everything']} " in line for line in findings), text
    assert any(f" {victim_leaf} " in line and "1 extra" in line for line in findings), text

    # The same online, through the API's index rows (an auditor with the URL and the key).
    port = free_port()
    server = subprocess.Popen(
        [LEDGER, "serve", "--port", str(port)], env=ledger.env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        waited = subprocess.run(
            [LEDGER, "wait", "api", "--timeout", "30"], env={**ledger.env, "LEDGER_API_URL": url},
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert waited.returncode == 0, waited.stderr
        online = run_ledger(ledger.env, "verify", "--api", url)
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert online.returncode == 1, online.stdout + online.stderr
    assert sum("disclosure_mismatch" in line for line in online.stdout.splitlines()) == 3
