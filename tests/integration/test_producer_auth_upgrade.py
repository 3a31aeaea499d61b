"""Upgrading a ledger to producer authentication (migration 0009) keeps its history
verifiable: the leaves it already had are exempt from envelopes, every later leaf is not.

Without the recorded start, `ledger verify --bundle` on an upgraded ledger would report
every older leaf as ``producer_unauthenticated``: an auditor's tool crying wolf.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from yoyo import get_backend

from ledger.pg.export import export_bundle
from ledger.pg.migrate import _yoyo_url, apply_migrations, shipped_migrations
from ledger.verify.producerbundle import START_FILE
from tests.conftest import drop_database
from tests.support import Stack, with_database

pytestmark = pytest.mark.integration


@pytest.fixture
def database(stack: Stack) -> Iterator[str]:
    name = f"ledger_test_upgrade_{secrets.token_hex(4)}"

    async def sql(statement: str) -> None:
        conn = await asyncpg.connect(stack.owner_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(sql(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        asyncio.run(drop_database(stack.owner_url, name))


def test_an_upgraded_log_starts_authentication_at_its_size(
    stack: Stack, database: str, tmp_path: Path
) -> None:
    owner = with_database(stack.owner_url, database)
    backend = get_backend(_yoyo_url(owner))
    with shipped_migrations() as migrations:
        older = migrations.filter(lambda m: m.id < "0009")
        with backend.lock():
            backend.apply_migrations(backend.to_apply(older))

    async def before_0009() -> None:
        conn = await asyncpg.connect(owner)
        try:
            old = await conn.fetchval(
                "INSERT INTO logs (origin, topic, kafka_partition) "
                "VALUES ('t.ledger/old/0', 'old', 0) RETURNING log_id"
            )
            await conn.fetchval(
                "INSERT INTO logs (origin, topic, kafka_partition) "
                "VALUES ('t.ledger/empty/0', 'empty', 0) RETURNING log_id"
            )
            for i in range(3):
                leaf = bytes([1, i])
                await conn.execute(
                    "INSERT INTO leaves (log_id, leaf_index, leaf, leaf_hash) "
                    "VALUES ($1, $2, $3, $4)",
                    old, i, leaf, hashlib.sha256(b"\x00" + leaf).digest(),
                )  # fmt: skip
        finally:
            await conn.close()

    asyncio.run(before_0009())
    applied = apply_migrations(owner)
    assert applied[0] == "0009.sign-producer-keys"
    assert all(m > "0009" for m in applied)

    async def starts() -> dict[str, int]:
        conn = await asyncpg.connect(owner)
        try:
            rows = await conn.fetch(
                "SELECT g.origin, s.first_leaf FROM producer_auth_start s JOIN logs g "
                "USING (log_id)"
            )
            return {r["origin"]: int(r["first_leaf"]) for r in rows}
        finally:
            await conn.close()

    assert asyncio.run(starts()) == {"t.ledger/old/0": 3, "t.ledger/empty/0": 0}

    async def exempt_a_new_log() -> None:
        conn = await asyncpg.connect(owner)
        try:
            new = await conn.fetchval(
                "INSERT INTO logs (origin, topic, kafka_partition, period, period_end,"
                " first_offset) VALUES ('t.ledger/new/0', 'new', 0, '2026-12-01', '2027-01-01',"
                " 0) RETURNING log_id"
            )
            await conn.execute(
                "INSERT INTO producer_auth_start (log_id, first_leaf) VALUES ($1, 99)", new
            )
        finally:
            await conn.close()

    # Refusal: even the schema owner cannot exempt a later log's leaves.
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        asyncio.run(exempt_a_new_log())

    bundle = tmp_path / "bundle"
    asyncio.run(
        export_bundle(
            dsn=with_database(stack.reader_url, database), path=bundle, ledger_name="t.ledger"
        )
    )
    written = json.loads((bundle / START_FILE).read_text())
    assert list(written.values()) == [3], "only the log that had leaves is exempt, up to 3"
