"""Compliance alerts through the running API: late relays emitted through Kafka, the
consumer appending them, ``ledger rules run --once`` raising the alerts, then ``ledger
serve`` listing, filtering and paging them, showing one with provable evidence, and
triaging them as the token's subject; every read, refused or not, and every transition
is an Audit Log Used entry, attributed to the patient the alert names.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from ledger.audit.auth import Role
from ledgerctl.tokens import create_token
from producers.events import (
    AcrCategory,
    Actor,
    CriticalResultRelay,
    Facility,
    Patient,
    RelayMethod,
    RelayRecipient,
    Study,
)
from tests.e2e.conftest import LEDGER, Pipeline, wait_for_events
from tests.support import ROOT

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
ALERTS = "/v1/compliance/alerts"


@dataclass(frozen=True)
class World:
    tag: str
    #: facility, user, patient of each late relay, in emission order.
    relays: tuple[tuple[str, str, str], ...]
    #: (facility, user, patient) -> alert id
    alerts: dict[tuple[str, str, str], int]
    officer: dict[str, str]
    officer_subject: str
    auditor: dict[str, str]


def late_relay(facility: str, user: str, patient: str) -> CriticalResultRelay:
    """A CAT1 finding communicated two hours after it was identified (deadline 30 min)."""
    return CriticalResultRelay(
        facility=Facility(id=facility, name="Alerts API test"),
        category=AcrCategory.CAT1,
        patient=Patient(id=patient, issuer="alerts-e2e", state="MA"),
        study=Study(uid=f"2.25.{secrets.randbelow(10**12)}", accession="A1", modality="CT"),
        identified_at=T0,
        communicated_at=T0 + timedelta(hours=2),
        acknowledged_at=T0 + timedelta(hours=2, minutes=1),
        sender=Actor(user_id=user, role="radiologist"),
        recipient=RelayRecipient(name="Dr. Okafor", role="ed-attending"),
        method=RelayMethod.PHONE,
        read_back=True,
        attempts=(),
        finding="tension pneumothorax",
        event_time=T0 + timedelta(hours=2, minutes=5),
    )


async def _token(pipeline: Pipeline, subject: str, role: Role) -> dict[str, str]:
    issued = await create_token(
        pipeline.stack.owner_url, subject=subject, role=role, ttl=None, note="alerts api"
    )
    return {"Authorization": f"Bearer {issued.text}"}


@pytest.fixture(scope="module")
async def world(pipeline: Pipeline) -> World:
    tag = secrets.token_hex(3)
    a, b = f"fac-{tag}-a", f"fac-{tag}-b"
    u1, u2 = f"rad-{tag}-1", f"rad-{tag}-2"
    relays = ((a, u1, f"p-{tag}-1"), (a, u2, f"p-{tag}-2"), (b, u1, f"p-{tag}-3"),
              (a, u1, f"p-{tag}-4"))  # fmt: skip
    events = [late_relay(*r) for r in relays]
    async with pipeline.emitter("e2e-alerts-api") as emitter:
        for event in events:
            await emitter.emit(event)
        await emitter.flush()
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as admin:
        await wait_for_events(admin, pipeline, [str(e.event_id) for e in events])
    ran = await asyncio.to_thread(
        subprocess.run, [LEDGER, "rules", "run", "--once"], env=pipeline.env, cwd=ROOT,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    conn = await asyncpg.connect(pipeline.stack.owner_url)
    try:
        rows = await conn.fetch(
            "SELECT alert_id, facility_id, user_id, patient_id FROM alerts "
            "WHERE facility_id = ANY($1::text[]) AND rule_id = 'relay.late'",
            [a, b],
        )
    finally:
        await conn.close()
    found = {(r["facility_id"], r["user_id"], r["patient_id"]): int(r["alert_id"]) for r in rows}
    assert set(found) == set(relays)  # one alert per late relay
    subject = f"officer-{tag}"
    return World(
        tag=tag,
        relays=relays,
        alerts=found,
        officer=await _token(pipeline, subject, Role.INVESTIGATOR),
        officer_subject=subject,
        auditor=await _token(pipeline, f"auditor-{tag}", Role.AUDITOR),
    )


async def _get(
    http: aiohttp.ClientSession, url: str, **params: str
) -> tuple[int, dict, str | None]:  # type: ignore[type-arg]
    async with http.get(url, params=params) as resp:
        return resp.status, await resp.json(), resp.headers.get("Ledger-Audit-Event")


async def _post(
    http: aiohttp.ClientSession, url: str, body: object
) -> tuple[int, dict, str | None]:  # type: ignore[type-arg]
    async with http.post(url, json=body) as resp:
        return resp.status, await resp.json(), resp.headers.get("Ledger-Audit-Event")


async def _recorded(pipeline: Pipeline, read_id: str) -> dict:  # type: ignore[type-arg]
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as admin:
        await wait_for_events(admin, pipeline, [read_id])
        status, detail, _ = await _get(admin, f"{pipeline.api_url}/v1/events/{read_id}")
    assert status == 200
    assert detail["schema"] == "philedger.audit.AuditLogUsed"
    event: dict = detail["event"]  # type: ignore[type-arg]
    return event


async def _history(pipeline: Pipeline, patient: str) -> dict[str, str]:
    """Event id -> attribution in the patient's access history."""
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as admin:
        status, body, _ = await _get(
            admin, f"{pipeline.api_url}/v1/patients/{patient}/accesses", limit="1000"
        )
    assert status == 200, body
    return {e["event_id"]: e["attribution"] for e in body["accesses"]}


