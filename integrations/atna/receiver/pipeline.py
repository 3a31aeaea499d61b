"""The frame -> event pipeline: batches off the intake, parsed ahead, emitted in order.

Invariant: messages are taken off the intake in arrival order, in batches of at most
``_PARSE_BATCH``, and parsed at most ``_PARSE_AHEAD`` batches ahead of the one being
emitted; one task emits or keeps the results in arrival order, and marks each message
done only then (``stop`` keeps what is still in flight if that task is cancelled). A
message whose sender may not claim its source is kept and logged as a security warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Final

from integrations.atna.parsing import Parsed
from integrations.atna.receiver.emitting import StampedEmitter
from integrations.atna.receiver.intake import Intake, Received
from integrations.atna.receiver.keeper import KeptWriter
from integrations.atna.receiver.parsepool import ParsePool
from integrations.atna.receiver.stats import Counters
from integrations.atna.senders import REASON_CLAIMS_LEDGER, REASON_NOT_ALLOWED
from producers import EventValidationError

__all__ = ["Pipeline"]

# One logger name for all the receiver's log lines.
logger = logging.getLogger("integrations.atna.receiver")

#: Messages handed to a parse worker at once, at most, and batches parsed ahead of the
#: one being emitted: at most ``(_PARSE_AHEAD + 2) * _PARSE_BATCH`` messages are off the
#: queue and not yet emitted or kept.
_PARSE_BATCH: Final = 64
_PARSE_AHEAD: Final = 2


@dataclass(slots=True)
class _Batch:
    items: list[Received]
    parsed: asyncio.Future[list[Parsed]]
    raws: list[bytes | None]
    senders: list[str]


class Pipeline:
    """The feeder task (intake -> parse) and the worker task (parsed -> emitter or kept)."""

    def __init__(
        self,
        intake: Intake,
        parser: ParsePool,
        emitting: StampedEmitter,
        keeper: KeptWriter,
        counters: Counters,
        *,
        queue_max: int,
    ) -> None:
        self._intake = intake
        self._parser = parser
        self._emitting = emitting
        self._keeper = keeper
        self._counters = counters
        self._batch = min(_PARSE_BATCH, queue_max)
        self._batches: asyncio.Queue[_Batch] = asyncio.Queue(_PARSE_AHEAD)
        self._worker: asyncio.Task[None] | None = None
        self._feeder: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work_loop(), name="atna-worker")
        self._feeder = asyncio.create_task(self._feed_loop(), name="atna-parse-feeder")

    @property
    def working(self) -> bool:
        return self._worker is not None and not self._worker.done()

    async def stop_worker(self) -> None:
        """Cancel the worker, then write the stamps it had not written yet."""
        await _cancel(self._worker)
        self._worker = None
        await self._emitting.save()

    async def stop_feeder(self) -> None:
        """Cancel the feeder and the batches still waiting to be emitted."""
        await _cancel(self._feeder)
        self._feeder = None

    def cancel_waiting(self) -> None:
        batches = self._batches
        while not batches.empty():
            batches.get_nowait().parsed.cancel()

    async def _feed_loop(self) -> None:
        """Take messages off the queue in arrival order, in batches, and start parsing
        them; at most ``_PARSE_AHEAD`` batches wait to be emitted (then the queue fills
        and TLS connections are pushed back)."""
        while True:
            items = await self._intake.take(self._batch)
            raws = [None if item.reason is not None else item.raw for item in items]
            senders = [item.sender for item in items]
            await self._batches.put(_Batch(items, self._parser.parse(raws, senders), raws, senders))

    async def _work_loop(self) -> None:
        """The one task that emits and keeps, batch after batch, in arrival order."""
        while True:
            batch = await self._batches.get()
            try:
                results = await batch.parsed
            except Exception as exc:  # the worker process died: parsing is pure, redo it
                logger.error("ATNA: a parse worker failed (%r); parsing in the event loop", exc)
                results = self._parser.parse_here(batch.raws, batch.senders)
            for item, parsed in zip(batch.items, results, strict=True):
                try:
                    await self._handle(item, parsed)
                except Exception as exc:  # a bug: keep the message, never lose it
                    logger.exception("ATNA: unexpected error handling a message")
                    await self._keeper.keep(item, "internal_error", repr(exc)[:500])
                # stop() keeps what is still in flight if this task is cancelled
                self._intake.done()
            await self._emitting.save()

    async def _handle(self, item: Received, parsed: Parsed) -> None:
        keep = self._keeper.keep
        if item.reason is not None:
            await keep(item, item.reason, item.detail)
            return
        if parsed.reason is not None:
            if parsed.reason in (REASON_NOT_ALLOWED, REASON_CLAIMS_LEDGER):
                self._counters.refused_senders += 1
                logger.warning(
                    "ATNA SECURITY: refused a message from %s (%s/%s): %s",
                    item.sender,
                    item.transport,
                    item.peer,
                    parsed.detail,
                )
            await keep(item, parsed.reason, parsed.detail, parsed.field)
            return
        events = parsed.events
        for index, event in enumerate(events):
            try:
                await self._emitting.emit(event)
            except EventValidationError as exc:
                detail = str(exc) if len(events) == 1 else f"event {index}: {exc}"
                await keep(item, "invalid_event", detail, exc.field)
                return
        self._counters.mapped += 1


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
