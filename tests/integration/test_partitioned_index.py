"""The event index partitioned by month (migration 0018, docs/scale.md): rows land in
their log's month, every month a log needs has its partitions, the append-only rules hold
on each partition, pg_partman never drops anything, and a ledger migrated from 0017
answers the reader's queries and the reports exactly as before."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from consumers.classify import classify
from ledger.audit.ingest import Accepted, WriterSchemaInfo
from ledger.audit.query import Cursor, HistoryKey, HistoryQuery, Snapshot
from ledger.audit.reports import InvestigationScope, PatientRef, to_json
from ledger.errors import UnavailableError
from ledger.log.keys import load_signers
from ledger.log.leaf import KafkaRecord
from ledger.log.periods import PeriodLength
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from ledger.pg.migrate import apply_migrations
from ledger.pg.reader import PostgresReader
from ledger.pg.reports import PostgresReports
from producers.codec import Codec
from producers.events import (
    Actor,
    AuditLogUsed,
    DisclosedPatient,
    DisclosedRange,
    EventAction,
    Facility,
    LedgerQuery,
    Patient,
    PhiAccessEvent,
    Recipient,
    Study,
    event_key,
)
from tests.conftest import drop_database
from tests.support import ROOT, Stack, with_database

pytestmark = pytest.mark.integration

CODEC = Codec()
NAME = "test.ledger.local"
TABLES = ("leaves", "tiles", "events", "event_patients", "read_disclosures")
MONTHS = (datetime(2026, 8, 3, tzinfo=UTC), datetime(2026, 9, 7, tzinfo=UTC),
          datetime(2026, 10, 12, tzinfo=UTC))  # fmt: skip
PATIENTS = tuple(Patient(id=f"PART-{i}", issuer="hosp", state="MA") for i in range(6))
USERS = ("dr.a", "dr.b", "tech.c")
STUDIES = tuple(Study(uid=f"2.25.77{i}", accession=f"ACC-{i}") for i in range(4))
LAWYER = Recipient(name="Harbor Law Group", address="100 Federal St")


def _access(i: int, when: datetime) -> PhiAccessEvent:
    """A realistic mix: patients, users and studies cycle at different rates; every 7th
    event is a disclosure to a lawyer, every 5th answers a query naming three patients."""
    patient = PATIENTS[i % len(PATIENTS)]
    study = STUDIES[i % len(STUDIES)]
    disclosed: tuple[DisclosedPatient, ...] = ()
    if i % 5 == 0:
        disclosed = tuple(
            DisclosedPatient(id=p.id, issuer="hosp", studies=(STUDIES[(i + k) % 4].uid,))
            for k, p in enumerate(PATIENTS[(i % 3) : (i % 3) + 3])
        )
    return PhiAccessEvent(
        facility=Facility(id="stmarys"),
        actor=Actor(user_id=USERS[i % len(USERS)], role="radiologist"),
        dicom_event_id="110106" if i % 7 == 0 else "110103",
        action=EventAction.READ,
        patient=patient,
        study=study,
        purpose_of_use="LEGAL" if i % 7 == 0 else "TREAT",
        recipient=LAWYER if i % 7 == 0 else None,
        disclosed=disclosed,
        network_address=f"10.1.0.{i % 4}",
        event_time=when,
    )


class Writer:
    """Appends events as the consumer would, the Kafka timestamp at the event's time."""

    def __init__(self, appender: PostgresAppender, checkpointer: Checkpointer | None) -> None:
        self.appender = appender
        self.checkpointer = checkpointer
        self.offsets: dict[tuple[str, int], int] = {}
        self.logs: set[int] = set()

    def items(self, topic: str, partition: int, events: Sequence[Any]) -> list[Accepted]:
        out = []
        for event in events:
            offset = self.offsets.get((topic, partition), 0)
            self.offsets[(topic, partition)] = offset + 1
            record = KafkaRecord(
                topic=topic, partition=partition, offset=offset,
                timestamp_ms=int(event.event_time.timestamp() * 1000), timestamp_type=0,
                key=event_key(event).encode(),
                value=CODEC.encode(event.stamped(producer_id="part-it", producer_seq=offset)),
            )  # fmt: skip
            item = classify(record, CODEC, now=event.event_time)
            assert isinstance(item, Accepted), item
            out.append(item)
        return out

    async def append(self, topic: str, partition: int, events: Sequence[Any]) -> int:
        items = self.items(topic, partition, events)
        result = await self.appender.append(topic=topic, partition=partition, items=items)
        assert result.appended == len(items), result
        self.logs.add(result.log_id)
        return result.log_id

    async def sign_all(self) -> None:
        if self.checkpointer is None:
            raise RuntimeError("this writer signs nothing")
        for log_id in await self.appender.pool.fetch("SELECT log_id FROM logs"):
            await self.checkpointer.checkpoint(int(log_id[0]), force=True)


