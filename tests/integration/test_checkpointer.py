"""Checkpoint signing on the real database: cadence, rotation, and refusal after tampering."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ledger.errors import VerificationError
from ledger.log import merkle
from ledger.log.checkpoint import open_checkpoint
from ledger.log.note import Signer, generate_signer, parse_signer_key, parse_verifier_key
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from tests.conftest import own_ledger
from tests.support import Stack, superuser_url, synthetic_batch

pytestmark = pytest.mark.integration


@pytest.fixture
async def appender(stack: Stack) -> AsyncIterator[PostgresAppender]:
    async with PostgresAppender(dsn=stack.appender_url, ledger_name="test.ledger.local") as a:
        yield a


def keypair(name: str = "test.ledger.local") -> tuple[Signer, str]:
    signer, verifier = generate_signer(name)
    return parse_signer_key(signer), verifier


async def grow(appender: PostgresAppender, topic: str, offset: int, n: int, seed: int) -> int:
    items = synthetic_batch(topic, offset, n, random.Random(seed))
    result = await appender.append(topic=topic, partition=0, items=items)
    return result.log_id


async def test_cadence_by_leaf_count(appender: PostgresAppender) -> None:
    topic = f"cadence-{uuid.uuid4().hex[:8]}"
    signer, _ = keypair()
    cp = Checkpointer(
        pool=appender.pool,
        signers=[signer],
        policy=CheckpointPolicy(every_leaves=100, every_ms=10**9),
    )
    log_id = await grow(appender, topic, 0, 60, 1)
    first = await cp.after_append(log_id, 60)
    assert first is not None  # the first checkpoint of a log is always due
    await grow(appender, topic, 60, 50, 2)
    assert await cp.after_append(log_id, 110) is None  # 50 < 100 new leaves, time not up
    await grow(appender, topic, 110, 60, 3)
    issued = await cp.after_append(log_id, 170)
    assert issued is not None
    assert issued.size == 170


async def test_key_rotation_overlap(
    appender: PostgresAppender, owner_conn: asyncpg.Connection
) -> None:
    topic = f"rotation-{uuid.uuid4().hex[:8]}"
    old, old_v = keypair()
    new, new_v = keypair()
    policy = CheckpointPolicy(every_leaves=1, every_ms=0)
    log_id = await grow(appender, topic, 0, 300, 4)
    assert await Checkpointer(pool=appender.pool, signers=[old], policy=policy).checkpoint(log_id)
    await grow(appender, topic, 300, 10, 5)
    assert await Checkpointer(pool=appender.pool, signers=[old, new], policy=policy).checkpoint(
        log_id
    )
    await grow(appender, topic, 310, 10, 6)
    assert await Checkpointer(pool=appender.pool, signers=[new], policy=policy).checkpoint(log_id)

    notes = [r["note"] for r in await owner_conn.fetch(
        "SELECT note FROM checkpoints WHERE log_id = $1 ORDER BY size", log_id)]  # fmt: skip
    assert len(notes) == 3
    both = [parse_verifier_key(old_v), parse_verifier_key(new_v)]
    sizes = [open_checkpoint(n, both).size for n in notes]
    assert sizes == [300, 310, 320]
    # Old key only: the last one (new key only) fails; new key only: the first one fails.
    open_checkpoint(notes[1], [both[0]])
    with pytest.raises(VerificationError):
        open_checkpoint(notes[2], [both[0]])
    open_checkpoint(notes[1], [both[1]])
    with pytest.raises(VerificationError):
        open_checkpoint(notes[0], [both[1]])
    # A stranger's key cannot continue the log: it cannot open the last checkpoint.
    stranger, _ = keypair()
    await grow(appender, topic, 320, 5, 7)
    with pytest.raises(VerificationError, match="does not verify with our keys"):
        await Checkpointer(pool=appender.pool, signers=[stranger], policy=policy).checkpoint(log_id)


async def test_refuses_to_sign_after_the_tree_was_tampered(
    appender: PostgresAppender, stack: Stack
) -> None:
    topic = f"tamper-sign-{uuid.uuid4().hex[:8]}"
    signer, _ = keypair()
    policy = CheckpointPolicy(every_leaves=1, every_ms=0)
    checkpointer = Checkpointer(pool=appender.pool, signers=[signer], policy=policy)
    log_id = await grow(appender, topic, 0, 600, 8)
    signed = await checkpointer.checkpoint(log_id)
    assert signed is not None
    # A superuser rewrites leaf 7 and, to cover it up, every stored hash derived from it:
    # the leaf hash, the first full tile and that tile's root.
    su = await asyncpg.connect(superuser_url(stack))
    try:
        async with su.transaction():
            await su.execute("SET LOCAL session_replication_role = replica")  # triggers off
            forged_leaf = b"\x01forged"
            await su.execute(
                "UPDATE leaves SET leaf = $2, leaf_hash = $3 WHERE log_id = $1 AND leaf_index = 7",
                log_id, forged_leaf, merkle.leaf_hash(forged_leaf),
            )  # fmt: skip
            rows = await su.fetch(
                "SELECT leaf_hash FROM leaves WHERE log_id = $1 AND leaf_index < 256 "
                "ORDER BY leaf_index",
                log_id,
            )
            hashes = [bytes(r[0]) for r in rows]
            await su.execute(
                "UPDATE tiles SET hashes = $2, root = $3 "
                "WHERE log_id = $1 AND level = 0 AND tile_index = 0",
                log_id, b"".join(hashes), merkle.root_from_leaf_hashes(hashes),
            )  # fmt: skip
    finally:
        await su.close()
    await grow(appender, topic, 600, 10, 9)
    # The running signer holds the tiles it already proved consistent (its cache), so it
    # keeps extending the honest tree: it can never sign the forged one.
    issued = await checkpointer.checkpoint(log_id)
    assert issued is not None
    honest = [merkle.leaf_hash(i.leaf) for i in synthetic_batch(topic, 0, 600, random.Random(8))]
    honest += [merkle.leaf_hash(i.leaf) for i in synthetic_batch(topic, 600, 10, random.Random(9))]
    assert open_checkpoint(issued.note, [signer.verifier]).root_hash == (
        merkle.root_from_leaf_hashes(honest)
    )
    # A restarted signer reads the tree from the database, finds it inconsistent with the
    # last signed checkpoint, and refuses.
    await grow(appender, topic, 610, 5, 10)
    restarted = Checkpointer(pool=appender.pool, signers=[signer], policy=policy)
    with pytest.raises(VerificationError, match="inconsistent with checkpoint 610"):
        await restarted.checkpoint(log_id)


def test_a_malformed_stored_checkpoint_is_refused_as_unverifiable(stack: Stack) -> None:
    """A stored note that does not even parse is refused like a forged one (before, its
    MalformedInputError escaped the sweep's per-log refusal and stopped the sweep). On a
    database of its own: the malformed row stays for ever (append-only), and reports over
    the shared one would rightly refuse to use it."""
    with own_ledger(stack, f"{stack.database}_malformed") as own:
        asyncio.run(_malformed(own))


async def _malformed(own: Stack) -> None:
    topic = f"malformed-cp-{uuid.uuid4().hex[:8]}"
    signer, _ = keypair()
    async with PostgresAppender(dsn=own.appender_url, ledger_name="test.ledger.local") as app:
        checkpointer = Checkpointer(
            pool=app.pool, signers=[signer], policy=CheckpointPolicy(every_leaves=1, every_ms=0)
        )
        log_id = await grow(app, topic, 0, 3, 11)
        owner = await asyncpg.connect(own.owner_url)
        try:
            await owner.execute(
                "INSERT INTO checkpoints (log_id, size, root_hash, note) VALUES ($1, 2, $2, $3)",
                log_id, b"\x01" * 32, "not a note\n",
            )  # fmt: skip
        finally:
            await owner.close()
        with pytest.raises(VerificationError, match="does not verify with our keys"):
            await checkpointer.checkpoint(log_id)
        assert log_id not in [c.log_id for c in await checkpointer.checkpoint_all_due()]
