"""Small asyncio tools the emitter's parts share: state-change signals, the spool's I/O
thread, reconnection backoff, and future and task housekeeping.

Invariant: ``Signals.wait_for`` re-checks its predicate after every ``wake`` (and returns
its final value on timeout); ``IoThread.run`` runs every blocking spool call on one
thread, in call order.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

from producers.errors import EmitterUnavailableError

T = TypeVar("T")

_FIRST_BACKOFF: Final = 0.1


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def retrieve(fut: asyncio.Future[T]) -> None:
    """Mark a future's exception as seen (it is handled elsewhere)."""
    if not fut.cancelled():
        fut.exception()


async def cancel(task: asyncio.Task[None] | None) -> None:
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Backoff:
    def __init__(self, cap: float) -> None:
        self._cap = max(cap, _FIRST_BACKOFF)
        self._next = _FIRST_BACKOFF
        self._rng = random.SystemRandom()

    def next(self) -> float:
        delay = self._next
        self._next = min(self._cap, delay * 2)
        return delay * self._rng.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._next = _FIRST_BACKOFF


class Signals:
    """``kick`` wakes the spool drainer; ``wake`` re-checks every ``wait_for`` predicate."""

    __slots__ = ("_waiters", "kick")

    def __init__(self) -> None:
        self.kick = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []

    def renew(self) -> None:
        """Fresh events for a new ``start`` (possibly on another event loop)."""
        self.kick = asyncio.Event()

    def wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until ``predicate()`` holds (re-checked on every state change) or time runs out."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not predicate():
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            try:
                if deadline is None:
                    await fut
                else:
                    async with asyncio.timeout_at(deadline):
                        await fut
            except TimeoutError:
                return predicate()
            finally:
                if fut in self._waiters:
                    self._waiters.remove(fut)
        return True


class IoThread:
    """The one worker thread that does the spool's blocking I/O, while a spool is open."""

    __slots__ = ("_pool",)

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def open(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emitter-spool")

    async def run(self, fn: Callable[[], T]) -> T:
        if self._pool is None:
            raise EmitterUnavailableError("emitter has no spool")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
