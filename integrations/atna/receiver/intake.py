"""The bounded hold of received messages: the backpressure of the receiver.

Invariant: at most ``queue_max`` messages are held, waiting in the queue or taken off it
(in flight: being parsed or emitted) and not yet emitted or kept. A TLS connection waits
for room (``put``), so TCP flow control pushes back on its sender; UDP cannot wait
(``offer`` refuses instead). Messages leave the queue in arrival order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from dataclasses import dataclass

__all__ = ["Intake", "Received", "peer_name"]


@dataclass(slots=True)
class Received:
    """One received message (or frame), with why it is to be kept, once known."""

    raw: bytes
    transport: str
    peer: str | None
    received_at: float
    sender: str
    reason: str | None = None
    detail: str = ""
    field: str | None = None


def peer_name(address: object) -> str | None:
    """``host:port`` (``[host]:port`` for IPv6) of a socket address."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return None if address is None else str(address)


class Intake:
    """The queue of received messages and those taken off it and not yet done."""

    def __init__(self, queue_max: int) -> None:
        self._max = queue_max
        self._queue: asyncio.Queue[Received] = asyncio.Queue()  # bounded by put/offer
        # Messages taken off the queue and not yet emitted or kept, oldest first.
        self._inflight: collections.deque[Received] = collections.deque()
        self._room = asyncio.Event()  # set when held() may be below queue_max
        self._room.set()

    def held(self) -> int:
        """Messages queued or taken off the queue and not yet emitted or kept."""
        return self._queue.qsize() + len(self._inflight)

    def has_room(self) -> bool:
        return self.held() < self._max

    async def put(self, item: Received) -> None:
        """Queue a TLS message, waiting (so not reading the connection) while
        ``queue_max`` messages are held."""
        while self.held() >= self._max:
            self._room.clear()
            await self._room.wait()
        self._queue.put_nowait(item)

    def offer(self, item: Received) -> bool:
        """Queue a message if there is room now; False if not (the caller counts it)."""
        if self.has_room():
            self._queue.put_nowait(item)
            return True
        return False

    async def take(self, limit: int) -> list[Received]:
        """Wait for a message, then take it and up to ``limit`` queued ones, in order."""
        queue, inflight = self._queue, self._inflight
        items = [await queue.get()]
        inflight.append(items[0])
        while len(items) < limit and not queue.empty():
            item = queue.get_nowait()
            inflight.append(item)
            items.append(item)
        return items

    def done(self) -> None:
        """The oldest message in flight is emitted or kept: make room for another."""
        self._inflight.popleft()
        self._queue.task_done()
        self._room.set()

    async def join(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, until every queued message is done."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._queue.join()

    def take_inflight(self) -> list[Received]:
        leftovers = list(self._inflight)
        self._inflight.clear()
        return leftovers

    def take_queued(self) -> list[Received]:
        leftovers: list[Received] = []
        while not self._queue.empty():
            leftovers.append(self._queue.get_nowait())
        return leftovers