async def _fresh_database(stack: Stack, *, template: str | None = None) -> str:
    database = f"ledger_part_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(stack.owner_url)
    try:
        extra = f" TEMPLATE {template}" if template else ""
        await owner.execute(f'CREATE DATABASE "{database}"{extra}')
    finally:
        await owner.close()
    return database


async def _drop(stack: Stack, database: str) -> None:
    await drop_database(stack.owner_url, database)


@pytest.fixture
async def scratch(stack: Stack) -> AsyncIterator[str]:
    database = await _fresh_database(stack)
    try:
        yield database
    finally:
        await _drop(stack, database)


async def _fill(stack: Stack, database: str, tag: str) -> Writer:
    """Three months of accesses on two Kafka partitions, then a read of the ledger that
    disclosed part of the first month's log (read_disclosures), every log signed."""
    async with PostgresAppender(
        dsn=with_database(stack.appender_url, database), ledger_name=NAME,
        period=PeriodLength.MONTH,
    ) as app:  # fmt: skip
        await app.register_schemas([
            WriterSchemaInfo(fingerprint=s.fingerprint, full_name=s.full_name,
                             canonical_form=s.canonical_form, schema_json=s.schema_json)
            for s in CODEC.schemas
        ])  # fmt: skip
        signers = load_signers(stack.signer_key_file)
        writer = Writer(app, Checkpointer(
            pool=app.pool, signers=signers, policy=CheckpointPolicy(every_leaves=1, every_ms=0)
        ))  # fmt: skip
        topic = f"part-{tag}"
        for m, start in enumerate(MONTHS):
            # Partition 0's logs fill a tile (256 leaves) each month; partition 1's do not.
            for partition, n in ((0, 260), (1, 20)):
                events = [
                    _access(m * 300 + partition * 260 + i, start + timedelta(minutes=i))
                    for i in range(n)
                ]
                await writer.append(topic, partition, events)
        origin = await app.pool.fetchval(
            "SELECT origin FROM logs WHERE topic = $1 AND kafka_partition = 0 ORDER BY period "
            "LIMIT 1",
            topic,
        )
        read = AuditLogUsed(
            facility=Facility(id=NAME),
            actor=Actor(user_id="auditor.one", role="auditor"),
            query=LedgerQuery(method="GET", path="/v1/patients/PART-0/accesses", status=200),
            disclosed=(DisclosedRange(log=origin, start=0, end=12),),
            event_time=MONTHS[2] + timedelta(days=5),
        )
        await writer.append(f"reads-{tag}", 0, [read])
        await writer.sign_all()
        return writer


