"""The RFC 5425 TLS listener: mutual TLS per connection, syslog frames in (``stream``).

Invariant: a client is authenticated (a certificate the configured client CA signed,
with one subject CN, within ``handshake_timeout_seconds``) before it takes a connection
slot; at most ``max_connections`` are served; a connection idle for
``idle_timeout_seconds`` is closed. Frames are read by ``stream.StreamReader``: octet
counting as RFC 5425 says, or LF-terminated lines (RFC 6587 non-transparent framing, as
rsyslog sends by default), pushed back while the intake is full, kept when they cannot
be framed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

from integrations.atna.receiver.config import AtnaReceiverConfig
from integrations.atna.receiver.intake import Intake, peer_name
from integrations.atna.receiver.keeper import KeptWriter
from integrations.atna.receiver.server import StreamServer
from integrations.atna.receiver.stats import Counters
from integrations.atna.receiver.stream import StreamReader
from integrations.atna.senders import certificate_sender

__all__ = ["TlsListener"]

# One logger name for all the receiver's log lines.
logger = logging.getLogger("integrations.atna.receiver")


def _ssl_context(cfg: AtnaReceiverConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.cert_file is None or cfg.key_file is None:  # pragma: no cover - __post_init__
        raise ValueError("the TLS listener needs cert_file and key_file")
    ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    if not cfg.client_ca_file:  # pragma: no cover - __post_init__
        raise ValueError("the TLS listener needs client_ca_file")
    # Only the configured client CA: not the system's, whose CAs sign anyone's host.
    ctx.load_verify_locations(cfg.client_ca_file)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class TlsListener:
    """The TCP server, its connections and their handshakes."""

    def __init__(
        self,
        config: AtnaReceiverConfig,
        intake: Intake,
        keeper: KeptWriter,
        counters: Counters,
        stopping: Callable[[], bool],
    ) -> None:
        self._config = config
        self._intake = intake
        self._keeper = keeper
        self._counters = counters
        self._stopping = stopping
        self._stream = StreamReader(config, intake, keeper, counters, "tls", self._count)
        self._tls: ssl.SSLContext | None = None
        self._server = StreamServer(config.max_connections)
        self._connections: set[asyncio.Task[None]] = set()
        self._handshaking: set[asyncio.Task[None]] = set()
        self.port: int | None = None

    def _count(self) -> None:
        self._counters.received_tls += 1

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        cfg = self._config
        self._tls = _ssl_context(cfg)
        # Plain TCP, TLS started per connection (_handshake): a refused client
        # is then counted and logged with its address.
        self.port = await self._server.start(self._serve, cfg.host, cfg.tls_port)

    def close(self) -> None:
        """Stop accepting connections."""
        self._server.close()

    async def end_connections(self) -> None:
        """End every connection (keeping partial frames), then wait for the server."""
        await self._server.end([*self._connections, *self._handshaking])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_name(writer.get_extra_info("peername"))
        task = asyncio.current_task()
        sender: str | None = None
        if task is not None and not self._stopping():
            # Authenticate first: a client that never completes a handshake (bounded by
            # handshake_timeout_seconds) takes no slot from the authenticated senders.
            self._handshaking.add(task)
            try:
                sender = await self._handshake(writer, peer)
            except BaseException:
                writer.close()
                raise
            finally:
                self._handshaking.discard(task)
        if task is None or sender is None:
            writer.close()
            return
        if self._stopping() or len(self._connections) >= self._config.max_connections:
            self._counters.connections_refused += 1
            logger.warning("ATNA: refusing TLS connection from %s (connection limit)", peer)
            writer.close()
            return
        self._connections.add(task)
        try:
            await self._stream.read(reader, peer, sender)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _handshake(self, writer: asyncio.StreamWriter, peer: str | None) -> str | None:
        """Mutual TLS on a fresh connection; the sender (``tls:<CN>``), or None (refused,
        counted, logged; the caller closes the connection)."""
        ctx = self._tls
        if ctx is None:  # pragma: no cover - start() sets it before binding
            return None
        try:
            async with asyncio.timeout(self._config.handshake_timeout_seconds):
                await writer.start_tls(ctx)
        except (TimeoutError, ssl.SSLError, ConnectionError, OSError) as exc:
            self._counters.handshakes_refused += 1
            logger.warning("ATNA: refused TLS client %s at the handshake: %r", peer, exc)
            return None
        ssl_object = writer.get_extra_info("ssl_object")
        sender = certificate_sender(None if ssl_object is None else ssl_object.getpeercert())
        if sender is None:
            self._counters.handshakes_refused += 1
            logger.warning("ATNA: refused TLS client %s: not one subject CN", peer)
        return sender
