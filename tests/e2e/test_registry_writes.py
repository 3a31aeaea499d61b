"""Registry writes through the API, end to end: `POST /v1/registry/changes` checked
against the stored registry, emitted with the registry producer's key through Kafka,
appended by the real consumer to the registry's log, and served by `GET /v1/registry`.
An overlapping license is refused naming the record, and nothing of it is applied; a
role without ``registry_write`` is refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import own_ledger
from tests.e2e.conftest import LEDGER, Pipeline, _running, free_port
from tests.support import ROOT, Stack

pytestmark = pytest.mark.e2e

ORGS = (
    "kind,organization_id,name,organization_kind\n"
    "organization,w-stmarys,St Mary's,facility\n"
    "organization,w-nightrad,NightRad,business_associate\n"
)
MEMBERS_AND_LICENSE = json.dumps(
    [
        {"kind": "member", "user_id": "dr.w", "organization_id": "w-nightrad",
         "role": "radiologist", "shared_or_generic": False, "employed_from": "2023-01-01",
         "employed_to": None},
        {"kind": "license", "license_id": "w-lic-1", "user_id": "dr.w", "state": "CA",
         "number": "A1", "valid_from": "2024-01-01", "valid_to": None},
    ]
)  # fmt: skip
OVERLAPPING = json.dumps(
    [{"kind": "license", "license_id": "w-lic-2", "user_id": "dr.w", "state": "CA",
      "number": "B2", "valid_from": "2026-01-01", "valid_to": None}]
)  # fmt: skip


@pytest.fixture(scope="module")
def served(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with own_ledger(stack, f"{stack.database}_regwrite") as own:
        access_topic, relay_topic = own.topics(f"regw{uuid.uuid4().hex[:6]}")
        registry_topic = own.registry_topic(f"regw{uuid.uuid4().hex[:6]}")
        port = free_port()
        logs = tmp_path_factory.mktemp("regwrite-logs")
        env = own.env(
            LEDGER_ACCESS_TOPIC=access_topic,
            LEDGER_RELAY_TOPIC=relay_topic,
            LEDGER_REGISTRY_TOPIC=registry_topic,
            LEDGER_CONSUMER_GROUP=f"t{own.run_id}-regwrite-{uuid.uuid4().hex[:8]}",
            LEDGER_API_URL=f"http://127.0.0.1:{port}",
        )
        subprocess.run([LEDGER, "topics"], env=env, check=True, cwd=ROOT, capture_output=True)
        api_env = {
            **env,
            "LEDGER_PRODUCER_KEY_FILE": own.producer_key("ledger-api-regwrite"),
            "LEDGER_REGISTRY_PRODUCER_KEY_FILE": own.producer_key("registry-regwrite"),
        }
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
            yield from _running(procs, env, pipeline)


async def post(
    pipeline: Pipeline, body: str, media: str, role: str = "admin"
) -> tuple[int, dict[str, Any]]:
    headers = {**pipeline.stack.auth(role), "Content-Type": media}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(60)) as http,
        http.post(f"{pipeline.api_url}/v1/registry/changes", data=body, headers=headers) as r,
    ):
        return r.status, await r.json(content_type=None)


async def registry(pipeline: Pipeline) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(10)) as http,
        http.get(f"{pipeline.api_url}/v1/registry", headers=pipeline.stack.auth("admin")) as r,
    ):
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def wait_for_users(pipeline: Pipeline, user: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = await registry(pipeline)
        if any(m["user_id"] == user for m in state["records"]["member"]):
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"{user} never reached the served registry: {state['records']}")
        await asyncio.sleep(0.5)


def test_registry_files_posted_are_appended_served_and_checked(served: Pipeline) -> None:
    async def scenario() -> None:
        status, body = await post(served, ORGS, "text/csv")
        assert status == 202, body
        assert body["author"]["role"] == "admin"
        assert body["changes"] == [{"kind": "organization", "operation": "upsert", "count": 2}]
        # The second file names the organizations the first defined: it is checked
        # against the stored registry, so wait until the first is appended.
        deadline = time.monotonic() + 60
        while True:
            status, body = await post(served, MEMBERS_AND_LICENSE, "application/json")
            if status == 202 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert status == 202, body
        state = await wait_for_users(served, "dr.w")
        assert [lic["license_id"] for lic in state["records"]["license"]] == ["w-lic-1"]
        # An overlapping license for the same user and state: refused, naming it.
        status, body = await post(served, OVERLAPPING, "application/json")
        assert status == 400, body
        (problem,) = body["problems"]
        assert "license w-lic-2" in problem["field"]
        assert "overlaps the stored license 'w-lic-1'" in problem["reason"]
        # A reader may not write the registry.
        status, body = await post(served, OVERLAPPING, "application/json", role="investigator")
        assert status == 403, body
        await asyncio.sleep(2)
        state = await registry(served)
        assert [lic["license_id"] for lic in state["records"]["license"]] == ["w-lic-1"]

    asyncio.run(scenario())
