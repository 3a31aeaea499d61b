"""One asyncio stream server for a listener (TLS or plain TCP): started on a host and
port, closed, and ended with its connections.

Invariant: ``end`` cancels every connection task it is given (each keeps its partial
frame), waits for them, then waits at most two seconds for the server to close.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterable

from integrations.atna.receiver.stream import READ_CHUNK

__all__ = ["StreamServer"]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class StreamServer:
    """The ``asyncio.Server`` of one listener."""

    def __init__(self, max_connections: int) -> None:
        self._backlog = min(max_connections, 1024)
        self._server: asyncio.Server | None = None

    async def start(self, handler: Handler, host: str, port: int | None) -> int:
        """Listen on ``host``:``port``; the port bound (``port`` 0 picks one)."""
        self._server = await asyncio.start_server(
            handler, host, port, limit=READ_CHUNK, backlog=self._backlog
        )
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._server is None else tuple(self._server.sockets)

    def close(self) -> None:
        """Stop accepting connections."""
        if self._server is not None:
            self._server.close()

    async def end(self, connections: Iterable[asyncio.Task[None]]) -> None:
        """End ``connections`` (keeping partial frames), then wait for the server."""
        tasks = list(connections)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()
            self._server = None
