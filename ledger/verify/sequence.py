"""Entries back in leaf order: a bounded reorder window, gaps, duplicates and disorder.

Invariant: every leaf index from 0 up to the last one seen is handed on exactly once, in
order -- as part of a run of present leaves (``on_run``) or of a gap (``on_gap``) -- and
every entry that is not handed on (a duplicate, a late one, one implausibly far ahead, a
bad index) is a finding.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable

from ledger.verify.findings import Findings, range_text
from ledger.verify.sources import ENTRY_WINDOW, MAX_GAP
from ledger.verify.treehash import TILE_WIDTH

__all__ = ["Sequencer"]

Run = list[tuple[int, bytes]]


class Sequencer:
    """Re-sequences ``(leaf_index, leaf)`` entries fed a batch at a time."""

    def __init__(
        self, f: Findings, on_run: Callable[[Run], None], on_gap: Callable[[int, int], None]
    ) -> None:
        self.f = f
        self._clean = on_run
        self._on_gap = on_gap
        self.expected = 0
        self.max_seen = -1
        self.pending: dict[int, bytes] = {}
        self.pending_keys: list[int] = []  # heap over pending (stale keys are skipped)
        self.gaps: list[tuple[int, int]] = []

    def feed(self, batch: Run) -> None:
        if not batch:
            return
        expected = self.expected
        if (
            not self.pending
            and batch[0][0] == expected
            and [e[0] for e in batch] == list(range(expected, expected + len(batch)))
        ):
            self.expected = expected + len(batch)
            self._clean(batch)
            return
        for index, leaf in batch:
            self._accept(index, leaf)
        self._drain(final=False)

    def close(self) -> None:
        """No more entries: whatever is held back is handed on, gaps included."""
        self._drain(final=True)

    def _gap(self, start: int, end: int) -> None:
        self.f.add("leaf_missing", f"{range_text(start, end, 'leaf')} missing", leaf_index=start)
        self.gaps.append((start, end))
        self.expected = end
        self._on_gap(start, end)

    def _accept(self, index: int, leaf: bytes) -> None:
        expected = self.expected
        if type(index) is not int or index < 0:
            self.f.add("source_error", f"entry with invalid leaf index {index!r} ignored")
            return
        if index < expected:
            if self._was_gap(index):
                self.f.add(
                    "leaf_disorder",
                    f"entry for leaf {index} came too late to verify in sequence "
                    "(its index was already reported missing)",
                    leaf_index=index,
                )
            else:
                self.f.add(
                    "leaf_duplicate",
                    f"a second entry for leaf {index} (ignored; the first one is verified)",
                    leaf_index=index,
                )
            return
        if index in self.pending:
            same = "identical" if self.pending[index] == leaf else "different"
            self.f.add(
                "leaf_duplicate",
                f"a second entry for leaf {index} with {same} bytes (the first one is verified)",
                leaf_index=index,
            )
            return
        if index - expected >= MAX_GAP:
            self.f.add(
                "leaf_out_of_range",
                f"entry for leaf {index} is {index - expected} indexes beyond the next "
                f"expected leaf {expected}; not verified",
                leaf_index=index,
            )
            return
        seen = max(self.max_seen, expected - 1)
        if index < seen:
            self.f.add(
                "leaf_disorder",
                f"entry for leaf {index} is stored after the entry for leaf {seen}",
                leaf_index=index,
            )
        self.max_seen = max(seen, index)
        self.pending[index] = leaf
        heapq.heappush(self.pending_keys, index)

    def _was_gap(self, index: int) -> bool:
        k = bisect.bisect_right(self.gaps, (index, MAX_GAP << 40)) - 1
        return k >= 0 and self.gaps[k][0] <= index < self.gaps[k][1]

    def _drain(self, *, final: bool) -> None:
        pending = self.pending
        out: list[tuple[int, bytes]] = []
        while pending:
            expected = self.expected
            leaf = pending.pop(expected, None)
            if leaf is not None:
                out.append((expected, leaf))
                self.expected = expected + 1
                if len(out) >= TILE_WIDTH:
                    self._clean(out)
                    out = []
                continue
            if not final and len(pending) <= ENTRY_WINDOW:
                break
            if out:
                self._clean(out)
                out = []
            keys = self.pending_keys
            while keys[0] not in pending:
                heapq.heappop(keys)
            self._gap(expected, keys[0])
        if out:
            self._clean(out)
        if not pending:
            self.pending_keys.clear()
        elif len(self.pending_keys) > 4 * len(pending) + ENTRY_WINDOW:
            self.pending_keys = list(pending)
            heapq.heapify(self.pending_keys)
