"""End to end on the real stack: producer, Kafka, `ledger consume`, PostgreSQL, `ledger serve`.

The consumer and the API run as real subprocesses of the installed `ledger` command,
against this session's scratch database and fresh topics.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from dataclasses import replace
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from integrations.simulator import Simulator
from ledgerctl.settings import KafkaRole
from producers.errors import EventValidationError
from producers.events import CriticalResultRelay, Patient, PhiAccessEvent
from tests.e2e.conftest import E2E_SEED, LEDGER, Pipeline, get_json, wait_for_events
from tests.support import ROOT

pytestmark = pytest.mark.e2e


async def test_emitted_events_come_back_through_the_api(
    pipeline: Pipeline, http: aiohttp.ClientSession
) -> None:
    sim = Simulator(seed=E2E_SEED, patients=6)
    stream = [e for e in sim.events(240, relay_every=80)]
    async with pipeline.emitter("e2e-host") as emitter:
        for event in stream:
            await emitter.emit(event)
        await emitter.flush()
    ids = [str(e.event_id) for e in stream]
    await wait_for_events(http, pipeline, ids)

    # One patient's history is exactly the events emitted about that patient, newest first.
    patient = max({e.patient for e in stream}, key=lambda p: sum(e.patient == p for e in stream))
    mine = [e for e in stream if e.patient == patient]
    status, body = await get_json(
        http,
        f"{pipeline.api_url}/v1/patients/{patient.id}/accesses",
        issuer=patient.issuer or "",
        limit="1000",
    )
    assert status == 200
    # Reads of the ledger that named this patient, or returned its entries (the proofs
    # wait_for_events asked for), are in its history too (the ledger audits itself);
    # they are the session's own token's, and more of them arrive while this test reads.
    reads = [a for a in body["accesses"] if a["kind"] == "audit_log_used"]
    assert all(r["user"] == {"id": "test-admin", "name": None, "role": "admin",
                             "organization": None} for r in reads)  # fmt: skip
    got = [a for a in body["accesses"] if a["kind"] != "audit_log_used"]
    assert {a["event_id"] for a in got} == {str(e.event_id) for e in mine}
    times = [a["time"] for a in got]
    assert times == sorted(times, reverse=True)
    by_id = {str(e.event_id): e for e in mine}
    for entry in got:
        event = by_id[entry["event_id"]]
        actor = event.actor if isinstance(event, PhiAccessEvent) else event.sender
        assert entry["user"]["id"] == actor.user_id
        assert entry["user"]["role"] == actor.role
        assert entry["facility"] == event.facility.id
        assert entry["ledger"]["origin"].startswith("test.ledger.local/")
        assert entry["ledger"]["leaf_index"] >= 0
        if isinstance(event, PhiAccessEvent):
            assert entry["event"]["dicom_event_id"] == event.dicom_event_id
            assert entry["network_address"] == event.network_address
            assert (entry["study"] or {}).get("uid") == (event.study.uid if event.study else None)

    # Pagination walks the same history page by page with no gaps or repeats.
    seen: list[str] = []
    cursor = None
    while True:
        params = {"issuer": patient.issuer or "", "limit": "7"}
        if cursor:
            params["cursor"] = cursor
        status, page = await get_json(
            http, f"{pipeline.api_url}/v1/patients/{patient.id}/accesses", **params
        )
        assert status == 200
        seen += [a["event_id"] for a in page["accesses"] if a["kind"] != "audit_log_used"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [a["event_id"] for a in got]

    # Each stored event decodes to exactly what was emitted, with its ledger position.
    relay = next(e for e in stream if isinstance(e, CriticalResultRelay))
    status, detail = await get_json(http, f"{pipeline.api_url}/v1/events/{relay.event_id}")
    assert status == 200
    assert detail["schema"] == "philedger.audit.CriticalResultRelay"
    assert detail["event"]["patient"]["id"] == relay.patient.id
    assert detail["event"]["recipient"]["name"] == relay.recipient.name
    assert detail["event"]["category"] == relay.category.value
    assert detail["event"]["read_back"] is relay.read_back
    assert detail["ledger"]["kafka"]["topic"] == pipeline.relay_topic
    assert len(bytes.fromhex(detail["ledger"]["leaf_hash"])) == 32


async def test_invalid_event_is_rejected_at_the_producer_and_never_sent(
    pipeline: Pipeline,
) -> None:
    good = Simulator(seed=E2E_SEED + 1).access()
    bad = replace(good, patient=Patient(id="", issuer="x"))
    consumer = AIOKafkaConsumer(**pipeline.stack.kafka_client(KafkaRole.CONSUMER))
    await consumer.start()
    try:
        parts = [TopicPartition(pipeline.access_topic, p) for p in range(4)]
        before = await consumer.end_offsets(parts)
        async with pipeline.emitter("e2e-invalid") as emitter:
            with pytest.raises(EventValidationError) as info:
                await emitter.emit(bad)
            assert info.value.field == "patient.id"
            assert "patient.id" in str(info.value)
            await emitter.flush()
        after = await consumer.end_offsets(parts)
    finally:
        await consumer.stop()
    assert after == before


async def test_garbage_on_the_topic_is_quarantined_and_the_partition_moves_on(
    pipeline: Pipeline, http: aiohttp.ClientSession
) -> None:
    producer = AIOKafkaProducer(**pipeline.stack.kafka_client(KafkaRole.SIMULATOR))
    await producer.start()
    marker = f"garbage-{uuid.uuid4()}".encode()
    try:
        meta = await producer.send_and_wait(
            pipeline.access_topic, value=marker, key=b"k", partition=0
        )
    finally:
        await producer.stop()
    # A valid event behind it on the same partition still arrives.
    after = Simulator(seed=E2E_SEED + 2).access()
    async with pipeline.emitter("e2e-after-garbage") as emitter:
        await emitter.emit(after)
        await emitter.flush()
    await wait_for_events(http, pipeline, [str(after.event_id)])
    conn = await asyncpg.connect(pipeline.stack.owner_url)
    try:
        deadline = time.monotonic() + 30
        row = None
        while row is None and time.monotonic() < deadline:
            row = await conn.fetchrow(
                "SELECT reason, kafka_offset FROM quarantine WHERE record_value = $1", marker
            )
            await asyncio.sleep(0.2)
        alert = await conn.fetchrow(
            "SELECT kind FROM security_alerts WHERE topic = $1 AND kafka_offset = $2 "
            "AND kafka_partition = 0",
            pipeline.access_topic, meta.offset,
        )  # fmt: skip
    finally:
        await conn.close()
    # Nobody signed it: it is refused before it is even decoded, and an alert is raised.
    assert row is not None
    assert row["reason"] == "unauthenticated"
    assert row["kafka_offset"] == meta.offset
    assert alert is not None
    assert alert["kind"] == "producer_auth_unauthenticated"


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/v1/patients/MRN1/accesses", {"limit": "0"}, 400, "bad_request"),
        ("/v1/patients/MRN1/accesses", {"limit": "abc"}, 400, "bad_request"),
        ("/v1/patients/MRN1/accesses", {"limit": "100000"}, 400, "bad_request"),
        ("/v1/patients/MRN1/accesses", {"cursor": "not-a-cursor!!"}, 400, "invalid_cursor"),
        ("/v1/patients/MRN1/accesses", {"issuer": "x" * 300}, 400, "bad_request"),
        ("/v1/patients/" + "x" * 300 + "/accesses", {}, 400, "bad_request"),
        ("/v1/patients/%01%02/accesses", {}, 400, "bad_request"),
        ("/v1/patients/' OR 1=1 --/accesses", {}, 200, None),
        ("/v1/events/not-a-uuid", {}, 400, "bad_request"),
        (f"/v1/events/{uuid.UUID(int=0)}", {}, 404, "not_found"),
        ("/v1/nothing-here", {}, 404, "not_found"),
    ],
)
async def test_hostile_api_parameters_get_clear_errors(
    pipeline: Pipeline,
    http: aiohttp.ClientSession,
    path: str,
    params: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    got_status, body = await get_json(http, pipeline.api_url + path, **params)
    assert got_status == status
    if code is None:
        assert body["accesses"] == []
    else:
        assert body["error"]["code"] == code
        assert body["error"]["message"]


def test_simulate_command_writes_ids_that_all_reach_the_ledger(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    # Event ids are global in the ledger: use seeds no other test in this session uses.
    seed = 10_000 + int(pipeline.stack.run_id, 16) % 10_000
    ids_file = tmp_path / "ids.txt"
    run = subprocess.run(
        [
            LEDGER,
            "simulate",
            "--events",
            "120",
            "--seed",
            str(seed),
            "--ids-out",
            str(ids_file),
            "--producer-id",
            "e2e-cli",
        ],
        env={**pipeline.env, "LEDGER_PRODUCER_KEY_FILE": pipeline.stack.producer_key("e2e-cli")},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "emitted 120 events" in run.stderr
    ids = ids_file.read_text().split()
    assert len(ids) == len(set(ids)) == 120

    async def check() -> None:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(10), headers=pipeline.stack.auth()
        ) as http:
            await wait_for_events(http, pipeline, ids)

    asyncio.run(check())

    # The same seed yields byte-identical events: a re-run is all duplicates, so the
    # ledger neither grows nor quarantines anything.
    topics = [pipeline.access_topic, pipeline.relay_topic]
    event_ids = [uuid.UUID(i) for i in ids]

    async def counts() -> tuple[int, int, int]:
        """(events with these ids, quarantine rows of these topics, duplicates counted)."""
        conn = await asyncpg.connect(pipeline.stack.owner_url)
        try:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])),"
                " (SELECT count(*) FROM quarantine WHERE topic = ANY($2::text[])),"
                " (SELECT coalesce(sum(duplicates), 0) FROM ingest_positions"
                "    JOIN logs USING (log_id) WHERE topic = ANY($2::text[]))",
                event_ids,
                topics,
            )
            return int(row[0]), int(row[1]), int(row[2])
        finally:
            await conn.close()

    events_before, quarantined_before, dup_before = asyncio.run(counts())
    assert events_before == 120
    rerun = subprocess.run(
        [LEDGER, "simulate", "--events", "120", "--seed", str(seed), "--producer-id", "e2e-cli"],
        env={**pipeline.env, "LEDGER_PRODUCER_KEY_FILE": pipeline.stack.producer_key("e2e-cli")},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    deadline = time.monotonic() + 60
    while True:
        events_after, quarantined_after, dup_after = asyncio.run(counts())
        if dup_after - dup_before >= 120 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert dup_after - dup_before == 120
    assert (events_after, quarantined_after) == (120, quarantined_before)
