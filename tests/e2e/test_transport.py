"""Issue 15's transport field against the real stack: PhiAccessEvent v3 events that record
a plain HTTP and an HTTPS access, and a v2 event of the same patient (an older producer),
go through the emitter, Kafka and the consumer into a scratch database. The patient's
history lists all three; the stored event and its FHIR AuditEvent show each v3 event's
transport (the v2 one has none); and `ledger export` + `ledger verify` pass over the mixed
v2 and v3 leaves (docs/design/transport.md).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import aiohttp
import pytest

from ledgerctl.settings import KafkaRole
from producers import Codec, Transport, TransportChannel
from producers.codec import load_shipped_schemas
from producers.emitter import Emitter, EmitterConfig
from producers.events import Actor, EventAction, Facility, Patient, PhiAccessEvent
from tests.e2e.conftest import Pipeline, get_json, wait_for_events
from tests.support import export_and_verify

pytestmark = pytest.mark.e2e

V3 = "e6ba5b1e5a454708"


def _read(run: str, patient: str, transport: Transport | None) -> PhiAccessEvent:
    return PhiAccessEvent(
        facility=Facility(id=f"e2e-transport-{run}"),
        actor=Actor(user_id=f"dr.wire.{run}", role="radiologist"),
        dicom_event_id="110103",
        action=EventAction.READ,
        patient=Patient(id=patient, issuer="hosp"),
        network_address="10.0.0.7",
        transport=transport,
    )


async def test_transport_is_stored_shown_and_verified_beside_v2_events(
    pipeline: Pipeline, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    run = secrets.token_hex(3)
    patient = f"MRN-WIRE-{run}"
    plain = _read(run, patient, Transport.of(TransportChannel.HTTP))
    tls = _read(run, patient, Transport.of(TransportChannel.HTTPS))
    older = _read(run, patient, None)
    async with pipeline.emitter(f"e2e-transport-{run}") as emitter:
        await emitter.emit(plain)
        await emitter.emit(tls)
        await emitter.flush()
    # An older producer: its codec writes PhiAccessEvent v2, which has no transport.
    v2_codec = Codec(s for s in load_shipped_schemas() if s.fingerprint.hex() != V3)
    producer = f"e2e-transport-v2-{run}"
    config = EmitterConfig(
        bootstrap_servers=pipeline.stack.kafka_bootstrap,
        producer_id=producer,
        access_topic=pipeline.access_topic,
        relay_topic=pipeline.relay_topic,
        producer_key_file=pipeline.stack.producer_key(producer),
        kafka_security=pipeline.stack.kafka(KafkaRole.SIMULATOR),
    )
    async with Emitter(config, codec=v2_codec) as old_emitter:
        await old_emitter.emit(older)
        await old_emitter.flush()
    ids = [str(plain.event_id), str(tls.event_id), str(older.event_id)]
    await wait_for_events(http, pipeline, ids)

    status, body = await get_json(
        http, f"{pipeline.api_url}/v1/patients/{patient}/accesses", limit="100"
    )
    assert status == 200, body
    assert {e["event_id"] for e in body["accesses"]} == set(ids)

    stored = {}
    for ident in ids:
        status, body = await get_json(http, f"{pipeline.api_url}/v1/events/{ident}")
        assert status == 200, body
        stored[ident] = body["event"]
    assert stored[ids[0]]["transport"] == {"channel": "HTTP", "encrypted": False}
    assert stored[ids[1]]["transport"] == {"channel": "HTTPS", "encrypted": True}
    assert "transport" not in stored[ids[2]]  # a v2 leaf, decoded with its own schema

    async with http.get(
        f"{pipeline.api_url}/fhir/AuditEvent", params={"patient": patient, "_count": "100"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        bundle = await resp.json(content_type=None)
    networks = {e["resource"]["id"]: e["resource"]["agent"][0]["network"] for e in bundle["entry"]}
    assert networks[ids[0]]["extension"][0]["extension"] == [
        {"url": "channel", "valueCode": "HTTP"},
        {"url": "encrypted", "valueBoolean": False},
    ]
    assert networks[ids[1]]["extension"][0]["extension"][1] == {
        "url": "encrypted",
        "valueBoolean": True,
    }
    assert networks[ids[2]] == {"address": "10.0.0.7", "type": "2"}

    verified = export_and_verify(pipeline.env, tmp_path, "transport e2e")
    assert verified.returncode == 0, verified.stdout + verified.stderr
