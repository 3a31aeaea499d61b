"""The PostgreSQL primary dies mid-stream; pg_auto_failover promotes its synchronous
standby, and the ledger carries on: nothing lost, nothing duplicated, ``ledger verify``
clean (docs/postgres.md).

A formation of the test's own (tests/pgautofailover.py): a monitor, a primary and a
synchronous standby. The real ``ledger consume`` and ``ledger serve`` connect with
multi-host URLs and ``target_session_attrs=read-write``. A producer process streams
events while the test SIGKILLs the primary's keeper and PostgreSQL (the machine dies).
Neither ledger process is restarted. Until the standby is promoted, the API answers 503
(never 500); afterwards it answers from the new primary, and the consumer appends there.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from ledger.http.middleware import REQUEST_TIMEOUT
from ledgerctl.infra import ensure_topics
from ledgerctl.settings import KafkaRole
from tests.e2e.conftest import install_or_skip
from tests.faults.conftest import EVENTS, FaultLedger, kill, read_ids
from tests.faults.test_faults import settle_and_check, stream_timeout, wait
from tests.pgautofailover import Formation, formation, installed
from tests.pgcluster import cluster_home, free_port
from tests.pgledger import ledger_stack
from tests.support import run_ledger

pytestmark = [pytest.mark.faults, pytest.mark.timeout(1800)]

#: The stream lasts half a minute: the primary dies a fifth of the way in, and the
#: failover (a few seconds with MONITOR_SETTINGS) ends while events still arrive.
STREAM_SECONDS = 30


@pytest.fixture
def ha(stack_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Formation, FaultLedger]]:
    install_or_skip("pgautofailover.sh", "pg_auto_failover", installed)
    with cluster_home("ledger-pg-ha-") as top, formation(top, secrets.token_urlsafe(18)) as f:
        stack = ledger_stack(
            None,
            stack_env,
            tmp_path,
            owner_url=f.url("ledger_owner"),
            appender_url=f.url("ledger_appender"),
            reader_url=f.url("ledger_reader"),
        )
        topics = stack.topics(f"ha{secrets.token_hex(3)}")
        asyncio.run(ensure_topics(stack.kafka_bootstrap, topics, 4, stack.kafka(KafkaRole.ADMIN)))
        env = stack.env(
            LEDGER_CLI_PRODUCER_KEY_FILE=stack.producer_key("ledger-cli"),
            LEDGER_ACCESS_TOPIC=topics[0],
            LEDGER_RELAY_TOPIC=topics[1],
            LEDGER_CONSUMER_GROUP=f"t{stack.run_id}-ha-{secrets.token_hex(4)}",
            LEDGER_CONSUMER_SESSION_TIMEOUT_MS="6000",
            # Fail fast on the dead host, so the next one is tried.
            LEDGER_PG_APPENDER_CONNECT_TIMEOUT="3",
            LEDGER_PG_READER_CONNECT_TIMEOUT="3",
        )
        ledger = FaultLedger(
            stack=stack, database="ledger", env=env, topics=topics, workdir=tmp_path
        )
        try:
            yield f, ledger
        finally:
            for proc in ledger.processes:
                kill(proc, signal.SIGTERM)


async def events_in_ledger(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


async def watch_api(api: str, auth: dict[str, str], stop: asyncio.Event) -> list[int]:
    """The API's answers to a listing of logs, every 200 ms, until ``stop``. The API
    promises an answer within REQUEST_TIMEOUT (a 503 "timeout" at worst), so the client
    waits that long and a little more: on a loaded machine a request caught in the
    failover took longer than the 15 s this waited before."""
    statuses = []
    patience = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT + 15)
    async with aiohttp.ClientSession(headers=auth, timeout=patience) as http:
        while not stop.is_set():
            async with http.get(f"{api}/v1/logs") as resp:
                statuses.append(resp.status)
            await asyncio.sleep(0.2)
    return statuses


async def test_primary_killed_mid_stream_fails_over_to_the_synchronous_standby(
    ha: tuple[Formation, FaultLedger], tmp_path: Path
) -> None:
    f, ledger = ha
    old_primary = f.primary()
    assert old_primary.name == "node1"
    assert f.sql(old_primary, "SHOW synchronous_standby_names", "postgres").startswith("ANY 1")

    port = free_port()
    api = f"http://127.0.0.1:{port}"
    consumer = ledger.consumer()
    api_proc = ledger.spawn(
        "api", "serve", "--port", str(port), env={**ledger.key_env("api-ha"), "LEDGER_API_URL": api}
    )
    waited = run_ledger({**ledger.env, "LEDGER_API_URL": api}, "wait", "api", "--timeout", "90")
    assert waited.returncode == 0, ledger.log_tail("api")

    ids_file = tmp_path / "ids.txt"
    rate = max(100, EVENTS // STREAM_SECONDS)
    producer = ledger.spawn(
        "simulate", "simulate", "--events", str(EVENTS), "--rate", str(rate),
        "--seed", "4471", "--ids-out", str(ids_file), "--producer-id", "faults-4471",
        env=ledger.key_env("faults-4471"),
    )  # fmt: skip
    await ledger.inject_bad_records(5)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_api(api, ledger.stack.auth("admin"), stop))

    # Mid-stream: a fifth of the events are in the ledger, the rest still to come.
    deadline = time.monotonic() + stream_timeout()
    while await events_in_ledger(ledger.owner_url) < EVENTS // 5:
        assert time.monotonic() < deadline, ledger.log_tail("consumer")
        await asyncio.sleep(0.2)
    assert producer.poll() is None, "the producer is still streaming"

    f.kill(old_primary)
    await asyncio.to_thread(f.wait_states, {"node2": "wait_primary"})
    assert f.primary().name == "node2"

    wait(producer, stream_timeout(), ledger, "simulate")
    ids = read_ids(ids_file)
    await settle_and_check(ledger, ids)  # exactly once, gapless, quarantine, verify

    # Neither ledger process was restarted, and the API answers from the new primary.
    assert consumer.poll() is None, ledger.log_tail("consumer")
    assert api_proc.poll() is None, ledger.log_tail("api")
    stop.set()
    statuses = await watcher
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[-1] == 200
    async with aiohttp.ClientSession(headers=ledger.stack.auth("admin")) as http:
        for event_id in ids[-20:]:
            async with http.get(f"{api}/v1/events/{event_id}/proof") as resp:
                assert resp.status == 200, await resp.text()
    writes = await asyncpg.connect(ledger.owner_url)
    try:
        assert await writes.fetchval("SELECT inet_server_port()") == f.nodes[1].port
    finally:
        await writes.close()
