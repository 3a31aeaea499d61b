"""The PostgreSQL appender against the real database: exactly once, gapless, append-only."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from consumers.classify import classify
from integrations.simulator import Simulator
from ledger.audit.ingest import Accepted
from ledger.log.leaf import KafkaRecord
from ledger.pg.appender import PostgresAppender
from producers.codec import Codec
from tests.support import Stack

pytestmark = pytest.mark.integration

CODEC = Codec()


@pytest.fixture
async def appender(stack: Stack) -> AsyncIterator[PostgresAppender]:
    async with PostgresAppender(dsn=stack.appender_url, ledger_name="test.ledger.local") as a:
        yield a


def records(topic: str, values: list[bytes], *, first_offset: int = 0) -> list[KafkaRecord]:
    return [
        KafkaRecord(
            topic=topic,
            partition=0,
            offset=first_offset + i,
            timestamp_ms=1_700_000_000_000 + i,
            timestamp_type=0,
            key=b"k",
            value=v,
        )
        for i, v in enumerate(values)
    ]


def encoded(seed: int, n: int) -> list[bytes]:
    sim = Simulator(seed=seed)
    return [
        CODEC.encode(e.stamped(producer_id="it", producer_seq=i))
        for i, e in enumerate(sim.events(n))
    ]


async def leaves_of(conn: asyncpg.Connection, topic: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT l.leaf_index, l.leaf, l.leaf_hash FROM leaves l JOIN logs g USING (log_id) "
        "WHERE g.topic = $1 ORDER BY l.leaf_index",
        topic,
    )


async def test_batch_appends_gapless_leaves_with_rfc6962_hashes(
    appender: PostgresAppender, owner_conn: asyncpg.Connection
) -> None:
    topic = f"appender-{uuid.uuid4().hex[:8]}"
    items = [classify(r, CODEC) for r in records(topic, encoded(1, 50))]
    assert all(isinstance(i, Accepted) for i in items)
    result = await appender.append(topic=topic, partition=0, items=items)
    assert (result.appended, result.duplicates, result.quarantined, result.next_offset) == (
        50,
        0,
        0,
        50,
    )
    result2 = await appender.append(
        topic=topic,
        partition=0,
        items=[classify(r, CODEC) for r in records(topic, encoded(2, 10), first_offset=50)],
    )
    assert result2.first_leaf == 50
    rows = await leaves_of(owner_conn, topic)
    assert [r["leaf_index"] for r in rows] == list(range(60))
    for r in rows:
        assert bytes(r["leaf_hash"]) == hashlib.sha256(b"\x00" + bytes(r["leaf"])).digest()
    assert await appender.committed_offsets(topic, [0, 1]) == {0: 60}


async def test_replayed_offsets_are_skipped_exactly_once(
    appender: PostgresAppender, owner_conn: asyncpg.Connection
) -> None:
    topic = f"replay-{uuid.uuid4().hex[:8]}"
    recs = records(topic, encoded(3, 30))
    await appender.append(topic=topic, partition=0, items=[classify(r, CODEC) for r in recs[:20]])
    # A consumer that restarted from an older Kafka commit re-delivers 10..29.
    result = await appender.append(
        topic=topic, partition=0, items=[classify(r, CODEC) for r in recs[10:]]
    )
    assert (result.skipped, result.appended, result.next_offset) == (10, 10, 30)
    rows = await leaves_of(owner_conn, topic)
    assert len(rows) == 30
    count = await owner_conn.fetchval(
        "SELECT count(*) FROM events e JOIN logs g USING (log_id) WHERE g.topic = $1", topic
    )
    assert count == 30


async def test_same_event_id_same_bytes_is_a_counted_duplicate(
    appender: PostgresAppender, owner_conn: asyncpg.Connection
) -> None:
    topic = f"dup-{uuid.uuid4().hex[:8]}"
    values = encoded(4, 5)
    # The producer re-sent events 1 and 3 (same bytes) at later offsets.
    recs = records(topic, [*values, values[1], values[3]])
    result = await appender.append(
        topic=topic, partition=0, items=[classify(r, CODEC) for r in recs]
    )
    assert (result.appended, result.duplicates, result.quarantined, result.next_offset) == (
        5,
        2,
        0,
        7,
    )
    again = await appender.append(
        topic=topic,
        partition=0,
        items=[classify(r, CODEC) for r in records(topic, [values[0]], first_offset=7)],
    )
    assert (again.appended, again.duplicates) == (0, 1)


async def test_same_event_id_other_content_is_quarantined_as_conflict(
    appender: PostgresAppender, owner_conn: asyncpg.Connection
) -> None:
    topic = f"conflict-{uuid.uuid4().hex[:8]}"
    sim = Simulator(seed=5)
    original = sim.access().stamped(producer_id="it", producer_seq=1)
    import dataclasses

    forged = dataclasses.replace(original, network_address="203.0.113.66")
    recs = records(topic, [CODEC.encode(original), CODEC.encode(forged)])
    result = await appender.append(
        topic=topic, partition=0, items=[classify(r, CODEC) for r in recs]
    )
    assert (result.appended, result.quarantined, result.alerts) == (1, 1, 1)
    rows = await owner_conn.fetch(
        "SELECT reason, detail, kafka_offset, record_value FROM quarantine WHERE topic = $1 "
        "ORDER BY reason",
        topic,
    )
    # Both versions are kept in quarantine; the recorded one also stays in the ledger.
    assert [(r["reason"], r["kafka_offset"]) for r in rows] == [
        ("conflicting_event_id", 1),
        ("conflicting_event_id_original", 0),
    ]
    assert bytes(rows[0]["record_value"]) == recs[1].value
    assert bytes(rows[1]["record_value"]) == recs[0].value
    assert str(original.event_id) in rows[0]["detail"]
    alert = await owner_conn.fetchrow(
        "SELECT kind, event_id, leaf_index, kafka_offset FROM security_alerts WHERE topic = $1",
        topic,
    )
    assert alert["kind"] == "event_id_conflict"
    assert alert["event_id"] == original.event_id
    assert (alert["leaf_index"], alert["kafka_offset"]) == (0, 1)
    # The ledger holds exactly the first version.
    leaf_rows = await leaves_of(owner_conn, topic)
    assert len(leaf_rows) == 1


async def test_bad_records_are_quarantined_with_reason_and_do_not_block(
    appender: PostgresAppender, owner_conn: asyncpg.Connection
) -> None:
    topic = f"bad-{uuid.uuid4().hex[:8]}"
    good = encoded(6, 3)
    unknown = b"\xc3\x01" + b"\x11" * 8 + good[0][10:]
    values = [good[0], b"\x00 not an avro message", good[1][:-7], unknown, b"", good[2]]
    result = await appender.append(
        topic=topic, partition=0, items=[classify(r, CODEC) for r in records(topic, values)]
    )
    assert (result.appended, result.quarantined, result.next_offset) == (2, 4, 6)
    reasons = await owner_conn.fetch(
        "SELECT kafka_offset, reason FROM quarantine WHERE topic = $1 ORDER BY kafka_offset", topic
    )
    assert [(r["kafka_offset"], r["reason"]) for r in reasons] == [
        (1, "bad_magic"),
        (2, "malformed_avro"),
        (3, "unknown_schema"),
        (4, "empty_value"),
    ]
    # Every offset is exactly one of appended or quarantined.
    rows = await leaves_of(owner_conn, topic)
    assert len(rows) == 2
    assert len(rows) + len(reasons) == len(values)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE leaves SET leaf = '\\x00'::bytea",
        "DELETE FROM leaves",
        "TRUNCATE leaves CASCADE",
        "UPDATE events SET user_id = 'someone-else'",
        "DELETE FROM ingest_positions",
        "DELETE FROM quarantine",
    ],
)
async def test_ledger_tables_are_append_only_even_for_the_owner(
    appender: PostgresAppender, owner_conn: asyncpg.Connection, statement: str
) -> None:
    # Rows to refuse to change, whatever ran before: the guards are row triggers (TRUNCATE
    # a statement trigger), and a DELETE from an empty table touches no row.
    topic = f"append-only-{uuid.uuid4().hex[:8]}"
    values = [*encoded(7, 2), b"\x00 not an avro message"]
    items = [classify(r, CODEC) for r in records(topic, values)]
    assert (await appender.append(topic=topic, partition=0, items=items)).quarantined == 1
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await owner_conn.execute(statement)


async def test_only_the_reader_runs_the_signed_sizes_check(stack: Stack) -> None:
    """Migration 0020's check, which every history page calls: the reader may run it
    (true when covered, SQLSTATE LDG01 when not); the appender, like PUBLIC, may not."""
    reader = await asyncpg.connect(stack.reader_url)
    appender = await asyncpg.connect(stack.appender_url)
    try:
        assert await reader.fetchval("SELECT ledger_require_signed('{}'::bigint[])") is True
        with pytest.raises(asyncpg.PostgresError) as behind:
            await reader.fetchval(
                "SELECT ledger_require_signed(ARRAY[9223372036854775807]::bigint[])"
            )
        assert behind.value.sqlstate == "LDG01"
        assert "not yet replayed" in str(behind.value)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await appender.fetchval("SELECT ledger_require_signed('{}'::bigint[])")
    finally:
        await reader.close()
        await appender.close()


async def test_roles_have_least_privilege(stack: Stack) -> None:
    reader = await asyncpg.connect(stack.reader_url)
    appender = await asyncpg.connect(stack.appender_url)
    try:
        assert await reader.fetchval("SELECT count(*) FROM leaves") >= 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.execute(
                "INSERT INTO writer_schemas VALUES ('\\x0000000000000000', 'x', 'x', 'x')"
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await appender.execute("CREATE TABLE sneaky (x int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await appender.execute("ALTER TABLE leaves DISABLE TRIGGER ALL")
    finally:
        await reader.close()
        await appender.close()


async def test_a_newer_writer_fences_the_older_one(
    appender: PostgresAppender, owner_conn: asyncpg.Connection
) -> None:
    from ledger.errors import FencedError

    topic = f"fence-{uuid.uuid4().hex[:8]}"
    values = encoded(30, 20)
    old = await appender.claim(topic=topic, partition=0, writer_id="consumer-a")
    first = [classify(r, CODEC) for r in records(topic, values[:10])]
    await appender.append(topic=topic, partition=0, items=first, epoch=old)
    new = await appender.claim(topic=topic, partition=0, writer_id="consumer-b")
    assert new == old + 1
    rest = [classify(r, CODEC) for r in records(topic, values[10:], first_offset=10)]
    # The stale writer (paused, then back) can no longer append...
    with pytest.raises(FencedError, match=f"epoch {old} was superseded by epoch {new}"):
        await appender.append(topic=topic, partition=0, items=rest, epoch=old)
    # ...the new one can, and nothing was lost or duplicated.
    result = await appender.append(topic=topic, partition=0, items=rest, epoch=new)
    assert (result.appended, result.next_offset) == (10, 20)
    assert len(await leaves_of(owner_conn, topic)) == 20
    writers = await owner_conn.fetch(
        "SELECT epoch, writer_id FROM log_writers w JOIN logs g USING (log_id) "
        "WHERE g.topic = $1 ORDER BY epoch",
        topic,
    )
    assert [(w["epoch"], w["writer_id"]) for w in writers] == [(1, "consumer-a"), (2, "consumer-b")]
