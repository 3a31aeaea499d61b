"""Issue 12 against the real stack: a read shows up in the history of every patient whose
entries it returned (index pages, FHIR searches, event proofs, entry bundles), and of no
other.

Patients A and B are accessed by one user, then, once those entries are signed, patient C
by another; each read's event id comes back in its ``Ledger-Audit-Event`` header, and the
patients' histories (``/v1/patients/{id}/accesses`` and ``/fhir/AuditEvent?patient=``) are
then searched for it.
"""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from collections.abc import Iterable

import aiohttp
import pytest

from integrations.simulator import Simulator
from ledger.log import tiles
from producers.events import Actor, Facility, Patient, PhiAccessEvent
from tests.e2e.conftest import E2E_SEED, Pipeline, get_json, wait_for_events

pytestmark = pytest.mark.e2e


@dataclasses.dataclass
class World:
    run: str
    user_ab: str
    a: PhiAccessEvent
    b: PhiAccessEvent
    c: PhiAccessEvent

    def patient(self, name: str) -> str:
        return f"MRN-ATTR-{name}-{self.run}"


def _access(template: PhiAccessEvent, run: str, patient: str, user: str) -> PhiAccessEvent:
    return dataclasses.replace(
        template,
        event_id=uuid.uuid4(),
        patient=Patient(id=f"MRN-ATTR-{patient}-{run}"),
        actor=Actor(user_id=user, role="physician"),
        facility=Facility(id=f"e2e-attr-{run}"),
    )


@pytest.fixture(scope="module")
async def world(pipeline: Pipeline) -> World:
    run = secrets.token_hex(3)
    template = next(
        e
        for e in Simulator(seed=E2E_SEED + 1200, patients=3).events(5, relay_every=0)
        if isinstance(e, PhiAccessEvent)
    )
    user_ab = f"dr.ab.{run}"
    a = _access(template, run, "A", user_ab)
    b = _access(template, run, "B", user_ab)
    c = _access(template, run, "C", f"dr.c.{run}")
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as http:
        async with pipeline.emitter(f"e2e-attr-ab-{run}") as emitter:
            for event in (a, b):
                await emitter.emit(event)
            await emitter.flush()
        await wait_for_events(http, pipeline, [str(a.event_id), str(b.event_id)])
        # C comes later, so its leaves lie after A's and B's in any log they share.
        async with pipeline.emitter(f"e2e-attr-c-{run}") as emitter:
            await emitter.emit(c)
            await emitter.flush()
        await wait_for_events(http, pipeline, [str(c.event_id)])
    return World(run=run, user_ab=user_ab, a=a, b=b, c=c)


async def _read(http: aiohttp.ClientSession, url: str, **params: str) -> str:
    """GET ``url`` (200) and return the event id of its recorded read."""
    async with http.get(url, params=params) as resp:
        assert resp.status == 200, await resp.text()
        await resp.read()
        return resp.headers["Ledger-Audit-Event"]


async def _position(
    http: aiohttp.ClientSession, pipeline: Pipeline, event_id: object
) -> tuple[int, int]:
    status, body = await get_json(http, f"{pipeline.api_url}/v1/events/{event_id}")
    assert status == 200, body
    return int(body["ledger"]["log_id"]), int(body["ledger"]["leaf_index"])


async def _history(http: aiohttp.ClientSession, pipeline: Pipeline, patient: str) -> dict[str, str]:
    """Event id -> attribution, for every entry of the patient's access history."""
    status, body = await get_json(
        http, f"{pipeline.api_url}/v1/patients/{patient}/accesses", limit="1000"
    )
    assert status == 200, body
    return {e["event_id"]: e["attribution"] for e in body["accesses"]}


