"""Every CLI read of PHI is recorded in the ledger first, and written out owner-only.

Attacks and refusals: ``ledger export`` used to write every patient's PHI into a
world-readable folder and leave no Audit Log Used entry (the biggest read of all, the
one the ledger did not record). Now the export, ``replay``, ``atna kept`` and
``quarantine resubmit`` each hand an AuditLogUsed naming the OS user and ``--reason``
to Kafka, acknowledged, before anything is read out; if that fails, nothing is written
and the command exits 1. Bundle files are 0600 and directories 0700 under any umask,
and an existing target others can open is refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import secrets
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumers.classify import classify, envelope_of
from integrations.simulator import Simulator
from ledger.audit.ingest import Accepted
from ledger.audit.producerauth import AuthFailure, ProducerAuthenticator, RegisteredKey
from ledger.log.leaf import KafkaRecord
from ledger.pg.appender import PostgresAppender
from ledger.pg.producerkeys import fetch_producer_keys
from ledgerctl.infra import ensure_topics
from ledgerctl.replay import end_offsets
from ledgerctl.settings import KafkaRole
from producers.codec import Codec
from producers.events import AuditLogUsed, DisclosedRange, PhiAccessEvent, event_key
from tests.conftest import drop_database
from tests.integration.test_quarantine_ops import quarantine_two
from tests.ports import free_port as closed_port
from tests.support import ROOT, Stack, signed_headers, with_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

LEDGER = str(Path(sys.executable).with_name("ledger"))
CODEC = Codec()
OPERATOR = pwd.getpwuid(os.geteuid()).pw_name


def run(
    stack: Stack, *args: str, umask: int = 0o022, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEDGER, *args], env=stack.env(**env), cwd=ROOT, capture_output=True, text=True,
        timeout=300, preexec_fn=lambda: os.umask(umask),
    )  # fmt: skip


async def append_some(stack: Stack, n: int = 20) -> str:
    """A few PHI access events straight into the scratch ledger (a topic of their own)."""
    topic = f"t{stack.run_id}-cli-{uuid.uuid4().hex[:6]}"
    events = [e for e in Simulator(seed=1212).events(4 * n) if isinstance(e, PhiAccessEvent)]
    items = []
    for offset, event in enumerate(events[:n]):
        record = KafkaRecord(
            topic=topic, partition=0, offset=offset, timestamp_ms=1_790_000_000_000,
            timestamp_type=0, key=event_key(event).encode(),
            value=CODEC.encode(event.stamped(producer_id="cli-reads", producer_seq=offset)),
        )  # fmt: skip
        item = classify(record, CODEC)
        assert isinstance(item, Accepted), item
        items.append(item)
    async with PostgresAppender(dsn=stack.appender_url, ledger_name="test.ledger.local") as app:
        await app.append(topic=topic, partition=0, items=items)
    return topic


async def reads_recorded(stack: Stack, topic: str, reason: str) -> list[AuditLogUsed]:
    """The AuditLogUsed events on ``topic`` (up to its end now) stating ``reason``."""
    return [event for event, _ in await signed_reads(stack, topic, reason)]


async def signed_reads(
    stack: Stack, topic: str, reason: str
) -> list[tuple[AuditLogUsed, RegisteredKey | AuthFailure]]:
    """``reads_recorded``, each with what the consumer's producer check makes of it: the
    key of the scratch ledger's registry that signed it, or why not."""
    conn = await asyncpg.connect(stack.owner_url)
    try:
        auth = ProducerAuthenticator(await fetch_producer_keys(conn))
    finally:
        await conn.close()
    ends = await end_offsets(stack.kafka_bootstrap, [topic], stack.kafka(KafkaRole.REPLAY))
    parts = list(ends)
    consumer = AIOKafkaConsumer(**stack.kafka_client(KafkaRole.REPLAY), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        found = []
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                for message in batch:
                    # Every record is checked in order: a batch's first record carries
                    # the seal the later ones refer to (docs/producer-auth.md).
                    verdict: RegisteredKey | AuthFailure
                    try:
                        verdict = auth.authenticate(
                            topic=message.topic,
                            value=message.value or b"",
                            envelope=envelope_of(message),
                        ).key
                    except AuthFailure as exc:
                        verdict = exc
                    event = CODEC.decode(message.value or b"")
                    if isinstance(event, AuditLogUsed) and (
                        event.query.parameters.get("reason") == reason
                    ):
                        found.append((event, verdict))
        return found
    finally:
        await consumer.stop()


def access_topic(stack: Stack) -> str:
    return stack.env()["LEDGER_ACCESS_TOPIC"]


def test_export_is_recorded_before_writing_and_is_owner_only(stack: Stack, tmp_path: Path) -> None:
    asyncio.run(append_some(stack))
    reason = f"case {secrets.token_hex(4)}: breach review"
    out = tmp_path / "bundle"

    done = run(stack, "export", "--out", str(out), "--reason", reason, umask=0o022)
    assert done.returncode == 0, done.stderr

    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}
    assert any(p.name == "entries.bin" for p in modes)
    assert {m for p, m in modes.items() if p.is_dir()} == {0o700}
    assert {m for p, m in modes.items() if p.is_file()} == {0o600}, modes

    ((read, signer),) = asyncio.run(signed_reads(stack, access_topic(stack), reason))
    # Signed as the command line's own producer, so the ledger appends it (not quarantine).
    assert isinstance(signer, RegisteredKey), signer
    assert signer.producer_id == read.producer_id == "ledger-cli"
    assert read.actor.user_id == OPERATOR
    assert read.actor.role == "operator"
    assert (read.query.method, read.query.path) == ("CLI", "/cli/export")
    assert read.query.parameters["out"] == str(out)
    assert read.query.parameters["host"] == socket.gethostname()
    assert read.patient is None
    manifest = json.loads((out / "manifest.json").read_text())
    assert "logs" not in read.query.parameters  # cut at 1,024 characters: see disclosed
    assert read.query.results == sum(g["size"] for g in manifest["logs"]) > 0
    # Every entry of every exported log, so the export is in each patient's history.
    assert read.disclosed == tuple(
        DisclosedRange(log=g["origin"], start=0, end=g["size"])
        for g in sorted(manifest["logs"], key=lambda g: g["origin"])
        if g["size"] > 0
    )
    assert not read.disclosed_coarsened


