"""Operators re-submit quarantined records: same bytes, same key, back to the topic."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from ledger.audit.ingest import Rejected
from ledger.log.leaf import KafkaRecord
from ledger.pg.appender import PostgresAppender
from ledgerctl.infra import ensure_topics
from ledgerctl.settings import KafkaRole
from tests.support import ROOT, Stack

pytestmark = pytest.mark.integration

LEDGER = str(Path(sys.executable).with_name("ledger"))
#: A producer-authentication envelope (its content does not matter here): kept and re-sent.
ENVELOPE = b"\x01envelope-bytes"


async def quarantine_two(stack: Stack, topic: str) -> dict[str, int]:
    records = [
        Rejected(
            record=KafkaRecord(topic=topic, partition=0, offset=i, timestamp_ms=1_790_000_000_000,
                               timestamp_type=0, key=b"issuer|MRN1", value=value),
            reason=reason, detail="test", envelope=ENVELOPE if reason == "unknown_schema" else None,
        )
        for i, (value, reason) in enumerate(
            [(b"\xc3\x01" + b"\x42" * 8 + b"body", "unknown_schema"),
             (b"\xc3\x01conflict!", "conflicting_event_id")]
        )
    ]  # fmt: skip
    async with PostgresAppender(dsn=stack.appender_url, ledger_name="test.ledger.local") as app:
        await app.append(topic=topic, partition=0, items=records)
    conn = await asyncpg.connect(stack.owner_url)
    try:
        rows = await conn.fetch(
            "SELECT quarantine_id, reason FROM quarantine WHERE topic = $1", topic
        )
    finally:
        await conn.close()
    return {r["reason"]: r["quarantine_id"] for r in rows}


def test_resubmit_sends_the_same_bytes_and_records_it(stack: Stack) -> None:
    topic = f"t{stack.run_id}-requeue-{uuid.uuid4().hex[:6]}"
    asyncio.run(ensure_topics(stack.kafka_bootstrap, (topic,), 1, stack.kafka(KafkaRole.ADMIN)))
    ids = asyncio.run(quarantine_two(stack, topic))
    env = stack.env()

    refused = subprocess.run(
        [LEDGER, "quarantine", "resubmit", str(ids["conflicting_event_id"]), "--reason", "t"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "cannot succeed" in refused.stderr

    done = subprocess.run(
        [LEDGER, "quarantine", "resubmit", str(ids["unknown_schema"]), "--reason", "t"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"to {topic}/0@0" in done.stderr

    async def read_back() -> tuple[bytes | None, bytes | None, list[asyncpg.Record], object]:
        consumer = AIOKafkaConsumer(**stack.kafka_client(KafkaRole.CONSUMER))
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            consumer.seek(tp, 0)
            message = await asyncio.wait_for(consumer.getone(), timeout=30)
        finally:
            await consumer.stop()
        conn = await asyncpg.connect(stack.owner_url)
        try:
            rows = await conn.fetch(
                "SELECT quarantine_id, topic, kafka_partition, kafka_offset, resubmitted_by "
                "FROM quarantine_resubmissions WHERE topic = $1",
                topic,
            )
        finally:
            await conn.close()
        return message.key, message.value, rows, list(message.headers)

    key, value, rows, headers = asyncio.run(read_back())
    assert headers == [("philedger-auth", ENVELOPE)], "re-sent with its original envelope"
    assert value == b"\xc3\x01" + b"\x42" * 8 + b"body"
    assert key == b"issuer|MRN1"
    assert [(r["quarantine_id"], r["kafka_offset"]) for r in rows] == [(ids["unknown_schema"], 0)]
    assert rows[0]["resubmitted_by"]
