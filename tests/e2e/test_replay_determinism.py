"""Replaying the same topics into an empty ledger gives identical leaves and roots.

A second, independent `ledger consume` (new consumer group, new empty database)
reads the same Kafka topics from the beginning; every log must come out byte for
byte the same: same origins, same leaves in the same order, same roots.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time

import aiohttp
import asyncpg
import pytest

from integrations.simulator import Simulator
from ledger.log import merkle
from ledger.pg.migrate import apply_migrations
from ledger.pg.producerkeys import copy_producer_keys
from tests.e2e.conftest import E2E_SEED, LEDGER, Pipeline, wait_for_events
from tests.support import ROOT, with_database

pytestmark = pytest.mark.e2e


async def leaves_by_origin(dsn: str, topics: list[str]) -> dict[str, list[bytes]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT g.origin, l.leaf FROM leaves l JOIN logs g USING (log_id) "
            "WHERE g.topic = ANY($1::text[]) ORDER BY g.origin, l.leaf_index",
            topics,
        )
    finally:
        await conn.close()
    out: dict[str, list[bytes]] = {}
    for r in rows:
        out.setdefault(r["origin"], []).append(bytes(r["leaf"]))
    return out


async def test_a_second_ledger_built_from_the_same_topics_is_identical(
    pipeline: Pipeline, http: aiohttp.ClientSession
) -> None:
    stream = list(Simulator(seed=E2E_SEED + 200, patients=9).events(300))
    async with pipeline.emitter("e2e-replay") as emitter:
        for event in stream:
            await emitter.emit(event)
        await emitter.flush()
    await wait_for_events(http, pipeline, [str(e.event_id) for e in stream])
    topics = [pipeline.access_topic, pipeline.relay_topic]
    original = await leaves_by_origin(pipeline.stack.owner_url, topics)

    database = f"ledger_replay_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pipeline.stack.owner_url)
    await admin.execute(f'CREATE DATABASE "{database}"')
    await admin.close()
    replica_owner = with_database(pipeline.stack.owner_url, database)
    try:
        await asyncio.to_thread(apply_migrations, replica_owner)
        # The second ledger trusts the same producers (as `ledger replay` arranges).
        await copy_producer_keys(pipeline.stack.owner_url, replica_owner)
        env = {
            **pipeline.env,
            "DATABASE_URL": replica_owner,
            "LEDGER_APPENDER_URL": with_database(pipeline.stack.appender_url, database),
            "LEDGER_CONSUMER_GROUP": f"t{pipeline.stack.run_id}-replica-{secrets.token_hex(4)}",
        }
        replica = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
            [LEDGER, "consume"], env=env, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                copy = await leaves_by_origin(replica_owner, topics)
                # The original keeps growing (the API records its own reads through the
                # same topics), so the replica must hold the snapshot as a prefix.
                if copy.keys() >= original.keys() and all(
                    len(copy[o]) >= len(v) for o, v in original.items()
                ):
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"replica did not catch up: {len(copy)} logs")
                await asyncio.sleep(0.3)
        finally:
            replica.terminate()
            await asyncio.to_thread(replica.wait, 20)
    finally:
        admin = await asyncpg.connect(pipeline.stack.owner_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()

    assert copy.keys() >= original.keys()
    assert sum(len(v) for v in original.values()) >= len(stream)
    for origin, leaves in original.items():
        prefix = copy[origin][: len(leaves)]
        assert prefix == leaves, origin
        assert merkle.root_from_leaves(prefix) == merkle.root_from_leaves(leaves)


def test_ledger_replay_command_rebuilds_identical_roots(pipeline: Pipeline) -> None:
    database = f"ledger_replay_{secrets.token_hex(4)}"
    try:
        result = subprocess.run(
            [LEDGER, "replay", "--database", database, "--timeout", "120", "--reason", "e2e"],
            env=pipeline.env, cwd=ROOT, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        filled = [line for line in lines if "  size 0  " not in line]
        assert filled
        assert all("identical to the source" in line for line in filled), result.stdout
        assert all("empty" in line for line in lines if line not in filled), result.stdout
        # A second replay into the same (now non-empty) database is refused.
        again = subprocess.run(
            [LEDGER, "replay", "--database", database, "--reason", "e2e"],
            env=pipeline.env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert again.returncode == 1
        assert "not empty" in again.stderr
    finally:

        async def drop() -> None:
            admin = await asyncpg.connect(pipeline.stack.owner_url)
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.close()

        asyncio.run(drop())
