"""Issue 14 item 1 against the real stack: a query that returned three patients, emitted as
one PhiAccessEvent v2 through the emitter, Kafka and the consumer, is in each of the three
histories marked "disclosed" (API, FHIR and `ledger history`), and a query that matched
nobody is recorded with its criteria and no patient, and found by its user (API and FHIR
``agent``). A read of the query's entry is then in the three histories too. A breach
investigation of the user (API and `ledger investigate`) counts the patients returned and
the ones a truncated answer did not list.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import subprocess
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from producers.events import Actor, DisclosedPatient, EventAction, Facility, PhiAccessEvent
from tests.e2e.conftest import LEDGER, Pipeline, get_json, wait_for_events
from tests.support import ROOT

pytestmark = pytest.mark.e2e

STUDY = "1.2.826.0.1.3680043.8.498.14"


def _query(run: str, user: str, criteria: str, *patients: DisclosedPatient) -> PhiAccessEvent:
    return PhiAccessEvent(
        facility=Facility(id=f"e2e-multi-{run}"),
        actor=Actor(user_id=user, role="radiologist"),
        dicom_event_id="110112",
        action=EventAction.EXECUTE,
        patient=None,
        details={"query": criteria},
        disclosed=patients,
    )


async def _history(http: aiohttp.ClientSession, pipeline: Pipeline, path: str) -> dict[str, str]:
    """Event id -> attribution, for every entry of a patient's or user's history."""
    status, body = await get_json(http, f"{pipeline.api_url}/v1/{path}/accesses", limit="1000")
    assert status == 200, body
    return {e["event_id"]: e["attribution"] for e in body["accesses"]}


async def _history_holding(
    http: aiohttp.ClientSession, pipeline: Pipeline, path: str, event_id: str
) -> dict[str, str]:
    """``_history`` once it lists ``event_id``: a listing is pinned to the signed sizes
    the API caches for up to ``SNAPSHOT_TTL`` (0.25 s), so the first history asked right
    after the event's proof is served may be pinned to the checkpoint before it."""
    for _ in range(40):
        history = await _history(http, pipeline, path)
        if event_id in history:
            return history
        await asyncio.sleep(0.25)
    return history


async def _fhir(
    http: aiohttp.ClientSession, pipeline: Pipeline, patient: str, key: str = "patient"
) -> dict[str, object]:
    async with http.get(
        f"{pipeline.api_url}/fhir/AuditEvent", params={key: patient, "_count": "1000"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        bundle = await resp.json(content_type=None)
    return {e["resource"]["id"]: e["resource"] for e in bundle.get("entry", [])}


async def test_a_query_that_returned_three_patients_is_in_all_three_histories(
    pipeline: Pipeline, http: aiohttp.ClientSession
) -> None:
    run = secrets.token_hex(3)
    user = f"dr.snoop.{run}"
    patients = [f"MRN-MULTI-{x}-{run}" for x in "ABC"]
    three = _query(
        run,
        user,
        "PatientName=SMITH*",
        *(
            DisclosedPatient(
                id=p, issuer="hosp", state="MA" if i == 0 else None, studies=(f"{STUDY}.{i}",)
            )
            for i, p in enumerate(patients)
        ),
    )
    three = dataclasses.replace(three, disclosed_truncated=True, disclosed_total=5)
    nothing = _query(run, user, "PatientName=NOBODY*")
    async with pipeline.emitter(f"e2e-multi-{run}") as emitter:
        await emitter.emit(three)
        await emitter.emit(nothing)
        await emitter.flush()
    ids = [str(three.event_id), str(nothing.event_id)]
    await wait_for_events(http, pipeline, ids)

    for patient in patients:
        history = await _history_holding(http, pipeline, f"patients/{patient}", ids[0])
        assert history.get(ids[0]) == "disclosed", patient
        assert ids[1] not in history
        resources = await _fhir(http, pipeline, patient)
        resource = resources[ids[0]]
        assert isinstance(resource, dict)
        named = [e["what"]["identifier"]["value"] for e in resource["entity"] if "what" in e]
        assert named == patients  # one Patient entity per disclosed patient
    users = await _history(http, pipeline, f"users/{user}")
    assert users == {ids[0]: "named", ids[1]: "named"}  # the empty query too
    # The empty query: its criteria, no patient; found by its user through FHIR too.
    status, body = await get_json(http, f"{pipeline.api_url}/v1/events/{ids[1]}")
    assert status == 200
    assert body["event"]["patient"] is None
    assert body["event"]["disclosed"] == []
    assert body["event"]["details"] == {"query": "PatientName=NOBODY*"}
    by_agent = await _fhir(http, pipeline, user, key="agent")
    assert set(by_agent) == set(ids)
    empty = by_agent[ids[1]]
    assert isinstance(empty, dict)
    assert not [e for e in empty.get("entity", []) if e.get("role", {}).get("code") == "1"]

    # `ledger history` shows how the patient is in each entry.
    listing = await _ledger(pipeline, "history", patients[1], "--issuer", "hosp")
    assert "disclosed" in listing
    assert user in listing

    # A breach investigation of the user counts every patient the query returned, with
    # the state its answer carried, and the two it returned unlisted.
    now = datetime.now(UTC)
    since, until = (now - timedelta(hours=1)).isoformat(), (now + timedelta(minutes=5)).isoformat()
    async with http.post(
        f"{pipeline.api_url}/v1/investigations",
        json={"users": [user], "since": since, "until": until},
    ) as resp:
        assert resp.status == 200, await resp.text()
        report = await resp.json()
    assert sorted(p["patient_id"] for p in report["patients"]) == patients
    assert {p["patient_id"]: p["state"] for p in report["patients"]}[patients[0]] == "MA"
    notification = report["notification"]
    assert (notification["individuals"], notification["unknown_state"]) == (3, 2)
    assert (notification["unlisted_patients"], notification["individuals_at_most"]) == (2, 5)
    assert [(t["event_id"], t["listed"], t["total"]) for t in report["truncated_answers"]] == [
        (ids[0], 3, 5)
    ]
    args = ["investigate", "--user", user, "--since", since, "--until", until]
    cli = json.loads(await _ledger(pipeline, *args, "--json"))
    assert cli["notification"]["individuals_at_most"] == 5
    table = await _ledger(pipeline, *args)
    assert "NOT LISTED: 2 more patient(s)" in table
    assert all(p in table for p in patients)

    # A read of the query's entry discloses the three patients' data: in their histories.
    async with http.get(f"{pipeline.api_url}/v1/events/{ids[0]}") as resp:
        assert resp.status == 200, await resp.text()
        read = resp.headers["Ledger-Audit-Event"]
    await wait_for_events(http, pipeline, [read])
    for patient in patients:
        assert (await _history(http, pipeline, f"patients/{patient}")).get(read) == "disclosed"


async def _ledger(pipeline: Pipeline, *args: str) -> str:
    """The ``ledger`` CLI's output, reading through the pipeline's API."""
    proc = await asyncio.to_thread(
        subprocess.run,
        [LEDGER, *args],
        env=pipeline.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
