"""Issue 14, item 5: a FHIR server that FHIR clients accept, against the real stack.

HAPI FHIR's generic client (``tests/interop/fhirclient``) reads ``/fhir/metadata`` and
searches with every parameter the CapabilityStatement lists, pages, reads and posts a batch;
HAPI's R4 validator then checks every answer it got. The other tests walk what a client can
get wrong: refused formats and parameters, ``_summary`` and ``_elements``, batch limits, and
that each batch entry is recorded as its own read, in the named patient's history. Real
Kafka, consumer, PostgreSQL and ``ledger serve``.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from ledger.audit.fhir import RESULT_PARAMETERS, SEARCH_PARAMETERS
from ledger.http.fhir import ENTRY_RECORDS_HEADER
from producers.events import (
    Actor,
    EventAction,
    EventOutcome,
    Facility,
    Patient,
    PhiAccessEvent,
    Study,
)
from tests.e2e.conftest import Pipeline, wait_for_events
from tests.interop.fhir_client import run_fhir_client
from tests.interop.fhir_validator import validate_resources

pytestmark = pytest.mark.e2e

FHIR_JSON = "application/fhir+json"
AUDIT_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"


@dataclass(frozen=True)
class World:
    run: str
    patient: str
    user: str
    user_name: str
    study: str
    facility: str
    producer: str
    events: tuple[PhiAccessEvent, ...]


@pytest.fixture(scope="module")
async def world(pipeline: Pipeline) -> World:
    run = secrets.token_hex(3)
    patient = f"MRN-FHIRC-{run}"
    user = f"dr.probe.{run}"
    name = f"Dr Probe {run}"
    study = f"1.2.826.0.1.3680043.14.{int(run, 16)}"
    facility = f"probe-site-{run}"
    producer = f"e2e-fhirc-{run}"
    now = datetime.now(UTC)

    def access(minutes: int, **fields: Any) -> PhiAccessEvent:
        base: dict[str, Any] = {
            "facility": Facility(id=facility),
            "actor": Actor(user_id=user, role="radiologist", name=name),
            "dicom_event_id": "110103",
            "action": EventAction.READ,
            "patient": Patient(id=patient),
            "study": Study(uid=study, accession=f"ACC{run}", modality="CT"),
            "network_address": "10.14.2.3",
            "purpose_of_use": "TREAT",
            "event_time": now - timedelta(minutes=minutes),
        }
        return PhiAccessEvent(**(base | fields))

    events = (
        access(30),
        access(20, dicom_event_id="110113", event_type_code="110127", action=EventAction.EXECUTE),
        access(10, outcome=EventOutcome.MINOR_FAILURE, study=None),
    )
    async with pipeline.emitter(producer) as emitter:
        for event in events:
            await emitter.emit(event)
        await emitter.flush()
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as http:
        await wait_for_events(http, pipeline, [str(e.event_id) for e in events])
    return World(run, patient, user, name, study, facility, producer, events)


def _values(w: World) -> dict[str, str]:
    """A value for every parameter the statement may list; each matches one of the world's
    events (the narrowing ones together with patient=)."""
    return {
        "patient": w.patient,
        "agent": w.user,
        "entity": w.study,
        "date": "2020-01-01",
        "type": "http://dicom.nema.org/resources/ontology/DCM|110103",
        "action": "E",
        "outcome": "4",
        "subtype": "110127",
        "site": w.facility,
        "source": w.producer,
        "address": "10.14.",
        "entity-type": f"{AUDIT_ENTITY_TYPE}|2",
        "entity-role": "3",
        "agent-name": w.user_name.lower()[:8],
        "_count": "2",
        "_summary": "true",
        "_elements": "type,outcome",
        "_format": "json",
    }


def _listed() -> set[str]:
    return {p.name for p in (*SEARCH_PARAMETERS, *RESULT_PARAMETERS)}


async def test_hapis_client_reads_the_statement_and_searches_with_every_parameter(
    pipeline: Pipeline, world: World
) -> None:
    token = pipeline.stack.auth()["Authorization"].removeprefix("Bearer ")
    status, report, stderr = run_fhir_client(
        base=f"{pipeline.api_url}/fhir",
        token=token,
        event=str(world.events[0].event_id),
        values=_values(world),
    )
    assert status == 0, (report.get("error"), stderr)
    assert report["fhirVersion"] == "4.0.1"
    searched = {s["name"]: s for s in report["searched"]}
    # The client searched with exactly what the statement lists (plus the chain).
    assert set(searched) == _listed() | {"patient.identifier"}
    for name, outcome in searched.items():
        assert outcome["entries"] >= 1, (name, outcome)
    assert searched["_count"]["entries"] == 2
    assert searched["subtype"]["ids"] == [str(world.events[1].event_id)]
    assert searched["outcome"]["ids"] == [str(world.events[2].event_id)]
    # The patient's history holds the world's events and the reads that named the patient.
    assert searched["patient.identifier"]["entries"] >= 3
    exchanges = report["exchanges"]
    assert all("_format=json" in x["url"] or x["method"] == "POST" for x in exchanges)
    assert all(x["status"] == 200 for x in exchanges), [
        (x["url"], x["status"], x["body"][:300]) for x in exchanges if x["status"] != 200
    ]
    # HAPI's validator on every answer the client got, as the server sent it.
    bodies = [json.loads(x["body"]) for x in exchanges]
    reports = validate_resources(bodies)
    invalid = [r.explain() for r in reports if not r.valid]
    assert not invalid, "\n".join(invalid)


async def test_metadata_is_public_unrecorded_and_lists_the_parsers_table(
    pipeline: Pipeline,
) -> None:
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{pipeline.api_url}/fhir/metadata") as resp:
            assert resp.status == 200
            assert resp.content_type == FHIR_JSON
            assert "Ledger-Audit-Event" not in resp.headers
            statement = await resp.json(content_type=None)
        async with anonymous.get(f"{pipeline.api_url}/fhir/metadata?_format=xml") as resp:
            assert resp.status == 406
            refused = await resp.json(content_type=None)
        async with anonymous.get(f"{pipeline.api_url}/fhir/metadata?mode=full") as resp:
            assert resp.status == 400  # an undeclared parameter, as everywhere
        garbage = {"Authorization": "Bearer not-a-token"}  # a public route ignores tokens
        async with anonymous.get(f"{pipeline.api_url}/fhir/metadata", headers=garbage) as resp:
            assert resp.status == 200
            assert "Ledger-Audit-Event" not in resp.headers
    assert refused["resourceType"] == "OperationOutcome"
    assert statement["implementation"]["url"] == f"{pipeline.api_url}/fhir"
    (resource,) = statement["rest"][0]["resource"]
    assert {p["name"] for p in resource["searchParam"]} == _listed()
    assert {i["code"] for i in resource["interaction"]} == {"read", "search-type", "create"}
    assert statement["rest"][0]["interaction"] == [{"code": "batch"}]
    assert "SMART on FHIR" in statement["rest"][0]["security"]["description"]
    assert "service" not in statement["rest"][0]["security"]


async def _get(
    http: aiohttp.ClientSession, url: str, **params: str
) -> tuple[int, dict[str, Any], str | None]:
    async with http.get(url, params=params) as resp:
        return (
            resp.status,
            await resp.json(content_type=None),
            resp.headers.get("Ledger-Audit-Event"),
        )


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"_format": "xml"}, 406, "JSON only"),
        ({"_format": "application/fhir+xml"}, 406, "JSON only"),
        ({"_format": "yaml"}, 400, "_format"),
        ({"_summary": "maybe"}, 400, "_summary"),
        ({"_summary": "true", "_elements": "type"}, 400, "_elements"),
        ({"_elements": "agent.who"}, 400, "not an AuditEvent element"),
        ({"outcome": "5"}, 400, "0, 4, 8 or 12"),
        ({"outcome": "http://example.org|0"}, 400, "0, 4, 8 or 12"),
        ({"subtype": "|110127"}, 400, "no system"),
        ({"site": "urn:x|site"}, 400, "without system"),
        ({"source": "Location/x"}, 400, "producer id"),
        ({"patient.identifier": "urn:oid:1.2|MRN"}, 400, "carry no system"),
        ({"entity-role": "a,,b"}, 400, "empty alternative"),
        ({"address:exact": "10.0.0.1"}, 400, "unknown"),
    ],
)
async def test_bad_result_and_narrowing_parameters_are_refused_and_recorded(
    pipeline: Pipeline,
    world: World,
    http: aiohttp.ClientSession,
    params: dict[str, str],
    status: int,
    needle: str,
) -> None:
    url = f"{pipeline.api_url}/fhir/AuditEvent"
    got, body, read_id = await _get(http, url, patient=world.patient, **params)
    assert got == status, body
    assert body["resourceType"] == "OperationOutcome"
    assert needle in json.dumps(body)
    assert read_id is not None  # refused, and recorded like any other answer


async def test_narrowing_selects_exactly_the_matching_events(
    pipeline: Pipeline, world: World, http: aiohttp.ClientSession
) -> None:
    url = f"{pipeline.api_url}/fhir/AuditEvent"
    ids = [str(e.event_id) for e in world.events]

    async def found(**params: str) -> list[str]:
        """The world's events among the matches (a patient's history also holds the reads
        that named the patient, these searches included)."""
        status, bundle, _ = await _get(http, url, patient=world.patient, **params)
        assert status == 200, bundle
        return [e["resource"]["id"] for e in bundle.get("entry", []) if e["resource"]["id"] in ids]

    assert await found(outcome="0") == [ids[1], ids[0]]
    assert await found(outcome="http://hl7.org/fhir/audit-event-outcome|4,8") == [ids[2]]
    assert await found(site=world.facility) == ids[::-1]
    assert await found(site="elsewhere") == []
    assert await found(source=f"Device/{world.producer}") == ids[::-1]
    assert await found(address="10.14.2") == ids[::-1]
    assert await found(address="10.99") == []
    assert await found(**{"agent-name": world.user_name.upper()}) == ids[::-1]
    assert await found(**{"agent-name": "Nobody"}) == []
    assert await found(subtype="http://dicom.nema.org/resources/ontology/DCM|110127") == [ids[1]]
    assert await found(**{"entity-type": "2"}) == [ids[1], ids[0]]  # the study entity
    assert await found(**{"entity-role": "1"}) == ids[::-1]  # the patient
    assert await found(**{"entity-role": "24"}) == []  # no query entity
    assert await found(**{"patient.identifier": f"|{world.patient}"}) == ids[::-1]
    assert await found(**{"patient.identifier": "someone-else"}) == []


async def test_a_page_matched_on_resources_pages_on(
    pipeline: Pipeline, world: World, http: aiohttp.ClientSession
) -> None:
    """entity-role is matched on the built resources: paging still walks every match once."""
    url = f"{pipeline.api_url}/fhir/AuditEvent"
    status, bundle, _ = await _get(
        http, url, patient=world.patient, **{"entity-role": "1", "_count": "1"}
    )
    seen = []
    while True:
        assert status == 200, bundle
        seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not nxt:
            break
        async with http.get(nxt[0]) as resp:
            status, bundle = resp.status, await resp.json(content_type=None)
    assert len(seen) == len(set(seen))
    ids = [str(e.event_id) for e in reversed(world.events)]
    assert [i for i in seen if i in ids] == ids


async def test_summary_and_elements_shape_the_answer(
    pipeline: Pipeline, world: World, http: aiohttp.ClientSession
) -> None:
    url = f"{pipeline.api_url}/fhir/AuditEvent"
    status, counted, _ = await _get(
        http, url, patient=world.patient, site=world.facility, _summary="count"
    )
    assert status == 200
    assert counted["total"] == 3
    assert "entry" not in counted
    status, counted, _ = await _get(
        http, url, patient=world.patient, _summary="count", subtype="110127"
    )
    assert counted["total"] == 1
    shaped: list[dict[str, Any]] = []
    for params in ({"_summary": "true"}, {"_summary": "text"}, {"_elements": "outcome"}):
        status, bundle, _ = await _get(http, url, patient=world.patient, **params)
        assert status == 200, bundle
        resource = bundle["entry"][0]["resource"]
        assert resource["meta"]["tag"][0]["code"] == "SUBSETTED"
        assert {"type", "recorded", "agent", "source"} <= set(resource)
        assert "entity" not in resource
        assert resource["extension"][0]["url"].endswith("ledger-position")
        shaped.append(bundle)
    assert "outcome" in shaped[0]["entry"][0]["resource"]
    assert "outcome" not in shaped[1]["entry"][0]["resource"]
    assert "outcome" in shaped[2]["entry"][0]["resource"]
    status, full, _ = await _get(http, url, patient=world.patient, _summary="data")
    assert "meta" not in full["entry"][0]["resource"]  # nothing left out: no text anyway
    event = str(world.events[0].event_id)
    status, read, _ = await _get(http, f"{url}/{event}", _elements="period")
    assert status == 200
    assert read["meta"]["tag"][0]["code"] == "SUBSETTED"
    status, _, _ = await _get(http, f"{url}/{event}", _summary="count")
    assert status == 400
    reports = validate_resources([counted, *shaped, full, read])
    invalid = [r.explain() for r in reports if not r.valid]
    assert not invalid, "\n".join(invalid)


async def _recorded(http: aiohttp.ClientSession, api: str, read_id: str) -> dict[str, Any]:
    async with http.get(f"{api}/v1/events/{read_id}") as resp:
        assert resp.status == 200, read_id
        detail: dict[str, Any] = await resp.json()
    return detail


async def test_a_batch_answers_and_records_each_entry_as_its_own_read(
    pipeline: Pipeline, world: World, http: aiohttp.ClientSession
) -> None:
    api = pipeline.api_url
    event = str(world.events[0].event_id)
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "request": {
                    "method": "GET",
                    "url": f"AuditEvent?patient={world.patient}&site={world.facility}",
                }
            },
            {"request": {"method": "GET", "url": f"{api}/fhir/AuditEvent/{event}"}},
            {"request": {"method": "GET", "url": "/metadata"}},
            {"request": {"method": "GET", "url": f"AuditEvent/{uuid.uuid4()}"}},
            {"request": {"method": "GET", "url": "AuditEvent?patient=x&bogus=1"}},
            {"request": {"method": "DELETE", "url": f"AuditEvent/{event}"}},
            {"request": {"method": "GET", "url": "https://elsewhere.example/fhir/metadata"}},
            {"request": {"method": "GET", "url": "Patient/1"}},
        ],
    }
    async with http.post(f"{api}/fhir", json=batch) as resp:
        assert resp.status == 200
        answer = await resp.json(content_type=None)
        batch_id = resp.headers["Ledger-Audit-Event"]
        entry_ids = [i.strip() for i in resp.headers[ENTRY_RECORDS_HEADER].split(",")]
    assert answer["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == [
        "200 OK", "200 OK", "200 OK", "404 Not Found", "400 Bad Request",
        "405 Method Not Allowed", "400 Bad Request", "404 Not Found",
    ]  # fmt: skip
    assert len(answer["entry"][0]["resource"]["entry"]) == 3
    assert answer["entry"][1]["fullUrl"] == f"{api}/fhir/AuditEvent/{event}"
    assert answer["entry"][2]["resource"]["resourceType"] == "CapabilityStatement"
    assert "unknown_parameter" in json.dumps(answer["entry"][4]["response"]["outcome"])
    assert len(entry_ids) == 8
    assert batch_id not in entry_ids
    await wait_for_events(http, pipeline, [batch_id, *entry_ids])
    records = [await _recorded(http, api, i) for i in entry_ids]
    paths = [r["event"]["query"]["path"] for r in records]
    assert paths[:3] == ["/fhir/AuditEvent", f"/fhir/AuditEvent/{event}", "/fhir/metadata"]
    assert [r["event"]["query"]["status"] for r in records] == [int(s[:3]) for s in statuses]
    assert [r["event"]["query"]["method"] for r in records][5] == "DELETE"
    assert records[0]["event"]["query"]["parameters"] == {
        "patient": world.patient,
        "site": world.facility,
    }
    assert records[0]["event"]["query"]["results"] == 3
    assert records[0]["event"]["patient"]["id"] == world.patient
    outer = await _recorded(http, api, batch_id)
    assert outer["event"]["query"]["path"] == "/fhir"
    assert outer["event"]["query"]["results"] == 8
    # The entry that named the patient is in the patient's history, by name.
    history = f"{api}/v1/patients/{world.patient}/accesses"
    async with http.get(history, params={"limit": "1000"}) as resp:
        listed = {e["event_id"]: e["attribution"] for e in (await resp.json())["accesses"]}
    assert listed[entry_ids[0]] == "named"
    assert listed[entry_ids[1]] == "named"  # the read of one of the patient's events
    assert listed[batch_id] == "disclosed"  # the batch answer returned the patient's entries
    reports = validate_resources([answer])
    assert all(r.valid for r in reports), "\n".join(r.explain() for r in reports)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"resourceType": "Bundle", "type": "transaction"}, 422, "not supported"),
        ({"resourceType": "Bundle", "type": "collection"}, 400, "batch"),
        ({"resourceType": "AuditEvent"}, 400, "batch Bundle"),
        ({"resourceType": "Bundle", "type": "batch", "entry": {}}, 400, "list"),
        (
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [{"request": {"method": "GET", "url": "metadata"}}] * 51,
            },
            400,
            "at most 50",
        ),
        ([], 400, "FHIR JSON resource"),
    ],
)
async def test_a_batch_that_is_not_one_is_refused_and_recorded(
    pipeline: Pipeline, http: aiohttp.ClientSession, body: object, status: int, needle: str
) -> None:
    async with http.post(f"{pipeline.api_url}/fhir", json=body) as resp:
        assert resp.status == status
        outcome = await resp.json(content_type=None)
        assert resp.headers.get("Ledger-Audit-Event") is not None
        assert ENTRY_RECORDS_HEADER not in resp.headers
    assert outcome["resourceType"] == "OperationOutcome"
    assert needle in json.dumps(outcome)


async def test_a_batch_needs_the_fhir_read_permission(pipeline: Pipeline) -> None:
    auditor = pipeline.stack.auth("auditor")
    batch = {"resourceType": "Bundle", "type": "batch", "entry": []}
    async with (
        aiohttp.ClientSession(headers=auditor) as http,
        http.post(f"{pipeline.api_url}/fhir", json=batch) as resp,
    ):
        assert resp.status == 403
        assert resp.headers.get("Ledger-Audit-Event") is not None


@pytest.mark.parametrize("path", ["/fhir", "/fhir/AuditEvent"])
async def test_a_post_asking_for_xml_is_refused_and_recorded(
    pipeline: Pipeline, http: aiohttp.ClientSession, path: str
) -> None:
    body = {"resourceType": "Bundle", "type": "batch", "entry": []}
    async with http.post(f"{pipeline.api_url}{path}?_format=xml", json=body) as resp:
        assert resp.status == 406
        outcome = await resp.json(content_type=None)
        assert resp.headers.get("Ledger-Audit-Event") is not None
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "not_acceptable"


async def test_a_batch_answers_at_most_its_budget_of_audit_events(
    pipeline: Pipeline, world: World, http: aiohttp.ClientSession
) -> None:
    """Once a batch holds 1,000 AuditEvents it answers no further search or read (each
    refused entry still recorded); the CapabilityStatement, which holds none, still is."""
    run = secrets.token_hex(3)
    patient, site = f"MRN-BUDGET-{run}", f"budget-{run}"
    template = world.events[0]
    events = [
        PhiAccessEvent(
            facility=Facility(id=site),
            actor=template.actor,
            dicom_event_id="110103",
            action=EventAction.READ,
            patient=Patient(id=patient),
            event_time=datetime.now(UTC) - timedelta(seconds=n),
        )
        for n in range(25)
    ]
    async with pipeline.emitter(f"e2e-fhirc-budget-{run}") as emitter:
        for event in events:
            await emitter.emit(event)
        await emitter.flush()
    await wait_for_events(http, pipeline, [str(e.event_id) for e in events])
    search = {"request": {"method": "GET", "url": f"AuditEvent?patient={patient}&site={site}"}}
    metadata = {"request": {"method": "GET", "url": "metadata"}}
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [search] * 42 + [metadata]}
    async with http.post(f"{pipeline.api_url}/fhir", json=batch) as resp:
        assert resp.status == 200
        answer = await resp.json(content_type=None)
        records = resp.headers[ENTRY_RECORDS_HEADER].split(", ")
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["200 OK"] * 40 + ["400 Bad Request"] * 2 + ["200 OK"]
    assert "too_costly" in json.dumps(answer["entry"][40]["response"]["outcome"])
    assert len(records) == 43