async def test_list_filters_and_pages_newest_first_and_each_read_is_recorded(
    pipeline: Pipeline, world: World
) -> None:
    api = pipeline.api_url + ALERTS
    a = world.relays[0][0]
    async with aiohttp.ClientSession(headers=world.officer) as http:
        status, body, read_id = await _get(http, api, facility=a)
        assert status == 200, body
        ids = [x["alert_id"] for x in body["alerts"]]
        expected = sorted((v for k, v in world.alerts.items() if k[0] == a), reverse=True)
        assert ids == expected  # newest first
        assert body["next_cursor"] is None
        first = body["alerts"][0]
        assert first["rule"] == {"id": "relay.late", "version": 1}
        assert first["state"] == "open"
        assert first["trigger"]["leaf_index"] >= 0
        # Filters combine: facility and user; rule; a window that holds nothing.
        u1 = world.relays[0][1]
        status, body, _ = await _get(http, api, facility=a, user=u1)
        assert {x["alert_id"] for x in body["alerts"]} == {
            v for k, v in world.alerts.items() if k[:2] == (a, u1)
        }
        assert len(body["alerts"]) == 2
        status, body, _ = await _get(http, api, facility=a, rule="no.such-rule")
        assert (status, body["alerts"]) == (200, [])
        status, body, _ = await _get(http, api, facility=a, since="2999-01-01T00:00:00Z")
        assert (status, body["alerts"]) == (200, [])
        status, body, _ = await _get(http, api, facility=a, until="2000-01-01T00:00:00Z")
        assert (status, body["alerts"]) == (200, [])
        status, body, _ = await _get(http, api, state="sleeping")
        assert status == 400
        # Paging: two, then the last one; the cursor is bound to its filters.
        status, page1, _ = await _get(http, api, facility=a, limit="2")
        assert [x["alert_id"] for x in page1["alerts"]] == expected[:2]
        cursor = page1["next_cursor"]
        assert cursor is not None
        status, page2, _ = await _get(http, api, facility=a, limit="2", cursor=cursor)
        assert status == 200
        assert [x["alert_id"] for x in page2["alerts"]] == expected[2:]
        assert page2["next_cursor"] is None
        status, moved, _ = await _get(http, api, facility=world.relays[2][0], cursor=cursor)
        assert status == 400
        assert moved["error"]["code"] == "invalid_cursor"
    event = await _recorded(pipeline, str(read_id))
    assert event["actor"]["user_id"] == world.officer_subject
    assert event["query"]["status"] == 200
    assert event["query"]["parameters"]["facility"] == a
    assert event["query"]["results"] == 3
    # The listing disclosed each alert's trigger: it is in those patients' histories.
    for facility, _, patient in world.relays:
        if facility == a:
            assert (await _history(pipeline, patient)).get(str(read_id)) == "disclosed"


