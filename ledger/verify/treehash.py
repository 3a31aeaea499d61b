"""RFC 6962 tree hashing in tiles: the 256-wide perfect subtrees the ledger stores.

Invariant: entry j of a level-L tile (L >= 1) is the MTH of level-(L-1) tile j, i.e. the
tree node at level 8L with index ``256 * T + j``; level-0 entries are leaf hashes
``SHA-256(0x00 || leaf)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Final

from ledger.errors import MalformedInputError

__all__ = [
    "HASH",
    "LEAF_SEED",
    "MASK",
    "MAX_TILE_LEVEL",
    "NODE_SEED",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "ZERO",
    "build_full_tiles",
    "perfect_root",
    "split_hashes",
]

TILE_HEIGHT: Final = 8
TILE_WIDTH: Final = 1 << TILE_HEIGHT
MASK: Final = TILE_WIDTH - 1
HASH: Final = 32
MAX_TILE_LEVEL: Final = 7  # a full level-8 tile would need 2**72 leaves
ZERO: Final = bytes(HASH)

LEAF_SEED: Final = hashlib.sha256(b"\x00")
NODE_SEED: Final = hashlib.sha256(b"\x01")


def perfect_root(level: list[bytes]) -> bytes:
    """MTH of a power-of-two number (>= 1) of node hashes."""
    seed = NODE_SEED
    while len(level) > 1:
        parents: list[bytes] = []
        add = parents.append
        for left, right in zip(level[0::2], level[1::2], strict=True):
            h = seed.copy()
            h.update(left)
            h.update(right)
            add(h.digest())
        level = parents
    return level[0]


def split_hashes(data: bytes) -> list[bytes]:
    return [data[k : k + HASH] for k in range(0, len(data), HASH)]


def build_full_tiles(leaf_hashes: Iterable[bytes]) -> Iterator[tuple[int, int, bytes]]:
    """Every full tile of the tree with these leaf hashes, as ``(level, index, 8192 bytes)``.

    Streams in O(256 * levels) memory.  Each tile is yielded as soon as it is complete, so a
    level-L tile comes right after the level-(L-1) tile that completes it (level 0 ascending,
    each level ascending).  Entry j of a level-L tile (L >= 1) is the MTH of level-(L-1)
    tile j, i.e. the tree node at level 8L with index ``256 * T + j``.
    """
    pending: list[list[bytes]] = [[]]
    counts: list[int] = [0]
    it = iter(leaf_hashes)
    while True:
        chunk = list(islice(it, TILE_WIDTH - len(pending[0])))
        if not chunk:
            return
        if {*map(len, chunk)} != {HASH}:
            raise MalformedInputError(f"every leaf hash must be {HASH} bytes")
        pending[0].extend(chunk)
        level = 0
        while len(pending[level]) == TILE_WIDTH:
            entries = pending[level]
            yield level, counts[level], b"".join(entries)
            counts[level] += 1
            pending[level] = []
            if level + 1 == len(pending):
                pending.append([])
                counts.append(0)
            pending[level + 1].append(perfect_root(entries))
            level += 1
