"""A database superuser tampers; `ledger verify` detects and locates every tamper.

Builds a real ledger in its own database (real events through the appender and
signed checkpoints), checks that a clean export verifies, then, as the cluster
superuser with triggers disabled, flips a payload byte, deletes a row, swaps two
rows, forges a checkpoint and rewrites an index row, and runs the real
`ledger export` and `ledger verify` commands (bundle and API) on the result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from consumers.classify import classify
from integrations.simulator import Simulator
from ledger.audit.auth import Role
from ledger.audit.ingest import WriterSchemaInfo
from ledger.audit.producerauth import ProducerAuthenticator
from ledger.log.keys import load_signers
from ledger.log.leaf import KafkaRecord
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from ledger.pg.migrate import apply_migrations
from ledgerctl.tokens import create_token
from producers.codec import Codec
from tests.conftest import drop_database
from tests.ports import free_port as _free_port
from tests.support import ROOT, Stack, signed_headers, superuser_url, with_database

pytestmark = pytest.mark.integration

LEDGER = str(Path(sys.executable).with_name("ledger"))
TOPIC = "tamper-phi-access"


@dataclass(frozen=True)
class Ledger:
    owner_url: str
    reader_url: str
    superuser_url: str
    env: dict[str, str]
    logs: dict[int, int]  # partition -> log id


async def build(stack: Stack, database: str) -> dict[int, int]:
    owner = await asyncpg.connect(stack.owner_url)
    try:
        await owner.execute(f'CREATE DATABASE "{database}"')
    finally:
        await owner.close()
    apply_migrations(with_database(stack.owner_url, database))
    codec = Codec()
    signer = load_signers(stack.signer_key_file)[0]
    sim = Simulator(seed=int(secrets.token_hex(3), 16), patients=20)
    logs: dict[int, int] = {}
    # Signed like any producer's events, so the export carries a seal reference per leaf.
    own = dataclasses.replace(
        stack, owner_url=with_database(stack.owner_url, database), database=database
    )
    key_file = await asyncio.to_thread(own.producer_key, "tamper")
    async with PostgresAppender(
        dsn=with_database(stack.appender_url, database), ledger_name="test.ledger.local"
    ) as appender:
        auth = ProducerAuthenticator(await appender.producer_keys())
        checkpointer = Checkpointer(
            pool=appender.pool,
            signers=[signer],
            policy=CheckpointPolicy(every_leaves=1, every_ms=0),
        )
        for partition in (0, 1):
            offset = 0
            for _ in range(4):  # four batches of 150, a checkpoint after each
                items = []
                records = []
                for event in sim.events(150, relay_every=0):
                    value = codec.encode(event.stamped(producer_id="tamper", producer_seq=offset))
                    records.append(KafkaRecord(topic=TOPIC, partition=partition, offset=offset,
                                   timestamp_ms=1_790_000_000_000 + offset, timestamp_type=0,
                                   key=event.patient.key.encode(), value=value))  # fmt: skip
                    offset += 1
                headers = signed_headers(key_file, [(r.topic, r.value) for r in records])
                for record, ((_, envelope),) in zip(records, headers, strict=True):
                    items.append(classify(record, codec, auth=auth, envelope=envelope))
                result = await appender.append(topic=TOPIC, partition=partition, items=items)
                logs[partition] = result.log_id
                assert await checkpointer.checkpoint(result.log_id) is not None
        await appender.register_schemas(
            [
                WriterSchemaInfo(
                    fingerprint=s.fingerprint, full_name=s.full_name,
                    canonical_form=s.canonical_form, schema_json=s.schema_json,
                )
                for s in codec.schemas
            ]
        )  # fmt: skip
    return logs


@pytest.fixture(scope="module")
def ledger(stack: Stack) -> Iterator[Ledger]:
    database = f"ledger_tamper_{secrets.token_hex(4)}"
    logs = asyncio.run(build(stack, database))
    token = asyncio.run(
        create_token(
            with_database(stack.owner_url, database),
            subject="tamper-auditor",
            role=Role.AUDITOR,
            ttl=None,
            note="tamper test",
        )
    )
    env = stack.env(
        DATABASE_URL=with_database(stack.owner_url, database),
        LEDGER_READER_URL=with_database(stack.reader_url, database),
        LEDGER_API_TOKEN=token.text,
    )
    yield Ledger(
        owner_url=with_database(stack.owner_url, database),
        reader_url=with_database(stack.reader_url, database),
        superuser_url=with_database(superuser_url(stack), database),
        env=env,
        logs=logs,
    )

    asyncio.run(drop_database(stack.owner_url, database))


def run_ledger(ledger: Ledger, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEDGER, *args], env=ledger.env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def export_and_verify(ledger: Ledger, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    bundle = tmp / f"bundle-{secrets.token_hex(3)}"
    exported = run_ledger(ledger, "export", "--out", str(bundle), "--reason", "tamper test")
    assert exported.returncode == 0, exported.stderr
    return run_ledger(ledger, "verify", "--bundle", str(bundle), *extra)


async def tamper(ledger: Ledger) -> None:
    a, b = ledger.logs[0], ledger.logs[1]
    su = await asyncpg.connect(ledger.superuser_url)
    try:
        async with su.transaction():
            await su.execute("SET LOCAL session_replication_role = replica")  # triggers off
            # 1. A flipped payload byte in leaf 100 of log A (its last byte: inside the Avro body).
            await su.execute(
                "UPDATE leaves SET leaf = overlay(leaf placing "
                "set_byte('\\x00'::bytea, 0, get_byte(leaf, length(leaf) - 1) # 1) "
                "from length(leaf) for 1) WHERE log_id = $1 AND leaf_index = 100",
                a,
            )
            # 2. A deleted row: leaf 250 of log A (and its index row).
            await su.execute("DELETE FROM events WHERE log_id = $1 AND leaf_index = 250", a)
            await su.execute("DELETE FROM leaves WHERE log_id = $1 AND leaf_index = 250", a)
            # 3. Two swapped rows: leaves 400 and 401 of log B trade contents and hashes.
            await su.execute(
                "UPDATE leaves SET leaf = s.leaf, leaf_hash = s.leaf_hash "
                "FROM (SELECT leaf_index, leaf, leaf_hash FROM leaves WHERE log_id = $1 "
                "      AND leaf_index IN (400, 401)) s "
                "WHERE leaves.log_id = $1 AND leaves.leaf_index IN (400, 401) "
                "AND s.leaf_index = 801 - leaves.leaf_index",
                b,
            )
            # 4. A forged checkpoint: log B's checkpoint at size 300 claims another root.
            note = await su.fetchval(
                "SELECT note FROM checkpoints WHERE log_id = $1 AND size = 300", b
            )
            lines = note.split("\n")
            lines[2] = "A" * 43 + "="
            await su.execute(
                "UPDATE checkpoints SET note = $2 WHERE log_id = $1 AND size = 300",
                b, "\n".join(lines),
            )  # fmt: skip
            # 5. The index says someone else did it: leaf 42 of log B gets another user.
            await su.execute(
                "UPDATE events SET user_id = 'innocent.bystander' "
                "WHERE log_id = $1 AND leaf_index = 42",
                b,
            )
            # 6. A leaf's place in its producer seal altered (leaf 7 of log A now claims
            # its neighbour's entry) and one deleted (leaf 8).
            await su.execute(
                "UPDATE leaves SET seal_index = seal_index # 1 "
                "WHERE log_id = $1 AND leaf_index = 7",
                a,
            )
            await su.execute(
                "UPDATE leaves SET seal_id = NULL, seal_index = NULL "
                "WHERE log_id = $1 AND leaf_index = 8",
                a,
            )
    finally:
        await su.close()


def test_clean_ledger_verifies(ledger: Ledger, tmp_path: Path) -> None:
    result = export_and_verify(ledger, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 finding(s)" in result.stdout
    assert "FAIL" not in result.stdout


def test_every_tamper_is_detected_and_located(ledger: Ledger, tmp_path: Path) -> None:
    asyncio.run(tamper(ledger))
    result = export_and_verify(ledger, tmp_path)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    a_origin = f"test.ledger.local/{TOPIC}/0/2026-09"  # stamped 1_790_000_000_000 ms
    b_origin = f"test.ledger.local/{TOPIC}/1/2026-09"
    findings = [line for line in out.splitlines() if line.startswith("│")]
    text = "\n".join(findings)

    def has(kind: str, origin_part: str, index: str | None = None) -> bool:
        return any(
            kind in line and origin_part in line and (index is None or f" {index} " in line)
            for line in findings
        )

    # 1. the flipped byte: located at leaf 100 of log A
    assert has("leaf_hash_mismatch", "/0", "100"), text
    # 2. the deleted row: leaf 250 of log A is missing
    assert has("leaf_missing", "/0", "250"), text
    # 3. the swapped rows: both 400 and 401 of log B
    assert has("leaf_hash_mismatch", "/1", "400"), text
    assert has("leaf_hash_mismatch", "/1", "401"), text
    # 4. the forged checkpoint of log B at size 300
    assert any("checkpoint_signature" in line and "300" in line for line in findings), text
    # 5. the rewritten index row: leaf 42 of log B, field user_id
    assert has("index_mismatch", "/1", "42"), text
    # 6. the producer seals: leaf 7 no longer authenticates, leaf 8 has no reference
    assert has("producer_bad_signature", "/0", "7"), text
    assert has("producer_unauthenticated", "/0", "8"), text
    assert f"FAIL {a_origin}" in out
    assert f"FAIL {b_origin}" in out

    # The same through the API (any auditor with only the URL and the key).
    port = _free_port()
    server = subprocess.Popen(
        [LEDGER, "serve", "--port", str(port)], env=ledger.env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    api_url = f"http://127.0.0.1:{port}"
    try:
        waited = subprocess.run(
            [LEDGER, "wait", "api", "--timeout", "30"],
            env={**ledger.env, "LEDGER_API_URL": api_url},
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert waited.returncode == 0, waited.stderr
        via_api = run_ledger(ledger, "verify", "--api", api_url)
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert via_api.returncode == 1
    for needle in ("leaf_hash_mismatch", "checkpoint_signature", "index_mismatch"):
        assert needle in via_api.stdout, via_api.stdout
