"""What the verifier reads of one log, and how it re-sequences what it reads.

Invariant: a ``LogSource`` is read once per verification, each stream in one pass; ``Merge``
hands items over in key order 0, 1, 2, ... within a bounded window and never drops one
(an item that comes too late is put on ``late``, for the caller to report).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from typing import Final, Generic, Protocol, TypeVar, runtime_checkable

__all__ = [
    "BATCH",
    "ENTRY_WINDOW",
    "MAX_GAP",
    "ROW_WINDOW",
    "TILE_WINDOW",
    "BatchedLogSource",
    "LogSource",
    "Merge",
    "batched",
]

_T = TypeVar("_T")

ENTRY_WINDOW: Final = 4096
"""Entries held back while waiting for a smaller index (local disorder)."""
TILE_WINDOW: Final = 8
ROW_WINDOW: Final = 1024
MAX_GAP: Final = 1 << 24
"""An entry this far beyond the next expected index is reported, not waited for."""
BATCH: Final = 4096


class LogSource(Protocol):
    """What the verifier reads of one log.  Each method is called once per verification.

    ``iter_entries`` yields ``(leaf_index, leaf bytes)`` and ``iter_index_rows`` the
    ``events``-table rows (``leaf_index`` plus the columns of
    ``ledger.verify.bundle.INDEX_COLUMNS``;
    times as ISO-8601 strings or aware datetimes), both ideally in ``leaf_index`` order;
    ``iter_tiles`` yields ``(level, tile_index, 8192 bytes)`` full tiles, ideally level 0 in
    index order; ``checkpoints`` the ``(size, signed note)`` pairs in issuing order.  A source
    reports a read failure by raising a ``LedgerError`` (it becomes ``source_error``).
    """

    @property
    def origin(self) -> str: ...

    @property
    def size(self) -> int: ...

    def iter_entries(self) -> Iterator[tuple[int, bytes]]: ...

    def iter_tiles(self) -> Iterator[tuple[int, int, bytes]]: ...

    def checkpoints(self) -> Sequence[tuple[int, str]]: ...

    def iter_index_rows(self) -> Iterator[Mapping[str, object]]: ...


@runtime_checkable
class BatchedLogSource(LogSource, Protocol):
    """A ``LogSource`` that can also hand over entries a list at a time (optional fast path:
    the same records as ``iter_entries``, in the same order)."""

    def iter_entry_batches(self) -> Iterator[list[tuple[int, bytes]]]: ...


def batched(items: Iterator[_T], size: int) -> Iterator[list[_T]]:
    while batch := list(islice(items, size)):
        yield batch


class Merge(Generic[_T]):
    """Items keyed by a non-negative int, taken for keys 0, 1, 2, ... in turn.

    Up to ``window`` future keys are buffered, so local disorder is absorbed; an item whose
    key was already taken is put on ``late``.
    """

    __slots__ = ("_buf", "_done", "_it", "_next", "_window", "late")

    def __init__(self, items: Iterator[tuple[int, _T]], window: int) -> None:
        self._it = items
        self._window = window
        self._buf: dict[int, list[_T]] = {}
        self._done = False
        self._next = 0
        self.late: list[tuple[int, _T]] = []

    def take(self, key: int) -> list[_T]:
        self._next = key + 1
        out = self._buf.pop(key, [])
        buf = self._buf
        while not self._done and len(buf) < self._window:
            try:
                k, item = next(self._it)
            except StopIteration:
                self._done = True
                break
            if k == key:
                out.append(item)
            elif k < key:
                self.late.append((k, item))
            else:
                buf.setdefault(k, []).append(item)
        return out

    def rest(self) -> Iterator[tuple[int, _T, bool]]:
        """Everything not taken: ``(key, item, late)``; buffered items first, by key."""
        for k in sorted(self._buf):
            for item in self._buf[k]:
                yield k, item, k < self._next
        self._buf.clear()
        if not self._done:
            for k, item in self._it:
                yield k, item, k < self._next
            self._done = True
