"""A consumer started while PostgreSQL is down waits for it instead of exiting.

The fault suite caught a consumer that, started a moment before the database stopped,
died at once with "cannot connect to PostgreSQL" and appended nothing after the restart.
Here the database sits behind a TCP forwarder that nothing listens on at first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from consumers.process import _database_unless_stopped
from ledger.errors import UnavailableError
from ledger.pg.appender import PostgresAppender
from tests.ports import free_port
from tests.support import Stack

pytestmark = pytest.mark.integration


def at_port(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    userinfo, _, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{port}"))


@contextlib.asynccontextmanager
async def forwarder(port: int, target: str) -> AsyncIterator[None]:
    """Listen on ``port`` and pipe each connection to ``target`` (host:port) unchanged."""
    host, _, target_port = urlsplit(target).netloc.rpartition("@")[2].rpartition(":")

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(target_port))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


async def test_the_consumer_waits_for_a_database_that_comes_up_later(stack: Stack) -> None:
    port = free_port()
    appender = PostgresAppender(dsn=at_port(stack.appender_url, port), ledger_name="t")
    stop = asyncio.Event()
    starting = asyncio.create_task(_database_unless_stopped(appender, stop))
    await asyncio.sleep(1.5)  # refused at least twice: nothing listens yet
    assert not starting.done()
    async with forwarder(port, stack.appender_url):
        assert await asyncio.wait_for(starting, 30) is True
        try:
            assert await appender.pool.fetchval("SELECT 1") == 1
        finally:
            await appender.stop()


async def test_a_stop_while_waiting_for_the_database_ends_the_wait(stack: Stack) -> None:
    appender = PostgresAppender(dsn=at_port(stack.appender_url, free_port()), ledger_name="t")
    stop = asyncio.Event()
    starting = asyncio.create_task(_database_unless_stopped(appender, stop))
    await asyncio.sleep(1.0)
    stop.set()
    assert await asyncio.wait_for(starting, 10) is False


async def test_a_database_that_never_comes_is_an_error_in_the_end(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("consumers.process.START_RETRY_TOTAL_SECONDS", 1.0)
    appender = PostgresAppender(dsn=at_port(stack.appender_url, free_port()), ledger_name="t")
    with pytest.raises(UnavailableError, match="cannot connect to PostgreSQL"):
        await asyncio.wait_for(_database_unless_stopped(appender, asyncio.Event()), 30)
