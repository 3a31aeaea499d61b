"""The plain TCP listener (RFC 6587): syslog frames without TLS, for senders that cannot.

Invariant: off unless a ``tcp_port`` is configured; bound to ``tcp_host`` (loopback by
default, whatever the TLS listener's host). Plain TCP carries no certificate, so
a connection is served only when its source address is in a network the ``[tcp]``
section of the sender policy lists (else it is closed before anything is read, counted in
``tcp_refused_sources`` and logged); its sender is ``tcp:<address>``, which may claim
only that entry's AuditSourceIDs. At most ``max_connections`` are served; frames are read
by ``stream.StreamReader`` (octet counting or LF framing, detected per connection; slow,
oversized and mixed-framing senders are cut off and what they sent is kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from integrations.atna.receiver.config import AtnaReceiverConfig
from integrations.atna.receiver.intake import Intake, peer_name
from integrations.atna.receiver.keeper import KeptWriter
from integrations.atna.receiver.server import StreamServer
from integrations.atna.receiver.stats import Counters
from integrations.atna.receiver.stream import StreamReader
from integrations.atna.senders import tcp_sender

__all__ = ["TcpListener"]

# One logger name for all the receiver's log lines.
logger = logging.getLogger("integrations.atna.receiver")


class TcpListener:
    """The plain TCP server and its connections."""

    def __init__(
        self,
        config: AtnaReceiverConfig,
        port: int,
        intake: Intake,
        keeper: KeptWriter,
        counters: Counters,
        stopping: Callable[[], bool],
    ) -> None:
        self._config = config
        self._bind_port = port
        self._counters = counters
        self._stopping = stopping
        self._stream = StreamReader(config, intake, keeper, counters, "tcp", self._count)
        self._server = StreamServer(config.max_connections)
        self._connections: set[asyncio.Task[None]] = set()
        self.port: int | None = None

    def _count(self) -> None:
        self._counters.received_tcp += 1

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        cfg = self._config
        logger.warning(
            "ATNA: listening on plain TCP %s:%s: no certificate, senders are known by their "
            "source address only; connections are served from the %d network(s) under [tcp]",
            cfg.tcp_host,
            self._bind_port,
            len(cfg.policy.tcp),
        )
        self.port = await self._server.start(self._serve, cfg.tcp_host, self._bind_port)

    def close(self) -> None:
        """Stop accepting connections."""
        self._server.close()

    async def end_connections(self) -> None:
        """End every connection (keeping partial frames), then wait for the server."""
        await self._server.end(self._connections)

    def _admit(self, address: object) -> str | None:
        """The sender of a connection from ``address`` (``tcp:<ip>``), or None (refused,
        counted, logged; the caller closes the connection)."""
        peer = peer_name(address)
        ip = address[0] if isinstance(address, tuple) and address else None
        if not isinstance(ip, str) or self._config.policy.tcp_network(ip) is None:
            self._counters.tcp_refused_sources += 1
            logger.warning("ATNA: refused plain TCP connection from %s: not listed in [tcp]", peer)
            return None
        if self._stopping() or len(self._connections) >= self._config.max_connections:
            self._counters.connections_refused += 1
            logger.warning("ATNA: refusing TCP connection from %s (connection limit)", peer)
            return None
        return tcp_sender(ip)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername")
        task = asyncio.current_task()
        sender = self._admit(address)
        if task is None or sender is None:
            writer.close()
            return
        self._connections.add(task)
        try:
            await self._stream.read(reader, peer_name(address), sender)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