async def _fhir_ids(http: aiohttp.ClientSession, pipeline: Pipeline, patient: str) -> set[str]:
    async with http.get(
        f"{pipeline.api_url}/fhir/AuditEvent", params={"patient": patient, "_count": "1000"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        bundle = await resp.json(content_type=None)
    return {e["resource"]["id"] for e in bundle.get("entry", [])}


async def _signed(http: aiohttp.ClientSession, pipeline: Pipeline, ids: Iterable[str]) -> None:
    await wait_for_events(http, pipeline, list(ids))


async def test_an_index_read_is_in_the_history_of_each_patient_it_returned(
    pipeline: Pipeline, world: World, http: aiohttp.ClientSession
) -> None:
    positions = [await _position(http, pipeline, e.event_id) for e in (world.a, world.b)]
    c_log, c_leaf = await _position(http, pipeline, world.c.event_id)
    reads = []
    for log_id in sorted({log for log, _ in positions}):
        leaves = [leaf for log, leaf in positions if log == log_id]
        start, end = min(leaves), max(leaves) + 1
        assert log_id != c_log or c_leaf >= end  # the page stops before C's entry
        url = f"{pipeline.api_url}/v1/logs/{log_id}/index"
        reads.append(await _read(http, url, start=str(start), limit=str(end - start)))
    await _signed(http, pipeline, reads)
    for name in ("A", "B"):
        history = await _history(http, pipeline, world.patient(name))
        assert any(history.get(r) == "disclosed" for r in reads), name
        assert set(reads) & await _fhir_ids(http, pipeline, world.patient(name)), name
    history_c = await _history(http, pipeline, world.patient("C"))
    assert not set(reads) & set(history_c)
    assert not set(reads) & await _fhir_ids(http, pipeline, world.patient("C"))


async def test_a_fhir_search_is_in_the_history_of_each_patient_it_returned(
    pipeline: Pipeline, world: World, http: aiohttp.ClientSession
) -> None:
    read = await _read(http, f"{pipeline.api_url}/fhir/AuditEvent", agent=world.user_ab)
    await _signed(http, pipeline, [read])
    for name in ("A", "B"):
        assert (await _history(http, pipeline, world.patient(name))).get(read) == "disclosed"
        assert read in await _fhir_ids(http, pipeline, world.patient(name))
    assert read not in await _history(http, pipeline, world.patient("C"))


async def test_an_event_proof_is_in_the_history_of_its_patient_only(
    pipeline: Pipeline, world: World, http: aiohttp.ClientSession
) -> None:
    read = await _read(http, f"{pipeline.api_url}/v1/events/{world.a.event_id}/proof")
    await _signed(http, pipeline, [read])
    assert (await _history(http, pipeline, world.patient("A"))).get(read) == "disclosed"
    assert read not in await _history(http, pipeline, world.patient("B"))
    assert read not in await _history(http, pipeline, world.patient("C"))


async def test_an_entry_bundle_read_is_in_the_history_of_the_patients_it_holds(
    pipeline: Pipeline, world: World, http: aiohttp.ClientSession
) -> None:
    """The C2SP entry bundle holds the leaves themselves: its read (authenticated and
    recorded, unlike the public hash tiles) names every leaf of the bundle it served."""
    log_id, leaf = await _position(http, pipeline, world.a.event_id)
    c_log, c_leaf = await _position(http, pipeline, world.c.event_id)
    width = leaf % tiles.TILE_WIDTH + 1  # the bundle ends with A's entry
    path = tiles.entries_path(leaf // tiles.TILE_WIDTH, width)
    read = await _read(http, f"{pipeline.api_url}/logs/{log_id}/{path}")
    await _signed(http, pipeline, [read])
    assert (await _history(http, pipeline, world.patient("A"))).get(read) == "disclosed"
    assert read in await _fhir_ids(http, pipeline, world.patient("A"))
    assert log_id != c_log or c_leaf > leaf  # C's entry lies after the bundle
    assert read not in await _history(http, pipeline, world.patient("C"))


async def test_the_patients_own_entries_stay_named(
    pipeline: Pipeline, world: World, http: aiohttp.ClientSession
) -> None:
    history = await _history(http, pipeline, world.patient("A"))
    assert history[str(world.a.event_id)] == "named"
