"""Hostile input on the real topic: each record ends in quarantine with a specific reason,
and the partition carries on (a valid event behind them is appended)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import time

import aiohttp
import asyncpg
import fastavro
import pytest
from aiokafka import AIOKafkaProducer

from integrations.simulator import Simulator
from ledgerctl.settings import KafkaRole
from producers import Transport, TransportChannel
from producers.codec import MAGIC, Codec, to_record
from tests.e2e.conftest import E2E_SEED, Pipeline, get_json, wait_for_events
from tests.support import signed_headers

pytestmark = pytest.mark.e2e


def body_with(event_record: dict[str, object], schema_json: str, **changes: object) -> bytes:
    """Avro body of a record under a schema whose time fields are plain longs (to send
    values no datetime can hold)."""
    raw = json.loads(schema_json)
    for field in raw["fields"]:
        if field["name"] == "event_time":
            field["type"] = "long"
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(raw), event_record | changes)
    return buf.getvalue()


async def test_each_hostile_record_is_quarantined_with_its_reason(
    pipeline: Pipeline, http: aiohttp.ClientSession
) -> None:
    codec = Codec()
    sim = Simulator(seed=E2E_SEED + 300)
    # No transport (v3), so that the record ends with zero bytes after `details` (below).
    good = dataclasses.replace(sim.access(), transport=None).stamped(
        producer_id="hostile", producer_seq=1
    )
    schema = codec.writer_schema(good)
    message = codec.encode(good)
    record = to_record(good)
    micros = int(good.event_time.timestamp() * 1_000_000)
    utf8 = bytearray(message)
    utf8[utf8.index(b"hostile")] = 0xFF
    huge_details = dataclasses.replace(
        sim.access(), details={f"k{i}": "v" for i in range(2000)}
    ).stamped(producer_id="hostile", producer_seq=2)
    conflicting = dataclasses.replace(good, network_address="198.51.100.7")
    tls_unencrypted = dataclasses.replace(
        sim.access(), transport=Transport(channel=TransportChannel.HTTPS, encrypted=False)
    ).stamped(producer_id="hostile", producer_seq=3)
    # An empty `details` map is one zero block count; each field after it (v2: the empty
    # `disclosed` list, false, 0; v3: a null transport) is one zero byte too. Claim 2^40
    # map entries instead: the reader must fail fast, not allocate.
    assert not good.details
    fields = [f["name"] for f in json.loads(schema.schema_json)["fields"]]
    after = len(fields) - fields.index("details") - 1
    assert message.endswith(b"\x00" * (after + 1))
    cut = len(message) - after - 1
    absurd_map = message[:cut] + _varint(2**40 << 1) + message[cut + 1 :]

    cases: list[tuple[str, bytes, str | None]] = [
        ("random bytes", b"\x00" + os.urandom(300), "bad_magic"),
        ("shorter than a header", b"\xc3\x01\x02", "too_short"),
        ("truncated Avro", message[: len(message) // 2], "malformed_avro"),
        ("trailing garbage", message + b"\x00\x01", "trailing_bytes"),
        ("unknown fingerprint", MAGIC + b"\x13" * 8 + message[10:], "unknown_schema"),
        ("invalid UTF-8", bytes(utf8), "invalid_utf8"),
        ("message near the broker maximum", MAGIC + schema.fingerprint + os.urandom(1_000_000),
         "oversize"),
        ("huge map", _raw(schema, huge_details), "invalid_event"),
        # v3: a TLS channel recorded unencrypted, written without the producer's rules.
        ("contradictory transport", _raw(schema, tls_unencrypted), "invalid_event"),
        ("absurd map count", absurd_map, "malformed_avro"),
        ("absurd string length", MAGIC + schema.fingerprint + bytes([0xFE] * 9 + [0x7F]),
         "malformed_avro"),
        ("negative time", MAGIC + schema.fingerprint
         + body_with(record, schema.schema_json, event_time=-micros), "time_out_of_range"),
        ("absurd future time", MAGIC + schema.fingerprint
         + body_with(record, schema.schema_json, event_time=2**62), "time_out_of_range"),
        ("empty value", b"", "empty_value"),
        ("the valid event", message, None),
        ("an identical re-send", message, None),
        ("same id, other content", codec.encode(conflicting), "conflicting_event_id"),
    ]  # fmt: skip
    # Signed by the producer "hostile" (a registered producer sending garbage), so each
    # record gets past authentication and reaches the decoder it is aimed at.
    key_file = pipeline.stack.producer_key("hostile")
    producer = AIOKafkaProducer(
        **pipeline.stack.kafka_client(KafkaRole.SIMULATOR), max_request_size=2_000_000
    )
    await producer.start()
    offsets: dict[str, int] = {}
    try:
        for name, value, _ in cases:
            (headers,) = signed_headers(key_file, [(pipeline.access_topic, value)])
            meta = await producer.send_and_wait(
                pipeline.access_topic, value=value, key=b"hostile", partition=0, headers=headers
            )
            offsets[name] = meta.offset
    finally:
        await producer.stop()
    # The partition carries on: a valid event behind all of them is appended.
    after = Simulator(seed=E2E_SEED + 301).access()
    async with pipeline.emitter("e2e-after-hostile") as emitter:
        await emitter.emit(after)
        await emitter.flush()
    await wait_for_events(http, pipeline, [str(after.event_id), str(good.event_id)])

    conn = await asyncpg.connect(pipeline.stack.owner_url)
    try:
        deadline = time.monotonic() + 30
        while True:
            rows = await conn.fetch(
                "SELECT kafka_offset, reason FROM quarantine WHERE topic = $1 "
                "AND kafka_partition = 0 AND kafka_offset = ANY($2::bigint[])",
                pipeline.access_topic, list(offsets.values()),
            )  # fmt: skip
            if len(rows) >= sum(1 for *_, r in cases if r) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        alert = await conn.fetchrow(
            "SELECT kind FROM security_alerts WHERE event_id = $1", good.event_id
        )
    finally:
        await conn.close()
    by_offset: dict[int, list[str]] = {}
    for r in rows:
        by_offset.setdefault(r["kafka_offset"], []).append(r["reason"])
    for name, _, reason in cases:
        got = sorted(by_offset.get(offsets[name], []))
        if reason is None:
            # appended once, or counted as a duplicate; the original also went to quarantine
            # as evidence once the conflict arrived
            assert got in ([], ["conflicting_event_id_original"]), (name, got)
        else:
            assert got == [reason], (name, got)
    assert alert is not None
    assert alert["kind"] == "event_id_conflict"
    # The ledger holds the first version of the conflicting id, exactly once.
    status, detail = await get_json(http, f"{pipeline.api_url}/v1/events/{good.event_id}")
    assert status == 200
    assert detail["event"]["network_address"] == good.network_address
    # Quarantine is visible through the API with the raw bytes.
    status, page = await get_json(
        http, f"{pipeline.api_url}/v1/quarantine", reason="invalid_utf8", limit="1000"
    )
    assert status == 200
    assert any(r["kafka_offset"] == offsets["invalid UTF-8"] for r in page["records"])


def _raw(schema: object, event: object) -> bytes:
    """Encode without validation (the codec would refuse the huge map at the producer)."""
    from producers.codec import WriterSchema

    assert isinstance(schema, WriterSchema)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, dict(schema.parsed), to_record(event))  # type: ignore[arg-type]
    return MAGIC + schema.fingerprint + buf.getvalue()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