async def _answers(stack: Stack, database: str) -> dict[str, Any]:
    """What the API's adapters answer: histories by patient, user, study and accession,
    events and their proofs by id, the breach investigation and a disclosure accounting."""
    out: dict[str, Any] = {}
    reader_url = with_database(stack.reader_url, database)
    async with PostgresReader(dsn=reader_url) as reader:
        snap = await reader.snapshot()
        queries = [HistoryQuery(key=HistoryKey.PATIENT, value=p.id, qualifier="hosp")
                   for p in PATIENTS]  # fmt: skip
        queries += [HistoryQuery(key=HistoryKey.USER, value=u) for u in USERS]
        queries += [HistoryQuery(key=HistoryKey.STUDY, value=s.uid) for s in STUDIES]
        queries += [HistoryQuery(key=HistoryKey.ACCESSION, value=s.accession or "")
                    for s in STUDIES]  # fmt: skip
        queries.append(HistoryQuery(key=HistoryKey.PATIENT, value=PATIENTS[0].id,
                                    since=MONTHS[1], until=MONTHS[2]))  # fmt: skip
        ids: list[uuid.UUID] = []
        for q in queries:
            entries = await reader.history(q, snapshot=snap, limit=500, after=None)
            out[f"history {q.key.value} {q.value} {q.since}"] = list(entries)
            ids += [e.event_id for e in entries]
            if len(entries) > 3:  # the second page from a cursor
                cursor = Cursor(event_time=entries[2].event_time, event_id=entries[2].event_id,
                                snapshot=snap)  # fmt: skip
                page = await reader.history(q, snapshot=snap, limit=3, after=cursor)
                out[f"page {q.key.value} {q.value} {q.since}"] = list(page)
        for event_id in sorted(set(ids)):
            out[f"event {event_id}"] = await reader.event(event_id)
            out[f"proof {event_id}"] = await reader.event_proof(event_id)
        out["logs"] = [dataclasses.replace(i, checkpoint_age=None) for i in await reader.logs()]
    async with PostgresReports(dsn=reader_url) as reports:
        scope = InvestigationScope(start=MONTHS[0], end=MONTHS[2] + timedelta(days=20),
                                   users=USERS[:2])  # fmt: skip
        out["investigation"] = to_json(await reports.investigation(scope))
        for p in PATIENTS[:3]:
            accounting = await reports.disclosures(
                PatientRef(id=p.id, issuer="hosp"), now=MONTHS[2] + timedelta(days=30)
            )
            out[f"disclosures {p.id}"] = to_json(accounting)
    return out


async def test_rows_land_in_their_months_partition(stack: Stack, scratch: str) -> None:
    apply_migrations(with_database(stack.owner_url, scratch))
    writer = await _fill(stack, scratch, uuid.uuid4().hex[:6])
    owner = await asyncpg.connect(with_database(stack.owner_url, scratch))
    try:
        for table in TABLES:
            rows = await owner.fetch(
                f"SELECT tableoid::regclass::text AS part, period, count(*) AS n FROM {table} "
                "GROUP BY 1, 2 ORDER BY 2"
            )
            months = {r["period"] for r in rows}
            # Every row in the partition named after its month, the month of its log.
            for r in rows:
                assert r["part"] == f"{table}_p{r['period']:%Y_%m}", (table, dict(r))
                assert r["period"].day == 1
            if table != "read_disclosures":
                assert months == {d.date().replace(day=1) for d in MONTHS}, table
            bad = await owner.fetchval(
                f"SELECT count(*) FROM {table} t JOIN events e USING (event_id) "
                "WHERE e.period <> t.period"
                if table in ("event_patients", "read_disclosures")
                else f"SELECT count(*) FROM {table} t JOIN logs g USING (log_id) "
                "WHERE g.period <> t.period"
            )
            assert bad == 0, table
            parts = await owner.fetch(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound "
                "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = $1::regclass",
                table,
            )
            names = {p["relname"] for p in parts}
            for d in MONTHS:
                assert f"{table}_p{d:%Y_%m}" in names, (table, names)
            assert not any(p["bound"] == "DEFAULT" for p in parts), "no default partition"
        assert await owner.fetchval("SELECT count(*) FROM leaves") == sum(
            [r[0] for r in await owner.fetch("SELECT count(*) FROM events")]
        )
        config = await owner.fetch(
            "SELECT parent_table, retention, automatic_maintenance, partition_interval "
            "FROM partman.part_config ORDER BY parent_table"
        )
        assert sorted(c["parent_table"] for c in config) == sorted(f"public.{t}" for t in TABLES)
        for c in config:
            assert c["retention"] is None, dict(c)  # pg_partman never drops or detaches
            assert c["automatic_maintenance"] == "off", dict(c)
            assert c["partition_interval"] in ("1 mon", "1 month"), dict(c)
    finally:
        await owner.close()
    assert writer.logs


