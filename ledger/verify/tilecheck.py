"""Stored hash tiles against the tree recomputed from the leaves.

Invariant: a stored tile entry that differs from the recomputed node is reported once, and
blamed on the tile when a verified checkpoint proves the leaves under it, else on the
leaves; full tiles that must exist and are absent, and tiles for leaves beyond both the
entries and the claimed size, are reported by range.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from ledger.verify.bundle.layout import TILE_BYTES
from ledger.verify.findings import Findings, ranges, tiles_text
from ledger.verify.treehash import (
    HASH,
    MASK,
    MAX_TILE_LEVEL,
    TILE_HEIGHT,
    TILE_WIDTH,
    ZERO,
    perfect_root,
    split_hashes,
)

__all__ = ["TileStore"]


class TileStore:
    """The stored tiles of one log as they are compared, and what disagreed."""

    def __init__(self, f: Findings, max_pending: int) -> None:
        self.f = f
        self.max_pending = max_pending
        self.upper: dict[tuple[int, int], bytes] = {}
        self.level8 = bytearray()  # recomputed level-8 nodes (block roots)
        self.unknown8: set[int] = set()  # blocks whose root is not recomputable
        self.l0_present = bytearray()
        self.l0_mismatch: list[int] = []  # leaf indexes whose hash differs from the tile
        self.l0_unlocated: list[int] = []  # late level-0 tiles whose root differs
        self.tile_ranges: list[tuple[int, int, tuple[int, int]]] = []  # upper mismatches

    def level0_tiles(self, raw: Iterator[tuple[int, int, bytes]]) -> Iterator[tuple[int, bytes]]:
        upper = self.upper
        for level, index, data in raw:
            if (
                type(level) is not int
                or type(index) is not int
                or index < 0
                or not isinstance(data, bytes)
                or len(data) != TILE_BYTES
                or not 0 <= level <= MAX_TILE_LEVEL
            ):
                self.f.add(
                    "tile_malformed",
                    f"tile record ({level!r}, {index!r}) is not a full tile at level 0..7",
                )
                continue
            if level == 0:
                yield index, data
            elif (level, index) in upper:
                same = "identical" if upper[(level, index)] == data else "different"
                self.f.add(
                    "tile_duplicate",
                    f"tile {level}/{index} is stored twice ({same} contents; the first is used)",
                    tile=(level, index),
                )
            else:
                upper[(level, index)] = data

    def late_tiles(self, late: list[tuple[int, bytes]]) -> None:
        """Level-0 tiles that came after their block was hashed: compared by their root."""
        for t, data in late:
            if t >= len(self.l0_present):
                continue  # a tile for the final partial block, already compared
            if self.l0_present[t]:
                self.f.add(
                    "tile_duplicate",
                    f"tile 0/{t} is stored twice (the first is used)",
                    tile=(0, t),
                )
                continue
            self.l0_present[t] = 1
            if t in self.unknown8:
                continue
            if perfect_root(split_hashes(data)) != bytes(self.level8[t * HASH : (t + 1) * HASH]):
                self.l0_unlocated.append(t)
        late.clear()

    def locate(self, t: int, block: list[bytes], tile: bytes, width: int) -> None:
        base = t << TILE_HEIGHT
        for j in range(width):
            if block[j] != tile[j * HASH : (j + 1) * HASH]:
                if len(self.l0_mismatch) < self.max_pending:
                    self.l0_mismatch.append(base + j)
                else:
                    self.f.count("leaf_hash_mismatch", 1)

    def beyond(self, level: int, indexes: list[int], leaves: int, claimed: int) -> None:
        for a, b in ranges(sorted(indexes)):
            self.f.add(
                "tile_beyond_log",
                f"{tiles_text(level, a, b)} cover leaves beyond the "
                f"{leaves} present and the {claimed} claimed",
                tile=(level, a),
            )

    def missing(self, level: int, indexes: Iterable[int]) -> None:
        for a, b in ranges(indexes):
            self.f.add(
                "tile_missing",
                f"full {tiles_text(level, a, b)} missing",
                leaf_index=a << (TILE_HEIGHT * (level + 1)),
                tile=(level, a),
            )

    def check_upper(self, limit: int, verified_size: int, leaves: int, claimed: int) -> None:
        """Every higher tile against the nodes recomputed from the leaves (via level 8)."""
        nodes = bytes(self.level8)
        unknown = set(self.unknown8)
        by_level: dict[int, list[int]] = {}
        for level, index in self.upper:
            by_level.setdefault(level, []).append(index)
        level = 1
        while level <= MAX_TILE_LEVEL:
            count = len(nodes) // HASH
            full = count // TILE_WIDTH
            present = sorted(by_level.get(level, ()))
            have = set(present)
            self.missing(level, (t for t in range(full) if t not in have))
            beyond: list[int] = []
            for t in present:
                if t >= full:
                    if (t + 1) << (TILE_HEIGHT * (level + 1)) > limit:
                        beyond.append(t)
                    continue
                self.compare_upper(level, t, nodes, unknown, verified_size)
            self.beyond(level, beyond, leaves, claimed)
            if full == 0 and not any(lv > level for lv in by_level):
                break
            parents = bytearray()
            parent_unknown: set[int] = set()
            for k in range(full):
                lo = k * TILE_WIDTH
                if any(lo <= u < lo + TILE_WIDTH for u in unknown):
                    parent_unknown.add(k)
                    parents += ZERO
                else:
                    parents += perfect_root(
                        split_hashes(nodes[lo * HASH : (lo + TILE_WIDTH) * HASH])
                    )
            nodes, unknown = bytes(parents), parent_unknown
            level += 1

    def compare_upper(
        self, level: int, t: int, nodes: bytes, unknown: set[int], verified_size: int
    ) -> None:
        data = self.upper[(level, t)]
        lo = t * TILE_WIDTH
        if nodes[lo * HASH : (lo + TILE_WIDTH) * HASH] == data:
            return
        wrong = [
            j
            for j in range(TILE_WIDTH)
            if lo + j not in unknown
            and nodes[(lo + j) * HASH : (lo + j + 1) * HASH] != data[j * HASH : (j + 1) * HASH]
        ]
        if not wrong:
            return
        shift = TILE_HEIGHT * level
        first = (lo + wrong[0]) << shift
        last = ((lo + wrong[-1] + 1) << shift) - 1
        if last < verified_size:
            blame = "the leaves are proven by a verified checkpoint, so the stored tile is wrong"
        else:
            blame = "the leaves under it (or the tile) were altered"
            self.tile_ranges.append((first, last + 1, (level, t)))
        self.f.add(
            "tile_mismatch",
            f"tile {level}/{t}: {len(wrong)} entr{'y' if len(wrong) == 1 else 'ies'} "
            f"(first: entry {wrong[0]}, leaves {first}..{((lo + wrong[0] + 1) << shift) - 1}) "
            f"differ from the nodes recomputed from the leaves; {blame}",
            leaf_index=first,
            tile=(level, t),
        )

    def report_level0(self, verified_size: int, failed_sizes: list[int]) -> None:
        """Leaf hashes that differ from their level-0 tile: the tile is wrong if a verified
        checkpoint proves the leaf, else the leaf (or tile) was altered."""
        for index in self.l0_mismatch:
            t, j = index >> TILE_HEIGHT, index & MASK
            if index < verified_size:
                self.f.add(
                    "tile_mismatch",
                    f"tile 0/{t} entry {j} differs from the hash of leaf {index}, which a "
                    "verified checkpoint proves: the stored tile is wrong",
                    leaf_index=index,
                    tile=(0, t),
                )
                continue
            k = bisect.bisect_right(failed_sizes, index)
            after = failed_sizes[k] if k < len(failed_sizes) else None
            tail = (
                f"checkpoint {after} does not verify"
                if after is not None
                else "no checkpoint covers it, so either the leaf or the tile was altered"
            )
            self.f.add(
                "leaf_hash_mismatch",
                f"leaf {index} does not hash to entry {j} of tile 0/{t}; {tail}",
                leaf_index=index,
                checkpoint_size=after,
                tile=(0, t),
            )
        for t in self.l0_unlocated:
            first = t << TILE_HEIGHT
            proven = first + TILE_WIDTH <= verified_size
            self.f.add(
                "tile_mismatch",
                f"tile 0/{t} (stored out of order) differs from leaves {first}..{first + 255}; "
                + ("the stored tile is wrong" if proven else "the leaves or the tile were altered"),
                leaf_index=first,
                tile=(0, t),
            )
            if not proven:
                self.tile_ranges.append((first, first + TILE_WIDTH, (0, t)))