def test_export_writes_nothing_when_kafka_cannot_record_it(stack: Stack, tmp_path: Path) -> None:
    asyncio.run(append_some(stack, 3))
    out = tmp_path / "bundle"
    done = run(
        stack, "export", "--out", str(out), "--reason", "kafka is down",
        KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port()}",
    )  # fmt: skip
    assert done.returncode == 1
    assert "cannot be recorded" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists(), "not a byte of the export was written"


def test_export_reads_nothing_without_the_cli_producer_key(stack: Stack, tmp_path: Path) -> None:
    """Refusal: without LEDGER_CLI_PRODUCER_KEY_FILE the read record could not be signed,
    the ledger would quarantine it, so the read would go unrecorded: nothing is read."""
    asyncio.run(append_some(stack, 3))
    out = tmp_path / "bundle"
    reason = f"no cli key {secrets.token_hex(4)}"
    done = run(
        stack, "export", "--out", str(out), "--reason", reason, LEDGER_CLI_PRODUCER_KEY_FILE=""
    )
    assert done.returncode == 1
    assert "LEDGER_CLI_PRODUCER_KEY_FILE is not set" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists(), "not a byte of the export was written"
    assert asyncio.run(reads_recorded(stack, access_topic(stack), reason)) == []


def test_export_refuses_a_target_others_can_open(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "shared"
    out.mkdir()
    out.chmod(0o755)
    done = run(stack, "export", "--out", str(out), "--reason", "into a shared folder")
    assert done.returncode == 1
    assert "can be opened by other users (mode 755)" in done.stderr
    assert list(out.iterdir()) == []
    recorded = asyncio.run(reads_recorded(stack, access_topic(stack), "into a shared folder"))
    assert recorded == [], "refused before reading: nothing read, nothing to record"


def test_export_needs_a_reason(stack: Stack, tmp_path: Path) -> None:
    missing = run(stack, "export", "--out", str(tmp_path / "a"))
    assert missing.returncode == 2
    assert "--reason" in missing.stderr
    blank = run(stack, "export", "--out", str(tmp_path / "b"), "--reason", "   ")
    assert blank.returncode == 1
    assert "--reason must be" in blank.stderr
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()


def test_replay_is_recorded_before_it_reads(stack: Stack) -> None:
    access, relay = topics = stack.topics(f"replay-{uuid.uuid4().hex[:6]}")
    asyncio.run(ensure_topics(stack.kafka_bootstrap, topics, 1, stack.kafka(KafkaRole.ADMIN)))
    (event,) = [e for e in Simulator(seed=99).events(10) if isinstance(e, PhiAccessEvent)][:1]
    event = event.stamped(producer_id="cli-replay", producer_seq=0)
    asyncio.run(send(stack, access, CODEC.encode(event), "cli-replay"))
    database = f"ledger_test_replay_{secrets.token_hex(4)}"
    reason = f"rebuild check {secrets.token_hex(4)}"
    env = {"LEDGER_ACCESS_TOPIC": access, "LEDGER_RELAY_TOPIC": relay}
    try:
        down = run(
            stack, "replay", "--database", database, "--reason", reason, "--timeout", "60",
            **env, KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port()}",
        )  # fmt: skip
        assert down.returncode == 1
        assert "Traceback" not in down.stderr
        done = run(stack, "replay", "--database", database, "--reason", reason, **env)
        assert done.returncode == 0, done.stderr
        replayed = asyncio.run(user_ids(with_database(stack.owner_url, database)))
    finally:
        asyncio.run(drop(stack, database))
    (read,) = asyncio.run(reads_recorded(stack, access, reason))
    assert (read.actor.user_id, read.query.path) == (OPERATOR, "/cli/replay")
    assert read.query.parameters["database"] == database
    # Recorded before the end offsets were taken: the replay reads its own record back,
    # and appends it: signed as ledger-cli, whose key the replayed ledger trusts too.
    assert sorted(replayed) == sorted([event.actor.user_id, OPERATOR])


