"""Reading the integrated tree from PostgreSQL: perfect-subtree hashes from tiles.

Invariant: a node hash is computed only from stored full tiles and, for the
rightmost partial tile of a level, from the level below (leaf hashes or full
tile roots); one query fetches all full tiles a proof needs, and each partial
tile costs one more range query, so any proof or root takes O(log n) reads.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ledger.errors import VerificationError
from ledger.log import tiles
from ledger.log.merkle import (
    NodeID,
    NodeRef,
    consistency_path_nodes,
    inclusion_path_nodes,
    perfect_nodes,
    proof_hashes,
    range_decomposition,
    root_from_subtrees,
)
from ledger.log.types import RootHash
from ledger.pg import sql

Conn = asyncpg.Connection | PoolConnectionProxy


async def log_size(conn: Conn, log_id: int) -> int:
    return int(await conn.fetchval(sql.LOG_SIZE, log_id))


async def fetch_tiles(
    conn: Conn, log_id: int, keys: Iterable[tiles.TileKey], current_size: int
) -> dict[tiles.TileKey, list[bytes]]:
    """Entries of the requested tiles as stored at ``current_size`` (full or partial)."""
    wanted = sorted(set(keys))
    full = [k for k in wanted if tiles.tile_width(k, current_size) == tiles.TILE_WIDTH]
    out: dict[tiles.TileKey, list[bytes]] = {}
    if full:
        rows = await conn.fetch(sql.FULL_TILES, log_id, [k[0] for k in full], [k[1] for k in full])
        for r in rows:
            out[(int(r["level"]), int(r["tile_index"]))] = tiles.split_hashes(bytes(r["hashes"]))
        missing = [k for k in full if k not in out]
        if missing:
            raise VerificationError(f"log {log_id}: full tiles {missing} are missing")
    for key in wanted:
        if key in out:
            continue
        width = tiles.tile_width(key, current_size)
        level, index = key
        start = index * tiles.TILE_WIDTH
        if width == 0:
            raise VerificationError(f"log {log_id}: tile {key} is beyond size {current_size}")
        if level == 0:
            rows = await conn.fetch(sql.LEAF_HASH_RANGE, log_id, start, start + width)
            entries = [bytes(r[0]) for r in rows]
        else:
            rows = await conn.fetch(sql.TILE_ROOT_RANGE, log_id, level - 1, start, start + width)
            entries = [bytes(r["root"]) for r in rows]
        if len(entries) != width:
            raise VerificationError(
                f"log {log_id}: partial tile {key} has {len(entries)} entries, expected {width}"
            )
        out[key] = entries
    return out


class TileCache:
    """LRU of tiles' internal levels. Tiles only ever grow (a partial tile is a prefix of
    the full one), so a cached tile serves any request that needs no more entries."""

    def __init__(self, capacity: int = 2048) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[int, int, int], tuple[tuple[bytes, ...], ...]] = (
            OrderedDict()
        )

    def get(self, log_id: int, key: tiles.TileKey) -> tuple[tuple[bytes, ...], ...] | None:
        item = self._items.get((log_id, *key))
        if item is not None:
            self._items.move_to_end((log_id, *key))
        return item

    def put(self, log_id: int, key: tiles.TileKey, levels: tuple[tuple[bytes, ...], ...]) -> None:
        self._items[(log_id, *key)] = levels
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)


async def node_hashes(
    conn: Conn,
    log_id: int,
    nodes: Sequence[NodeID],
    current_size: int,
    cache: TileCache | None = None,
) -> dict[NodeID, bytes]:
    levels: dict[tiles.TileKey, tuple[tuple[bytes, ...], ...]] = {}
    needed: dict[tiles.TileKey, int] = {}
    for node in nodes:
        span = tiles.locate(node)
        needed[span.key] = max(needed.get(span.key, 0), span.offset + span.count)
    wanted = []
    for key, width in needed.items():
        hit = cache.get(log_id, key) if cache is not None else None
        if hit is not None and len(hit[0]) >= width:
            levels[key] = hit
        else:
            wanted.append(key)
    if wanted:
        fetched = await fetch_tiles(conn, log_id, wanted, current_size)
        for key, entries in fetched.items():
            levels[key] = tiles.tile_levels(entries)
            if cache is not None:
                cache.put(log_id, key, levels[key])
    return {n: tiles.node_from_levels(n, levels) for n in nodes}


async def _hashes_for(
    conn: Conn,
    log_id: int,
    refs: Sequence[NodeRef],
    current_size: int,
    cache: TileCache | None,
) -> tuple[bytes, ...]:
    table = await node_hashes(conn, log_id, perfect_nodes(refs), current_size, cache)
    return proof_hashes(refs, table)


async def root_at(
    conn: Conn, log_id: int, size: int, current_size: int, cache: TileCache | None = None
) -> RootHash:
    table = await node_hashes(conn, log_id, range_decomposition(0, size), current_size, cache)
    return root_from_subtrees(size, table.__getitem__)


async def inclusion_hashes(
    conn: Conn,
    log_id: int,
    index: int,
    size: int,
    current_size: int,
    cache: TileCache | None = None,
) -> tuple[bytes, ...]:
    refs = inclusion_path_nodes(index, size)
    return await _hashes_for(conn, log_id, refs, current_size, cache)


async def consistency_hashes(
    conn: Conn,
    log_id: int,
    size1: int,
    size2: int,
    current_size: int,
    cache: TileCache | None = None,
) -> tuple[bytes, ...]:
    if size1 == size2:
        return ()
    refs = consistency_path_nodes(size1, size2)
    return await _hashes_for(conn, log_id, refs, current_size, cache)
