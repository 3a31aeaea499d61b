"""The bounded hand-off queue between Orthanc's threads and the one audit worker.

Invariant: ``put`` waits at most ``block_seconds`` (or its ``timeout``) for room and
never raises; a full queue is counted and logged, never silently dropped. Orthanc threads
append without waking the worker (it polls every ``BATCH_SECONDS`` while busy), so a
request never pays for a thread wake-up; only an urgent item (a DELETE), or the first
item after the worker went idle, notifies it. ``None`` is the stop mark.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from integrations.orthanc.callers import Context
from integrations.orthanc.delivery import Alarm, Counters
from integrations.orthanc.routes import Level

#: How often the busy worker takes what Orthanc's threads queued (they never wake it).
BATCH_SECONDS: Final = 0.002
#: After this long without items the worker sleeps until notified (or TICK_SECONDS).
IDLE_SECONDS: Final = 1.0
TICK_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class Access:
    context: Context


@dataclass(frozen=True, slots=True)
class Delete:
    context: Context
    done: threading.Event


@dataclass(frozen=True, slots=True)
class Stored:
    tags: Mapping[str, object]
    instance_id: str
    origin: str
    remote_aet: str | None
    context: Context | None
    time: datetime


@dataclass(frozen=True, slots=True)
class Change:
    change: str
    level: Level | None
    resource: str


@dataclass(frozen=True, slots=True)
class Task:
    """Work prepared on an Orthanc thread and run by the worker (a wrapped route's or a
    C-FIND's record)."""

    run: Callable[[], None]


Work = Access | Delete | Stored | Change | Task
Item = Work | None


class HandOff:
    def __init__(
        self, *, max_pending: int, block_seconds: float, counters: Counters, alarm: Alarm
    ) -> None:
        self._max_pending = max_pending
        self._block_seconds = block_seconds
        self._counters = counters
        self._alarm = alarm
        self._lock = threading.Lock()
        self._has_items = threading.Condition(self._lock)
        self._has_room = threading.Condition(self._lock)
        self._items: collections.deque[Item] = collections.deque()
        self._room_waiters = 0
        self._worker_idle = True

    def put(self, item: Item, *, urgent: bool = False, timeout: float | None = None) -> bool:
        """Queue an item, waiting at most ``block_seconds`` for room; False if full."""
        with self._lock:
            if len(self._items) >= self._max_pending:
                limit = self._block_seconds if timeout is None else timeout
                self._wait_for_room(time.monotonic() + limit)
            if len(self._items) < self._max_pending:
                self._items.append(item)
                if urgent or self._worker_idle:
                    self._worker_idle = False
                    self._has_items.notify()
                return True
            self._counters.queue_full += 1
            self._counters.unaudited += 1
        self._alarm.warn("full", "PHI audit queue is full; a request was not audited")
        return False

    def _wait_for_room(self, deadline: float) -> None:
        """(Holding the lock) wait until there is room or the deadline passed."""
        self._room_waiters += 1
        try:
            while len(self._items) >= self._max_pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._has_room.wait(left)
        finally:
            self._room_waiters -= 1

    def close(self) -> None:
        """Queue the stop mark past the bound: the worker stops after the rest."""
        with self._lock:
            self._items.append(None)
            self._has_items.notify()

    def take(self, last_item: float) -> list[Item]:
        """(The worker) everything queued, after waiting a little when nothing is."""
        with self._lock:
            if not self._items:
                idle = time.monotonic() - last_item > IDLE_SECONDS
                self._worker_idle = idle
                self._has_items.wait(TICK_SECONDS if idle else BATCH_SECONDS)
                self._worker_idle = False
            batch = list(self._items)
            self._items.clear()
            if self._room_waiters:
                self._has_room.notify_all()
        return batch
