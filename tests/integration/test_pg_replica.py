"""The API reads from a streaming replica, its listings still pinned to signed sizes.

A primary and a hot standby of the test's own (pg_basebackup, streaming). Leaves are
appended and checkpoints signed on the primary; the standby's WAL replay is paused
after it has replayed leaves that no checkpoint it has seen covers yet, while the
primary goes on signing. The real ``ledger serve`` reading the standby lists only the
entries the standby's own checkpoints cover (``as_of`` = those sizes), proves each of
them, and does not prove the others; a page cursor stays pinned after replay resumes.
A listing pinned to sizes the standby has not replayed is refused as "retry", never
answered with entries missing.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from ledger.audit.query import HistoryKey, HistoryQuery, Snapshot
from ledger.errors import PushbackError
from ledger.log.keys import load_signers
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from ledger.pg.reader import PostgresReader
from tests.pgcluster import Cluster, cluster_home, new_cluster, running, standby_of, wait_replayed
from tests.pgledger import ledger_services, ledger_stack
from tests.support import Stack, synthetic_batch

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TOPIC = "replica-phi-access"


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Cluster, Cluster]]:
    with cluster_home("ledger-pg-replica-") as top:
        primary = new_cluster(top, "primary")
        with running(primary):
            primary.create_ledger()
            replica = standby_of(primary, top, "replica")
            with running(replica):
                assert replica.psql("SELECT pg_is_in_recovery()") == "t"
                yield primary, replica


class Writer:
    """Appends synthetic entries (all of patient ``p``) to one log and signs it."""

    def __init__(self, appender: PostgresAppender, stack: Stack) -> None:
        self._appender = appender
        self._cp = Checkpointer(
            pool=appender.pool,
            signers=load_signers(stack.signer_key_file),
            policy=CheckpointPolicy(every_leaves=1, every_ms=0),
        )
        self.size = 0
        self.log_id = 0
        self.event_ids: list[str] = []

    async def append(self, n: int) -> None:
        items = synthetic_batch(TOPIC, self.size, n, random.Random(self.size))
        result = await self._appender.append(topic=TOPIC, partition=0, items=items)
        self.log_id = result.log_id
        self.size += n
        self.event_ids += [str(i.index.event_id) for i in items]

    async def sign(self) -> None:
        assert await self._cp.checkpoint(self.log_id) is not None


async def listing(
    http: aiohttp.ClientSession, api: str, **params: str
) -> tuple[list[int], dict[str, int], str | None]:
    async with http.get(f"{api}/v1/patients/p/accesses", params=params) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    indexes = [a["ledger"]["leaf_index"] for a in body["accesses"]]
    return indexes, body["as_of"], body["next_cursor"]


async def proof_status(http: aiohttp.ClientSession, api: str, event_id: str) -> int:
    async with http.get(f"{api}/v1/events/{event_id}/proof") as resp:
        return resp.status


async def test_a_lagging_replica_never_lists_an_entry_without_its_checkpoint(
    pair: tuple[Cluster, Cluster], stack_env: dict[str, str], tmp_path: Path
) -> None:
    primary, replica = pair
    stack = ledger_stack(primary, stack_env, tmp_path, reader_url=replica.url("ledger_reader"))
    appender = PostgresAppender(dsn=stack.appender_url, ledger_name="test.ledger.local")
    async with appender:
        writer = Writer(appender, stack)
        await writer.append(30)
        await writer.sign()  # signed: 30
        await writer.append(20)  # 50 leaves, 30 signed
        wait_replayed(primary, replica)
        replica.psql("SELECT pg_wal_replay_pause()")
        assert replica.psql("SELECT pg_get_wal_replay_pause_state()") == "paused"
        await writer.sign()  # the primary signs 50, then 60; the replica stays at 30
        await writer.append(10)
        await writer.sign()

        with ledger_services(stack, tmp_path / "logs", consume=False) as api:
            async with aiohttp.ClientSession(headers=stack.auth("admin")) as http:
                indexes, as_of, _ = await listing(http, api, limit="1000")
                assert sorted(indexes) == list(range(30)), "only what the replica saw signed"
                assert list(as_of.values()) == [30]
                for event_id in writer.event_ids[:30]:
                    assert await proof_status(http, api, event_id) == 200
                # Replayed but unsigned on the replica: in its tables, not in its answers.
                assert replica.psql("SELECT count(*) FROM leaves", database="ledger") == "50"
                for event_id in writer.event_ids[30:50]:
                    assert await proof_status(http, api, event_id) == 503

                # A listing pinned beyond what the replica has replayed: retry, not a
                # page with entries missing.
                async with PostgresReader(dsn=stack.reader_url) as reader:
                    query = HistoryQuery(key=HistoryKey.PATIENT, value="p", qualifier=None)
                    with pytest.raises(PushbackError, match="not yet replayed"):
                        await reader.history(
                            query, snapshot=Snapshot(sizes=(60,)), limit=10, after=None
                        )

                first, _, cursor = await listing(http, api, limit="10")
                assert cursor is not None
                replica.psql("SELECT pg_wal_replay_resume()")
                wait_replayed(primary, replica)
                rest: list[int] = []
                while cursor is not None:
                    page, as_of, cursor = await listing(http, api, limit="10", cursor=cursor)
                    assert list(as_of.values()) == [30], "the cursor keeps its snapshot"
                    rest += page
                assert sorted(first + rest) == list(range(30))

                # A fresh listing: the replica's new signed size, once the API's snapshot
                # of the signed sizes (reused for a quarter of a second) is renewed.
                now, as_of, _ = await listing(http, api, limit="1000")
                deadline = time.monotonic() + 30
                while list(as_of.values()) != [60] and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                    now, as_of, _ = await listing(http, api, limit="1000")
                assert list(as_of.values()) == [60]
                assert sorted(now) == list(range(60))
                for event_id in writer.event_ids[30:]:
                    assert await proof_status(http, api, event_id) == 200
