"""Pool settings take effect on a real server: the minimum is opened at start, a slow
statement is cancelled at the command timeout, and a server that never answers fails the
start at the connect timeout as "unavailable" (docs/postgres.md). The reader's pool skips
asyncpg's reset statement (its sessions hold no state), yet a connection never comes back
inside a transaction it was given back in."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from ledger.errors import UnavailableError
from ledger.pg.pool import PoolSettings
from ledger.pg.reader import PostgresReader
from tests.pgcluster import Cluster, cluster_home, new_cluster, running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with cluster_home("ledger-pg-pools-") as top:
        cluster = new_cluster(top, "pg")
        with running(cluster):
            cluster.create_ledger()
            yield cluster


async def test_the_minimum_is_opened_and_slow_statements_are_cancelled(cluster: Cluster) -> None:
    settings = PoolSettings(min_size=3, max_size=5, connect_timeout=5.0, command_timeout=0.5)
    async with PostgresReader(dsn=cluster.url("ledger_reader"), pool=settings) as reader:
        assert reader.pool.get_min_size() == 3
        assert reader.pool.get_max_size() == 5
        opened = cluster.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'ledger_reader'"
        )
        assert opened == "3"
        with pytest.raises(TimeoutError):
            await reader.pool.fetchval("SELECT pg_sleep(30)")
        assert await reader.pool.fetchval("SELECT 1") == 1


async def test_a_server_that_never_answers_fails_at_the_connect_timeout() -> None:
    with socket.socket() as silent:  # accepts TCP (the backlog) but never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        dsn = f"postgresql://ledger_reader:x@127.0.0.1:{port}/ledger?sslmode=disable"
        settings = PoolSettings(max_size=2, connect_timeout=0.5, command_timeout=5.0)
        with pytest.raises(UnavailableError, match="TimeoutError"):
            async with PostgresReader(dsn=dsn, pool=settings):
                pass


async def test_a_reader_connection_never_comes_back_inside_a_transaction(cluster: Cluster) -> None:
    settings = PoolSettings(min_size=1, max_size=1, connect_timeout=5.0, command_timeout=5.0)
    async with PostgresReader(dsn=cluster.url("ledger_reader"), pool=settings) as reader:
        async with reader.pool.acquire() as conn:
            # Left open by hand, as a cancelled statement of a managed one would be.
            await conn.execute("BEGIN READ ONLY; SET LOCAL statement_timeout = 1234")
            assert conn.is_in_transaction()
            before = await conn.fetchval("SELECT pg_backend_pid()")
        async with reader.pool.acquire() as conn:  # the one connection again
            assert await conn.fetchval("SELECT pg_backend_pid()") == before
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SHOW statement_timeout") != "1234ms"
