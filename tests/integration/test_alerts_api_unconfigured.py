"""The compliance alert routes of an API wired without a triage store: reads are served
from the reader role, a transition is refused 503 (and recorded) before its body is
read, and an API with no alert book serves no alert route at all. Real PostgreSQL (the
session's scratch ledger), the app in process, reads kept in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ledger.audit.readlog import LedgerRead
from ledger.http import create_app
from ledger.pg.compliance import PostgresRulesStore
from ledger.pg.reader import PostgresReader
from tests.support import Stack

pytestmark = pytest.mark.integration


class KeptReads:
    def __init__(self) -> None:
        self.reads: list[LedgerRead] = []

    async def record(self, read: LedgerRead) -> None:
        self.reads.append(read)


@pytest.fixture
async def reads() -> KeptReads:
    return KeptReads()


@pytest.fixture
async def api(stack: Stack, reads: KeptReads) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with (
        PostgresReader(dsn=stack.reader_url) as reader,
        PostgresRulesStore(dsn=stack.reader_url) as book,
    ):
        app = create_app(reader=reader, tokens=reader, recorder=reads, alert_book=book)
        async with TestClient(TestServer(app)) as client:
            yield client


async def test_reads_are_served_and_a_transition_is_refused_503_and_recorded(
    api: TestClient,
    stack: Stack,
    reads: KeptReads,  # type: ignore[type-arg]
) -> None:
    listed = await api.get("/v1/compliance/alerts", headers=stack.auth("investigator"))
    assert listed.status == 200, await listed.text()
    assert "alerts" in await listed.json()
    refused = await api.post(
        "/v1/compliance/alerts/1/transitions",
        json={"state": "acknowledged", "note": "x"},
        headers=stack.auth("investigator"),
    )
    assert refused.status == 503
    assert (await refused.json())["error"]["code"] == "unavailable"
    assert [(r.method, r.status) for r in reads.reads] == [("GET", 200), ("POST", 503)]
    assert reads.reads[1].path == "/v1/compliance/alerts/1/transitions"


async def test_without_an_alert_book_no_alert_route_is_served(stack: Stack) -> None:
    async with PostgresReader(dsn=stack.reader_url) as reader:
        app = create_app(reader=reader, tokens=reader, recorder=KeptReads())
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/v1/compliance/alerts", headers=stack.auth("admin"))
            assert resp.status == 404
