"""Logs sharded by time against the real PostgreSQL: one log per partition per period,
moved on at the first record of a later period and never back, sealed when closed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from consumers.classify import classify
from integrations.simulator import Simulator
from ledger.errors import FencedError, VerificationError
from ledger.log import merkle
from ledger.log.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.log.keys import load_signers
from ledger.log.leaf import KafkaRecord
from ledger.log.note import generate_signer, parse_signer_key, parse_verifier_key
from ledger.log.periods import PeriodLength
from ledger.log.seal import open_seal
from ledger.log.types import RootHash
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from ledger.pg.status import pooled_ingestion_status
from producers.codec import Codec
from producers.events import PhiAccessEvent
from tests.support import Stack

pytestmark = pytest.mark.integration

CODEC = Codec()
NAME = "test.ledger.local"
NOV = int(datetime(2026, 11, 30, 23, 59, tzinfo=UTC).timestamp() * 1000)
DEC = int(datetime(2026, 12, 1, 0, 0, tzinfo=UTC).timestamp() * 1000)
JAN = int(datetime(2027, 1, 3, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
async def appender(stack: Stack) -> AsyncIterator[PostgresAppender]:
    async with PostgresAppender(dsn=stack.appender_url, ledger_name=NAME) as a:
        yield a


@pytest.fixture
def checkpointer(stack: Stack, appender: PostgresAppender) -> Checkpointer:
    return Checkpointer(
        pool=appender.pool,
        signers=load_signers(stack.signer_key_file),
        policy=CheckpointPolicy(every_leaves=1, every_ms=10),
    )


def values(seed: int, n: int) -> list[bytes]:
    """``n`` access events of their own: the session's database is shared with other tests
    that run the simulator with small seeds, whose event ids would be duplicates here; and
    only accesses (a relay event on an access topic is quarantined, by design)."""
    sim = Simulator(seed=seed * 1_000_003 + uuid.uuid4().int % 1_000_000)
    accesses = [e for e in sim.events(n * 4) if isinstance(e, PhiAccessEvent)][:n]
    assert len(accesses) == n
    return [
        CODEC.encode(e.stamped(producer_id="periods", producer_seq=i))
        for i, e in enumerate(accesses)
    ]


def batch(topic: str, stamped: list[tuple[int, bytes]], first_offset: int) -> list[object]:
    return [
        classify(
            KafkaRecord(topic=topic, partition=0, offset=first_offset + i, timestamp_ms=ms,
                        timestamp_type=1, key=b"k", value=v),
            CODEC,
        )
        for i, (ms, v) in enumerate(stamped)
    ]  # fmt: skip


async def logs_of(conn: asyncpg.Connection, topic: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT g.log_id, g.origin, g.period, g.period_end, g.first_offset, "
        "(SELECT count(*) FROM leaves l WHERE l.log_id = g.log_id) AS size "
        "FROM logs g WHERE g.topic = $1 ORDER BY g.period",
        topic,
    )


async def test_a_batch_across_a_month_end_moves_the_partition_to_the_next_log(
    appender: PostgresAppender, owner_conn: asyncpg.Connection
) -> None:
    topic = f"periods-{uuid.uuid4().hex[:8]}"
    v = values(1, 10)
    result = await appender.append(
        topic=topic, partition=0,
        items=batch(topic, [(NOV, x) for x in v[:4]] + [(DEC, x) for x in v[4:7]], 0),
    )  # fmt: skip
    assert (result.appended, result.next_offset, result.first_leaf) == (7, 7, 0)
    # A late record (its broker timestamp still in November) after the switch: the
    # December log takes it; the partition never goes back to a closed period's log.
    late = await appender.append(topic=topic, partition=0, items=batch(topic, [(NOV, v[7])], 7))
    assert (late.appended, late.first_leaf) == (1, 3)
    logs = await logs_of(owner_conn, topic)
    assert [(r["origin"], r["period"], r["period_end"], r["first_offset"], r["size"])
            for r in logs] == [
        (f"{NAME}/{topic}/0/2026-11", date(2026, 11, 1), date(2026, 12, 1), 0, 4),
        (f"{NAME}/{topic}/0/2026-12", date(2026, 12, 1), date(2027, 1, 1), 4, 4),
    ]  # fmt: skip
    assert late.log_id == logs[1]["log_id"]
    # A consumer that restarts from an old Kafka commit re-delivers November's offsets:
    # they were applied (in the closed log) and are skipped, not appended again.
    again = await appender.append(
        topic=topic, partition=0, items=batch(topic, [(NOV, x) for x in v[:4]], 0)
    )
    assert (again.skipped, again.appended) == (4, 0)
    assert await appender.committed_offsets(topic, [0]) == {0: 8}
    # Periods may be skipped: nothing in December's second half, January next.
    jan = await appender.append(topic=topic, partition=0, items=batch(topic, [(JAN, v[8])], 8))
    assert jan.first_leaf == 0
    assert [r["origin"][-7:] for r in await logs_of(owner_conn, topic)] == [
        "2026-11", "2026-12", "2027-01"
    ]  # fmt: skip


async def test_an_event_sent_again_across_the_boundary_is_a_duplicate(
    appender: PostgresAppender, owner_conn: asyncpg.Connection
) -> None:
    topic = f"periods-dup-{uuid.uuid4().hex[:8]}"
    v = values(2, 3)
    result = await appender.append(
        topic=topic, partition=0,
        items=batch(topic, [(NOV, v[0]), (NOV, v[1]), (DEC, v[1]), (DEC, v[2])], 0),
    )  # fmt: skip
    assert (result.appended, result.duplicates, result.quarantined) == (3, 1, 0)
    sizes = [r["size"] for r in await logs_of(owner_conn, topic)]
    assert sizes == [2, 1]


async def test_day_periods_name_their_logs_by_day(
    stack: Stack, owner_conn: asyncpg.Connection
) -> None:
    topic = f"periods-day-{uuid.uuid4().hex[:8]}"
    v = values(3, 2)
    async with PostgresAppender(
        dsn=stack.appender_url, ledger_name=NAME, period=PeriodLength.DAY
    ) as app:
        await app.append(
            topic=topic, partition=0, items=batch(topic, [(NOV, v[0]), (DEC, v[1])], 0)
        )
    assert [r["origin"].rsplit("/", 1)[1] for r in await logs_of(owner_conn, topic)] == [
        "2026-11-30", "2026-12-01"
    ]  # fmt: skip


async def test_a_writer_fenced_out_stays_fenced_in_the_next_period(
    stack: Stack, owner_conn: asyncpg.Connection
) -> None:
    topic = f"periods-fence-{uuid.uuid4().hex[:8]}"
    v = values(4, 4)
    async with (
        PostgresAppender(dsn=stack.appender_url, ledger_name=NAME) as old,
        PostgresAppender(dsn=stack.appender_url, ledger_name=NAME) as new,
    ):
        # A claim before any record makes the partition's first log, for the current
        # period (December 2026 when this was written; any month before January 2027).
        stale = await old.claim(topic=topic, partition=0, writer_id="old")
        await old.append(
            topic=topic, partition=0, items=batch(topic, [(DEC, v[0])], 0), epoch=stale
        )
        owner = await new.claim(topic=topic, partition=0, writer_id="new")
        with pytest.raises(FencedError):
            await old.append(
                topic=topic, partition=0, items=batch(topic, [(JAN, v[1])], 1), epoch=stale
            )
        await new.append(
            topic=topic, partition=0, items=batch(topic, [(JAN, v[1])], 1), epoch=owner
        )
        # The new owner made January's log; its epoch still fences the old writer there.
        with pytest.raises(FencedError):
            await old.append(
                topic=topic, partition=0, items=batch(topic, [(JAN, v[2])], 2), epoch=stale
            )
    assert [r["size"] for r in await logs_of(owner_conn, topic)] == [1, 1]


async def test_a_closed_log_is_sealed_once_with_its_final_checkpoint(
    stack: Stack,
    appender: PostgresAppender,
    checkpointer: Checkpointer,
    owner_conn: asyncpg.Connection,
) -> None:
    topic = f"periods-seal-{uuid.uuid4().hex[:8]}"
    v = values(5, 6)
    await appender.append(
        topic=topic, partition=0, items=batch(topic, [(NOV, x) for x in v[:3]], 0)
    )
    (nov,) = await logs_of(owner_conn, topic)
    # Signed part-way through November: the seal must extend this checkpoint.
    assert await checkpointer.checkpoint(nov["log_id"], force=True) is not None
    await appender.append(
        topic=topic, partition=0, items=batch(topic, [(NOV, v[3]), (DEC, v[4])], 3)
    )
    mine = [s for s in await checkpointer.seal_closed_logs() if s.log_id == nov["log_id"]]
    assert [(s.log_id, s.size) for s in mine] == [(nov["log_id"], 4)]
    verifier = parse_verifier_key(stack.verifier_key)
    seal = open_seal(mine[0].note, [verifier])
    dec = (await logs_of(owner_conn, topic))[1]
    assert (seal.checkpoint.origin, seal.checkpoint.size) == (nov["origin"], 4)
    assert (seal.next_origin, seal.next_first_offset) == (dec["origin"], 4)
    final = await owner_conn.fetchrow(
        "SELECT note, root_hash FROM checkpoints WHERE log_id = $1 ORDER BY size DESC LIMIT 1",
        nov["log_id"],
    )
    head = open_checkpoint(final["note"], [verifier])
    assert (head.size, head.root_hash) == (4, seal.checkpoint.root_hash)
    assert seal.checkpoint.root_hash == bytes(final["root_hash"])
    # Sealed once; December's log stays open; a sealed log is no longer swept.
    assert [s for s in await checkpointer.seal_closed_logs() if s.log_id == nov["log_id"]] == []
    row = await owner_conn.fetchrow(
        "SELECT size, next_log_id, next_first_offset FROM log_seals WHERE log_id = $1",
        nov["log_id"],
    )
    assert tuple(row) == (4, dec["log_id"], 4)
    assert (
        await owner_conn.fetchval("SELECT count(*) FROM log_seals WHERE log_id = $1", dec["log_id"])
        == 0
    )
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await owner_conn.execute("DELETE FROM log_seals WHERE log_id = $1", nov["log_id"])
    # `ledger status` and the checkpoint-age metrics follow the open log only: a sealed
    # log's last checkpoint ages for ever and must not raise a stalled-signer alert.
    status = [s.origin for s in await pooled_ingestion_status(appender.pool)]
    assert dec["origin"] in status
    assert nov["origin"] not in status


async def test_a_seal_is_refused_when_the_stored_checkpoint_is_forged(
    stack: Stack,
    appender: PostgresAppender,
    checkpointer: Checkpointer,
    owner_conn: asyncpg.Connection,
) -> None:
    topic = f"periods-forged-{uuid.uuid4().hex[:8]}"
    v = values(6, 3)
    await appender.append(topic=topic, partition=0, items=batch(topic, [(NOV, v[0])], 0))
    (nov,) = await logs_of(owner_conn, topic)
    # A checkpoint row signed by a key that is not ours (an attacker with INSERT on
    # checkpoints and a key of the same name): the seal must not extend it.
    forged, _ = generate_signer(NAME)
    cp = Checkpoint(origin=nov["origin"], size=1, root_hash=RootHash(b"\x01" * 32))
    await owner_conn.execute(
        "INSERT INTO checkpoints (log_id, size, root_hash, note) VALUES ($1, 1, $2, $3)",
        nov["log_id"], cp.root_hash, sign_checkpoint(cp, [parse_signer_key(forged)]),
    )  # fmt: skip
    await appender.append(
        topic=topic, partition=0, items=batch(topic, [(NOV, v[1]), (DEC, v[2])], 1)
    )
    sealed = await checkpointer.seal_closed_logs()
    assert nov["log_id"] not in [s.log_id for s in sealed]
    assert (
        await owner_conn.fetchval("SELECT count(*) FROM log_seals WHERE log_id = $1", nov["log_id"])
        == 0
    )
    with pytest.raises(VerificationError):
        await checkpointer.checkpoint(nov["log_id"], force=True)


async def test_an_empty_closed_log_is_sealed_at_size_zero(
    stack: Stack, owner_conn: asyncpg.Connection
) -> None:
    topic = f"periods-empty-{uuid.uuid4().hex[:8]}"
    async with PostgresAppender(dsn=stack.appender_url, ledger_name=NAME) as app:
        epoch = await app.claim(topic=topic, partition=0, writer_id="w")  # log of "now"
        v = values(7, 1)
        await app.append(
            topic=topic, partition=0, items=batch(topic, [(JAN, v[0])], 0), epoch=epoch
        )
        checkpointer = Checkpointer(
            pool=app.pool, signers=load_signers(stack.signer_key_file), policy=CheckpointPolicy()
        )
        first, jan = await logs_of(owner_conn, topic)
        sealed = [s for s in await checkpointer.seal_closed_logs() if s.log_id == first["log_id"]]
    seal = open_seal(sealed[0].note, [parse_verifier_key(stack.verifier_key)])
    assert (seal.checkpoint.size, seal.next_origin, seal.next_first_offset) == (0, jan["origin"], 0)
    assert seal.checkpoint.root_hash == merkle.root_from_leaves([])


async def test_the_sweep_has_pg_partman_make_the_months_ahead(
    checkpointer: Checkpointer, owner_conn: asyncpg.Connection
) -> None:
    assert await checkpointer.maintain_partitions() is True
    assert await checkpointer.maintain_partitions() is False  # at most hourly
    today = datetime.now(UTC).date().replace(day=1)
    ahead = []
    for _ in range(3):
        today = (today + timedelta(days=32)).replace(day=1)
        ahead.append(f"events_p{today:%Y_%m}")
    made = await owner_conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'events'::regclass AND c.relname = ANY($1::text[])",
        ahead,
    )
    assert sorted(r["relname"] for r in made) == ahead
