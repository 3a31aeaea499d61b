"""PostgreSQL's log carries no row values, key values or bind parameters.

By default a constraint violation logs ``DETAIL: Failing row contains (...)`` (the
row, with its PHI), a unique violation logs the key, and a slow statement logs its
parameters. ``deploy/local/postgres.sh`` configures the cluster so none of this
reaches the log, including on an existing cluster when the script runs again. The
test uses a throwaway cluster that the script starts in a temporary directory on a
free port. It never touches the shared one, which only picks the settings up when
its ``postgres.sh start`` runs again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import asyncpg
import pytest

from tests.private_pg import PrivatePostgres, private_postgres

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SETTINGS = {
    "log_error_verbosity": "terse",
    "log_min_error_statement": "panic",
    "log_parameter_max_length_on_error": "0",
    "log_parameter_max_length": "0",
}
Cluster = PrivatePostgres


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with private_postgres("ledger-pg-logging-") as cluster:
        yield cluster


async def settings_now(cluster: Cluster) -> dict[str, str]:
    conn = await asyncpg.connect(cluster.url("ledger_owner"))
    try:
        return {name: await conn.fetchval(f"SHOW {name}") for name in SETTINGS}
    finally:
        await conn.close()


async def wait_for_settings(cluster: Cluster, expected: dict[str, str]) -> None:
    """A reload is asynchronous: new sessions see it once the postmaster has read it."""
    deadline = time.monotonic() + 60
    while (now := await settings_now(cluster)) != expected:
        if time.monotonic() > deadline:
            pytest.fail(f"settings did not become {expected}: {now}")
        await asyncio.sleep(0.2)


async def provoke(cluster: Cluster, marker: str) -> None:
    """A check violation, a unique violation and a slow statement, each carrying ``marker``."""
    conn = await asyncpg.connect(cluster.url("ledger_owner"))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS phi_probe"
            " (k text PRIMARY KEY, v text CHECK (v NOT LIKE 'PHI-%'))"
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO phi_probe VALUES ($1, $2)", "row", f"PHI-{marker}")
        await conn.execute("INSERT INTO phi_probe VALUES ($1, 'x')", f"key-{marker}")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute("INSERT INTO phi_probe VALUES ($1, 'x')", f"key-{marker}")
    finally:
        await conn.close()
    superuser = await asyncpg.connect(cluster.url("postgres"))
    try:
        await superuser.execute("SET log_min_duration_statement = 0")  # every statement is slow
        await superuser.fetchval("SELECT $1::text", f"param-{marker}")
    finally:
        await superuser.close()


def log_after(cluster: Cluster, start: int) -> str:
    with cluster.log.open("rb") as f:
        f.seek(start)
        return f.read().decode("utf-8", "replace")


async def test_the_server_log_carries_no_values_even_on_an_existing_cluster(
    cluster: Cluster,
) -> None:
    assert await settings_now(cluster) == SETTINGS
    start = cluster.log.stat().st_size
    await provoke(cluster, "FRESH1")
    fresh = log_after(cluster, start)
    assert 'violates check constraint "phi_probe_v_check"' in fresh, "the error is logged"
    assert 'violates unique constraint "phi_probe_pkey"' in fresh
    assert "FRESH1" not in fresh, fresh

    # A cluster from before this setting: no include, PostgreSQL's defaults.
    conf = cluster.data / "postgresql.conf"
    conf.write_text(
        "".join(
            line for line in conf.read_text().splitlines(keepends=True) if "include" not in line
        )
    )
    (cluster.data / "phi-ledger-logging.conf").unlink()
    cluster.pg_ctl("reload")
    await wait_for_settings(
        cluster,
        {
            "log_error_verbosity": "default",
            "log_min_error_statement": "error",
            "log_parameter_max_length_on_error": "0",
            "log_parameter_max_length": "-1",
        },
    )
    start = cluster.log.stat().st_size
    await provoke(cluster, "OLD2")
    old = log_after(cluster, start)
    assert "Failing row contains (row, PHI-OLD2)" in old, "the leak this guards against"
    assert "Key (k)=(key-OLD2) already exists" in old
    assert "param-OLD2" in old

    cluster.script()  # `make up` on a running, older cluster
    await wait_for_settings(cluster, SETTINGS)
    start = cluster.log.stat().st_size
    await provoke(cluster, "AGAIN3")
    again = log_after(cluster, start)
    assert 'violates check constraint "phi_probe_v_check"' in again
    assert "AGAIN3" not in again, again