async def send(stack: Stack, topic: str, value: bytes, producer_id: str) -> None:
    """One record, signed by ``producer_id`` (the producer its event names)."""
    (headers,) = signed_headers(stack.producer_key(producer_id), [(topic, value)])
    producer = AIOKafkaProducer(**stack.kafka_client(KafkaRole.SIMULATOR), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k", partition=0, headers=headers)
    finally:
        await producer.stop()


async def user_ids(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r["user_id"] for r in await conn.fetch("SELECT user_id FROM events")]
    finally:
        await conn.close()


async def drop(stack: Stack, database: str) -> None:
    await drop_database(stack.owner_url, database)


def test_atna_kept_prints_nothing_unless_recorded(stack: Stack, tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    reason = f"kept review {secrets.token_hex(4)}"
    down = run(
        stack, "atna", "kept", "--kept-dir", str(kept), "--raw", "--reason", reason,
        KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port()}",
    )  # fmt: skip
    assert down.returncode == 1
    assert "cannot be recorded" in down.stderr
    assert down.stdout == ""
    done = run(stack, "atna", "kept", "--kept-dir", str(kept), "--raw", "--reason", reason)
    assert done.returncode == 0, done.stderr
    (read,) = asyncio.run(reads_recorded(stack, access_topic(stack), reason))
    assert (read.actor.user_id, read.query.path) == (OPERATOR, "/cli/atna/kept")
    assert read.query.parameters["raw"] == "yes"
    assert read.query.results == 0


def test_resubmit_reads_no_quarantined_bytes_unless_recorded(stack: Stack) -> None:
    topic = f"t{stack.run_id}-cli-requeue-{uuid.uuid4().hex[:6]}"
    asyncio.run(ensure_topics(stack.kafka_bootstrap, (topic,), 1, stack.kafka(KafkaRole.ADMIN)))
    ids = asyncio.run(quarantine_two(stack, topic))
    reason = f"fixed schema {secrets.token_hex(4)}"
    down = run(
        stack, "quarantine", "resubmit", str(ids["unknown_schema"]), "--reason", reason,
        KAFKA_BOOTSTRAP=f"127.0.0.1:{closed_port()}",
    )  # fmt: skip
    assert down.returncode == 1
    assert "cannot be recorded" in down.stderr
    done = run(stack, "quarantine", "resubmit", str(ids["unknown_schema"]), "--reason", reason)
    assert done.returncode == 0, done.stderr
    (read,) = asyncio.run(reads_recorded(stack, access_topic(stack), reason))
    assert (read.actor.user_id, read.query.path) == (OPERATOR, "/cli/quarantine/resubmit")
    assert read.query.parameters["quarantine_id"] == str(ids["unknown_schema"])
