"""Hands events to the emitter, so that a re-sent message is emitted byte-identical.

Invariant: the producer sequence number the emitter stamped on each of the last
``recent_events`` event ids is remembered (and written after each batch to the kept
directory, ``stamps.StampLog``, so it survives a restart); a re-sent event is emitted
again with that same number, so the ledger counts it as a duplicate rather than a
conflict. An emitter that pushes back is retried, with a growing pause, until it accepts.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from concurrent.futures import ThreadPoolExecutor

from integrations.atna.receiver.stats import Counters
from integrations.atna.stamps import StampLog
from producers import (
    Emitter,
    EmitterPushbackError,
    EmitterUnavailableError,
    PreparedEvent,
    SpoolError,
)

__all__ = ["StampedEmitter"]

# One logger name for all the receiver's log lines.
logger = logging.getLogger("integrations.atna.receiver")


class StampedEmitter:
    """The emitter hand-off with the memory of recent stamps."""

    def __init__(
        self,
        emitter: Emitter,
        io: ThreadPoolExecutor,
        counters: Counters,
        *,
        recent_events: int,
        retry_max_seconds: float,
    ) -> None:
        self._emitter = emitter
        self._io = io
        self._counters = counters
        self._recent_events = recent_events
        self._retry_max_seconds = retry_max_seconds
        self._recent: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._stamps: StampLog | None = None
        self._new_stamps: list[tuple[str, int]] = []

    async def open(self, kept_dir: str) -> None:
        """Read the stamps of the previous runs (on the I/O thread)."""
        stamps = StampLog(kept_dir, self._emitter.config.producer_id, self._recent_events)
        self._recent = await asyncio.get_running_loop().run_in_executor(self._io, stamps.open)
        self._stamps = stamps
        self._new_stamps = []

    async def close(self) -> None:
        stamps, self._stamps = self._stamps, None
        if stamps is not None:
            await asyncio.get_running_loop().run_in_executor(self._io, stamps.close)

    async def emit(self, event: PreparedEvent) -> None:
        recent = self._recent
        known = recent.get(event.event_id)
        if known is not None:
            recent.move_to_end(event.event_id)
            producer_id = self._emitter.config.producer_id
            await self._emit_retrying(event.stamped_as(producer_id=producer_id, producer_seq=known))
            self._counters.resent += 1
            self._counters.events += 1
            return
        seq = await self._emit_retrying(event)
        self._counters.events += 1
        recent[event.event_id] = seq
        self._new_stamps.append((event.event_id, seq))
        if len(recent) > self._recent_events:
            recent.popitem(last=False)

    async def _emit_retrying(self, event: PreparedEvent) -> int:
        delay = 0.05
        warned = False
        while True:
            try:
                seq = await self._emitter.emit_prepared(event)
                if warned:
                    logger.warning("ATNA: the emitter accepts events again")
                return seq
            except (EmitterPushbackError, EmitterUnavailableError, SpoolError) as exc:
                self._counters.emit_retries += 1
                if not warned:
                    logger.error(
                        "ATNA: the emitter refused an event (%s); holding messages and "
                        "retrying (TLS senders are pushed back)",
                        exc,
                    )
                    warned = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_seconds)

    async def save(self) -> None:
        """Write this batch's new stamps (on the I/O thread); a failure is logged, since
        the events are emitted already (a later re-send would be a ledger conflict)."""
        stamps, new = self._stamps, list(self._new_stamps)
        if stamps is None or not new:
            return
        loop = asyncio.get_running_loop()
        try:
            # Cleared once written: a stop() that cancels this await writes them again
            # (a line written twice is harmless, a stamp lost makes a re-send conflict).
            compact = await loop.run_in_executor(self._io, stamps.append, new)
            del self._new_stamps[: len(new)]
            if compact:
                await loop.run_in_executor(self._io, stamps.compact, list(self._recent.items()))
        except OSError as exc:
            logger.error("ATNA: cannot write %s (%s); re-sends after a restart may conflict",
                         stamps.path, exc)  # fmt: skip
