"""The ledger talks to PostgreSQL over TLS with ``sslmode=verify-full`` (docs/postgres.md).

A cluster of the test's own serves TLS only (pg_hba has hostssl lines alone), with a
server certificate for ``localhost`` from a CA the test makes. The migrations (psycopg),
the adapters' pools (asyncpg) and the real ``ledger consume`` and ``ledger serve``
processes connect with verify-full; a wrong CA, a wrong host name and a plain
connection are refused, and the refusal names no DSN or password.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from integrations.simulator import Simulator
from ledger.errors import UnavailableError
from ledger.pg.appender import PostgresAppender
from ledger.pg.reader import PostgresReader
from ledgerctl.settings import KafkaRole
from producers.emitter import Emitter, EmitterConfig
from producers.events import CriticalResultRelay, PhiAccessEvent
from tests.pgcluster import Cluster, cluster_home, make_ca, new_cluster, running
from tests.pgledger import ledger_services, ledger_stack
from tests.support import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[tuple[Cluster, Path]]:
    with cluster_home("ledger-pg-tls-") as top:
        ca = make_ca(top / "pki", "ledger-test-ca")
        cluster = new_cluster(top, "pg", ca=ca)
        with running(cluster):
            cluster.create_ledger()  # the migrations ran over verify-full too
            yield cluster, top


async def ssl_in_use(adapter: PostgresReader | PostgresAppender) -> tuple[bool, str]:
    async with adapter.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
    assert row is not None
    return bool(row["ssl"]), str(row["version"])


async def test_the_adapters_connect_with_verify_full(tls_cluster: tuple[Cluster, Path]) -> None:
    cluster, _ = tls_cluster
    assert "sslmode=verify-full" in cluster.url("ledger_reader")
    async with PostgresReader(dsn=cluster.url("ledger_reader")) as reader:
        on, version = await ssl_in_use(reader)
        assert on
        assert version.startswith("TLSv1.")
    appender = PostgresAppender(dsn=cluster.url("ledger_appender"), ledger_name="t.local")
    async with appender:
        assert (await ssl_in_use(appender))[0]


async def refused(dsn: str, password: str) -> str:
    with pytest.raises(UnavailableError) as caught:
        async with PostgresReader(dsn=dsn):
            pass
    message = str(caught.value)
    assert password not in message
    assert "postgresql://" not in message
    return message


async def test_a_wrong_ca_is_refused(tls_cluster: tuple[Cluster, Path]) -> None:
    cluster, top = tls_cluster
    other = make_ca(top / "other-pki", "some-other-ca")
    dsn = cluster.url("ledger_reader", sslrootcert=str(other.cert))
    message = await refused(dsn, cluster.password)
    assert "SSLCertVerificationError" in message


async def test_a_wrong_host_name_is_refused(tls_cluster: tuple[Cluster, Path]) -> None:
    cluster, _ = tls_cluster
    # The certificate names localhost only; 127.0.0.1 is the same server, another name.
    dsn = cluster.url("ledger_reader", host="127.0.0.1")
    message = await refused(dsn, cluster.password)
    assert "SSLCertVerificationError" in message
    # libpq (the migrations' driver) refuses it too.
    from ledger.pg.migrate import apply_migrations

    with pytest.raises(UnavailableError):
        apply_migrations(cluster.url("ledger_owner", host="127.0.0.1"))


async def test_a_connection_without_tls_is_refused_by_the_server(
    tls_cluster: tuple[Cluster, Path],
) -> None:
    cluster, _ = tls_cluster
    dsn = cluster.url("ledger_reader", sslmode="disable")
    message = await refused(dsn, cluster.password)
    assert "InvalidAuthorizationSpecificationError" in message  # pg_hba: no hostnossl line
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(dsn)


async def test_the_consumer_and_the_api_run_over_verify_full(
    tls_cluster: tuple[Cluster, Path],
    stack_env: dict[str, str],
    tmp_path: Path,
) -> None:
    cluster, _ = tls_cluster
    stack = ledger_stack(cluster, stack_env, tmp_path)
    sim = Simulator(seed=7_317_000, patients=3)
    stream = list(sim.events(30))
    with ledger_services(stack, tmp_path / "logs") as api:
        await emit(stack, stream)
        async with aiohttp.ClientSession(headers=stack.auth("admin")) as http:
            for event in stream:
                await proven(http, f"{api}/v1/events/{event.event_id}/proof")
    # Every session of the ledger's roles that is still open is encrypted.
    plain = cluster.psql(
        "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
        " WHERE a.usename LIKE 'ledger_%' AND NOT s.ssl"
    )
    assert plain == "0"


async def emit(stack: Stack, stream: Sequence[PhiAccessEvent | CriticalResultRelay]) -> None:
    access, relay = stack.topics("default")
    config = EmitterConfig(
        bootstrap_servers=stack.kafka_bootstrap,
        producer_id="tls-host",
        access_topic=access,
        relay_topic=relay,
        producer_key_file=stack.producer_key("tls-host"),
        kafka_security=stack.kafka(KafkaRole.SIMULATOR),
    )
    async with Emitter(config) as emitter:
        for event in stream:
            await emitter.emit(event)
        await emitter.flush()


async def proven(http: aiohttp.ClientSession, url: str, timeout: float = 90) -> None:
    """Until the event's proof is served (appended and covered by a signed checkpoint)."""
    deadline = time.monotonic() + timeout
    while True:
        async with http.get(url) as resp:
            if resp.status == 200:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"never proven: {url}")
        await asyncio.sleep(0.3)
