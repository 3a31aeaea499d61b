"""Pool sizes and timeouts are settings, per pool, and impossible ones are refused."""

from __future__ import annotations

import pytest

from ledger.pg.pool import PooledAdapter, PoolSettings
from ledgerctl.settings import PgPool, Settings


def settings(**env: str) -> Settings:
    return Settings(_env_file=None, **env)  # type: ignore[call-arg]


def test_each_pool_reads_its_own_variables() -> None:
    s = settings(
        LEDGER_PG_READER_POOL_MIN="3",
        LEDGER_PG_READER_POOL_MAX="24",
        LEDGER_PG_READER_CONNECT_TIMEOUT="2.5",
        LEDGER_PG_READER_COMMAND_TIMEOUT="9",
    )
    assert s.pg_pool(PgPool.READER) == PoolSettings(
        min_size=3, max_size=24, connect_timeout=2.5, command_timeout=9.0
    )
    # The others keep the sizes the adapters had before they were settings.
    assert s.pg_pool(PgPool.APPENDER) == PoolSettings(
        min_size=1, max_size=4, connect_timeout=10.0, command_timeout=60.0
    )
    assert s.pg_pool(PgPool.REPORTS).command_timeout == 120.0
    assert {p.value for p in PgPool} == {"appender", "reader", "reports", "compliance", "registry"}


def test_a_minimum_above_the_maximum_is_refused_naming_the_variables() -> None:
    s = settings(LEDGER_PG_APPENDER_POOL_MIN="5", LEDGER_PG_APPENDER_POOL_MAX="2")
    with pytest.raises(SystemExit, match="LEDGER_PG_APPENDER_POOL_MIN/_MAX"):
        s.pg_pool(PgPool.APPENDER)


@pytest.mark.parametrize(
    "variable", ["LEDGER_PG_READER_POOL_MAX", "LEDGER_PG_READER_COMMAND_TIMEOUT"]
)
def test_zero_sizes_and_timeouts_are_refused(variable: str) -> None:
    with pytest.raises(ValueError, match=variable):
        settings(**{variable: "0"})


@pytest.mark.parametrize(
    "values",
    [
        {"max_size": 0, "command_timeout": 1.0},
        {"max_size": 2, "min_size": 3, "command_timeout": 1.0},
        {"max_size": 2, "command_timeout": 0.0},
        {"max_size": 2, "command_timeout": 1.0, "connect_timeout": -1.0},
    ],
)
def test_pool_settings_refuse_impossible_values(values: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="pool"):
        PoolSettings(**values)  # type: ignore[arg-type]


def test_the_operator_settings_win_over_an_adapters_defaults() -> None:
    chosen = PoolSettings(max_size=7, command_timeout=3.0)
    adapter = PooledAdapter(
        dsn="postgresql://x@127.0.0.1/x", pool_size=2, command_timeout=60, pool=chosen
    )
    assert adapter.pool_settings is chosen
    default = PooledAdapter(dsn="postgresql://x@127.0.0.1/x", pool_size=2, command_timeout=60)
    assert default.pool_settings == PoolSettings(max_size=2, command_timeout=60.0)


async def test_transient_failures_of_a_reader_method_become_unavailable() -> None:
    import asyncpg

    from ledger.errors import MalformedInputError, UnavailableError
    from ledger.pg.pool import unavailable_when_transient

    @unavailable_when_transient
    async def lost() -> None:
        raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")

    @unavailable_when_transient
    async def refused() -> None:
        raise MalformedInputError("bad")

    with pytest.raises(UnavailableError, match="ConnectionDoesNotExistError"):
        await lost()
    with pytest.raises(MalformedInputError):
        await refused()
