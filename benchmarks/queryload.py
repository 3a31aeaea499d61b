"""The queries benchmark's databases (``ledger_bench_queries_<N>``): built once with the
bulk path (indexes and foreign keys dropped for the COPY and rebuilt from the migrations'
definitions, each log's root checked against its stored tiles and signed), reused once
complete."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg

from benchmarks.pgrows import one_row
from benchmarks.proofs import on_db
from benchmarks.querydata import LEDGER_NAME, LOGS, TOPIC
from benchmarks.querygen import PROGRESS_TABLE, load_log
from ledger.log.checkpoint import Checkpoint, sign_checkpoint
from ledger.log.note import Signer
from ledger.log.types import RootHash
from ledger.pg import sql, tree
from ledger.pg.migrate import apply_migrations
from ledger.pg.pool import is_transient
from producers.codec import Codec

T = TypeVar("T")

INDEXES = """
SELECT c.relname AS tbl, i.relname AS name, pg_get_indexdef(x.indexrelid) AS def,
       k.contype, k.conname, pg_get_constraintdef(k.oid) AS condef
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class c ON c.oid = x.indrelid
LEFT JOIN pg_constraint k ON k.conindid = x.indexrelid AND k.contype IN ('p', 'u')
WHERE c.relname = ANY($1::text[]) AND c.relnamespace = 'public'::regnamespace
"""
#: Foreign keys of the bulk tables and those referencing them (read_disclosures and
#: event_patients reference events: they depend on its primary key, dropped for the COPY).
FOREIGN_KEYS = """
SELECT c.relname AS tbl, k.conname, pg_get_constraintdef(k.oid) AS def
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_class r ON r.oid = k.confrelid
WHERE k.contype = 'f' AND c.relnamespace = 'public'::regnamespace AND k.conparentid = 0
  AND (c.relname = ANY($1::text[]) OR r.relname = ANY($1::text[]))
