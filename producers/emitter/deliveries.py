"""What the emitter still owes its callers: events aiokafka holds, the futures waiting
for Kafka's acknowledgement or for durability, and the delivery counters.

Invariant: a ``durable`` future is resolved once its event is acknowledged by Kafka or
fsynced in the spool, and failed when the emitter stops first; a ``confirm`` future gets
the event's Kafka coordinates, or an error; nothing here does I/O.
"""

from __future__ import annotations

import asyncio

from producers.emitter.config import Meta
from producers.emitter.support import retrieve
from producers.errors import EmitterUnavailableError
from producers.spool import SpoolEntry


class InFlight:
    """An event aiokafka holds; ``suspect`` once a copy of it is (being) spooled."""

    __slots__ = ("confirm", "entry", "suspect", "ticket")

    def __init__(
        self, ticket: int, entry: SpoolEntry, confirm: asyncio.Future[Meta] | None
    ) -> None:
        self.ticket = ticket
        self.entry = entry
        self.confirm = confirm
        self.suspect = False


def meta_of(fut: asyncio.Future[object]) -> Meta:
    """The (topic, partition, offset) of an aiokafka send future that succeeded."""
    meta = fut.result()
    return (str(meta.topic), int(meta.partition), int(meta.offset))  # type: ignore[attr-defined]


class Deliveries:
    """In-flight events (oldest first), waiting futures by message, and counters."""

    def __init__(self) -> None:
        self.inflight: dict[int, InFlight] = {}
        self._tickets = 0
        #: ``emit_and_confirm`` futures of spooled events, by message.
        self.confirms: dict[bytes, asyncio.Future[Meta]] = {}
        #: Futures of ``emit_tracked`` events by message: done once Kafka acknowledged it
        #: or it is fsynced in the spool.
        self.durables: dict[bytes, list[asyncio.Future[None]]] = {}
        #: Spooled copies of events Kafka acknowledged on the healthy path after all.
        self.skip: set[bytes] = set()
        self.sent = 0
        self.failures = 0
        self.lost = 0

    def reset_counters(self) -> None:
        self.sent = self.failures = self.lost = 0

    def track(self, entry: SpoolEntry, confirm: asyncio.Future[Meta] | None) -> InFlight:
        pending = InFlight(self._tickets, entry, confirm)
        self._tickets += 1
        self.inflight[pending.ticket] = pending
        return pending

    def oldest(self) -> InFlight | None:
        return next(iter(self.inflight.values()), None)

    def add_durable(self, value: bytes, durable: asyncio.Future[None]) -> None:
        self.durables.setdefault(value, []).append(durable)

    def forget_durable(self, value: bytes, durable: asyncio.Future[None] | None) -> None:
        futs = self.durables.get(value)
        if durable is not None and futs and durable in futs:
            futs.remove(durable)
            if not futs:
                del self.durables[value]

    def made_durable(self, value: bytes) -> None:
        for waiting in self.durables.pop(value, ()):
            if not waiting.done():
                waiting.set_result(None)

    def abandon_waiting(self) -> None:
        """The emitter stopped: fail every future still waiting and forget what is owed."""
        self.inflight.clear()
        for fut in self.confirms.values():
            if not fut.done():
                fut.set_exception(
                    EmitterUnavailableError(
                        "the emitter stopped before Kafka acknowledged the event; it is in the "
                        "spool and is sent when an emitter with the same spool_dir starts"
                    )
                )
                retrieve(fut)
        self.confirms.clear()
        for futs in self.durables.values():
            for waiting in futs:
                if not waiting.done():
                    waiting.set_exception(
                        EmitterUnavailableError("the emitter stopped; the event was not kept")
                    )
                    retrieve(waiting)
        self.durables.clear()
        self.skip.clear()
