"""Shared fixtures: the real PostgreSQL and Kafka started by deploy/local/stack.sh.

Each test session gets its own scratch database (migrated, owned by ledger_owner)
and its own topic names, so the suite never touches the demo's data and can run
while `make up` is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from ledgerctl.settings import KafkaRole, kafka_security_from_env
from tests.scheduling import make_scheduler, turn, unit_of
from tests.support import Stack, kafka_security_env, read_env_file, with_database


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    return read_env_file()


@pytest.fixture(scope="session")
def stack(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from ledger.log.keys import write_signer_file
    from ledger.log.note import generate_signer
    from ledger.pg.migrate import apply_migrations
    from ledgerctl.infra import ensure_topics

    run_id = secrets.token_hex(4)
    database = f"ledger_test_{run_id}"
    owner = stack_env["DATABASE_URL"]

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(owner)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    signer_key, verifier_key = generate_signer("test.ledger.local")
    key_file = tmp_path_factory.mktemp("keys") / "signer.key"
    write_signer_file(key_file, [signer_key])
    asyncio.run(admin(f'CREATE DATABASE "{database}"'))
    try:
        apply_migrations(with_database(owner, database))
        tokens = asyncio.run(_issue_tokens(with_database(owner, database)))
        # The topics `Stack.env()` names: where the API's and the CLI's read records go
        # (a CLI read fails closed when its record has nowhere to go).
        asyncio.run(
            ensure_topics(
                stack_env["KAFKA_BOOTSTRAP"],
                (
                    f"t{run_id}-default-phi-access",
                    f"t{run_id}-default-relay",
                    f"t{run_id}-default-registry",
                ),
                1,
                kafka_security_from_env(stack_env, KafkaRole.ADMIN),
            )
        )
        yield Stack(
            kafka_bootstrap=stack_env["KAFKA_BOOTSTRAP"],
            owner_url=with_database(owner, database),
            appender_url=with_database(stack_env["LEDGER_APPENDER_URL"], database),
            reader_url=with_database(stack_env["LEDGER_READER_URL"], database),
            database=database,
            run_id=run_id,
            signer_key_file=str(key_file),
            verifier_key=verifier_key,
            tokens=tokens,
            spool_dir=str(tmp_path_factory.mktemp("spool")),
            keys_dir=str(tmp_path_factory.mktemp("producer-keys")),
            kafka_env=kafka_security_env(stack_env),
        )
    finally:
        asyncio.run(drop_database(owner, database))


@pytest.fixture
async def owner_conn(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.owner_url)
    try:
        yield conn
    finally:
        await conn.close()


async def _issue_tokens(owner_url: str) -> dict[str, str]:
    """One API token per role for this test session."""
    from ledger.audit.auth import Role
    from ledgerctl.tokens import create_token

    tokens = {}
    for role in Role:
        issued = await create_token(
            owner_url, subject=f"test-{role.value}", role=role, ttl=None, note="tests"
        )
        tokens[role.value] = issued.text
    return tokens


async def _admin(owner_url: str, statement: str) -> None:
    """One statement as the schema owner; retried while a closed session of another role
    (a superuser used to tamper, an appender that just stopped) is still ending."""
    conn = await asyncpg.connect(owner_url)
    try:
        for _ in range(40):
            try:
                await conn.execute(statement)
                return
            except asyncpg.InsufficientPrivilegeError:
                await asyncio.sleep(0.25)
        await conn.execute(statement)
    finally:
        await conn.close()


async def drop_database(owner_url: str, database: str) -> None:
    """Drop a test's scratch database, retrying while another role's session (a reader
    pool, a process just stopped, a superuser who tampered) is still ending: the owner
    may not terminate those."""
    await _admin(owner_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@contextlib.contextmanager
def own_ledger(stack: Stack, database: str) -> Iterator[Stack]:
    """``stack`` on a fresh, migrated database of its own (with its own API tokens),
    dropped afterwards: for processes that sign every log of the database they write."""
    from ledger.pg.migrate import apply_migrations

    asyncio.run(_admin(stack.owner_url, f'CREATE DATABASE "{database}"'))
    try:
        owner = with_database(stack.owner_url, database)
        apply_migrations(owner)
        yield dataclasses.replace(
            stack,
            owner_url=owner,
            appender_url=with_database(stack.appender_url, database),
            reader_url=with_database(stack.reader_url, database),
            database=database,
            tokens=asyncio.run(_issue_tokens(owner)),
        )
    finally:
        asyncio.run(drop_database(stack.owner_url, database))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The heavy files first (tests/scheduling.py): `make test`'s scheduler hands them
    to one process as one unit while the other starts on the rest."""
    items.sort(key=lambda item: unit_of(item.nodeid) != "heavy")


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    return make_scheduler(config, log)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Setup, call and teardown of one test inside its turn (tests/scheduling.py), outside
    pytest-timeout's clock: waiting for an ``alone`` test is no test's time."""
    with turn(item.get_closest_marker("alone") is not None):
        yield