"""
BULK_TABLES = ["leaves", "events", "tiles"]


async def retrying(what: str, step: Callable[[], Awaitable[T]]) -> T:
    """Run a load step, again after transient failures (PostgreSQL restarted under us)."""
    for attempt in range(30):
        try:
            return await step()
        except Exception as exc:
            if not is_transient(exc) or attempt == 29:
                raise
            print(f"  {what}: {type(exc).__name__}; retrying", flush=True)
            await asyncio.sleep(2)
    raise AssertionError("unreachable")


async def schema_definitions(
    settings: dict[str, str],
) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """The bulk tables' indexes and foreign keys as the migrations make them (read from a
    freshly migrated throwaway database)."""
    name = "ledger_bench_queries_schema"
    admin = await asyncpg.connect(settings["DATABASE_URL"])
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = on_db(settings["DATABASE_URL"], name)
        apply_migrations(url)
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(INDEXES, BULK_TABLES), await conn.fetch(
                FOREIGN_KEYS, BULK_TABLES
            )
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def load(settings: dict[str, str], owner: str, n: int, pool: int, jobs: int) -> None:
    """Bulk-load n events over LOGS logs with ``jobs`` processes, resumably: indexes and
    foreign keys are dropped for the COPY and rebuilt after it (the migrations'
    definitions), then each log's root is checked against its stored tiles and signed."""
    sizes = [n // LOGS + (1 if p < n % LOGS else 0) for p in range(LOGS)]
    indexes, fks = await schema_definitions(settings)

    async def setup() -> tuple[list[int], list[int]]:
        conn = await asyncpg.connect(owner)
        try:
            await conn.execute(PROGRESS_TABLE)
            for s in Codec().schemas:
                await conn.execute(
                    sql.REGISTER_SCHEMA, s.fingerprint, s.full_name, s.canonical_form,
                    s.schema_json,
                )  # fmt: skip
            ids = []
            # One log per partition, all of this month's period (so in one partition of
            # the event index, migration 0018): the bench measures a month's index.
            month = datetime.now(UTC).date().replace(day=1)
            end = (month + timedelta(days=32)).replace(day=1)
            for p in range(LOGS):
                origin = f"{LEDGER_NAME}/{TOPIC}/{p}"
                log_id = await conn.fetchval("SELECT log_id FROM logs WHERE origin = $1", origin)
                if log_id is None:
                    row = await one_row(conn, sql.OPEN_LOG, origin, TOPIC, p, month, end, 0)
                    log_id = row["log_id"]
                ids.append(int(log_id))
            done = {r[0] for r in await conn.fetch(
                "SELECT log_id FROM bench_load_progress WHERE root IS NOT NULL")}  # fmt: skip
            todo = [p for p in range(LOGS) if ids[p] not in done]
            if todo:  # COPY into unindexed tables; the indexes are rebuilt at the end
                async with conn.transaction():
                    for fk in await conn.fetch(FOREIGN_KEYS, BULK_TABLES):
                        await conn.execute(
                            f'ALTER TABLE {fk["tbl"]} DROP CONSTRAINT "{fk["conname"]}"'
                        )
                    for ix in await conn.fetch(INDEXES, BULK_TABLES):
                        if ix["contype"] is not None:
                            await conn.execute(
                                f'ALTER TABLE {ix["tbl"]} DROP CONSTRAINT "{ix["conname"]}"'
                            )
                        else:
                            await conn.execute(f'DROP INDEX "{ix["name"]}"')
            return ids, todo
        finally:
            await conn.close()

    ids, todo = await retrying("setup", setup)
    t = time.perf_counter()
    if todo:
        per_log_pool = max(1000, pool // LOGS)
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as ex:
            await asyncio.gather(*(
                asyncio.wrap_future(
                    ex.submit(load_log, owner, ids[p], p, sizes[p], n, per_log_pool)
                )
                for p in todo
            ))  # fmt: skip
        print(f"  generated and copied {n:,} events in {time.perf_counter() - t:.0f} s")

    t = time.perf_counter()

    async def rebuild() -> None:
        conn = await asyncpg.connect(owner)
        try:
            have = {r["name"] for r in await conn.fetch(INDEXES, BULK_TABLES)}
            constraints = {r["conname"] for r in await conn.fetch(
                "SELECT conname FROM pg_constraint")}  # fmt: skip
        finally:
            await conn.close()
        # The events indexes are the big ones: start them first, two at a time.
        queue = sorted(indexes, key=lambda ix: ix["tbl"] != "events")

        async def builder() -> None:
            c = await asyncpg.connect(owner)
            try:
                await c.execute("SET maintenance_work_mem = '1GB'")
                await c.execute("SET max_parallel_maintenance_workers = 0")
                while queue:
                    ix = queue.pop(0)
                    # The tables are partitioned (0018): a key is added as a constraint
                    # (USING INDEX does not apply), an index on every partition (not ONLY).
                    if ix["contype"] is not None:
                        if ix["conname"] not in constraints:
                            await c.execute(f'ALTER TABLE {ix["tbl"]} ADD CONSTRAINT '
                                            f'"{ix["conname"]}" {ix["condef"]}')  # fmt: skip
                    elif ix["name"] not in have:
                        await c.execute(ix["def"].replace(" ON ONLY ", " ON ", 1))
            finally:
                await c.close()

        await asyncio.gather(*(builder() for _ in range(max(1, jobs))))
        conn = await asyncpg.connect(owner)
        try:
            for fk in fks:
                if fk["conname"] not in constraints:
                    await conn.execute(f'ALTER TABLE {fk["tbl"]} ADD CONSTRAINT '
                                       f'"{fk["conname"]}" {fk["def"]}')  # fmt: skip
            await conn.execute("ANALYZE leaves; ANALYZE events; ANALYZE tiles")
        finally:
            await conn.close()

    await retrying("rebuilding indexes", rebuild)
    print(f"  rebuilt {len(indexes)} indexes and {len(fks)} foreign keys, analyzed "
          f"in {time.perf_counter() - t:.0f} s")  # fmt: skip

    async def finish() -> None:
        conn = await asyncpg.connect(owner)
        try:
            roots: dict[int, bytes] = {
                r["log_id"]: r["root"]
                for r in await conn.fetch("SELECT log_id, root FROM bench_load_progress")
            }
            # The bulk path must build exactly the trees the appender would; then sign them.
            signer = Signer.from_seed(LEDGER_NAME, os.urandom(32))
            async with conn.transaction():
                for p, (log_id, size) in enumerate(zip(ids, sizes, strict=True)):
                    root = bytes(roots[log_id])
                    if await tree.root_at(conn, log_id, size, size) != root:
                        raise SystemExit(f"log {log_id}: stored tiles do not reproduce its root")
                    origin = f"{LEDGER_NAME}/{TOPIC}/{p}"
                    checkpoint = Checkpoint(origin=origin, size=size, root_hash=RootHash(root))
                    note = sign_checkpoint(checkpoint, [signer])
                    await conn.execute(sql.INSERT_POSITION, log_id, size, 0, size, 0, 0)
                    # A database with its checkpoints is complete (see `complete`).
                    await conn.execute(sql.INSERT_CHECKPOINT, log_id, size, root, note)
                await conn.execute("DROP TABLE bench_load_progress")
        finally:
            await conn.close()

    await retrying("signing checkpoints", finish)


async def complete(owner: str, n: int) -> bool:
    conn = await asyncpg.connect(owner)
    try:
        row = await one_row(conn, "SELECT count(*), coalesce(sum(size), 0) FROM checkpoints")
        return bool(row[0] == LOGS and row[1] == n)
    finally:
        await conn.close()


def database_name(events: int) -> str:
    return f"ledger_bench_queries_{events}"


async def prepare_database(
    settings: dict[str, str], events: int, *, templates: int = 0, jobs: int = 2,
    reload: bool = False, migrate: bool = True,
) -> str:  # fmt: skip
    """The name of a complete ``ledger_bench_queries_<events>`` database: reused when
    complete (migrated to the newest schema unless ``migrate`` is false), else loaded (or
    its interrupted load resumed; dropped and loaded again with ``reload``)."""
    pool = templates or max(2_000, min(200_000, events // 50))
    db = database_name(events)
    owner = on_db(settings["DATABASE_URL"], db)
    admin = await asyncpg.connect(settings["DATABASE_URL"])
    exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db)
    await admin.close()
    if exists and not reload and await complete(owner, events):
        if migrate:
            apply_migrations(owner)
        print(f"reusing {db} ({events:,} events)")
        return db
    admin = await asyncpg.connect(settings["DATABASE_URL"])
    if reload:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    if reload or not exists:
        await admin.execute(f'CREATE DATABASE "{db}"')
    await admin.close()
    apply_migrations(owner)
    print(f"bulk-loading {events:,} events from {pool:,} simulated templates over "
          f"{LOGS} logs ({jobs} processes; leaves, index rows, tiles, "
          f"checkpoints){'' if reload or not exists else ', resuming'} ...")  # fmt: skip
    t = time.perf_counter()
    await load(settings, owner, events, pool, jobs)
    seconds = time.perf_counter() - t
    print(f"loaded {events:,} events in {seconds:.0f} s "
          f"({events / seconds:,.0f} events/s, all included)")  # fmt: skip
    return db
