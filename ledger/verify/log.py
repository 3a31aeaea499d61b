"""One log, verified in one streaming pass (see ``ledger.verify`` for what is checked).

Invariant: ``verify_log`` is pure apart from consuming the iterators of its ``LogSource``;
it never stops at the first problem and never raises because the *data* is bad -- every
inconsistency becomes a ``Finding``.  Entries are re-sequenced within a bounded window,
hashed once, and folded into 256-leaf blocks whose roots feed one ``TreeBuilder``; each
checkpoint is judged as soon as the leaves it covers are in.  Memory is O(log n) for the
roots plus 32 bytes per 256 leaves for the tile checks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Final, TypeVar

from ledger.audit.records import SchemaSet
from ledger.errors import LedgerError, MalformedInputError
from ledger.log.cosignature import WitnessPolicy
from ledger.log.merkle import EMPTY_ROOT, TreeBuilder
from ledger.log.note import Verifier
from ledger.verify.checkpoints import CheckpointBook
from ledger.verify.checks import CheckContext, EventCheckFactory
from ledger.verify.events import EventChecker, leaf_prefix, leaf_shape, log_position
from ledger.verify.findings import Findings, LogReport, ProgressCallback, range_text
from ledger.verify.sequence import Sequencer
from ledger.verify.sources import (
    BATCH,
    ROW_WINDOW,
    TILE_WINDOW,
    BatchedLogSource,
    LogSource,
    Merge,
    batched,
)
from ledger.verify.tilecheck import TileStore
from ledger.verify.treehash import (
    HASH,
    LEAF_SEED,
    MASK,
    TILE_HEIGHT,
    TILE_WIDTH,
    ZERO,
    perfect_root,
)

__all__ = ["PROGRESS_EVERY", "verify_log"]

PROGRESS_EVERY: Final = 50_000
_T = TypeVar("_T")


class _LogVerifier:
    """State of one ``verify_log`` run."""

    def __init__(
        self,
        source: LogSource,
        schemas: SchemaSet,
        verifiers: Sequence[Verifier],
        *,
        check_index: bool,
        progress: ProgressCallback | None,
        max_findings: int,
        trusted: Sequence[str] = (),
        checks: Sequence[EventCheckFactory] = (),
        witnesses: WitnessPolicy | None = None,
    ) -> None:
        self.source = source
        self.origin = source.origin
        self.claimed = source.size
        self.progress = progress
        self.f = Findings(self.origin, max_findings)
        self.position = log_position(self.origin)
        self.prefix = leaf_prefix(self.position)
        self.min_leaf = 0 if self.prefix is None else len(self.prefix) + 18
        self.book = CheckpointBook(self.origin, verifiers, self.f, trusted, witnesses)
        self.cp_next = 0
        # sequencing
        self.seq = Sequencer(self.f, self._clean, self._gap)
        self.leaves_checked = 0
        # blocks and tree
        self.cur: list[bytes] = []
        self.block = 0
        self.holes: deque[tuple[int, int]] = deque()  # missing positions not yet in a block
        self.poisoned: int | None = None
        self.tree = TreeBuilder()  # leaves are block roots
        self.store = TileStore(self.f, max_findings + 1)
        self.next_progress = PROGRESS_EVERY
        self.tiles: Merge[bytes] = Merge(
            self.store.level0_tiles(self._guard(source.iter_tiles, "tiles")), TILE_WINDOW
        )
        rows: Merge[Mapping[str, object]] | None = None
        if check_index:
            rows = Merge(
                self._keyed_rows(self._guard(source.iter_index_rows, "index rows")), ROW_WINDOW
            )
        context = CheckContext(origin=self.origin, source=source, schemas=schemas, findings=self.f)
        extra = [make(context) for make in checks]
        self.events: EventChecker | None = None
        if check_index or extra:
            self.events = EventChecker(self.f, schemas, self.position, rows, extra)

    def _guard(self, make: Callable[[], Iterable[_T]], what: str) -> Iterator[_T]:
        try:
            yield from make()
        except LedgerError as exc:
            self.f.add("source_error", f"reading {what} failed: {exc}")

    def _keyed_rows(
        self, raw: Iterator[Mapping[str, object]]
    ) -> Iterator[tuple[int, Mapping[str, object]]]:
        for row in raw:
            key = row.get("leaf_index") if isinstance(row, Mapping) else None
            if type(key) is not int or key < 0:
                self.f.add("index_malformed", f"index row without a valid leaf_index: {key!r}")
                continue
            yield key, row

    def load_checkpoints(self) -> None:
        try:
            rows = list(self.source.checkpoints())
        except LedgerError as exc:
            self.f.add("source_error", f"reading checkpoints failed: {exc}")
            rows = []
        self.book.load(rows)
        signed = self.book.signed
        while self.cp_next < len(signed) and signed[self.cp_next].size == 0:
            self.book.judge(signed[self.cp_next], EMPTY_ROOT, self.poisoned)
            self.cp_next += 1

    def _root_at(self, size: int, partial: list[bytes]) -> bytes | None:
        """Root of the first ``size`` leaves: the block tree so far plus ``partial``."""
        if self.poisoned is not None and self.poisoned < size:
            return None
        rest = TreeBuilder()
        rest.extend(partial)
        return TreeBuilder.from_state(size=size, hashes=self.tree.hashes + rest.hashes).root()

    def stream(self) -> None:
        source = self.source
        batches: Iterator[list[tuple[int, bytes]]]
        if isinstance(source, BatchedLogSource):
            batches = self._guard(source.iter_entry_batches, "entries")
        else:
            batches = batched(self._guard(source.iter_entries, "entries"), BATCH)
        if self.progress is not None:
            self.progress(self.origin, 0, self.claimed)
        feed = self.seq.feed
        for batch in batches:
            feed(batch)
        self.seq.close()
        self._finish_entries()

    def _gap(self, start: int, end: int) -> None:
        """Leaves ``start..end-1`` are missing: zero hashes hold their places."""
        self.holes.append((start, end))
        position = start
        while position < end:
            stop = min(end, (position | MASK) + 1)
            if self.events is not None:
                for index in range(position, stop):
                    self.events.orphan_rows(index)
            self._add_hashes([ZERO] * (stop - position))
            position = stop

    def _clean(self, run: list[tuple[int, bytes]]) -> None:
        """Consecutive present leaves, starting at the next position (the hot path)."""
        hashes: list[bytes] = []
        add = hashes.append
        seed = LEAF_SEED
        prefix = self.prefix
        if self.events is None and prefix is not None:
            shortest = self.min_leaf
            odd: list[tuple[int, bytes]] = []
            for entry in run:
                leaf = entry[1]
                h = seed.copy()
                h.update(leaf)
                add(h.digest())
                if len(leaf) < shortest or not leaf.startswith(prefix):
                    odd.append(entry)
            for index, leaf in odd:
                leaf_shape(self.f, self.position, index, leaf)
        else:
            for _, leaf in run:
                h = seed.copy()
                h.update(leaf)
                add(h.digest())
            if self.events is not None:
                check = self.events.check
                for index, leaf in run:
                    check(index, leaf)
            else:
                for index, leaf in run:
                    leaf_shape(self.f, self.position, index, leaf)
        self.leaves_checked += len(run)
        self._add_hashes(hashes)

    def _add_hashes(self, hashes: list[bytes]) -> None:
        """Append leaf hashes at the next positions; complete 256-leaf blocks as they fill."""
        start = 0
        count = len(hashes)
        cur = self.cur
        if cur:
            start = min(TILE_WIDTH - len(cur), count)
            cur.extend(hashes[:start])
            if len(cur) == TILE_WIDTH:
                self.cur = []
                self._finish_block(cur)
        while count - start >= TILE_WIDTH:
            self._finish_block(hashes[start : start + TILE_WIDTH])
            start += TILE_WIDTH
        if start < count:
            self.cur.extend(hashes[start:])
        if self.progress is not None:
            done = self.block * TILE_WIDTH + len(self.cur)
            if done >= self.next_progress:
                self.next_progress = done + PROGRESS_EVERY
                self.progress(self.origin, done, self.claimed)

    def _block_tile(self, t: int, block: list[bytes], width: int) -> bool:
        """Compare ``block`` (its first ``width`` entries) with level-0 tile ``t``; fill the
        holes from it.  Returns whether the block's leaf hashes are all known."""
        base = t << TILE_HEIGHT
        stored = self.tiles.take(t)
        if self.tiles.late:
            self.store.late_tiles(self.tiles.late)
        tile = stored[0] if stored else None
        for extra in stored[1:]:
            same = "identical" if extra == tile else "different"
            self.f.add(
                "tile_duplicate",
                f"tile 0/{t} is stored twice ({same} contents; the first is used)",
                tile=(0, t),
            )
        holes = self.holes
        here: list[int] = []
        stop = base + width
        while holes and holes[0][0] < stop:
            lo, hi = holes[0]
            here.extend(range(max(lo, base) - base, min(hi, stop) - base))
            if hi <= stop:
                holes.popleft()
            else:
                holes[0] = (stop, hi)
        if tile is not None:
            for j in here:
                block[j] = tile[j * HASH : (j + 1) * HASH]
            if width == TILE_WIDTH:
                equal = b"".join(block) == tile
            else:
                equal = b"".join(block[:width]) == tile[: width * HASH]
            if not equal:
                self.store.locate(t, block, tile, width)
        elif here:
            if self.poisoned is None:
                self.poisoned = base + here[0]
            return False
        if width == TILE_WIDTH:
            self.store.l0_present.append(tile is not None)
        elif tile is not None and (t + 1) * TILE_WIDTH > max(self.seq.expected, self.claimed):
            self.store.beyond(0, [t], self.seq.expected, self.claimed)
        return True

    def _finish_block(self, block: list[bytes]) -> None:
        t = self.block
        base = t << TILE_HEIGHT
        complete = self._block_tile(t, block, TILE_WIDTH)
        signed = self.book.signed
        k = self.cp_next
        end = base + TILE_WIDTH
        while k < len(signed) and signed[k].size < end:
            size = signed[k].size
            self.book.judge(signed[k], self._root_at(size, block[: size - base]), self.poisoned)
            k += 1
        root = perfect_root(block) if complete else ZERO
        if not complete:
            self.store.unknown8.add(t)
        self.tree.append(root)
        self.store.level8 += root
        self.block = t + 1
        while k < len(signed) and signed[k].size == end:
            whole = None if self.poisoned is not None and self.poisoned < end else self.tree.root()
            self.book.judge(signed[k], whole, self.poisoned)
            k += 1
        self.cp_next = k

    def _finish_entries(self) -> None:
        """The final partial block, the checkpoints beyond it, and the claimed size."""
        n = self.seq.expected
        cur = self.cur
        if cur:
            t = self.block
            base = t << TILE_HEIGHT
            self._block_tile(t, cur, len(cur))
            signed, k = self.book.signed, self.cp_next
            while k < len(signed) and signed[k].size <= n:
                size = signed[k].size
                self.book.judge(signed[k], self._root_at(size, cur[: size - base]), self.poisoned)
                k += 1
            self.cp_next = k
        self.book.report_beyond(self.book.signed[self.cp_next :], n)
        self.cp_next = len(self.book.signed)
        if self.claimed > n:
            self.f.add(
                "leaf_missing",
                f"{range_text(n, self.claimed, 'leaf')} missing: the source claims "
                f"{self.claimed} leaves but entries end at {n}",
                leaf_index=n,
            )
        elif self.claimed < n:
            self.f.add(
                "log_size_mismatch",
                f"{n} leaves are present but the source claims only {self.claimed}",
                leaf_index=self.claimed,
            )
        if self.progress is not None:
            self.progress(self.origin, n, self.claimed)

    def finish(self) -> LogReport:
        n = self.seq.expected
        limit = max(n, self.claimed)
        store, book = self.store, self.book
        # level-0 leftovers, then the missing level-0 tiles
        if self.tiles.late:
            store.late_tiles(self.tiles.late)
        beyond: list[int] = []
        for t, data, late in self.tiles.rest():
            if late:
                self.tiles.late.append((t, data))
                store.late_tiles(self.tiles.late)
            elif (t + 1) * TILE_WIDTH > limit:
                beyond.append(t)
        store.beyond(0, beyond, n, self.claimed)
        store.missing(0, (t for t, here in enumerate(store.l0_present) if not here))
        store.check_upper(limit, book.verified_size, n, self.claimed)
        store.report_level0(book.verified_size, [f.size for f in book.failed])
        book.report_failed(store.l0_mismatch, store.tile_ranges, self.seq.gaps)
        book.report_witnesses()
        if self.events is not None:
            self.events.finish(n)
        head = book.head
        return LogReport(
            origin=self.origin,
            leaves_checked=self.leaves_checked,
            checkpoints_checked=book.checkpoints_checked,
            findings=self.f.result(),
            checkpoints_verified=book.checkpoints_verified,
            verified_size=book.verified_size,
            events_checked=0 if self.events is None else self.events.events_checked,
            head_note=None if head is None else head.note,
            head_size=0 if head is None else head.size,
            head_root=None if head is None else head.root,
        )


