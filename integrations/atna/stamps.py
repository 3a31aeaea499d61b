"""The stamps the ATNA receiver gave its most recent events, kept across restarts.

A message re-sent to the receiver maps to the same events (their ids are a function of
the message), and the receiver emits each again with the producer sequence number it
stamped the first time, so the ledger sees byte-identical events and counts a duplicate
instead of a conflicting event id. ``StampLog`` keeps that memory in a file, so it
survives a restart of the receiver.

Invariants:

* The file (``stamps.log`` in the kept-messages directory, mode 0600) is a header line
  ``# producer <producer id>`` and then ``<event id> <sequence number>`` lines, oldest
  first, ASCII. Stamps belong to one producer id: a log written for another id is
  ignored and replaced (its numbers mean nothing for this producer's sequence).
* ``load`` returns at most ``capacity`` entries, the newest; a malformed line is skipped
  (the file is rewritten at the next compaction). When the file holds twice
  ``capacity`` lines it is rewritten with the newest ``capacity`` (write, fsync, rename).
* Appends are written at once (``os.write``) but not fsynced: a process crash loses
  nothing written, an operating-system crash may lose the last appends. A re-send of
  one of those events is then stamped anew, and the ledger quarantines it as a conflict
  with a security alert: visible, never merged, never lost.
* No I/O in ``__init__``; ``open``/``append``/``close`` do blocking I/O (the receiver
  calls them on its I/O thread).
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from producers import atomic_write

logger = logging.getLogger(__name__)

__all__ = ["FILE_NAME", "StampLog"]

FILE_NAME: Final = "stamps.log"
_HEADER: Final = "# producer "


class StampLog:
    """``log = StampLog(directory, producer_id, capacity); recent = log.open()``"""

    def __init__(self, directory: str | Path, producer_id: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if not producer_id or any(c.isspace() for c in producer_id) or not producer_id.isascii():
            raise ValueError("the producer id must be printable ASCII without spaces")
        self.path = Path(directory) / FILE_NAME
        self.producer_id = producer_id
        self.capacity = capacity
        self._fd: int | None = None
        self._lines = 0

    def open(self) -> collections.OrderedDict[str, int]:
        """Read the newest ``capacity`` stamps of this producer and open for appending."""
        recent: collections.OrderedDict[str, int] = collections.OrderedDict()
        lines = 0
        rewrite = False
        try:
            text = self.path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            text = None
        if text is not None:
            rows = text.splitlines()
            if not rows or rows[0] != _HEADER + self.producer_id:
                logger.warning(
                    "ATNA: %s was written for another producer id; starting a new one",
                    self.path,
                )
                rewrite = True
            else:
                for row in rows[1:]:
                    event_id, _, seq = row.partition(" ")
                    if not event_id or not seq.isdigit():
                        rewrite = True
                        continue
                    recent[event_id] = int(seq)
                    recent.move_to_end(event_id)
                    lines += 1
                while len(recent) > self.capacity:
                    recent.popitem(last=False)
        if text is None or rewrite or lines > 2 * self.capacity:
            self._rewrite(recent.items())
        else:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            self._lines = lines
        return recent

    def append(self, stamps: Iterable[tuple[str, int]]) -> bool:
        """Add stamps; True once the file holds enough lines to be ``compact``-ed."""
        data = "".join(f"{event_id} {seq}\n" for event_id, seq in stamps).encode("ascii")
        if data:
            if self._fd is None:
                raise OSError("the stamp log is not open")
            os.write(self._fd, data)
            self._lines += data.count(b"\n")
        return self._lines > 2 * self.capacity

    def compact(self, recent: Iterable[tuple[str, int]]) -> None:
        """Rewrite the file with the newest ``capacity`` of ``recent`` (oldest first)."""
        items = list(recent)
        self._rewrite(items[-self.capacity :])

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _rewrite(self, items: Iterable[tuple[str, int]]) -> None:
        self.close()
        body = [_HEADER + self.producer_id + "\n"]
        count = 0
        for event_id, seq in items:
            body.append(f"{event_id} {seq}\n")
            count += 1
        atomic_write(self.path, "".join(body).encode("ascii"), tmp_name=FILE_NAME + ".tmp")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._lines = count
