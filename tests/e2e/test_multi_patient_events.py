"""Issue 14 item 1 against the real stack: a query that returned three patients, emitted as
one PhiAccessEvent v2 through the emitter, Kafka and the consumer, is in each of the three
histories marked "disclosed" (API and FHIR), and a query that matched nobody is in its
user's history. A read of the query's entry is then in the three histories too.
"""

from __future__ import annotations

import secrets

import aiohttp
import pytest

from producers.events import Actor, DisclosedPatient, EventAction, Facility, PhiAccessEvent
from tests.e2e.conftest import Pipeline, get_json, wait_for_events

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


async def _fhir(http: aiohttp.ClientSession, pipeline: Pipeline, patient: str) -> dict[str, object]:
    async with http.get(
        f"{pipeline.api_url}/fhir/AuditEvent", params={"patient": patient, "_count": "1000"}
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
            DisclosedPatient(id=p, issuer="hosp", studies=(f"{STUDY}.{i}",))
            for i, p in enumerate(patients)
        ),
    )
    nothing = _query(run, user, "PatientName=NOBODY*")
    async with pipeline.emitter(f"e2e-multi-{run}") as emitter:
        await emitter.emit(three)
        await emitter.emit(nothing)
        await emitter.flush()
    ids = [str(three.event_id), str(nothing.event_id)]
    await wait_for_events(http, pipeline, ids)

    for patient in patients:
        history = await _history(http, pipeline, f"patients/{patient}")
        assert history.get(ids[0]) == "disclosed", patient
        assert ids[1] not in history
        resources = await _fhir(http, pipeline, patient)
        resource = resources[ids[0]]
        assert isinstance(resource, dict)
        named = [e["what"]["identifier"]["value"] for e in resource["entity"] if "what" in e]
        assert named == patients  # one Patient entity per disclosed patient
    users = await _history(http, pipeline, f"users/{user}")
    assert users == {ids[0]: "named", ids[1]: "named"}  # the empty query too

    # A read of the query's entry discloses the three patients' data: in their histories.
    async with http.get(f"{pipeline.api_url}/v1/events/{ids[0]}") as resp:
        assert resp.status == 200, await resp.text()
        read = resp.headers["Ledger-Audit-Event"]
    await wait_for_events(http, pipeline, [read])
    for patient in patients:
        assert (await _history(http, pipeline, f"patients/{patient}")).get(read) == "disclosed"
