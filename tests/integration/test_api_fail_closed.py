"""The API fails closed for every recorded answer, refusals included: when the read
record can be neither sent to Kafka nor spooled, a request that would be served, a
403 and a 401 all get 503 with no ledger data; public routes, which are never
recorded, still answer. Real PostgreSQL (the session's scratch ledger), the real
producer library with Kafka unreachable and a spool too small for one event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ledger.http import create_app
from ledger.pg.reader import PostgresReader
from ledgerctl.readaudit import EmitterReadRecorder
from producers.emitter import Emitter, EmitterConfig
from tests.ports import free_port as closed_port
from tests.support import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(stack: Stack, tmp_path: Path) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    config = EmitterConfig(
        bootstrap_servers=f"127.0.0.1:{closed_port()}",
        producer_id="ledger-api-fail-closed",
        access_topic=f"t{stack.run_id}-fail-closed-phi-access",
        relay_topic=f"t{stack.run_id}-fail-closed-relay",
        max_block_seconds=0.2,
        spool_after_seconds=0.2,
        connect_timeout_seconds=0.5,
        spool_dir=str(tmp_path / "spool"),
        spool_max_bytes=1,
    )
    async with (
        Emitter(config) as emitter,
        PostgresReader(dsn=stack.reader_url) as reader,
    ):
        recorder = EmitterReadRecorder(emitter, ledger_name="test.ledger.local")
        app = create_app(reader=reader, tokens=reader, recorder=recorder)
        async with TestClient(TestServer(app)) as client:
            yield client


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("auditor", "/v1/logs"),  # would be served
        ("auditor", "/v1/patients/MRN1/accesses"),  # 403
        (None, "/v1/logs"),  # 401
        ("investigator", "/v1/patients/%20/accesses"),  # 400
        ("investigator", "/v1/nothing-here"),  # 404
    ],
)
async def test_an_unrecordable_answer_is_503_and_carries_no_data(
    api: TestClient,  # type: ignore[type-arg]
    stack: Stack,
    role: str | None,
    path: str,
) -> None:
    headers = stack.auth(role) if role is not None else {}
    async with api.get(path, headers=headers) as resp:
        assert resp.status == 503, await resp.text()
        body = await resp.json()
        assert "Ledger-Audit-Event" not in resp.headers
    assert set(body) == {"error"}
    assert body["error"]["code"] == "unavailable"


async def test_public_routes_answer_without_a_record(api: TestClient) -> None:  # type: ignore[type-arg]
    async with api.get("/healthz") as resp:
        assert resp.status == 200
    async with api.get("/logs/2147483647/checkpoint") as resp:
        assert resp.status == 404  # no such log: answered, not 503
    async with api.get("/logs/2147483647/tile/0/000") as resp:
        assert resp.status == 404