async def test_the_duplicate_check_finds_an_event_id_of_another_month(
    stack: Stack, scratch: str
) -> None:
    apply_migrations(with_database(stack.owner_url, scratch))
    async with PostgresAppender(
        dsn=with_database(stack.appender_url, scratch), ledger_name=NAME
    ) as app:
        await app.register_schemas([
            WriterSchemaInfo(fingerprint=s.fingerprint, full_name=s.full_name,
                             canonical_form=s.canonical_form, schema_json=s.schema_json)
            for s in CODEC.schemas
        ])  # fmt: skip
        writer = Writer(app, None)
        events = [_access(i, MONTHS[0] + timedelta(minutes=i)) for i in range(10)]
        first = writer.items("dup", 0, events)
        assert (await app.append(topic="dup", partition=0, items=first)).appended == 10

        def later(items: Sequence[Accepted], shift: int) -> list[Accepted]:
            """Redelivered two months later: the partition has moved on to October's log."""
            return [
                dataclasses.replace(item, record=dataclasses.replace(
                    item.record, offset=item.record.offset + shift,
                    timestamp_ms=int(MONTHS[2].timestamp() * 1000) + item.record.offset))
                for item in items
            ]  # fmt: skip

        # Same ids, same bytes: duplicates, found in August's partition.
        result = await app.append(topic="dup", partition=0, items=later(first[:5], 10))
        assert (result.appended, result.duplicates, result.quarantined) == (0, 5, 0), result
        # Same ids, other bytes (another producer_seq): conflicts, quarantined and alerted.
        other = writer.items("dup", 0, events[5:])
        result = await app.append(topic="dup", partition=0, items=later(other, 5))
        assert (result.appended, result.quarantined, result.alerts) == (0, 5, 5), result
        periods = await app.pool.fetch("SELECT period FROM logs ORDER BY period")
        assert [r[0] for r in periods] == [date(2026, 8, 1), date(2026, 10, 1)]
        assert await app.pool.fetchval("SELECT count(*) FROM events") == 10


async def test_a_log_of_an_old_month_gets_its_partitions(stack: Stack, scratch: str) -> None:
    apply_migrations(with_database(stack.owner_url, scratch))
    appender = await asyncpg.connect(with_database(stack.appender_url, scratch))
    try:
        await appender.execute(
            "INSERT INTO logs (origin, topic, kafka_partition, period, period_end, first_offset)"
            " VALUES ('t.ledger/old/0/2023-11', 'old', 0, '2023-11-01', '2023-12-01', 0)"
        )
        # A day's log (LEDGER_PERIOD=day) lies in its month's partitions.
        await appender.execute(
            "INSERT INTO logs (origin, topic, kafka_partition, period, period_end, first_offset)"
            " VALUES ('t.ledger/day/0/2022-03-14', 'day', 0, '2022-03-14', '2022-03-15', 0)"
        )
        # The ledger's own timer (or checkpointer) may run the premake as the appender.
        assert await appender.fetchval("SELECT ledger_partition_maintenance()") >= 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await appender.execute("SELECT ledger_make_partitions('2022-01-01')")
    finally:
        await appender.close()
    owner = await asyncpg.connect(with_database(stack.owner_url, scratch))
    try:
        for table in TABLES:
            guarded = await owner.fetchval(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::regclass "
                "AND tgname = 'partition_no_truncate'",
                f"{table}_p2023_11",
            )
            assert guarded == 1, table
        bound = await owner.fetchval(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = $1",
            "leaves_p2022_03",
        )
        assert bound == "FOR VALUES FROM ('2022-03-01') TO ('2022-04-01')"
        # The months ahead: the current one and three more, premade by the migration.
        this_month = datetime.now(UTC).date().replace(day=1)
        assert await owner.fetchval("SELECT to_regclass($1) IS NOT NULL",
                                    f"events_p{this_month:%Y_%m}")  # fmt: skip
    finally:
        await owner.close()


