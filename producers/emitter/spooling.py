"""The spool's side of the emitter: opening and closing it, the switch to it, and the
writer's group commit.

Invariant: once the emitter is SPOOLING, every event still in flight is queued for the
spool (oldest first, never refused: Kafka is owed it already) before any new event, and
every new event queues behind them; an ``enqueue`` that returns has reserved the event's
room (or raised ``SpoolFullError`` having changed nothing); the writer writes whatever is
queued meanwhile with one fsync and only then resolves the events' waiters.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from producers.emitter.config import EmitterConfig, EmitterState, Meta
from producers.emitter.deliveries import Deliveries, InFlight
from producers.emitter.stamping import Sequences
from producers.emitter.support import IoThread, Signals, cancel, retrieve
from producers.errors import EmitterUnavailableError, ProducerError, SpoolError
from producers.spool import Spool, SpoolEntry, record_size

logger = logging.getLogger("producers.emitter")


class Queued:
    """An event waiting for the spool writer; ``waiter`` is None for suspect copies."""

    __slots__ = ("entry", "waiter")

    def __init__(self, entry: SpoolEntry, waiter: asyncio.Future[None] | None) -> None:
        self.entry = entry
        self.waiter = waiter


class SpoolWriter:
    """Events queued for the spool (``queued``), the batch being written (``writing``),
    and the task writing them."""

    def __init__(self, deliveries: Deliveries, signals: Signals, io: IoThread) -> None:
        self._deliveries = deliveries
        self._signals = signals
        self._io = io
        self.queued: list[Queued] = []
        self.writing: list[Queued] = []
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    @property
    def busy(self) -> bool:
        return bool(self.queued or self.writing)

    def renew(self) -> None:
        """A fresh event for a new ``start`` (possibly on another event loop)."""
        self._wanted = asyncio.Event()

    def start(self, spool: Spool) -> None:
        self._task = asyncio.create_task(self._write_loop(spool), name="emitter-spool-writer")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    def enqueue(
        self,
        spool: Spool,
        entry: SpoolEntry,
        confirm: asyncio.Future[Meta] | None,
        *,
        force: bool = False,
    ) -> asyncio.Future[None] | None:
        spool.reserve(record_size(entry), force=force)  # SpoolFullError: nothing happened
        waiter: asyncio.Future[None] | None = None
        if not force:
            waiter = asyncio.get_running_loop().create_future()
            waiter.add_done_callback(retrieve)
        self.queued.append(Queued(entry, waiter))
        if confirm is not None:
            self._deliveries.confirms[entry.value] = confirm
        self._wanted.set()
        return waiter

    async def _write_loop(self, spool: Spool) -> None:
        """Group commit: everything queued meanwhile is written with one fsync."""
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            while self.queued:
                batch, self.queued = self.queued, []
                self.writing = batch
                try:
                    await self._io.run(
                        functools.partial(spool.append, [q.entry for q in batch], reserved=True)
                    )
                except Exception as exc:
                    self._failed(batch, exc)
                else:
                    self._written(batch)
                finally:
                    self.writing = []
                    self._signals.kick.set()
                    self._signals.wake()

    def _written(self, batch: list[Queued]) -> None:
        for q in batch:
            self._deliveries.made_durable(q.entry.value)
            if q.waiter is not None and not q.waiter.done():
                q.waiter.set_result(None)

    def _failed(self, batch: list[Queued], exc: Exception) -> None:
        error = (
            exc
            if isinstance(exc, ProducerError)
            else SpoolError(f"cannot write to the spool: {exc!r}")
        )
        logger.error("could not spool %d event(s): %s", len(batch), error)
        for q in batch:
            if q.waiter is None:
                logger.error("an in-flight event could not be spooled; only aiokafka has it")
                continue
            self._deliveries.confirms.pop(q.entry.value, None)  # its emit raises instead
            if not q.waiter.done():
                q.waiter.set_exception(error)


class Route:
    """Where new events go (``state``), and the spool they go to when Kafka cannot take
    them: opened on ``start``, closed on ``stop``."""

    def __init__(
        self,
        config: EmitterConfig,
        deliveries: Deliveries,
        writer: SpoolWriter,
        signals: Signals,
        io: IoThread,
    ) -> None:
        self._config = config
        self._deliveries = deliveries
        self._writer = writer
        self._signals = signals
        self._io = io
        self.state = EmitterState.STOPPED
        self.closing = False
        self.spool: Spool | None = None

    async def open_spool(self, directory: str, sequences: Sequences) -> Spool:
        """Open (recover) the spool on a new I/O thread and continue its sequence numbers."""
        self._io.open()
        spool = Spool(
            directory,
            max_bytes=self._config.spool_max_bytes,
            segment_bytes=self._config.spool_segment_bytes,
        )
        try:
            await self._io.run(spool.open)
            await sequences.open(spool, self._io)
        except BaseException:
            await self._io.run(spool.close)
            self._io.shutdown()
            raise
        self.spool = spool
        return spool

    async def spool_in_flight(self) -> None:
        """Stopping: queue what aiokafka still holds for the spool, wait until it is written,
        and stop the writer."""
        inflight = self._deliveries.inflight
        if inflight:
            self.switch_to_spooling("stopping before Kafka acknowledged every event")
            for pending in list(inflight.values()):
                if not pending.suspect:
                    self.make_suspect(pending)
        await self._signals.wait_for(lambda: not self._writer.busy)
        await self._writer.stop()

    async def close_spool(self) -> None:
        spool = self.spool
        if spool is None:
            return
        if spool.pending_records:
            logger.warning(
                "emitter stopped with %d event(s) in the spool %s; they are sent on the next start",
                spool.pending_records,
                spool.directory,
            )
        await self._io.run(spool.close)
        self.spool = None

    @property
    def spooling(self) -> bool:
        return self.state is EmitterState.SPOOLING

    def switch_to_spooling(self, reason: str) -> None:
        """From now on events go behind the spool; copy what is in flight there first."""
        if self.spool is None or self.state is not EmitterState.DIRECT:
            return
        self.state = EmitterState.SPOOLING
        logger.warning(
            "emitter %s: %s; spooling events to %s until Kafka is back",
            self._config.producer_id,
            reason,
            self.spool.directory,
        )
        for pending in self._deliveries.inflight.values():  # oldest first
            if not pending.suspect:
                self.make_suspect(pending)
        self._signals.kick.set()
        self._signals.wake()

    def make_suspect(self, pending: InFlight) -> None:
        pending.suspect = True
        # Owed to Kafka already, so never refused: it may take the spool past its bound.
        self.enqueue(pending.entry, pending.confirm, force=True)

    def enqueue(
        self,
        entry: SpoolEntry,
        confirm: asyncio.Future[Meta] | None,
        *,
        force: bool = False,
    ) -> asyncio.Future[None] | None:
        if self.spool is None:
            raise EmitterUnavailableError("emitter has no spool")
        return self._writer.enqueue(self.spool, entry, confirm, force=force)
