"""The spool's bound: pending (unacknowledged) record bytes plus reservations.

Invariant: pending plus reserved bytes never exceed ``max_bytes`` except through
``reserve(force=True)``; a refused reservation raises ``SpoolFullError`` and changes
nothing. Every change takes one short lock and no I/O, so an event loop may call
``reserve`` while the spool's I/O thread appends, and any thread may read the counts.
"""

from __future__ import annotations

import threading
from pathlib import Path

from producers.errors import SpoolFullError


class Budget:
    """Counts of the pending records (``records``, ``bytes``, ``oldest_created_ms``) and
    the bytes ``reserved`` for records on their way."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self._dir = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.records = 0
        self.bytes = 0
        self.reserved = 0
        self.oldest_created_ms: int | None = None

    def reserve(self, nbytes: int, *, force: bool = False) -> None:
        with self._lock:
            used = self.bytes + self.reserved
            if not force and used + nbytes > self.max_bytes:
                raise SpoolFullError(
                    f"the spool at {self._dir} is full: {used} of {self.max_bytes} bytes "
                    f"hold events Kafka has not acknowledged; the event was not accepted"
                )
            self.reserved += nbytes

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.reserved = max(0, self.reserved - nbytes)

    def appended(self, nbytes: int, count: int, first_created_ms: int | None) -> None:
        with self._lock:
            self.bytes += nbytes
            self.records += count
            if self.oldest_created_ms is None and count:
                self.oldest_created_ms = first_created_ms

    def acknowledged(self, count: int, nbytes: int) -> None:
        with self._lock:
            self.records -= count
            self.bytes -= nbytes

    def recount(self, records: int, nbytes: int, oldest: int | None) -> None:
        with self._lock:
            self.records = records
            self.bytes = nbytes
            self.oldest_created_ms = oldest
