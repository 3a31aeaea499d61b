"""Writes what cannot become an event to the kept-messages store, never losing it quietly.

Invariant: a message handed to ``keep`` is written durably (retried while the store is
full or failing, which holds messages and so pushes back on TLS senders), or, at stop,
tried once and counted in ``lost_at_stop`` and logged. Writes run on the receiver's one
I/O thread, in batches of at most 256.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Final

from integrations.atna.kept import KeptRecord, KeptStore
from integrations.atna.receiver.intake import Received
from integrations.atna.receiver.stats import Counters
from integrations.errors import KeptStoreError, KeptStoreFullError

__all__ = ["KeptWriter"]

# One logger name for all the receiver's log lines.
logger = logging.getLogger("integrations.atna.receiver")

_KEPT_QUEUE: Final = 1024
_KEPT_RETRY_SECONDS: Final = 1.0


class KeptWriter:
    """The queue of messages to keep and the task that writes them to the store."""

    def __init__(self, store: KeptStore, io: ThreadPoolExecutor, counters: Counters) -> None:
        self._unopened = store
        self._store: KeptStore | None = None
        self._io = io
        self._counters = counters
        self._queue: asyncio.Queue[Received] = asyncio.Queue(_KEPT_QUEUE)
        self._task: asyncio.Task[None] | None = None
        #: The kept store is full: messages are held until there is room.
        self.full = False

    @property
    def bytes(self) -> int:
        store = self._store
        return 0 if store is None else store.bytes

    async def open(self) -> None:
        """Open the store (on the I/O thread); a failure leaves it closed."""
        store = self._unopened
        await asyncio.get_running_loop().run_in_executor(self._io, store.open)
        self._store = store

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="atna-kept-writer")

    async def keep(self, item: Received, reason: str, detail: str, fld: str | None = None) -> None:
        item.reason, item.detail, item.field = reason, detail, fld
        await self._queue.put(item)

    def offer(self, item: Received) -> bool:
        """Queue ``item`` (its reason set) without waiting; False if the queue is full."""
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(item)
            return True
        return False

    async def stop(self, leftovers: list[Received], timeout: float) -> None:
        """Write what is queued (waiting at most ``timeout``), then ``leftovers`` and what
        is still queued once; close the store."""
        queue, task = self._queue, self._task
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await queue.join()
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        while not queue.empty():
            leftovers.append(queue.get_nowait())
        if leftovers:
            await self._write(leftovers, final=True)
        store, self._store = self._store, None
        if store is not None:
            await asyncio.get_running_loop().run_in_executor(self._io, store.close)

    async def _loop(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < 256:
                batch.append(queue.get_nowait())
            try:
                await self._write(batch, final=False)
            finally:
                for _ in batch:
                    queue.task_done()

    async def _write(self, batch: list[Received], *, final: bool) -> None:
        """Write until every item is durable (retrying while the store is full), or, with
        ``final``, try once and log whatever could not be kept."""
        pending = batch
        while pending:
            written, error = await self._append(pending)
            for item in pending[:written]:
                self._counters.kept[item.reason or "unknown"] += 1
                logger.info(
                    "ATNA: kept a %d-byte message from %s/%s: %s",
                    len(item.raw),
                    item.transport,
                    item.peer,
                    item.reason,
                )
            pending = pending[written:]
            if not pending:
                if self.full:
                    logger.warning("ATNA: the kept store accepts messages again")
                self.full = False
                return
            if final:
                self._counters.lost_at_stop += len(pending)
                logger.error(
                    "ATNA: %d message(s) could not be kept at stop: %s", len(pending), error
                )
                return
            if isinstance(error, KeptStoreFullError):
                if not self.full:
                    logger.error("ATNA: %s; holding messages until there is room", error)
                self.full = True
            else:
                logger.error("ATNA: cannot write the kept store (%s); retrying", error)
            await asyncio.sleep(_KEPT_RETRY_SECONDS)

    async def _append(self, pending: list[Received]) -> tuple[int, KeptStoreError | None]:
        """How many of ``pending`` the store took, and why not the rest."""
        records = [
            KeptRecord(
                raw=i.raw,
                received_at=datetime.fromtimestamp(i.received_at, UTC),
                transport=i.transport,
                peer=i.peer,
                reason=i.reason or "unknown",
                detail=i.detail,
                field=i.field,
                sender=i.sender,
            )
            for i in pending
        ]
        store = self._store
        if store is None:
            return 0, KeptStoreError("the kept store is closed")
        loop = asyncio.get_running_loop()
        try:
            return len(await loop.run_in_executor(self._io, store.append, records)), None
        except KeptStoreFullError as exc:
            return len(exc.written), exc
        except KeptStoreError as exc:
            return 0, exc