def verify_log(
    source: LogSource,
    schemas: SchemaSet,
    verifiers: Sequence[Verifier],
    *,
    check_index: bool = True,
    progress: ProgressCallback | None = None,
    max_findings_per_kind: int = 10_000,
    trusted: Sequence[str] = (),
    checks: Sequence[EventCheckFactory] = (),
    witnesses: WitnessPolicy | None = None,
) -> LogReport:
    """Verify one log completely and report every inconsistency (module docstring).

    ``verifiers`` are the trusted checkpoint keys (several during a key rotation).
    ``trusted`` are signed checkpoint notes of this log that the auditor kept from an earlier
    run: each must be reproduced by the leaves (else ``trusted_checkpoint_*``), which proves
    the log was neither truncated nor replaced since.  Raises ``MalformedInputError`` only for
    a bad call (no verifiers); bad data never raises.  ``checks`` are extra per-leaf and
    per-row checks (``ledger.verify.checks``), composed after the built-in ones.
    ``witnesses`` is the k-of-n cosignature policy: the verified head must carry k valid
    witness cosignatures (``checkpoint_unwitnessed``), and a cosignature line by a policy
    key that does not verify is a ``cosignature_invalid`` finding.
    """
    if not verifiers:
        raise MalformedInputError("at least one trusted verifier key is required")
    if type(max_findings_per_kind) is not int or max_findings_per_kind < 1:
        raise MalformedInputError("max_findings_per_kind must be a positive int")
    run = _LogVerifier(
        source,
        schemas,
        verifiers,
        check_index=check_index,
        progress=progress,
        max_findings=max_findings_per_kind,
        trusted=trusted,
        checks=checks,
        witnesses=witnesses,
    )
    run.load_checkpoints()
    run.stream()
    return run.finish()
