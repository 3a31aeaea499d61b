"""Stamping: this producer's id and sequence numbers on each event, and the persisted
high-water mark that keeps numbers unique across restarts.

Invariant: with a spool, no number is handed out before a high-water mark above it is
fsynced in the spool directory (reserved ``SEQUENCE_BLOCK`` at a time), so numbers never
repeat and a crash skips at most one block; a refused event gives its number back; an
event over ``MAX_EVENT_BYTES`` or stamped by another producer than the signing key's is
refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Final

from producers.codec import PreparedEvent
from producers.emitter.config import MAX_EVENT_BYTES, EmitterConfig
from producers.emitter.support import IoThread, now_ms
from producers.errors import EventValidationError, SpoolError
from producers.events import check_producer_id
from producers.signing import BatchSigner
from producers.spool import Spool, SpoolEntry

logger = logging.getLogger("producers.emitter")

#: Sequence numbers reserved (persisted) at a time; a crash skips at most this many.
SEQUENCE_BLOCK: Final = 1024

_PERSIST_FAILED: Final = "cannot persist the sequence high-water mark in the spool"


class Sequences:
    """The next sequence number and, with a spool, the persisted limit below which it may go."""

    def __init__(self, producer_id: str, first: int) -> None:
        self._producer_id = producer_id
        self.next = first
        self._limit: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._spool: Spool | None = None
        self._io: IoThread | None = None

    async def open(self, spool: Spool, io: IoThread) -> None:
        """Continue above the spool's high-water mark, and persist the first block."""
        pid = self._producer_id
        floor = await io.run(functools.partial(spool.load_sequence_floor, pid))
        self.next = max(self.next, floor)
        limit = self.next + SEQUENCE_BLOCK
        await io.run(functools.partial(spool.store_sequence_floor, pid, limit))
        self._limit = limit
        self._spool, self._io = spool, io

    async def close(self) -> None:
        """Wait for a reservation being written; the spool is closed next."""
        if self._task is not None:
            with contextlib.suppress(Exception):  # logged by _store_floor
                await self._task
        if self._spool is not None:
            self._spool = None
            self._limit = None

    async def reserve_ahead(self) -> None:
        """Persist the next block in the background once half of this one is used; wait for
        it only when this block is used up."""
        if self._limit is None or self._limit - self.next > SEQUENCE_BLOCK // 2:
            return
        task = self._task
        if task is None:
            task = self._task = asyncio.create_task(self._store_floor(self.next + SEQUENCE_BLOCK))
        if self._limit is not None and self.next >= self._limit:
            await asyncio.shield(task)
            if self.next >= self._limit:
                raise SpoolError(_PERSIST_FAILED)

    async def reserve_block(self, count: int) -> int:
        """Hand out ``count`` numbers at once, persisted first; returns the first."""
        start = self.next
        end = start + count
        if self._limit is not None:
            if self._limit < end:
                task = self._task
                if task is not None:
                    await asyncio.shield(task)
                await self._store_floor(end + SEQUENCE_BLOCK)
            if self._limit < end:
                raise SpoolError(_PERSIST_FAILED)
        self.next = end
        return start

    async def _store_floor(self, target: int) -> None:
        try:
            spool, io = self._spool, self._io
            if spool is None or io is None:
                return
            await io.run(functools.partial(spool.store_sequence_floor, self._producer_id, target))
            if self._limit is not None:
                self._limit = max(self._limit, target)
        except Exception as exc:
            logger.error("cannot reserve sequence numbers: %r", exc)
        finally:
            self._task = None


class Stamper:
    """Turns a prepared event into the message sent: stamped, encoded, bounded, routed."""

    def __init__(self, config: EmitterConfig, sequences: Sequences) -> None:
        self._config = config
        self._sequences = sequences
        # Checked once here (not per event): an id events may not carry fails every emit.
        self._own_id_problem: str | None = None
        try:
            check_producer_id(config.producer_id)
        except EventValidationError as exc:
            self._own_id_problem = str(exc)

    def stamp(
        self, prepared: PreparedEvent, signer: BatchSigner | None
    ) -> tuple[SpoolEntry, int, bool]:
        """The message of a prepared event, stamped with its own stamp or this producer's
        next number; ``stamping`` tells which (only a new number is given back on refusal)."""
        producer_id, seq = prepared.producer_id, prepared.producer_seq
        stamping = producer_id is None or seq is None
        if producer_id is None or seq is None:
            if self._own_id_problem is not None:
                raise EventValidationError(self._own_id_problem, field="producer_id")
            producer_id, seq = self._config.producer_id, self._sequences.next
        else:
            check_producer_id(producer_id)
        if signer is not None and producer_id != signer.producer_id:
            raise EventValidationError(
                f"producer_id: this emitter signs as {signer.producer_id!r} and cannot "
                f"send an event stamped by {producer_id!r}",
                field="producer_id",
            )
        value = prepared.encode_with(producer_id, seq)
        if len(value) > MAX_EVENT_BYTES:
            raise EventValidationError(
                f"encoded event is {len(value)} bytes; at most {MAX_EVENT_BYTES} are accepted",
                field="<event>",
            )
        if stamping:
            # Only an accepted event keeps its number (see give_back), so numbers are only
            # skipped by a crash (at most one reserved block) or a lost event.
            self._sequences.next += 1
        # Reads of the ledger itself (AuditLogUsed) and security events (logins, emergency
        # overrides) belong to the access history too: only relays (and registry changes,
        # which are no access at all) have their own topic.
        entry = SpoolEntry(
            topic=self._topic(prepared),
            key=prepared.key,
            value=value,
            created_ms=now_ms(),
        )
        return entry, seq, stamping

    def _topic(self, prepared: PreparedEvent) -> str:
        if prepared.registry:
            return self._config.registry_topic
        return self._config.relay_topic if prepared.relay else self._config.access_topic

    def give_back(self) -> None:
        """Nothing was sent (the caller holds the emitter's lock: nobody stamped since)."""
        self._sequences.next -= 1
