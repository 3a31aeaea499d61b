"""Tiles written at append time reproduce the RFC 6962 tree: roots and proofs match a naive
build from the leaves."""

from __future__ import annotations

import random
import uuid

import asyncpg
import pytest

from ledger.errors import MalformedInputError
from ledger.log import merkle, tiles
from ledger.pg import tree
from ledger.pg.appender import PostgresAppender
from tests.support import Stack, synthetic_batch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def grown_log(stack: Stack) -> tuple[int, list[bytes]]:
    """A log of 66,000 leaves (so level-1 tiles exist) appended in uneven batches."""
    topic = f"tree-{uuid.uuid4().hex[:8]}"
    rng = random.Random(99)
    hashes: list[bytes] = []
    offset = 0
    async with PostgresAppender(dsn=stack.appender_url, ledger_name="test.ledger.local") as app:
        while offset < 66_000:
            n = rng.choice((1, 7, 255, 256, 257, 1000, 4093))
            items = synthetic_batch(topic, offset, n, rng)
            result = await app.append(topic=topic, partition=0, items=items)
            hashes += [merkle.leaf_hash(i.leaf) for i in items]
            offset += n
        log_id = result.log_id
    return log_id, hashes


async def test_tiles_written_are_exactly_the_full_tiles(
    stack: Stack, grown_log: tuple[int, list[bytes]]
) -> None:
    log_id, hashes = grown_log
    conn = await asyncpg.connect(stack.owner_url)
    try:
        rows = await conn.fetch(
            "SELECT level, tile_index, hashes, root FROM tiles WHERE log_id = $1 "
            "ORDER BY level, tile_index",
            log_id,
        )
    finally:
        await conn.close()
    size = len(hashes)
    expected = [(0, i) for i in range(size // 256)] + [(1, i) for i in range(size // 65536)]
    assert [(r["level"], r["tile_index"]) for r in rows] == expected
    for r in rows:
        if r["level"] == 0:
            start = r["tile_index"] * 256
            assert bytes(r["hashes"]) == b"".join(hashes[start : start + 256])
            assert bytes(r["root"]) == merkle.root_from_leaf_hashes(hashes[start : start + 256])
    level1 = rows[-1]
    assert bytes(level1["root"]) == merkle.root_from_leaf_hashes(hashes[:65536])


@pytest.mark.parametrize("size", [1, 2, 3, 255, 256, 257, 511, 65535, 65536, 65537, 66000])
async def test_root_at_any_size_matches_naive_mth(
    stack: Stack, grown_log: tuple[int, list[bytes]], size: int
) -> None:
    log_id, hashes = grown_log
    conn = await asyncpg.connect(stack.reader_url)
    try:
        current = await tree.log_size(conn, log_id)
        root = await tree.root_at(conn, log_id, size, current)
    finally:
        await conn.close()
    assert current == len(hashes)
    assert root == merkle.root_from_leaf_hashes(hashes[:size])


async def test_proofs_from_tiles_match_proofs_from_leaves_and_verify(
    stack: Stack, grown_log: tuple[int, list[bytes]]
) -> None:
    log_id, hashes = grown_log
    rng = random.Random(5)
    conn = await asyncpg.connect(stack.reader_url)
    try:
        current = await tree.log_size(conn, log_id)
        for _ in range(25):
            size = rng.choice((rng.randint(1, current), current, 65536, 65537))
            index = rng.randrange(size)
            got = await tree.inclusion_hashes(conn, log_id, index, size, current)
            want = merkle.inclusion_proof_from_leaves(index, hashes[:size]).hashes
            assert got == want
            merkle.verify_inclusion(
                leaf_hash=hashes[index], index=index, size=size, proof=got,
                root=merkle.root_from_leaf_hashes(hashes[:size]),
            )  # fmt: skip
            size1 = rng.randint(1, size)
            got_c = await tree.consistency_hashes(conn, log_id, size1, size, current)
            want_c = merkle.consistency_proof_from_leaves(size1, hashes[:size]).hashes
            assert got_c == want_c
    finally:
        await conn.close()


def test_tile_paths_follow_c2sp() -> None:
    assert tiles.encode_index(1234067) == "x001/x234/067"
    assert tiles.encode_index(0) == "000"
    assert tiles.tile_path(0, 1234067, 7) == "tile/0/x001/x234/067.p/7"
    assert tiles.entries_path(5) == "tile/entries/005"
    assert tiles.parse_partial("x001/x234/067.p/7") == (1234067, 7)
    for bad in ("1", "x1/234", "x000/001", "001.p/0", "001.p/256", "001.p/07", "abc"):
        with pytest.raises(MalformedInputError):
            tiles.parse_partial(bad)
