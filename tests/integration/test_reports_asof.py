"""Reports as of signed checkpoints, against the real database and the real API app.

Events are appended by the real appender and signed by the real checkpointer into a
database of this module's own; the reports are read through ``create_app`` with
``PostgresReports`` (trusting the stack's verifier key) and a recorder that keeps every
read. The ledger grows between requests: a report as of the same checkpoints must come
back byte for byte, one as of the new checkpoints must not, and every bad checkpoint is
refused with a 400 that is recorded like any other read.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from consumers.classify import classify
from ledger.audit.auth import Role
from ledger.audit.ingest import Accepted, WriterSchemaInfo
from ledger.audit.readlog import LedgerRead
from ledger.audit.reports import (
    CheckpointRef,
    InvestigationScope,
    PatientRef,
    digest,
    digest_of,
    refs_from_report,
)
from ledger.errors import MalformedInputError
from ledger.http import create_app
from ledger.log.checkpoint import Checkpoint, format_checkpoint, parse_checkpoint
from ledger.log.keys import load_signers
from ledger.log.leaf import decode_leaf
from ledger.log.note import generate_signer, parse_signer_key, parse_verifier_key, sign_note
from ledger.log.types import RootHash
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from ledger.pg.migrate import apply_migrations
from ledger.pg.reader import PostgresReader
from ledger.pg.reports import PostgresReports
from ledgerctl.tokens import create_token
from producers.events import AcrCategory, Facility, Patient
from tests.conftest import drop_database
from tests.integration.test_reports_pg import CODEC, LAWYER, Writer, phi, relay
from tests.support import Stack, run_ledger, superuser_url, with_database

pytestmark = pytest.mark.integration

LEDGER_NAME = "asof.ledger.local"


class KeptReads:
    """A read recorder that keeps every read (the API records before it answers)."""

    def __init__(self) -> None:
        self.reads: list[LedgerRead] = []

    async def record(self, read: LedgerRead) -> None:
        self.reads.append(read)


@dataclass
class World:
    database: str
    owner_url: str
    appender_url: str
    reader_url: str
    token: str
    now: datetime
    suspect: str
    facility: Facility
    patient: Patient
    topics: tuple[str, str] = ("asof-phi", "asof-relay")
    reads: KeptReads = field(default_factory=KeptReads)
    seq: int = 0


@pytest.fixture(scope="module")
async def world(stack: Stack) -> AsyncIterator[World]:
    database = f"ledger_asof_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(stack.owner_url)
    try:
        await owner.execute(f'CREATE DATABASE "{database}"')
    finally:
        await owner.close()
    owner_url = with_database(stack.owner_url, database)
    try:
        apply_migrations(owner_url)
        issued = await create_token(
            owner_url, subject="asof-admin", role=Role.ADMIN, ttl=None, note="tests"
        )
        tag = uuid.uuid4().hex[:6]
        yield World(
            database=database,
            owner_url=owner_url,
            appender_url=with_database(stack.appender_url, database),
            reader_url=with_database(stack.reader_url, database),
            token=issued.text,
            now=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5),
            suspect=f"rad-{tag}",
            facility=Facility(id=f"asof-{tag}", name="As-of test site"),
            patient=Patient(id=f"MRN-{tag}", issuer="asof", state="MA"),
        )
    finally:
        await drop_database(stack.owner_url, database)


async def grow(stack: Stack, w: World, round_: int) -> None:
    """Append one round of events that every report sees (reads by the suspect, a
    disclosure of the patient, a late critical-result relay) and sign every log."""
    t = w.now - timedelta(hours=3) + timedelta(minutes=10 * round_)
    async with PostgresAppender(dsn=w.appender_url, ledger_name=LEDGER_NAME) as app:
        await app.register_schemas(
            [
                WriterSchemaInfo(fingerprint=s.fingerprint, full_name=s.full_name,
                                 canonical_form=s.canonical_form, schema_json=s.schema_json)
                for s in CODEC.schemas
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
        writer._seq = w.seq  # producer sequence numbers go on across rounds
        for (topic, partition), offset in (await _offsets(app, w)).items():
            writer._offsets[(topic, partition)] = offset
        other = Patient(id=f"{w.patient.id}-{round_}", issuer="asof", state="NH")
        await writer.append(
            w.topics[0],
            0,
            [
                phi(user=w.suspect, patient=other, when=t, facility=w.facility),
                phi(
                    user=w.suspect, patient=w.patient, when=t + timedelta(minutes=1),
                    code="110106", purpose="LEGAL", recipient=LAWYER, facility=w.facility,
                ),
            ],
        )  # fmt: skip
        await writer.append(
            w.topics[1],
            0,
            [
                relay(
                    facility=w.facility, patient=other, category=AcrCategory.CAT1,
                    identified=t, communicated=timedelta(hours=2),
                    recorded=t + timedelta(minutes=2),
                )
            ],
        )  # fmt: skip
        await writer.sign_all()
        w.seq = writer._seq


async def _offsets(app: PostgresAppender, w: World) -> dict[tuple[str, int], int]:
    rows = await app.pool.fetch(
        "SELECT g.topic, g.kafka_partition, count(l.*) AS n FROM logs g "
        "LEFT JOIN leaves l USING (log_id) WHERE g.topic = ANY($1::text[]) "
        "GROUP BY g.topic, g.kafka_partition",
        list(w.topics),
    )
    return {(r["topic"], int(r["kafka_partition"])): int(r["n"]) for r in rows}


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


def headers(w: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {w.token}"}


def as_of_params(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [("as_of", f"{c['origin']}:{c['size']}") for c in body["as_of_checkpoints"]]


async def fetch_all(
    client: TestClient,  # type: ignore[type-arg]
    w: World,
    as_of: list[tuple[str, str]],
    fmt: str = "json",
) -> dict[str, tuple[bytes, str]]:
    """Every report (body, Report-Digest header) with the same request parameters."""
    at = ("at", w.now.isoformat())
    since, until = (w.now - timedelta(days=1)).isoformat(), w.now.isoformat()
    out: dict[str, tuple[bytes, str]] = {}
    async with client.post(
        "/v1/investigations",
        params=[("format", fmt if fmt != "html" else "json"), *as_of],
        json={"since": since, "until": until, "users": [w.suspect]},
        headers=headers(w),
    ) as resp:
        assert resp.status == 200, await resp.text()
        out["investigation"] = (await resp.read(), resp.headers["Report-Digest"])
    async with client.get(
        f"/v1/patients/{w.patient.id}/disclosures",
        params=[("issuer", "asof"), ("format", fmt), at, *as_of],
        headers=headers(w),
    ) as resp:
        assert resp.status == 200, await resp.text()
        out["disclosures"] = (await resp.read(), resp.headers["Report-Digest"])
    async with client.get(
        "/v1/reports/critical-results",
        params=[("since", since), ("until", until), ("facility", w.facility.id),
                ("format", fmt if fmt != "html" else "json"), at, *as_of],
        headers=headers(w),
    ) as resp:  # fmt: skip
        assert resp.status == 200, await resp.text()
        out["relays"] = (await resp.read(), resp.headers["Report-Digest"])
    return out


async def test_reports_as_of_the_same_checkpoints_are_byte_identical_while_the_ledger_grows(
    stack: Stack,
    world: World,
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    verifier = parse_verifier_key(stack.verifier_key)
    await grow(stack, world, 0)
    first = await fetch_all(api, world, [])  # default: the latest checkpoint of each log
    body = json.loads(first["investigation"][0])
    pinned = as_of_params(body)
    assert sorted(o for _, o in pinned) == [
        f"{LEDGER_NAME}/{world.topics[0]}/0/2026-09:2",
        f"{LEDGER_NAME}/{world.topics[1]}/0/2026-09:1",
    ]
    for name, (raw, header) in first.items():
        report = json.loads(raw)
        # The digest is the documented one, recomputable from the JSON alone.
        assert report["digest"] == header == digest_of(report), name
        assert [(c["origin"], c["size"]) for c in report["as_of_checkpoints"]] == sorted(
            (o.rsplit(":", 1)[0], int(o.rsplit(":", 1)[1])) for _, o in pinned
        )
        for c in report["as_of_checkpoints"]:
            assert (
                parse_checkpoint(c["note"][: c["note"].rfind("\n\n") + 1]).root_hash.hex()
                == (c["root_hash"])
            )
            assert c["key_ids"] == [f"{verifier.name}+{verifier.key_id.hex()}"]
    assert len(json.loads(first["disclosures"][0])["entries"]) == 1
    assert json.loads(first["relays"][0])["relays"] == 1
    assert json.loads(first["relays"][0])["facility"] == world.facility.id  # re-run from it

    # The ledger grows, with events that change every report.
    await grow(stack, world, 1)
    again = await fetch_all(api, world, pinned)
    assert again == first  # byte for byte, digests included
    csv_pinned = await fetch_all(api, world, pinned, fmt="csv")
    assert {k: v[1] for k, v in csv_pinned.items()} == {k: v[1] for k, v in first.items()}

    latest = await fetch_all(api, world, [])
    for name in first:
        assert latest[name][0] != first[name][0], name
        assert latest[name][1] != first[name][1], name
    assert len(json.loads(latest["disclosures"][0])["entries"]) == 2
    assert json.loads(latest["relays"][0])["relays"] == 2
    newer = as_of_params(json.loads(latest["investigation"][0]))
    assert sorted(o for _, o in newer) == [
        f"{LEDGER_NAME}/{world.topics[0]}/0/2026-09:4",
        f"{LEDGER_NAME}/{world.topics[1]}/0/2026-09:2",
    ]
    assert await fetch_all(api, world, newer) == latest

    # Only one log named: the other is not read at all.
    one = [p for p in pinned if world.topics[0] in p[1]]
    only_phi = json.loads((await fetch_all(api, world, one))["relays"][0])
    assert only_phi["relays"] == 0
    assert [c["origin"] for c in only_phi["as_of_checkpoints"]] == [one[0][1].rsplit(":", 1)[0]]


async def test_csv_and_html_carry_the_checkpoints_and_the_digest(
    stack: Stack,
    world: World,
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    if not world.seq:
        await grow(stack, world, 0)
    pinned = as_of_params(json.loads((await fetch_all(api, world, []))["investigation"][0]))
    tables = await fetch_all(api, world, pinned, fmt="csv")
    for name, (raw, header) in tables.items():
        rows = list(csv.reader(io.StringIO(raw.decode())))
        width = len(rows[0])
        assert all(len(r) == width for r in rows), name  # still one rectangular table
        footer = [r for r in rows if r[0] in ("#as_of_checkpoint", "#digest")]
        assert [r[0] for r in footer] == ["#as_of_checkpoint"] * len(pinned) + ["#digest"]
        assert sorted(f"{r[1]}:{r[2]}" for r in footer[:-1]) == sorted(o for _, o in pinned)
        assert footer[-1][1] == header
    page, header = (await fetch_all(api, world, pinned, fmt="html"))["disclosures"]
    text = page.decode()
    assert f"Content digest: {header}" in text
    for _, o in pinned:
        origin, size = o.rsplit(":", 1)
        assert f"{origin} at size {size}" in text


async def refused(
    client: TestClient,  # type: ignore[type-arg]
    w: World,
    as_of: list[str],
) -> tuple[int, dict[str, Any], LedgerRead]:
    before = len(w.reads.reads)
    async with client.get(
        "/v1/reports/critical-results",
        params=[("as_of", a) for a in as_of],
        headers=headers(w),
    ) as resp:
        status, body = resp.status, await resp.json()
    (read,) = w.reads.reads[before:]
    return status, body, read


async def test_a_bad_checkpoint_is_refused_and_the_refusal_recorded(
    stack: Stack,
    world: World,
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    if not world.seq:
        await grow(stack, world, 0)
    phi_log = f"{LEDGER_NAME}/{world.topics[0]}/0/2026-09"  # stamped APPENDED_MS
    cases = {
        "unknown size": ([f"{phi_log}:999"], "has no signed checkpoint of size 999"),
        "unknown log": ([f"{LEDGER_NAME}/nosuchtopic/0:1"], "this ledger has no log"),
        "another ledger": ([f"other.ledger/{world.topics[0]}/0:2"], "belongs to another ledger"),
        "malformed": ([f"{phi_log}"], "is not <origin>:<size>"),
        "zero": ([f"{phi_log}:0"], "size must be between 1"),
        "twice": ([f"{phi_log}:2", f"{phi_log}:2"], "two checkpoints named"),
    }
    for case, (as_of, message) in cases.items():
        status, body, read = await refused(api, world, as_of)
        assert status == 400, case
        assert body["error"]["code"] == "bad_checkpoint", case
        assert message in body["error"]["message"], (case, body)
        assert read.status == 400, case
        assert read.parameters["as_of"] == ",".join(as_of), case
        assert read.path == "/v1/reports/critical-results"


async def test_a_checkpoint_not_signed_by_a_trusted_key_is_refused(
    stack: Stack,
    world: World,
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    if not world.seq:
        await grow(stack, world, 0)
    phi_log = f"{LEDGER_NAME}/{world.topics[0]}/0/2026-09"  # stamped APPENDED_MS
    # A checkpoint of size 1 signed by a key the API does not trust, put in the database
    # by a superuser (the checkpointer itself only signs with the ledger's key).
    skey, _ = generate_signer(LEDGER_NAME)
    signer = parse_signer_key(skey)
    su = await asyncpg.connect(with_database(superuser_url(stack), world.database))
    try:
        row = await su.fetchrow(
            "SELECT g.log_id, l.leaf_hash FROM logs g JOIN leaves l USING (log_id) "
            "WHERE g.origin = $1 AND l.leaf_index = 0",
            phi_log,
        )
        assert row is not None
        log_id, root = row["log_id"], row["leaf_hash"]
        exists = await su.fetchval(
            "SELECT count(*) FROM checkpoints WHERE log_id = $1 AND size = 1", log_id
        )
        if not exists:
            text = format_checkpoint(
                Checkpoint(origin=phi_log, size=1, root_hash=RootHash(bytes(root)))
            )
            await su.execute(
                "INSERT INTO checkpoints (log_id, size, root_hash, note) VALUES ($1, 1, $2, $3)",
                log_id,
                bytes(root),
                sign_note(text, [signer]),
            )
    finally:
        await su.close()
    status, body, read = await refused(api, world, [f"{phi_log}:1"])
    assert status == 400
    assert body["error"]["code"] == "bad_checkpoint"
    assert "is not signed by a trusted key" in body["error"]["message"]
    assert read.status == 400
    assert read.parameters["as_of"] == f"{phi_log}:1"


async def test_the_cli_prints_the_digest_and_reruns_as_of_the_same_checkpoints(
    stack: Stack,
    world: World,
    api: TestClient,  # type: ignore[type-arg]
) -> None:
    if not world.seq:
        await grow(stack, world, 0)
    env = stack.env(LEDGER_API_URL=str(api.make_url("")).rstrip("/"), LEDGER_API_TOKEN=world.token)
    since, until = (world.now - timedelta(days=1)).isoformat(), world.now.isoformat()
    window = ("--since", since, "--until", until)

    def ledger(*args: str) -> subprocess.CompletedProcess[str]:
        return run_ledger(env, *args)

    first = await asyncio.to_thread(ledger, "investigate", *window, "--user", world.suspect)
    assert first.returncode == 0, first.stderr
    (digest_line,) = [x for x in first.stdout.splitlines() if x.startswith("digest: sha256:")]
    (rerun,) = [x for x in first.stdout.splitlines() if x.startswith("re-run as of")]
    as_of = rerun.split(": ", 1)[1].split()
    assert as_of[0] == "--as-of"
    disclosures = ("report", "disclosures", world.patient.id, "--issuer", "asof",
                   "--at", world.now.isoformat())  # fmt: skip
    before = await asyncio.to_thread(ledger, *disclosures, *as_of)
    assert before.returncode == 0, before.stderr
    await grow(stack, world, 2)  # the ledger grows with another disclosure
    again = await asyncio.to_thread(ledger, "investigate", *window, "--user", world.suspect, *as_of)
    assert again.returncode == 0, again.stderr
    assert digest_line in again.stdout.splitlines()
    after = await asyncio.to_thread(ledger, *disclosures, *as_of)
    assert after.stdout == before.stdout  # the API's bytes, verbatim
    assert after.stderr == before.stderr
    assert f"digest: {json.loads(after.stdout)['digest']}" in after.stderr.splitlines()
    latest = await asyncio.to_thread(ledger, *disclosures)
    assert latest.stdout != before.stdout

    refused = await asyncio.to_thread(
        ledger, "report", "critical-results", "--as-of", f"other.ledger/{world.topics[0]}/0:1"
    )
    assert refused.returncode == 1
    assert "the API refused the request" in refused.stdout + refused.stderr
    assert "belongs to another ledger" in refused.stdout + refused.stderr


async def replay_into(stack: Stack, w: World, database: str) -> None:
    """What ``ledger replay`` does, from the source's leaves instead of Kafka (the leaf is
    the Kafka record): every record of every log, in order, into an empty database, each
    log then signed once, at its full size."""
    owner = await asyncpg.connect(w.owner_url)
    try:
        rows = await owner.fetch(
            "SELECT g.topic, g.kafka_partition, l.leaf FROM leaves l JOIN logs g USING (log_id) "
            "ORDER BY g.origin, l.leaf_index"
        )
    finally:
        await owner.close()
    async with PostgresAppender(
        dsn=with_database(stack.appender_url, database), ledger_name=LEDGER_NAME
    ) as app:
        await app.register_schemas(
            [
                WriterSchemaInfo(fingerprint=s.fingerprint, full_name=s.full_name,
                                 canonical_form=s.canonical_form, schema_json=s.schema_json)
                for s in CODEC.schemas
            ]
        )  # fmt: skip
        checkpointer = Checkpointer(
            pool=app.pool,
            signers=load_signers(stack.signer_key_file),
            policy=CheckpointPolicy(every_leaves=1, every_ms=0),
        )
        by_log: dict[tuple[str, int], list[Accepted]] = {}
        for r in rows:
            item = classify(decode_leaf(bytes(r["leaf"])), CODEC)
            assert isinstance(item, Accepted)
            by_log.setdefault((r["topic"], int(r["kafka_partition"])), []).append(item)
        for (topic, partition), items in by_log.items():
            result = await app.append(topic=topic, partition=partition, items=items)
            assert result.appended == len(items)
            await checkpointer.checkpoint(result.log_id, force=True)


async def test_a_replayed_copy_reproduces_a_report_from_the_checkpoints_it_printed(
    stack: Stack,
    world: World,
    api: TestClient,  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    if not world.seq:
        await grow(stack, world, 0)
    printed = {k: json.loads(v[0]) for k, v in (await fetch_all(api, world, [])).items()}
    await grow(stack, world, 3)  # the source grows past the printed checkpoints
    database = f"ledger_asof_copy_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(stack.owner_url)
    try:
        await owner.execute(f'CREATE DATABASE "{database}"')
    finally:
        await owner.close()
    try:
        apply_migrations(with_database(stack.owner_url, database))
        await replay_into(stack, world, database)
        verifier = parse_verifier_key(stack.verifier_key)
        async with PostgresReports(
            dsn=with_database(stack.reader_url, database),
            ledger_name=LEDGER_NAME,
            verifiers=[verifier],
        ) as copy:
            await check_reproduced(stack, world, copy, printed)
            await check_reproduced_by_cli(stack, world, copy, database, printed, tmp_path)
    finally:
        await drop_database(stack.owner_url, database)


async def check_reproduced(
    stack: Stack, w: World, copy: PostgresReports, printed: dict[str, dict[str, Any]]
) -> None:
    refs = refs_from_report(printed["investigation"])
    assert all(r.note for r in refs)
    scope = InvestigationScope(start=w.now - timedelta(days=1), end=w.now, users=(w.suspect,))
    # By origin and size alone: refused, the copy signed each log only at its full size.
    bare = [CheckpointRef(origin=r.origin, size=r.size) for r in refs]
    with pytest.raises(MalformedInputError, match="has no signed checkpoint of size"):
        await copy.sealed_investigation(scope, as_of=bare)
    # With the notes the report printed: the same content, the same digest.
    investigation = await copy.sealed_investigation(scope, as_of=refs)
    assert digest(investigation) == printed["investigation"]["digest"]
    disclosures = await copy.sealed_disclosures(
        PatientRef(id=w.patient.id, issuer="asof"), now=w.now,
        as_of=refs_from_report(printed["disclosures"]),
    )  # fmt: skip
    assert digest(disclosures) == printed["disclosures"]["digest"]
    relays = await copy.sealed_relays(
        start=w.now - timedelta(days=1), end=w.now, now=w.now, facility=w.facility.id,
        as_of=refs_from_report(printed["relays"]),
    )  # fmt: skip
    assert digest(relays) == printed["relays"]["digest"]
    # And as of the copy's own latest checkpoints, the grown ledger: another report.
    assert digest(await copy.sealed_investigation(scope)) != printed["investigation"]["digest"]

    # A note the trusted key signed whose root is not the copy's leaves is refused; so is
    # one for more leaves than the copy holds.
    signer = load_signers(stack.signer_key_file)
    first = refs[0]
    for size, root, message in (
        (first.size, bytes(32), "is not the root of this ledger's leaves"),
        (first.size + 1000, bytes(32), "holds only"),
    ):
        note = sign_note(
            format_checkpoint(Checkpoint(origin=first.origin, size=size, root_hash=RootHash(root))),
            signer,
        )
        forged = CheckpointRef(origin=first.origin, size=size, note=note)
        with pytest.raises(MalformedInputError, match=message) as info:
            await copy.sealed_investigation(scope, as_of=[forged])
        assert info.value.code == "bad_checkpoint"
    # A note no trusted key signed, and a note of another size than the one named.
    skey, _ = generate_signer(LEDGER_NAME)
    untrusted = sign_note(first.note[: first.note.rfind("\n\n") + 1], [parse_signer_key(skey)])
    for ref, message in (
        (CheckpointRef(origin=first.origin, size=first.size, note=untrusted), "not signed by"),
        (CheckpointRef(origin=first.origin, size=first.size + 1, note=first.note), "its note is"),
    ):
        with pytest.raises(MalformedInputError, match=message):
            await copy.sealed_investigation(scope, as_of=[ref])


async def check_reproduced_by_cli(
    stack: Stack,
    w: World,
    copy: PostgresReports,
    database: str,
    printed: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    """``ledger serve`` against the copy, as an auditor would: the CLI re-runs a saved
    report as of its checkpoints' notes (``--as-of-report``) and prints the same digest;
    by origin and size alone the API refuses (the copy never signed those sizes)."""
    copy_owner = with_database(stack.owner_url, database)
    token = (
        await create_token(copy_owner, subject="auditor", role=Role.ADMIN, ttl=None, note="t")
    ).text
    saved = tmp_path / "disclosures.json"
    saved.write_text(json.dumps(printed["disclosures"]))
    async with PostgresReader(dsn=with_database(stack.reader_url, database)) as reader:
        app = create_app(reader=reader, tokens=reader, recorder=KeptReads(), report_source=copy)
        async with TestClient(TestServer(app)) as client:
            env = stack.env(
                LEDGER_API_URL=str(client.make_url("")).rstrip("/"), LEDGER_API_TOKEN=token
            )
            base = ("report", "disclosures", w.patient.id, "--issuer", "asof",
                    "--at", w.now.isoformat())  # fmt: skip
            again = await asyncio.to_thread(run_ledger, env, *base, "--as-of-report", str(saved))
            assert again.returncode == 0, again.stderr
            assert f"digest: {printed['disclosures']['digest']}" in again.stderr.splitlines()
            assert json.loads(again.stdout)["digest"] == printed["disclosures"]["digest"]
            bare = [
                x
                for c in printed["disclosures"]["as_of_checkpoints"]
                for x in ("--as-of", f"{c['origin']}:{c['size']}")
            ]
            refused = await asyncio.to_thread(run_ledger, env, *base, *bare)
            assert refused.returncode == 1
            assert "has no signed checkpoint of size" in refused.stdout + refused.stderr
            not_a_report = tmp_path / "nothing.json"
            not_a_report.write_text("{}")
            bad = await asyncio.to_thread(
                run_ledger, env, *base, "--as-of-report", str(not_a_report)
            )
            assert bad.returncode == 1
            assert "names no checkpoints" in bad.stdout + bad.stderr
            async with client.get(
                "/v1/reports/critical-results",
                params=[("as_of_note", "not base64!")],
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"]["code"] == "bad_checkpoint"
