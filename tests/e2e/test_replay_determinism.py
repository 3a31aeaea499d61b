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
from collections.abc import Sequence

import aiohttp
import asyncpg
import pytest

from integrations.simulator import Simulator
from ledger.audit.rules import Evaluator, Finding, RulesConfig, build_rules
from ledger.log import merkle
from ledger.pg.compliance import PostgresRulesStore
from ledger.pg.migrate import apply_migrations
from ledger.pg.producerkeys import copy_producer_keys
from tests.conftest import drop_database
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
        await drop_database(pipeline.stack.owner_url, database)

    assert copy.keys() >= original.keys()
    assert sum(len(v) for v in original.values()) >= len(stream)
    for origin, leaves in original.items():
        prefix = copy[origin][: len(leaves)]
        assert prefix == leaves, origin
        assert merkle.root_from_leaves(prefix) == merkle.root_from_leaves(leaves)


async def _emit_stream(pipeline: Pipeline, seed: int, count: int) -> None:
    stream = list(Simulator(seed=seed, patients=9).events(count))
    async with pipeline.emitter("e2e-replay-rules") as emitter:
        for event in stream:
            await emitter.emit(event)
        await emitter.flush()
    headers = pipeline.stack.auth("admin")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(10), headers=headers) as http:
        await wait_for_events(http, pipeline, [str(e.event_id) for e in stream])


def test_ledger_replay_command_rebuilds_identical_roots(pipeline: Pipeline) -> None:
    # A stream with something for the rules to find (one access in fifty unencrypted,
    # late relays), so the replayed ledger's alerts can be compared with the source's.
    asyncio.run(_emit_stream(pipeline, E2E_SEED + 300, 400))
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
        # The alerts the rules raise over the replayed ledger are the source's.
        source, replica = asyncio.run(
            _findings_both(
                pipeline.stack.owner_url, with_database(pipeline.stack.owner_url, database)
            )
        )
        assert source, "the stream plants unencrypted accesses and late relays"
        assert replica == source
    finally:
        asyncio.run(drop_database(pipeline.stack.owner_url, database))


class _CollectingStore(PostgresRulesStore):
    """The evaluator's store reading a ledger, keeping findings in memory instead of
    writing alerts (the source ledger is shared with other tests)."""

    def __init__(self, *, dsn: str) -> None:
        super().__init__(dsn=dsn)
        self.findings: list[Finding] = []

    async def cursor(self, log_id: int) -> int:
        return 0

    async def commit(self, log_id: int, next_leaf: int, findings: Sequence[Finding]) -> int:
        self.findings.extend(findings)
        return 0


Where = tuple[str, int]
Found = tuple[tuple[str, int, str, str, str | None, str | None, str], tuple[Where, ...]]


async def _findings(dsn: str) -> tuple[dict[str, int], set[Found]]:
    """Every finding over the ledger at ``dsn``, positions named by origin (the trigger
    first), with each log's size at the time."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT g.log_id, g.origin, count(l.leaf_index) AS size FROM logs g "
            "LEFT JOIN leaves l USING (log_id) GROUP BY g.log_id, g.origin"
        )
    finally:
        await conn.close()
    origin = {int(r["log_id"]): str(r["origin"]) for r in rows}
    sizes = {str(r["origin"]): int(r["size"]) for r in rows}
    async with _CollectingStore(dsn=dsn) as store:
        await Evaluator(store, build_rules(RulesConfig())).run_pass()
    found: set[Found] = set()
    for f in store.findings:
        trigger = (origin[f.trigger.log_id], f.trigger.leaf_index)
        evidence = sorted(
            (origin[e.position.log_id], e.position.leaf_index, e.role) for e in f.evidence
        )
        what = (
            f.rule_id, f.rule_version, f.severity.value, f.summary, f.facility_id, f.user_id,
            repr((f.patient, [r for _, _, r in evidence])),
        )  # fmt: skip
        found.add((what, (trigger, *((o, i) for o, i, _ in evidence))))
    return sizes, found


async def _findings_both(source_dsn: str, replica_dsn: str) -> tuple[set[Found], set[Found]]:
    """The findings of both ledgers over the prefix both hold (the source keeps growing:
    the API records its own reads)."""
    replica_sizes, replica = await _findings(replica_dsn)
    _, source = await _findings(source_dsn)

    def within(f: Found) -> bool:
        return all(i < replica_sizes.get(o, 0) for o, i in f[1])

    return {f for f in source if within(f)}, {f for f in replica if within(f)}
