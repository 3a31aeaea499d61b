"""Issue 5 against the real stack: access control, histories, reports, FHIR, self-audit.

One seeded stream of events is emitted into the session's pipeline (real Kafka,
consumer, PostgreSQL and `ledger serve`); every assertion compares what the API
answers with what was emitted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from integrations.simulator import Simulator
from ledger.audit.fhir import audit_event
from ledger.audit.query import LedgerPosition
from producers.codec import Codec, to_record
from producers.events import (
    AuditEvent,
    CriticalResultRelay,
    EventAction,
    Facility,
    Patient,
    PhiAccessEvent,
    Recipient,
    schema_name,
)
from tests.e2e.conftest import E2E_SEED, LEDGER, Pipeline, free_port, wait_for_events
from tests.interop.fhir_validator import validate_resources
from tests.support import ROOT

pytestmark = pytest.mark.e2e


@dataclasses.dataclass
class World:
    stream: list[AuditEvent]
    facility: str
    patient: Patient  # has export disclosures (one includable, one excluded)


@pytest.fixture(scope="module")
async def world(pipeline: Pipeline) -> World:
    run = secrets.token_hex(3)
    facility = f"e2e-reports-{run}"
    sim = Simulator(seed=E2E_SEED + 500, patients=15)
    stream: list[AuditEvent] = [
        dataclasses.replace(e, facility=Facility(id=facility, name="Reports test site"))
        for e in sim.events(400, relay_every=20)
    ]
    patient = Patient(id=f"MRN-DISC-{run}", issuer="e2e", state="MA")
    base = next(e for e in stream if isinstance(e, PhiAccessEvent))
    exports = [
        dataclasses.replace(
            base,
            event_id=uuid.uuid4(),
            patient=patient,
            dicom_event_id="110106",
            action=EventAction.READ,
            purpose_of_use=purpose,
            recipient=Recipient(name=name, address="1 <Main> St, Boston MA", organization=None),
        )
        for purpose, name in (("LEGAL", "Dr <b>Counsel</b> & Co"), ("TREAT", "Referring clinic"))
    ]
    stream += exports
    async with pipeline.emitter(f"e2e-reports-{run}") as emitter:
        for event in stream:
            await emitter.emit(event)
        await emitter.flush()
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as http:
        await wait_for_events(http, pipeline, [str(e.event_id) for e in stream])
    return World(stream=stream, facility=facility, patient=patient)


@pytest.fixture
async def as_role(pipeline: Pipeline) -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    sessions = {
        role: aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(30), headers=pipeline.stack.auth(role)
        )
        for role in ("investigator", "auditor", "admin")
    }
    try:
        yield sessions
    finally:
        for s in sessions.values():
            await s.close()


def actor_of(e: AuditEvent) -> str:
    if isinstance(e, CriticalResultRelay):
        return e.sender.user_id
    return e.actor.user_id


async def all_pages(http: aiohttp.ClientSession, url: str, **params: str) -> list[dict]:  # type: ignore[type-arg]
    out: list[dict] = []  # type: ignore[type-arg]
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        async with http.get(url, params=query) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        out += body["accesses"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out


# --------------------------------------------------------------------------- access control


async def test_every_endpoint_needs_a_token_and_roles_are_least_privilege(
    pipeline: Pipeline, as_role: dict[str, aiohttp.ClientSession]
) -> None:
    api = pipeline.api_url
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{api}/v1/patients/MRN1/accesses") as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        bogus = {"Authorization": "Bearer plt_" + "A" * 43}
        async with anonymous.get(f"{api}/v1/logs", headers=bogus) as resp:
            assert resp.status == 401
        async with anonymous.get(f"{api}/v1/nothing-here") as resp:
            assert resp.status == 401  # the route map is no oracle
        async with anonymous.get(f"{api}/healthz") as resp:
            assert resp.status == 200
        async with anonymous.get(f"{api}/openapi.json") as resp:
            assert resp.status == 200
            assert "/v1/investigations" in (await resp.json())["paths"]
    expectations = [
        ("investigator", "GET", "/v1/quarantine", 403),
        ("investigator", "GET", "/v1/patients/MRN1/disclosures", 403),
        ("investigator", "GET", "/v1/users/u1/accesses", 200),
        ("auditor", "GET", "/v1/patients/MRN1/accesses", 403),
        ("auditor", "GET", "/v1/alerts", 200),
        ("auditor", "GET", "/v1/logs", 200),
        ("auditor", "POST", "/v1/investigations", 403),
        ("investigator", "POST", "/fhir/AuditEvent", 403),
        ("auditor", "POST", "/fhir/AuditEvent", 403),
    ]
    for role, method, path, status in expectations:
        async with as_role[role].request(method, f"{api}{path}", json={}) as resp:
            assert resp.status == status, (role, method, path, await resp.text())


# --------------------------------------------------------------------------- self-audit


async def test_a_query_is_recorded_as_audit_log_used_with_a_proof(
    pipeline: Pipeline,
    as_role: dict[str, aiohttp.ClientSession],
    world: World,
    tmp_path: Path,
) -> None:
    patient = world.patient
    url = f"{pipeline.api_url}/v1/patients/{patient.id}/accesses"
    async with as_role["investigator"].get(url, params={"issuer": "e2e"}) as resp:
        assert resp.status == 200
        read_id = resp.headers["Ledger-Audit-Event"]
    admin = as_role["admin"]
    await wait_for_events(admin, pipeline, [read_id])
    async with admin.get(f"{pipeline.api_url}/v1/events/{read_id}") as resp:
        detail = await resp.json()
    assert detail["schema"] == "philedger.audit.AuditLogUsed"
    event = detail["event"]
    assert event["actor"]["user_id"] == "test-investigator"
    assert event["actor"]["role"] == "investigator"
    assert event["query"]["path"] == f"/v1/patients/{patient.id}/accesses"
    assert event["query"]["parameters"] == {"issuer": "e2e"}
    assert event["query"]["status"] == 200
    assert event["patient"]["id"] == patient.id
    assert event["network_address"] == "127.0.0.1"
    # The read shows up in the patient's own history and in the investigator's.
    mine = await all_pages(admin, url, issuer="e2e", limit="1000")
    assert read_id in {a["event_id"] for a in mine}
    theirs = await all_pages(admin, f"{pipeline.api_url}/v1/users/test-investigator/accesses")
    assert read_id in {a["event_id"] for a in theirs}
    # ... and it is provable offline against the signed checkpoint.
    async with admin.get(f"{pipeline.api_url}/v1/events/{read_id}/proof") as resp:
        assert resp.status == 200
        proof = tmp_path / "read.tlog-proof"
        proof.write_bytes(await resp.read())
    verified = await asyncio.to_thread(
        subprocess.run,
        [LEDGER, "verify", "--proof", str(proof)],
        env=pipeline.env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr


# --------------------------------------------------------------------------- histories


async def test_user_and_study_histories_with_filters(
    pipeline: Pipeline, as_role: dict[str, aiohttp.ClientSession], world: World
) -> None:
    api, http = pipeline.api_url, as_role["investigator"]
    accesses = [e for e in world.stream if isinstance(e, PhiAccessEvent)]
    user = max(
        {actor_of(e) for e in accesses}, key=lambda u: sum(actor_of(e) == u for e in accesses)
    )
    got = await all_pages(
        http, f"{api}/v1/users/{user}/accesses", facility=world.facility, limit="7"
    )
    expected = {str(e.event_id) for e in world.stream if actor_of(e) == user}
    assert {a["event_id"] for a in got} == expected
    assert len(got) == len(expected)  # paging repeats nothing
    reads = await all_pages(
        http, f"{api}/v1/users/{user}/accesses", facility=world.facility, action="R"
    )
    assert {a["event_id"] for a in reads} == {
        str(e.event_id) for e in accesses if actor_of(e) == user and e.action is EventAction.READ
    }
    times = sorted(e.event_time for e in world.stream if actor_of(e) == user)
    middle = times[len(times) // 2]
    window = await all_pages(
        http,
        f"{api}/v1/users/{user}/accesses",
        facility=world.facility,
        since=times[0].isoformat(),
        until=middle.isoformat(),
    )
    assert {a["event_id"] for a in window} == {
        str(e.event_id)
        for e in world.stream
        if actor_of(e) == user and times[0] <= e.event_time < middle
    }
    study = next(e.study for e in accesses if e.study is not None)
    by_study = await all_pages(http, f"{api}/v1/studies/{study.uid}/accesses")
    assert {a["event_id"] for a in by_study} >= {
        str(e.event_id) for e in accesses if e.study is not None and e.study.uid == study.uid
    }
    assert all(a["study"]["uid"] == study.uid for a in by_study)


async def test_pages_stay_stable_while_appends_continue(
    pipeline: Pipeline, as_role: dict[str, aiohttp.ClientSession]
) -> None:
    api, http = pipeline.api_url, as_role["admin"]
    patient = Patient(id=f"MRN-STABLE-{secrets.token_hex(3)}", issuer="e2e", state="RI")
    sim = Simulator(seed=E2E_SEED + 600, patients=3)
    accesses = [e for e in sim.events(60, relay_every=0) if isinstance(e, PhiAccessEvent)]
    first, later = accesses[:30], accesses[30:]

    async def emit(events: list[PhiAccessEvent]) -> list[str]:
        moved = [dataclasses.replace(e, patient=patient, event_id=uuid.uuid4()) for e in events]
        async with pipeline.emitter(f"e2e-stable-{patient.id}") as emitter:
            for e in moved:
                await emitter.emit(e)
            await emitter.flush()
        ids = [str(e.event_id) for e in moved]
        await wait_for_events(http, pipeline, ids)
        return ids

    before = set(await emit(first))
    url = f"{api}/v1/patients/{patient.id}/accesses"
    params = {"issuer": "e2e", "limit": "7", "action": "R"}
    async with http.get(url, params={k: v for k, v in params.items() if k != "action"}) as resp:
        page = await resp.json()
    seen = [a["event_id"] for a in page["accesses"]]
    snapshot = page["as_of"]
    after = set(await emit(later))  # appended (and signed) while we page
    cursor = page["next_cursor"]
    while cursor:
        async with http.get(url, params={"issuer": "e2e", "limit": "7", "cursor": cursor}) as r:
            page = await r.json()
        assert page["as_of"] == snapshot
        seen += [a["event_id"] for a in page["accesses"]]
        cursor = page["next_cursor"]
    data = [i for i in seen if i in before or i in after]
    assert len(data) == len(set(data))
    assert set(data) == before  # nothing appended later leaks into the pinned listing
    fresh = await all_pages(http, url, issuer="e2e")
    assert {a["event_id"] for a in fresh} >= before | after


# --------------------------------------------------------------------------- reports


async def test_breach_investigation_names_patients_states_and_checkpoints(
    pipeline: Pipeline, as_role: dict[str, aiohttp.ClientSession], world: World
) -> None:
    user = actor_of(world.stream[0])
    mine = [e for e in world.stream if actor_of(e) == user]
    since = min(e.event_time for e in mine) - timedelta(seconds=1)
    until = max(e.event_time for e in mine) + timedelta(seconds=1)
    scope = {
        "users": [user],
        "facility": world.facility,
        "since": since.isoformat(),
        "until": until.isoformat(),
    }
    url = f"{pipeline.api_url}/v1/investigations"
    async with as_role["investigator"].post(url, json=scope) as resp:
        assert resp.status == 200, await resp.text()
        report = await resp.json()
    completed = {
        e.patient.id
        for e in mine
        if not isinstance(e, PhiAccessEvent) or e.outcome.value in ("SUCCESS", "MINOR_FAILURE")
    }
    assert {p["patient_id"] for p in report["patients"]} == completed
    assert report["notification"]["individuals"] == len(completed)
    assert report["checkpoints"], "the report names the checkpoints it was computed against"
    assert all(cp["note"].startswith(cp["origin"]) for cp in report["checkpoints"])
    timeline_ids = {t["event_id"] for t in report["timeline"]}
    assert timeline_ids == {str(e.event_id) for e in mine}
    async with as_role["investigator"].post(url, json=scope, params={"format": "csv"}) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/csv"
        text = await resp.text()
    lines = text.strip().splitlines()
    assert lines[0].startswith("patient_id")
    # The table, then one footer row per checkpoint and the digest (reports as of checkpoints).
    table = [line for line in lines if not line.startswith("#")]
    assert len(table) == len(completed) + 1
    assert lines[-1] == f"#digest,{resp.headers['Report-Digest']}" + "," * (lines[0].count(",") - 1)
    footer = [line for line in lines if line.startswith("#as_of_checkpoint,")]
    verdict = [line for line in lines if line.startswith(("#verdict,", "#state,"))]
    assert verdict[0].startswith("#verdict,")
    assert len(footer) + len(table) + len(verdict) + 1 == len(lines)
    assert footer
    bad_scopes = [
        {"since": since.isoformat(), "until": until.isoformat()},  # no selector
        {**scope, "since": "1900-01-01T00:00:00Z", "until": "9000-01-01T00:00:00Z"},
        {**scope, "users": "not-a-list"},
        {**scope, "drop": "table"},
    ]
    for bad in bad_scopes:
        async with as_role["investigator"].post(url, json=bad) as resp:
            assert resp.status == 400, bad
    async with as_role["investigator"].post(url, data=b"x" * (2 * 1024 * 1024)) as resp:
        assert resp.status in (400, 413)


async def test_accounting_of_disclosures_excludes_tpo_and_escapes_html(
    pipeline: Pipeline, as_role: dict[str, aiohttp.ClientSession], world: World
) -> None:
    url = f"{pipeline.api_url}/v1/patients/{world.patient.id}/disclosures"
    auditor = as_role["auditor"]
    async with auditor.get(url, params={"issuer": "e2e"}) as resp:
        assert resp.status == 200, await resp.text()
        accounting = await resp.json()
    entries = accounting["entries"]
    assert len(entries) == 1
    assert entries[0]["recipient"]["name"] == "Dr <b>Counsel</b> & Co"
    assert entries[0]["purpose"]
    async with auditor.get(url, params={"issuer": "e2e", "format": "html"}) as resp:
        assert resp.content_type == "text/html"
        page = await resp.text()
    assert "Dr &lt;b&gt;Counsel&lt;/b&gt; &amp; Co" in page
    assert "<b>Counsel" not in page
    assert "Referring clinic" not in page  # treatment is excluded by 164.528(a)(1)(i)
    async with auditor.get(url, params={"issuer": "e2e", "format": "csv"}) as resp:
        assert resp.content_type == "text/csv"
    async with auditor.get(url, params={"issuer": "e2e", "years": "7"}) as resp:
        assert resp.status == 400


async def test_critical_result_relay_report(
    pipeline: Pipeline, as_role: dict[str, aiohttp.ClientSession], world: World
) -> None:
    relays = [e for e in world.stream if isinstance(e, CriticalResultRelay)]
    since = min(r.identified_at for r in relays) - timedelta(seconds=1)
    until = max(r.identified_at for r in relays) + timedelta(seconds=1)
    async with as_role["auditor"].get(
        f"{pipeline.api_url}/v1/reports/critical-results",
        params={"since": since.isoformat(), "until": until.isoformat(), "facility": world.facility},
    ) as resp:
        assert resp.status == 200, await resp.text()
        report = await resp.json()
    assert report["relays"] == len(relays)
    per_category = {c["category"]: c["relays"] for c in report["categories"]}
    for category in {r.category.value for r in relays}:
        assert per_category[category] == sum(r.category.value == category for r in relays)
    no_read_back = {
        str(r.event_id) for r in relays if r.communicated_at is not None and not r.read_back
    }
    flagged = {x["event_id"] for x in report["exceptions"] if "no-read-back" in x["issues"]}
    assert flagged == no_read_back


# --------------------------------------------------------------------------- FHIR


async def test_fhir_search_read_and_ingest(
    pipeline: Pipeline, as_role: dict[str, aiohttp.ClientSession], world: World
) -> None:
    api, http = pipeline.api_url, as_role["investigator"]
    accesses = [e for e in world.stream if isinstance(e, PhiAccessEvent)]
    patient = accesses[0].patient
    expected = {str(e.event_id) for e in world.stream if e.patient == patient}
    found: set[str] = set()
    served: list[dict] = []  # type: ignore[type-arg]
    url: str | None = f"{api}/fhir/AuditEvent?patient={patient.id}&_count=5"
    while url:
        async with http.get(url) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/fhir+json"
            bundle = await resp.json(content_type=None)
        assert bundle["resourceType"] == "Bundle"
        assert bundle["type"] == "searchset"
        served.append(bundle)
        for entry in bundle.get("entry", []):
            resource = entry["resource"]
            if resource["type"]["code"] != "110101":  # reads of the ledger naming the patient
                found.add(resource["id"])
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    assert found >= expected
    one = next(iter(expected))
    async with http.get(f"{api}/fhir/AuditEvent/{one}") as resp:
        resource = await resp.json(content_type=None)
    assert resource["resourceType"] == "AuditEvent"
    assert resource["id"] == one
    async with http.get(f"{api}/fhir/AuditEvent?foo=bar") as resp:
        assert resp.status == 400
        served.append(await resp.json(content_type=None))
    assert served[-1]["resourceType"] == "OperationOutcome"
    # What the live API serves is valid FHIR R4 (HAPI's validator, offline, one JVM).
    reports = await asyncio.to_thread(validate_resources, [*served, resource])
    assert all(r.valid for r in reports), "\n".join(r.explain() for r in reports if not r.valid)

    # Ingestion: an AuditEvent posted by an admin reaches the ledger through Kafka.
    template = dataclasses.replace(accesses[1], event_id=uuid.uuid4()).stamped(
        producer_id="outside-pacs", producer_seq=1
    )
    json_safe = Codec().decode_valid(Codec().encode(template))[1]
    assert to_record(template)["event_id"] == json_safe["event_id"]
    posted = audit_event(
        schema_name(template),
        {k: _json_safe(v) for k, v in json_safe.items()},
        event_id=template.event_id,
        position=LedgerPosition(log_id=1, origin="elsewhere/0", leaf_index=0),
    )
    posted["extension"] = [x for x in posted["extension"] if "ledger-position" not in x["url"]]
    async with as_role["admin"].post(
        f"{api}/fhir/AuditEvent", json=posted, headers={"Content-Type": "application/fhir+json"}
    ) as resp:
        assert resp.status == 201, await resp.text()
    await wait_for_events(as_role["admin"], pipeline, [str(template.event_id)])
    async with http.get(f"{api}/fhir/AuditEvent/{template.event_id}") as resp:
        stored = await resp.json(content_type=None)
    assert stored["id"] == str(template.event_id)
    assert stored["type"]["code"] == template.dicom_event_id
    # The FHIR feed and the API's self-audit are producers of their own, each signing
    # with its own key (tests/e2e/conftest.py gives the API process both).
    async with as_role["admin"].get(f"{api}/v1/events/{template.event_id}") as resp:
        detail = await resp.json()
        read_id = resp.headers["Ledger-Audit-Event"]
    assert detail["event"]["producer_id"] == "ledger-fhir-e2e"
    await wait_for_events(as_role["admin"], pipeline, [read_id])
    async with as_role["admin"].get(f"{api}/v1/events/{read_id}") as resp:
        assert (await resp.json())["event"]["producer_id"] == "ledger-api-e2e"


def _json_safe(value: object) -> object:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[attr-defined]
    return value


# --------------------------------------------------------------------------- fuzzing, TLS


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(pipeline: Pipeline) -> None:
    run = subprocess.run(
        [
            str(Path(LEDGER).with_name("schemathesis")), "run", f"{pipeline.api_url}/openapi.json",
            "-H", f"Authorization: Bearer {pipeline.stack.tokens['admin']}",
            "--checks", "all",
            # Identifiers, cursors and windows have rules JSON Schema cannot state (a
            # cursor must be one we issued, since < until): valid-looking input may get 400.
            "--exclude-checks", "positive_data_acceptance",
            "--max-examples", "30", "--seed", "20261128", "--no-color",
        ],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def test_direct_tls(pipeline: Pipeline, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [LEDGER, "serve", "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key)],
        env=pipeline.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        async def probe() -> tuple[int, bool]:
            context = ssl.create_default_context(cafile=str(cert))
            deadline = time.monotonic() + 30
            async with aiohttp.ClientSession() as http:
                while True:
                    try:
                        async with http.get(
                            f"https://127.0.0.1:{port}/v1/logs",
                            ssl=context,
                            headers=pipeline.stack.auth("auditor"),
                        ) as resp:
                            status = resp.status
                        break
                    except aiohttp.ClientConnectorError:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.3)
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        plain = resp.status == 200
                except aiohttp.ClientError:
                    plain = False
            return status, plain

        status, plain_works = asyncio.run(probe())
        assert status == 200
        assert not plain_works, "the TLS port must not answer plain HTTP"
        cli = subprocess.run(
            [LEDGER, "alerts"],
            env={**pipeline.env, "LEDGER_API_URL": f"https://127.0.0.1:{port}",
                 "LEDGER_API_CA_FILE": str(cert)},
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr
    finally:
        server.terminate()
        server.wait(timeout=20)
