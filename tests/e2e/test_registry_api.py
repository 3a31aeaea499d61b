"""The registry through the real processes: a scratch ledger whose registry log holds real
RegistryChange leaves (appended and signed as the consumer would, without the registry's
Kafka path), then the real `ledger consume`, `ledger serve` and `ledger registry show`.
The state as of two times is the two states, by the CLI and the API; a role without
``registry_write`` is refused 403 and recorded; a hostile registry file is refused whole
naming every bad line; and every read of the registry is an Audit Log Used entry in the
ledger that discloses the registry log up to the checkpoint it read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.conftest import own_ledger
from tests.e2e.conftest import LEDGER, Pipeline, _running, free_port, wait_for_events
from tests.integration.test_registry_read import HOSTILE, T1, T2, first_changes, second_changes
from tests.registry_leaves import append_registry
from tests.support import ROOT, Stack, run_ledger

pytestmark = pytest.mark.e2e

TAG = "e2e"


@dataclass(frozen=True)
class Served:
    pipeline: Pipeline
    registry_topic: str
    origin: str


@pytest.fixture(scope="module")
def served(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with own_ledger(stack, f"{stack.database}_regread") as own:
        registry_topic = f"t{own.run_id}-regread-registry"

        async def fill() -> None:
            await append_registry(
                own.appender_url, registry_topic, first_changes(TAG),
                signer_key_file=own.signer_key_file,
            )  # fmt: skip
            await append_registry(
                own.appender_url, registry_topic, second_changes(TAG), first_offset=5,
                signer_key_file=own.signer_key_file,
            )  # fmt: skip

        asyncio.run(fill())
        access_topic, relay_topic = own.topics(f"regread{uuid.uuid4().hex[:6]}")
        port = free_port()
        logs = tmp_path_factory.mktemp("regread-logs")
        env = own.env(
            LEDGER_ACCESS_TOPIC=access_topic,
            LEDGER_RELAY_TOPIC=relay_topic,
            LEDGER_REGISTRY_TOPIC=registry_topic,
            LEDGER_CONSUMER_GROUP=f"t{own.run_id}-regread-{uuid.uuid4().hex[:8]}",
            LEDGER_API_URL=f"http://127.0.0.1:{port}",
        )
        subprocess.run([LEDGER, "topics"], env=env, check=True, cwd=ROOT, capture_output=True)
        api_env = {**env, "LEDGER_PRODUCER_KEY_FILE": own.producer_key("ledger-api-regread")}
        with contextlib.ExitStack() as files:
            procs = [
                subprocess.Popen(
                    command,
                    env=api_env if name == "api" else env,
                    cwd=ROOT,
                    stdout=files.enter_context((logs / f"{name}.log").open("wb")),
                    stderr=subprocess.STDOUT,
                )
                for name, command in (
                    ("consumer", [LEDGER, "consume"]),
                    ("api", [LEDGER, "serve", "--port", str(port)]),
                )
            ]
            pipeline = Pipeline(own, env, access_topic, relay_topic, f"http://127.0.0.1:{port}",
                                Path(logs))  # fmt: skip
            for ready in _running(procs, env, pipeline):
                yield Served(ready, registry_topic, f"test.ledger.local/{registry_topic}/0")


def show(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    return run_ledger(served.pipeline.env, "registry", "show", "--reason", "TICKET-15", *args)


async def disclosing_reads(served: Served, roles: set[str], timeout: float = 60) -> dict[str, str]:
    """Wait until the ledger holds an Audit Log Used entry of each role that disclosed the
    registry log [0, 7); event id -> role."""
    conn = await asyncpg.connect(served.pipeline.stack.owner_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = await conn.fetch(
                "SELECT e.event_id, e.user_role FROM read_disclosures d JOIN events e "
                "USING (event_id) WHERE d.origin = $1 AND d.first_leaf = 0 AND d.end_leaf = 7 "
                "AND e.kind = 'audit_log_used'",
                served.origin,
            )
            found = {str(r["event_id"]): r["user_role"] for r in rows}
            if roles <= set(found.values()):
                return found
            if time.monotonic() > deadline:
                pytest.fail(f"no registry read of {roles - set(found.values())} in the ledger")
            await asyncio.sleep(0.3)
    finally:
        await conn.close()


def test_show_as_of_two_times_gives_the_two_states(served: Served) -> None:
    before = show(served, "--as-of", (T1 + timedelta(hours=1)).isoformat(), "--format", "json")
    assert before.returncode == 0, before.stderr
    after = show(served, "--as-of", T2.isoformat(), "--format", "json")
    assert after.returncode == 0, after.stderr
    b, a = json.loads(before.stdout), json.loads(after.stdout)
    assert b["checkpoints"][0]["origin"] == served.origin
    assert b["checkpoints"][0]["size"] == 7
    assert b["records"]["baa"][0]["effective_to"] is None
    assert a["records"]["baa"][0]["effective_to"] == "2026-03-31"
    assert a["records"]["baa"][0]["ledger"]["leaf_index"] == 5
    assert len(b["records"]["license"]) == 1
    assert a["records"]["license"] == []
    assert show(served, "--as-of", "2020-01-01", "--format", "json").returncode == 0
    table = show(served, "--as-of", T2.isoformat(), "--kind", "baa")
    assert table.returncode == 0, table.stderr
    assert "2026-03-31" in table.stdout
    assert f"{served.origin}:7" in " ".join(table.stdout.split())
    csv = show(served, "--user", "dr.lee-e2e", "--format", "csv")
    assert csv.returncode == 0, csv.stderr
    assert csv.stdout.count("\n") == 2  # the header and the membership (license retired)
    refused = show(served, "--kind", "nurse")
    assert refused.returncode == 1
    assert "kind must be one of" in refused.stderr
    asyncio.run(disclosing_reads(served, {"operator"}))


async def test_the_api_answers_two_states_and_records_each_read(served: Served) -> None:
    api = served.pipeline.api_url
    auditor = served.pipeline.stack.auth("auditor")
    async with aiohttp.ClientSession(headers=auditor) as http:
        async with http.get(f"{api}/v1/registry", params={"as_of": T1.isoformat()}) as resp:
            assert resp.status == 200
            before = await resp.json()
            read_id = resp.headers["Ledger-Audit-Event"]
        async with http.get(f"{api}/v1/registry", params={"as_of": "now"}) as resp:
            after = await resp.json()
    assert before["records"]["baa"][0]["effective_to"] is None
    assert after["records"]["baa"][0]["effective_to"] == "2026-03-31"
    assert before["checkpoints"][0]["note"].startswith(f"{served.origin}\n7\n")
    reads = await disclosing_reads(served, {"auditor"})
    assert reads[read_id] == "auditor"
    async with aiohttp.ClientSession(headers=served.pipeline.stack.auth()) as admin:
        await wait_for_events(admin, served.pipeline, [read_id])
        async with admin.get(f"{api}/v1/events/{read_id}") as resp:
            detail = await resp.json()
    assert detail["schema"] == "philedger.audit.AuditLogUsed"
    assert detail["event"]["actor"]["user_id"] == "test-auditor"


async def test_a_refused_role_gets_403_and_is_recorded(served: Served) -> None:
    api = served.pipeline.api_url
    investigator = {**served.pipeline.stack.auth("investigator"), "Content-Type": "text/csv"}
    async with (
        aiohttp.ClientSession(headers=investigator) as http,
        http.post(f"{api}/v1/registry/changes", data=HOSTILE) as resp,
    ):
        assert resp.status == 403
        read_id = resp.headers["Ledger-Audit-Event"]
    async with aiohttp.ClientSession(headers=served.pipeline.stack.auth()) as admin:
        await wait_for_events(admin, served.pipeline, [read_id])
        async with admin.get(f"{api}/v1/events/{read_id}") as resp:
            detail = await resp.json()
    event = detail["event"]
    assert event["actor"]["user_id"] == "test-investigator"
    assert event["query"]["status"] == 403
    assert event["query"]["method"] == "POST"


async def test_a_hostile_file_is_refused_whole_naming_every_bad_line(served: Served) -> None:
    api = served.pipeline.api_url
    admin = {**served.pipeline.stack.auth("admin"), "Content-Type": "text/csv"}
    async with aiohttp.ClientSession(headers=admin) as http:
        async with http.post(f"{api}/v1/registry/changes", data=HOSTILE) as resp:
            assert resp.status == 400
            assert resp.content_type == "application/problem+json"
            problem = await resp.json()
        async with http.get(f"{api}/v1/registry/changes", params={"limit": "1000"}) as resp:
            history = await resp.json()
    assert sorted({p["line"] for p in problem["problems"]}) == [2, 3, 4, 5]
    assert len(history["changes"]) == 7  # nothing applied
