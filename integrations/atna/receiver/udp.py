"""The RFC 5426 UDP listener: one message per datagram, unauthenticated, never waited for.

Invariant: UDP has no backpressure, so a datagram that finds the intake full is dropped
*and counted* (``udp_dropped_overload``, logged at 1, 10, 100 and every 1000th); a
datagram over ``max_message_bytes`` is kept, truncated, as ``oversize``. Its sender is
``udp``, which may claim only the sources listed under ``[udp]``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from integrations.atna.receiver.config import AtnaReceiverConfig
from integrations.atna.receiver.intake import Intake, Received, peer_name
from integrations.atna.receiver.stats import Counters
from integrations.atna.senders import UDP_SENDER

__all__ = ["UdpListener"]

# One logger name for all the receiver's log lines.
logger = logging.getLogger("integrations.atna.receiver")


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, listener: UdpListener) -> None:
        self._listener = listener

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._listener.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        logger.debug("ATNA UDP socket error: %r", exc)


class UdpListener:
    """The bound UDP socket and what it does with each datagram."""

    def __init__(
        self,
        config: AtnaReceiverConfig,
        port: int,
        intake: Intake,
        counters: Counters,
        stopping: Callable[[], bool],
    ) -> None:
        self._config = config
        self._bind_port = port
        self._intake = intake
        self._counters = counters
        self._stopping = stopping
        self._transport: asyncio.DatagramTransport | None = None
        self.port: int | None = None

    async def start(self) -> None:
        cfg = self._config
        logger.warning(
            "ATNA: listening on UDP %s:%s: datagrams are not authenticated and their "
            "source address is spoofable; they may claim only the AuditSourceIDs "
            "listed under [udp] (%d)",
            cfg.host,
            self._bind_port,
            len(cfg.policy.udp),
        )
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(cfg.host, self._bind_port)
        )
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def on_datagram(self, data: bytes, addr: object) -> None:
        if self._stopping():
            return
        counters = self._counters
        counters.received_udp += 1
        limit = self._config.max_message_bytes
        item = Received(data, "udp", peer_name(addr), time.time(), UDP_SENDER)
        if len(data) > limit:
            item.raw = data[:limit]
            item.reason = "oversize"
            item.detail = f"datagram of {len(data)} bytes exceeds the maximum of {limit}"
        if self._intake.offer(item):
            return
        counters.udp_dropped_overload += 1
        if counters.udp_dropped_overload in (1, 10, 100) or (
            counters.udp_dropped_overload % 1000 == 0
        ):
            logger.error(
                "ATNA: %d UDP datagram(s) dropped because the receiver is overloaded "
                "(queue of %d full); use TLS for reliable delivery",
                counters.udp_dropped_overload,
                self._config.queue_max,
            )