async def test_show_gives_the_evidence_with_its_proofs_and_the_transitions(
    pipeline: Pipeline, world: World
) -> None:
    key = world.relays[1]
    alert_id = world.alerts[key]
    async with aiohttp.ClientSession(headers=world.officer) as http:
        status, body, read_id = await _get(http, f"{pipeline.api_url}{ALERTS}/{alert_id}")
        assert status == 200, body
        assert body["alert"]["alert_id"] == alert_id
        assert body["alert"]["patient"] == {"id": key[2], "issuer": "alerts-e2e"}
        assert body["alert"]["user"] == key[1]
        (trigger,) = [e for e in body["evidence"] if e["role"] == "trigger"]
        assert trigger["leaf_index"] == body["alert"]["trigger"]["leaf_index"]
        assert [(t["seq"], t["state"], t["by"]) for t in body["transitions"]] == [
            (1, "open", "rules-evaluator")
        ]
        # Each evidence URL is a working inclusion proof of that leaf.
        proof_url = urlsplit(trigger["inclusion_proof"])
        status, proof, _ = await _get(http, f"{pipeline.api_url}{proof_url.path}?{proof_url.query}")
        assert status == 200, proof
        assert (proof["log_id"], proof["index"]) == (trigger["log_id"], trigger["leaf_index"])
        status, missing, missing_id = await _get(http, f"{pipeline.api_url}{ALERTS}/999999999999")
        assert (status, missing["error"]["code"]) == (404, "not_found")
    event = await _recorded(pipeline, str(read_id))
    assert (event["actor"]["user_id"], event["query"]["status"]) == (world.officer_subject, 200)
    assert (await _history(pipeline, key[2])).get(str(read_id)) == "disclosed"
    assert (await _recorded(pipeline, str(missing_id)))["query"]["status"] == 404


async def test_triage_acknowledges_closes_and_refuses_what_it_must(
    pipeline: Pipeline, world: World
) -> None:
    key = world.relays[2]
    alert_id = world.alerts[key]
    url = f"{pipeline.api_url}{ALERTS}/{alert_id}/transitions"
    async with aiohttp.ClientSession(headers=world.officer) as http:
        status, ack, ack_id = await _post(http, url, {"state": "acknowledged", "note": "on it"})
        assert status == 200, ack
        assert ack["transition"]["state"] == "acknowledged"
        assert ack["transition"]["by"] == world.officer_subject  # the token, not the body
        status, again, again_id = await _post(http, url, {"state": "acknowledged", "note": "x"})
        assert (status, again["error"]["code"]) == (409, "conflict")
        status, bad, _ = await _post(http, url, {"state": "closed", "note": "no disposition"})
        assert status == 400, bad
        status, bad, _ = await _post(http, url, {"state": "acknowledged", "note": "x", "by": "x"})
        assert status == 400, bad
        status, closed, _ = await _post(
            http, url,
            {"state": "closed", "disposition": "policy_violation", "note": "relay audit"},
        )  # fmt: skip
        assert status == 200, closed
        assert closed["transition"]["disposition"] == "policy_violation"
        status, _, _ = await _post(http, url, {"state": "acknowledged", "note": "late"})
        assert status == 409
        status, body, _ = await _get(
            http, pipeline.api_url + ALERTS, facility=key[0], state="closed"
        )
        assert [(x["alert_id"], x["disposition"]) for x in body["alerts"]] == [
            (alert_id, "policy_violation")
        ]
        status, body, _ = await _get(http, pipeline.api_url + ALERTS, facility=key[0], state="open")
        assert body["alerts"] == []
        status, _, _ = await _post(
            http, f"{pipeline.api_url}{ALERTS}/999999999999/transitions",
            {"state": "acknowledged", "note": "x"},
        )  # fmt: skip
        assert status == 404
        status, shown, _ = await _get(http, f"{pipeline.api_url}{ALERTS}/{alert_id}")
        assert [(t["state"], t["by"]) for t in shown["transitions"]] == [
            ("open", "rules-evaluator"),
            ("acknowledged", world.officer_subject),
            ("closed", world.officer_subject),
        ]
    async with aiohttp.ClientSession(headers=world.auditor) as http:
        status, refused, refused_id = await _post(http, url, {"state": "acknowledged", "note": "x"})
        assert (status, set(refused)) == (403, {"error"})
        status, listed, listed_id = await _get(http, pipeline.api_url + ALERTS)
        assert (status, set(listed)) == (403, {"error"})
    async with aiohttp.ClientSession() as http:
        status, anon, anon_id = await _post(http, url, {"state": "acknowledged", "note": "x"})
        assert (status, set(anon)) == (401, {"error"})
    recorded = await _recorded(pipeline, str(ack_id))
    assert (recorded["actor"]["user_id"], recorded["query"]["status"]) == (
        world.officer_subject, 200,
    )  # fmt: skip
    assert recorded["query"]["method"] == "POST"
    assert recorded["query"]["parameters"]["state"] == "acknowledged"
    assert (await _recorded(pipeline, str(again_id)))["query"]["status"] == 409
    for read_id, status in ((refused_id, 403), (listed_id, 403)):
        event = await _recorded(pipeline, str(read_id))
        assert (event["actor"]["role"], event["query"]["status"]) == ("auditor", status)
    event = await _recorded(pipeline, str(anon_id))
    assert (event["actor"]["user_id"], event["query"]["status"]) == ("(anonymous)", 401)
    assert (await _history(pipeline, key[2])).get(str(ack_id)) == "disclosed"
