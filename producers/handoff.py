"""The hand-off between ``SyncEmitter.emit`` callers and the emitter thread: the queue and
its counters.

Invariant: every event ``emit`` accepted is counted ``pending`` until the ``Emitter``
takes it (``delivered``) or it is given up (``lost``), so ``accepted == delivered + lost +
pending`` at every point; events leave the queue in the order they entered it. Not
thread-safe on its own: its owner (``producers.sync.SyncEmitter``) calls it holding the
one lock that also guards the emitter's state, and notifies waiters.
"""

from __future__ import annotations

import collections

from producers.codec import PreparedEvent


class HandOff:
    """A FIFO of prepared events with the accepted/delivered/pending/lost counts."""

    __slots__ = ("_queue", "_wakeup_scheduled", "accepted", "delivered", "lost", "pending")

    def __init__(self) -> None:
        self._queue: collections.deque[PreparedEvent] = collections.deque()
        #: Accepted by ``emit`` and not yet accepted by the ``Emitter`` (queued or in hand).
        self.pending = 0
        self.accepted = 0
        self.delivered = 0
        self.lost = 0
        self._wakeup_scheduled = False

    def __bool__(self) -> bool:
        """Events are queued (not yet taken by the emitter thread)."""
        return bool(self._queue)

    def put(self, event: PreparedEvent) -> bool:
        """Queue an accepted event; True when the emitter thread must be woken for it."""
        self._queue.append(event)
        self.pending += 1
        self.accepted += 1
        if self._wakeup_scheduled:
            return False
        self._wakeup_scheduled = True
        return True

    def take(self, most: int) -> list[PreparedEvent]:
        """Up to ``most`` events, oldest first; none means the next ``put`` wakes the thread."""
        batch = [self._queue.popleft() for _ in range(min(most, len(self._queue)))]
        if not batch:
            self._wakeup_scheduled = False
        return batch

    def settle(self, *, done: int, invalid: int) -> None:
        """``done`` events taken were handed over; ``invalid`` of them were refused: lost."""
        self.delivered += done - invalid
        self.lost += invalid
        self.pending -= done

    def give_up(self, count: int) -> None:
        """``count`` events taken could not be handed over: lost."""
        self.lost += count
        self.pending -= count

    def abandon_all(self) -> int:
        """Every pending event is lost (the emitter stopped); how many that was."""
        left = self.pending
        if left:
            self.lost += left
            self.pending = 0
            self._queue.clear()
        return left

    def counts(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "delivered": self.delivered,
            "pending": self.pending,
            "lost": self.lost,
        }
