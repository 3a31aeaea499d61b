"""C2SP tlog-tiles geometry and hashing: pure functions over tile contents.

Invariant: a tile at level L, index N holds the hashes of the tree nodes at tree
level 8L with node indexes [256N, 256N + W), W <= 256 (W = 256: a full tile). A
level-0 tile holds leaf hashes; entry j of a level-L tile (L >= 1) is the root of
the full level-(L-1) tile j. Storage keeps full tiles only (they never change);
the rightmost partial tile of each level is derived from the level below. Every
perfect-subtree hash, so every proof and root, is computed from at most one tile
per tile level: O(log n) reads.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ledger.errors import MalformedInputError
from ledger.log.merkle import NodeID, node_hash

TILE_HEIGHT: Final = 8
TILE_WIDTH: Final = 1 << TILE_HEIGHT
HASH_SIZE: Final = 32
FULL_TILE_BYTES: Final = TILE_WIDTH * HASH_SIZE

TileKey = tuple[int, int]  # (level, index)


@dataclass(frozen=True, slots=True, kw_only=True)
class TileSpan:
    """Where a perfect subtree sits: ``count`` entries of tile ``key`` from ``offset``."""

    key: TileKey
    offset: int
    count: int


def locate(node: NodeID) -> TileSpan:
    """The tile entries whose MTH is ``node``'s hash."""
    level, sub = divmod(node.level, TILE_HEIGHT)
    first = node.index << sub
    return TileSpan(key=(level, first >> TILE_HEIGHT), offset=first & 0xFF, count=1 << sub)


def entries_at_level(level: int, size: int) -> int:
    """How many complete tree nodes exist at tree level 8*level in a tree of ``size`` leaves."""
    return size >> (TILE_HEIGHT * level)


def tile_width(key: TileKey, size: int) -> int:
    """Width of tile ``key`` in a tree of ``size`` leaves (0 when it has no entries yet)."""
    level, index = key
    return max(0, min(TILE_WIDTH, entries_at_level(level, size) - index * TILE_WIDTH))


def perfect_root(entries: Sequence[bytes]) -> bytes:
    """MTH of a power-of-two number of node hashes (one level's entries)."""
    level = list(entries)
    if not level or len(level) & (len(level) - 1):
        raise MalformedInputError(f"{len(level)} entries are not a perfect subtree")
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def split_hashes(blob: bytes) -> list[bytes]:
    """Split concatenated 32-byte hashes."""
    if len(blob) % HASH_SIZE:
        raise MalformedInputError("tile data is not a whole number of hashes")
    return [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]


def tile_levels(entries: Sequence[bytes]) -> tuple[tuple[bytes, ...], ...]:
    """Every perfect subtree inside a tile: level k holds the hashes of 2^k-entry blocks.

    Level 0 is the entries themselves; a full tile yields 9 levels (the last is its root).
    """
    levels = [tuple(entries)]
    while len(levels[-1]) >= 2:
        below = levels[-1]
        levels.append(tuple(node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)))
    return tuple(levels)


def node_from_levels(node: NodeID, tiles: Mapping[TileKey, Sequence[Sequence[bytes]]]) -> bytes:
    """Hash of a perfect subtree from the ``tile_levels`` of the tile that holds it."""
    span = locate(node)
    levels = tiles.get(span.key)
    sub = span.count.bit_length() - 1
    if levels is None or len(levels) <= sub or len(levels[sub]) <= span.offset >> sub:
        raise MalformedInputError(f"tile {span.key} lacks the entries for {node}")
    return levels[sub][span.offset >> sub]


def node_from_tiles(node: NodeID, tiles: Mapping[TileKey, Sequence[bytes]]) -> bytes:
    """Hash of a perfect subtree from the entries of the tile that holds it."""
    span = locate(node)
    entries = tiles.get(span.key)
    if entries is None or len(entries) < span.offset + span.count:
        raise MalformedInputError(f"tile {span.key} lacks the entries for {node}")
    return perfect_root(entries[span.offset : span.offset + span.count])


def tiles_for(nodes: Iterable[NodeID]) -> set[TileKey]:
    """The tiles needed to hash these perfect subtrees."""
    return {locate(n).key for n in nodes}


def completed_tiles(old_size: int, new_size: int) -> list[TileKey]:
    """Tiles that become full when a tree grows from ``old_size`` to ``new_size`` leaves.

    Bottom level first, so each level's entries exist before the level above needs them.
    """
    out: list[TileKey] = []
    level = 0
    while entries_at_level(level, new_size) >= TILE_WIDTH:
        before = entries_at_level(level, old_size) // TILE_WIDTH
        after = entries_at_level(level, new_size) // TILE_WIDTH
        out.extend((level, index) for index in range(before, after))
        level += 1
    return out


# ------------------------------------------------------------------- C2SP paths and bundles

_PATH_INDEX = re.compile(r"(?:x\d{3}/)*\d{3}")


def encode_index(n: int) -> str:
    """C2SP tlog-tiles index path: 1234067 -> 'x001/x234/067'."""
    if n < 0:
        raise MalformedInputError("tile index must be non-negative")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])


def decode_index(path: str) -> int:
    """Inverse of ``encode_index``, strict (no leading ``x000`` groups, at most 64-bit)."""
    if not _PATH_INDEX.fullmatch(path):
        raise MalformedInputError(f"{path!r} is not a tile index path")
    groups = [g.lstrip("x") for g in path.split("/")]
    if len(groups) > 1 and groups[0] == "000":
        raise MalformedInputError(f"{path!r} has a leading zero group")
    value = int("".join(groups))
    if value >= 1 << 64:
        raise MalformedInputError("tile index beyond 2^64")
    return value


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{encode_index(index)}{suffix}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/entries/{encode_index(index)}{suffix}"


def parse_partial(path: str) -> tuple[int, int]:
    """Parse '<index path>[.p/<W>]' into (index, width); width 256 when full."""
    width = TILE_WIDTH
    if ".p/" in path:
        path, _, w = path.partition(".p/")
        if not w.isdigit() or w != str(int(w)) or not 1 <= int(w) < TILE_WIDTH:
            raise MalformedInputError("partial width must be 1..255 without leading zeros")
        width = int(w)
    return decode_index(path), width


_U16 = struct.Struct(">H")


def entry_bundle(leaves: Iterable[bytes]) -> bytes:
    """A tlog-tiles entry bundle: each entry prefixed by its big-endian uint16 length."""
    parts = []
    for leaf in leaves:
        if len(leaf) > 0xFFFF:
            raise MalformedInputError("entry longer than 65535 bytes")
        parts.append(_U16.pack(len(leaf)))
        parts.append(leaf)
    return b"".join(parts)