async def test_partitions_refuse_update_delete_and_truncate(stack: Stack, scratch: str) -> None:
    apply_migrations(with_database(stack.owner_url, scratch))
    await _fill(stack, scratch, uuid.uuid4().hex[:6])
    month, last = f"{MONTHS[0]:%Y_%m}", f"{MONTHS[2]:%Y_%m}"
    for url in (stack.appender_url, stack.reader_url):
        conn = await asyncpg.connect(with_database(url, scratch))
        try:
            for table in TABLES:
                part = f"{table}_p{month}"
                for statement in (f"UPDATE {part} SET period = period",
                                  f"DELETE FROM {part}", f"TRUNCATE {part}"):  # fmt: skip
                    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission"):
                        await conn.execute(statement)
        finally:
            await conn.close()
    owner = await asyncpg.connect(with_database(stack.owner_url, scratch))
    try:
        for table in TABLES:
            # The read of the ledger (read_disclosures) was made in the last month.
            part = f"{table}_p{last if table == 'read_disclosures' else month}"
            before = await owner.fetchval(f"SELECT count(*) FROM {part}")
            assert before > 0, part
            for statement in (f"UPDATE {part} SET period = period", f"DELETE FROM {part}"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                    await owner.execute(statement)
            # events is also protected by the foreign keys that reference it.
            with pytest.raises(asyncpg.PostgresError, match=r"append-only|foreign key"):
                await owner.execute(f"TRUNCATE {part}")
            assert await owner.fetchval(f"SELECT count(*) FROM {part}") == before
            with pytest.raises(asyncpg.PostgresError, match=r"append-only|foreign key"):
                await owner.execute(f"TRUNCATE {table}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await owner.execute(f"TRUNCATE events_p{month} CASCADE")
    finally:
        await owner.close()


PERIOD_ARCHIVES_SQL = ROOT / "ledger" / "pg" / "migrations" / "0019.period-archives.sql"
SIGNED_CHECK_SQL = ROOT / "ledger" / "pg" / "migrations" / "0020.signed-sizes-check.sql"

#: What the reads need, copied from a ledger the appender wrote into one at migration 0017.
READ_TABLES = ("writer_schemas", "logs", *TABLES, "checkpoints")


async def _copy_ledger(source_url: str, target_url: str) -> None:
    """The rows of ``READ_TABLES``, in the target's columns (0017's have no period)."""
    src = await asyncpg.connect(source_url)
    dst = await asyncpg.connect(target_url)
    try:
        async with dst.transaction():
            for table in READ_TABLES:
                columns = [
                    r[0]
                    for r in await dst.fetch(
                        "SELECT column_name FROM information_schema.columns WHERE "
                        "table_schema = 'public' AND table_name = $1 AND is_generated = 'NEVER' "
                        "ORDER BY ordinal_position",
                        table,
                    )
                ]
                rows = await src.fetch(f"SELECT {', '.join(columns)} FROM {table}")
                await dst.copy_records_to_table(
                    table, records=[tuple(r) for r in rows], columns=columns
                )
    finally:
        await src.close()
        await dst.close()


async def test_the_partitioned_index_answers_as_before(stack: Stack, scratch: str) -> None:
    # The appender writes a partitioned ledger (it writes `period`, which 0017 lacks);
    # its rows are copied into a ledger at 0017, whose answers are taken, then 0018 moves
    # them into partitions and every answer must be the same, and the same as the
    # appender-built ledger's.
    apply_migrations(with_database(stack.owner_url, scratch))
    await _fill(stack, scratch, uuid.uuid4().hex[:6])
    old = await _fresh_database(stack)
    try:
        owner_url = with_database(stack.owner_url, old)
        applied = apply_migrations(owner_url, target="0017.time-sharded-logs")
        assert applied[-1] == "0017.time-sharded-logs"
        await _copy_ledger(with_database(stack.owner_url, scratch), owner_url)
        conn = await asyncpg.connect(owner_url)
        try:
            # The reads of this version also read 0019's period_archives (the months that
            # left the database, none here) and call 0020's signed-sizes check: made as
            # those migrations make them, since they follow 0018.
            await conn.execute(PERIOD_ARCHIVES_SQL.read_text())
            await conn.execute(SIGNED_CHECK_SQL.read_text())
            kind = "SELECT relkind::text FROM pg_class WHERE relname = 'events'"
            assert await conn.fetchval(kind) == "r"
            counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
            assert all(counts.values()), counts
        finally:
            await conn.close()
        before = await _answers(stack, old)
        assert len(before["history patient PART-0 None"]) > 10
        assert before["investigation"]["timeline"]

        assert apply_migrations(owner_url, target="0018.partitioned-index") == [
            "0018.partitioned-index"
        ]

        conn = await asyncpg.connect(owner_url)
        try:
            assert await conn.fetchval(kind) == "p"
            assert {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES} == counts
            for table in ("leaves", "tiles", "events"):
                moved = await conn.fetchval(
                    f"SELECT count(*) FROM {table} t JOIN logs g USING (log_id) "
                    "WHERE g.period = t.period"
                )
                assert moved == counts[table], table
        finally:
            await conn.close()
        after = await _answers(stack, old)
        built = await _answers(stack, scratch)
        assert after.keys() == before.keys() == built.keys()
        for key in before:
            assert after[key] == before[key], key
            if key != "logs":  # checkpoint ages differ between the two databases
                assert built[key] == before[key], key
    finally:
        await _drop(stack, old)


async def test_without_the_extension_the_migration_names_the_fix(stack: Stack) -> None:
    database = await _fresh_database(stack, template="template0")  # no pg_partman
    try:
        owner_url = with_database(stack.owner_url, database)
        apply_migrations(owner_url, target="0017.time-sharded-logs")
        with pytest.raises(Exception, match="pg_partman") as refused:
            apply_migrations(owner_url)
        assert "pg-superuser.sql" in str(refused.value) or "superuser" in str(refused.value)
        conn = await asyncpg.connect(owner_url)
        try:
            assert (
                await conn.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'events'")
                == "r"
            )
        finally:
            await conn.close()
    finally:
        await _drop(stack, database)


async def test_a_migration_failing_half_way_leaves_the_old_schema(
    stack: Stack, scratch: str
) -> None:
    owner_url = with_database(stack.owner_url, scratch)
    apply_migrations(owner_url, target="0017.time-sharded-logs")
    conn = await asyncpg.connect(owner_url)
    try:
        # An index row whose log does not exist (events never had a key to logs): the copy
        # cannot place it, so 0018 stops after making partitions and copying the rest.
        await conn.execute(
            "INSERT INTO events (event_id, log_id, leaf_index, kind, event_time, producer_id,"
            " producer_seq, facility_id, user_id) VALUES ($1, 999, 0, 'phi_access', now(),"
            " 'p', 0, 'f', 'u')",
            uuid.uuid4(),
        )
        with pytest.raises(Exception, match="found their log"):
            apply_migrations(owner_url)
        assert (
            await conn.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'events'")
            == "r"
        )
        assert await conn.fetchval("SELECT count(*) FROM events") == 1
        assert await conn.fetchval("SELECT count(*) FROM partman.part_config") == 0
        assert await conn.fetchval("SELECT to_regclass('events_0017')") is None
    finally:
        await conn.close()


def test_a_target_that_is_not_shipped_is_refused(stack: Stack) -> None:
    from ledger.errors import MalformedInputError

    with pytest.raises(MalformedInputError, match="no migration"):
        apply_migrations(stack.owner_url, target="9999.nothing")


async def test_a_reader_on_a_schema_before_0020_names_the_fix(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """History pages call migration 0020's check: on a database not migrated that far,
    the page is a 503 (UnavailableError) and the log says to run `ledger migrate`."""
    database = await _fresh_database(stack)
    try:
        apply_migrations(with_database(stack.owner_url, database), target="0019.period-archives")
        async with PostgresReader(dsn=with_database(stack.reader_url, database)) as reader:
            query = HistoryQuery(key=HistoryKey.PATIENT, value="p", qualifier=None)
            with pytest.raises(UnavailableError, match="ledger migrate"):
                await reader.history_rows(query, snapshot=Snapshot(sizes=()), limit=10, after=None)
        assert any("ledger migrate" in r.getMessage() for r in caplog.records)
    finally:
        await _drop(stack, database)
