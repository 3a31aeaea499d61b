"""Access-history and breach-report latency through the real API at ledger scale.

Loads N realistic events (default 10M) through the bulk path into a scratch database
``ledger_bench_queries_<N>`` (reused on later runs once complete), serves it with a real
`ledger serve` (reader role, authenticated, every read recorded to Kafka), then measures
side by side in one run:
  - GET /healthz (the HTTP floor: no auth, no database, no Kafka),
  - GET /v1/patients/{id}/accesses?limit=100 for random busy patients: p50/p90/p99 at
    concurrency 1, then throughput and p99 at a concurrency that saturates the machine
    (64 in flight, and 4 for the latency without a deep queue; wrk when installed, else
    an aiohttp client in this process; either shares the cores with the server),
  - the same history statement alone on the reader role (default plan cache vs a custom
    plan per run), to split the SQL from the API's own time,
  - a breach investigation of one user over one year (the busiest user, and one of
    median activity): ``PostgresReports.investigation`` directly, and through the API
    when it serves POST /v1/investigations,
and prints the figures beside the goals (history p99 < 10 ms at >= 5,000 req/s; breach
report < 2 s). Nothing fails on a number. ``--profile`` also runs the API under cProfile
and prints where its CPU goes per request. Needs `make up` (or stack.sh infra).

The data: ``integrations.simulator.Simulator`` makes a pool of templates (encoded with the
Codec, index rows from ``consumers.classify.classify``), and every loaded event is one
template with fresh identity: event id, time (5 years, in order within each log),
patient (~N/10 patients, skewed: 2% of events go to a few hundred patients, 10% to a few
thousand, so some have hundreds of accesses), user (5,000, skewed within each role),
facility (50), study and network address. Each event is re-encoded as an Avro
single-object message with the shipped writer schema, wrapped in a leaf (Kafka key =
the patient's, 4 partitions of one topic = 4 logs; critical-result relays share them),
and its index row is built beside it; a sample is re-checked with ``classify`` so leaf and
index agree. Tiles are computed from the leaf hashes (the stored tiles must reproduce
each log's root) and each log gets one signed checkpoint at its full size (throwaway
key), so histories show every entry and every entry is provable.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hashlib
import io
import multiprocessing
import os
import pstats
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import fastavro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.proofs import Api, env, on_db, percentiles, serve_api
from consumers.classify import classify
from integrations.simulator import Simulator, make_npi
from ledger.audit.ingest import Accepted
from ledger.audit.reports import InvestigationScope
from ledger.log import merkle, tiles
from ledger.log.checkpoint import Checkpoint, sign_checkpoint
from ledger.log.leaf import KafkaRecord, encode_leaf
from ledger.log.note import Signer
from ledger.pg import sql, tree
from ledger.pg.migrate import apply_migrations
from ledger.pg.pool import is_transient
from ledger.pg.reports import PostgresReports
from producers.codec import Codec

LEDGER_NAME = "bench.ledger.local"
TOPIC = "phi-access"
LOGS = 4
#: Event times span five years up to here (fixed, so a seed always makes the same data).
END = datetime(2026, 11, 1, tzinfo=UTC)
SPAN = timedelta(days=5 * 365)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CHUNK = 20_000
FACILITIES = 50
#: (role, user id prefix, users, organisation, has an NPI): 5,000 users in all.
ROLES = (
    ("radiologist", "rad", 1500, "Nocturne Teleradiology Group", True),
    ("referring-physician", "ref", 2500, None, True),
    ("technologist", "tech", 800, None, False),
    ("pacs-admin", "admin", 200, None, False),
)
#: Patient skew: (share of events, patients per log = per-log patients // divisor).
HOT = (0.02, 5000)
BUSY = (0.10, 200)
#: Within a role, user i is picked as int(n * u ** USER_SKEW): the first few are busiest.
USER_SKEW = 1.5
_CITIES = (
    "boston", "tulsa", "phoenix", "chicago", "denver", "austin", "seattle", "miami",
    "atlanta", "omaha",
)  # fmt: skip
_STATES = ("MA", "OK", "AZ", "IL", "CO", "TX", "WA", "FL", "GA", "NE")
_FIRST = ("Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonah")
_LAST = ("Alvarez", "Brennan", "Chen", "Diallo", "Eriksen", "Fischer", "Gupta", "Haddad")
GOAL_P99 = 0.010
GOAL_RPS = 5000
GOAL_REPORT = 2.0
T = TypeVar("T")


# ---------------------------------------------------------------------------- population


@dataclass(frozen=True, slots=True)
class Population:
    """Who and where, derived deterministically from N."""

    events: int

    @property
    def patients_per_log(self) -> int:
        return max(100, self.events // 10 // LOGS)

    def tier(self, share_divisor: int) -> int:
        return max(1, self.patients_per_log // share_divisor)

    @staticmethod
    def patient(k: int) -> tuple[str, str, str]:
        """(id, issuer, state) of patient k; patient k's events go to partition k % LOGS."""
        f = (k // LOGS) % FACILITIES
        return f"MRN{k:08d}", facility_id(f), _STATES[f % len(_STATES)]

    def busy_patients(self) -> list[str]:
        """Ids of the patients with hundreds of accesses each (both skew tiers)."""
        return [
            self.patient(i * LOGS + p)[0] for p in range(LOGS) for i in range(self.tier(BUSY[1]))
        ]


def facility_id(f: int) -> str:
    return f"fac{f:02d}-{_CITIES[f % len(_CITIES)]}"


def users() -> dict[str, list[dict[str, Any]]]:
    """Each role's users as Avro actor records (with a home network address)."""
    rng = random.Random(5)
    out: dict[str, list[dict[str, Any]]] = {}
    for r, (role, prefix, n, org, npi) in enumerate(ROLES):
        people = []
        for i in range(n):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            people.append(
                {
                    "user_id": f"{prefix}{i:04d}.{last.lower()}",
                    "name": f"{first} {last}",
                    "role": role,
                    "organization": org,
                    "npi": make_npi(rng) if npi else None,
                    "_address": f"10.{40 + r}.{i // 250}.{i % 250 + 1}",
                }
            )
        out[role] = people
    return out


# ---------------------------------------------------------------------------- templates


@dataclass(frozen=True, slots=True)
class Template:
    header: bytes  # C3 01 + fingerprint
    schema: dict[str, Any]  # parsed fastavro schema
    record: dict[str, Any]  # decoded Avro record
    relay: bool
    role: str
    kind: str
    dicom_event_id: str | None
    action: str | None
    outcome: str | None
    purpose_of_use: str | None
    time_us: int


def _micros(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)


def templates(count: int, seed: int) -> list[Template]:
    """``count`` simulated events, encoded and classified exactly as the consumer would."""
    codec = Codec()
    parsed = {s.fingerprint: fastavro.parse_schema(dict(s.parsed)) for s in codec.schemas}
    out = []
    sim = Simulator(seed=seed, patients=200)
    for i, event in enumerate(sim.events(count)):
        value = codec.encode(event.stamped(producer_id="template", producer_seq=i))
        key = event.patient.key.encode()
        record = KafkaRecord(topic=TOPIC, partition=0, offset=i, timestamp_ms=0,
                             timestamp_type=0, key=key, value=value)  # fmt: skip
        item = classify(record, codec)
        assert isinstance(item, Accepted), item
        schema, rec = codec.decode_record(value)
        relay = item.index.kind == "critical_result_relay"
        actor = rec["sender"] if relay else rec["actor"]
        out.append(
            Template(
                header=value[:10],
                schema=parsed[schema.fingerprint],
                record=rec,
                relay=relay,
                role=actor["role"],
                kind=item.index.kind,
                dicom_event_id=item.index.dicom_event_id,
                action=item.index.action,
                outcome=item.index.outcome,
                purpose_of_use=item.index.purpose_of_use,
                time_us=_micros(rec["event_time"]),
            )
        )
    return out


# ---------------------------------------------------------------------------- bulk load


class TileBuilder:
    """Full tiles of one log, built as its leaf hashes arrive (as the appender stores them)."""

    def __init__(self, log_id: int) -> None:
        self.log_id = log_id
        self.levels: dict[int, list[bytes]] = {0: []}
        self.tree = merkle.TreeBuilder()
        self.size = 0
        self.done: list[tuple[int, int, int, bytes, bytes]] = []

    def append(self, h: bytes) -> None:
        self.tree.append(h)
        i = self.size
        self.size += 1
        self.levels[0].append(h)
        level = 0
        while len(self.levels[level]) == tiles.TILE_WIDTH:
            entries = self.levels[level]
            tile_index = (i + 1) // (1 << (8 * (level + 1))) - 1
            root = tiles.perfect_root(entries)
            self.done.append((self.log_id, level, tile_index, b"".join(entries), root))
            self.levels[level] = []
            self.levels.setdefault(level + 1, []).append(root)
            level += 1

    def take(self) -> list[tuple[int, int, int, bytes, bytes]]:
        done, self.done = self.done, []
        return done


def load_log(owner: str, log_id: int, partition: int, n: int, events: int, pool: int) -> None:
    """Generate and COPY one log's n events (leaves, index rows, full tiles) and record its
    root. Chunks commit atomically with the progress row, so after a lost connection (the
    fault tests restart PostgreSQL) the log is regenerated and only the rest is copied."""
    for attempt in range(30):
        try:
            asyncio.run(_load_log(owner, log_id, partition, n, events, pool))
            return
        except Exception as exc:
            if not is_transient(exc) or attempt == 29:
                raise
            print(f"  log {log_id}: {type(exc).__name__}; resuming", flush=True)
            time.sleep(2)


async def _load_log(
    owner: str, log_id: int, partition: int, n: int, events: int, pool: int
) -> None:
    conn = await asyncpg.connect(owner)
    try:
        copied = await conn.fetchval(PROGRESS, log_id) or 0
        await _generate(conn, log_id, partition, n, events, pool, copied)
    finally:
        await conn.close()


async def _generate(
    conn: asyncpg.Connection, log_id: int, partition: int, n: int, events: int, pool: int,
    copied: int,
) -> None:  # fmt: skip
    population = Population(events)
    per_log = population.patients_per_log
    hot, busy = population.tier(HOT[1]), population.tier(BUSY[1])
    pool_templates = templates(pool, seed=1000 + partition)
    staff = users()
    facilities = [
        {"id": facility_id(f), "name": f"{_CITIES[f % len(_CITIES)].title()} Hospital {f}"}
        for f in range(FACILITIES)
    ]
    codec = Codec()
    rng = random.Random(partition)
    sha = hashlib.sha256
    builder = TileBuilder(log_id)
    start_us = _micros(min(END, datetime.now(UTC)) - SPAN)
    step_us = SPAN // timedelta(microseconds=1) / n
    writer = fastavro.schemaless_writer
    for chunk_start in range(0, n, CHUNK):
        leaves = []
        rows = []
        for j in range(chunk_start, min(n, chunk_start + CHUNK)):
            t = pool_templates[rng.randrange(pool)]
            u = rng.random()
            if u < HOT[0]:
                idx = rng.randrange(hot)
            elif u < HOT[0] + BUSY[0]:
                idx = rng.randrange(busy)
            else:
                idx = rng.randrange(per_log)
            k = idx * LOGS + partition
            pid, issuer, state = Population.patient(k)
            f = (k // LOGS) % FACILITIES
            people = staff["radiologist" if t.relay else t.role]
            actor = people[int(len(people) * rng.random() ** USER_SKEW)]
            time_us = start_us + int((j + rng.random()) * step_us)
            event_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            rec = dict(t.record)
            rec["event_id"] = event_id
            rec["event_time"] = time_us
            rec["producer_id"] = producer = f"pacs-gw-{f:02d}"
            rec["producer_seq"] = j
            rec["facility"] = facilities[f]
            rec["patient"] = {"id": pid, "issuer": issuer, "state": state}
            who = {key: actor[key] for key in ("user_id", "name", "role", "organization",
                                                "npi")}  # fmt: skip
            study = rec.get("study")
            if study is not None:
                s = (k * 4 + rng.randrange(1 + k % 3)) * 7 + 1
                study = rec["study"] = {**study, "uid": f"2.25.{s}", "accession": f"A{s}"}
            address = None
            if t.relay:
                rec["sender"] = who
                shift = time_us - t.time_us
                for name in ("identified_at", "communicated_at", "acknowledged_at"):
                    if rec.get(name) is not None:
                        rec[name] = _micros(rec[name]) + shift
                rec["attempts"] = [{**a, "at": _micros(a["at"]) + shift}
                                   for a in rec["attempts"]]  # fmt: skip
            else:
                rec["actor"] = who
                address = actor["_address"]
                if rng.random() < 0.2:  # sometimes from another workstation
                    address = address.rsplit(".", 1)[0] + f".{rng.randrange(1, 255)}"
                rec["network_address"] = address
            buf = io.BytesIO()
            buf.write(t.header)
            writer(buf, t.schema, rec)
            record = KafkaRecord(
                topic=TOPIC, partition=partition, offset=j,
                timestamp_ms=time_us // 1000 + 20, timestamp_type=0,
                key=f"{issuer}|{pid}".encode(), value=buf.getvalue(),
            )  # fmt: skip
            leaf = encode_leaf(record)
            h = sha(b"\x00" + leaf).digest()
            builder.append(h)
            leaves.append((log_id, j, leaf, h))
            row = (
                event_id, log_id, j, t.kind, EPOCH + timedelta(microseconds=time_us),
                producer, j, facilities[f]["id"], pid, issuer, state, who["user_id"],
                who["name"], who["role"], who["organization"], t.dicom_event_id, t.action,
                t.outcome, None if study is None else study["uid"],
                None if study is None else study["accession"], address, t.purpose_of_use,
            )  # fmt: skip
            rows.append(row)
            if j % 4999 == 0:  # leaf and index row agree, as the consumer would make them
                item = classify(record, codec)
                assert isinstance(item, Accepted), item
                expected = tuple(getattr(item.index, c) for c in sql.EVENT_COLUMNS
                                 if c not in ("log_id", "leaf_index"))  # fmt: skip
                got = row[:1] + row[3:]
                if expected != got:
                    raise SystemExit(f"generated index row differs from classify:\n"
                                     f"{expected}\n{got}")  # fmt: skip
        done = builder.take()
        if chunk_start < copied:
            continue  # copied before a lost connection: regenerated for the hashes only
        async with conn.transaction():
            await conn.copy_records_to_table("leaves", records=leaves, columns=sql.LEAF_COLUMNS)
            await conn.copy_records_to_table("events", records=rows, columns=sql.EVENT_COLUMNS)
            if done:
                await conn.copy_records_to_table("tiles", records=done, columns=sql.TILE_COLUMNS)
            await conn.execute(SET_PROGRESS, log_id, chunk_start + len(rows), None)
    await conn.execute(SET_PROGRESS, log_id, n, builder.tree.root())


INDEXES = """
SELECT c.relname AS tbl, i.relname AS name, pg_get_indexdef(x.indexrelid) AS def,
       k.contype, k.conname
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
WHERE k.contype = 'f' AND c.relnamespace = 'public'::regnamespace
  AND (c.relname = ANY($1::text[]) OR r.relname = ANY($1::text[]))
"""
BULK_TABLES = ["leaves", "events", "tiles"]
#: The loader's own bookkeeping (dropped once the load is complete): rows copied per log
#: and, once a log is fully copied, its root.
PROGRESS_TABLE = """
CREATE TABLE IF NOT EXISTS bench_load_progress (
    log_id integer PRIMARY KEY, copied bigint NOT NULL, root bytea
)
"""
PROGRESS = "SELECT copied FROM bench_load_progress WHERE log_id = $1"
SET_PROGRESS = """
INSERT INTO bench_load_progress (log_id, copied, root) VALUES ($1, $2, $3)
ON CONFLICT (log_id) DO UPDATE SET copied = EXCLUDED.copied, root = EXCLUDED.root
"""


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
            for p in range(LOGS):
                await conn.execute(sql.ENSURE_LOG, f"{LEDGER_NAME}/{TOPIC}/{p}", TOPIC, p)
                ids.append(int((await conn.fetchrow(sql.LOG_ID, TOPIC, p))["log_id"]))
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
                    if ix["name"] not in have:
                        await c.execute(ix["def"])
                    if ix["contype"] is not None and ix["conname"] not in constraints:
                        kind = "PRIMARY KEY" if ix["contype"] == "p" else "UNIQUE"
                        await c.execute(
                            f'ALTER TABLE {ix["tbl"]} ADD CONSTRAINT "{ix["conname"]}" '
                            f'{kind} USING INDEX "{ix["name"]}"'
                        )
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
            roots = dict(await conn.fetch("SELECT log_id, root FROM bench_load_progress"))
            # The bulk path must build exactly the trees the appender would; then sign them.
            signer = Signer.from_seed(LEDGER_NAME, os.urandom(32))
            async with conn.transaction():
                for p, (log_id, size) in enumerate(zip(ids, sizes, strict=True)):
                    root = bytes(roots[log_id])
                    if await tree.root_at(conn, log_id, size, size) != root:
                        raise SystemExit(f"log {log_id}: stored tiles do not reproduce its root")
                    origin = f"{LEDGER_NAME}/{TOPIC}/{p}"
                    checkpoint = Checkpoint(origin=origin, size=size, root_hash=root)
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
        row = await conn.fetchrow("SELECT count(*), coalesce(sum(size), 0) FROM checkpoints")
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


# ---------------------------------------------------------------------------- measuring


async def measure(
    session: aiohttp.ClientSession, urls: Sequence[str], concurrency: int
) -> tuple[list[float], float, int]:
    """Latencies, requests/s, and the mean number of accesses per answer."""
    latencies: list[float] = []
    queue = list(reversed(urls))
    counted: list[int] = []

    async def worker() -> None:
        while queue:
            url = queue.pop()
            t = time.perf_counter()
            async with session.get(url) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url}: {resp.status} {body[:300]!r}")
            latencies.append(time.perf_counter() - t)
            if len(counted) < 50 and b'"accesses"' in body:
                counted.append(body.count(b'"event_id"'))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    mean = round(statistics.mean(counted)) if counted else 0
    return latencies, len(urls) / (time.perf_counter() - started), mean


async def console_pages(api: Api, patients: Sequence[str], requests: int) -> list[float]:
    """Latencies of the console's patient history page (server-rendered, 100 entries,
    recorded like an API read), one at a time, signed in as a person would be: the
    sign-in form, its CSRF token and the session cookie."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(f"{api.base}/console/sign-in") as resp:
            form = await resp.text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        if csrf is None:
            raise RuntimeError("the console's sign-in form has no CSRF token")
        data = {"csrf": csrf.group(1), "token": api.token, "next": "/console/"}
        async with session.post(f"{api.base}/console/sign-in", data=data) as resp:
            if resp.status != 200:
                raise RuntimeError(f"console sign-in: {resp.status}")
        urls = [f"{api.base}/console/patients/{p}" for p in patients]
        latencies, _, _ = await measure(session, urls[:50], 1)  # warm up
        latencies, _, _ = await measure(session, urls[:requests], 1)
        return latencies


def q(samples: Sequence[float], p: int) -> float:
    return statistics.quantiles(samples, n=100)[p - 1]


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True, slots=True)
class Load:
    rps: float
    p50: float
    p90: float
    p99: float
    errors: int
    tool: str


async def saturate(
    api: Api, paths: Sequence[str], concurrency: int, seconds: float, *, auth: bool
) -> Load:
    """Throughput and latency with ``concurrency`` requests in flight for ``seconds``."""
    if shutil.which("wrk"):
        return await _wrk(api, paths, concurrency, seconds, auth=auth)
    headers = api.headers if auth else {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        rng = random.Random(3)
        deadline = time.perf_counter() + seconds
        latencies: list[float] = []
        errors = 0

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                async with session.get(api.base + rng.choice(paths)) as resp:
                    await resp.read()
                    errors += resp.status != 200
                latencies.append(time.perf_counter() - t)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        rps = len(latencies) / (time.perf_counter() - started)
    return Load(rps, q(latencies, 50), q(latencies, 90), q(latencies, 99), errors, "aiohttp")


async def _wrk(
    api: Api, paths: Sequence[str], concurrency: int, seconds: float, *, auth: bool
) -> Load:
    header = f'["Authorization"] = "Bearer {api.token}"' if auth else ""
    lua = (
        "local paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        f'  return wrk.format("GET", paths[(i % #paths) + 1], {{{header}}})\n'
        "end\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        proc = await asyncio.create_subprocess_exec(
            "wrk", "-t", "1", "-c", str(concurrency), "-d", f"{seconds:.0f}s", "--latency",
            "-s", script.name, api.base,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out = (await proc.communicate())[0].decode()
    finally:
        os.unlink(script.name)

    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        if m is None:
            raise RuntimeError(f"cannot read wrk's output:\n{out}")
        return float(m.group(1)) * _UNITS[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
    if errors:
        print(f"  wrk: {bad.group(0) if bad else 'no non-2xx responses'}; "
              f"{sock.group(0) if sock else 'no socket errors'}")  # fmt: skip
    if rps is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return Load(
        float(rps.group(1)), latency("50"), latency("90"), latency("99"), errors, "wrk, 1 thread"
    )


async def history_sql(reader: str, patients: Sequence[str]) -> dict[str, list[float]]:
    """The patient-history statement alone, prepared as the API runs it (first page,
    limit 100 + 1), on two reader connections: one with PostgreSQL's default plan caching
    (a prepared statement may switch to a generic plan after five runs), one planning
    each run for its values. Each patient is asked of both, in alternating order, after
    a warm-up pass, so neither gets the other's cache."""
    statement = sql.HISTORY_BY["patient"]
    top = max(int(x) for x in re.findall(r"\$(\d+)", statement))
    limit = re.search(r"LIMIT \$(\d+)", statement)
    sizes_at = re.search(r"\(\$(\d+)::bigint\[\]\)", statement)
    if limit is None or sizes_at is None:
        raise SystemExit("the history statement changed shape; update history_sql")
    modes = ("auto", "force_custom_plan")
    conns = [await asyncpg.connect(reader) for _ in modes]
    try:
        sizes = [int(r["size"]) for r in await conns[0].fetch(sql.SIGNED_SIZES)]
        prepared = []
        for conn, mode in zip(conns, modes, strict=True):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            prepared.append(await conn.prepare(statement))
        out: dict[str, list[float]] = {mode: [] for mode in modes}
        for measured in (False, True):
            for i, patient in enumerate(patients):
                args: list[object] = [None] * top
                args[0], args[int(sizes_at.group(1)) - 1] = patient, sizes
                args[int(limit.group(1)) - 1] = 101
                for m in (0, 1) if i % 2 else (1, 0):
                    t = time.perf_counter()
                    await prepared[m].fetch(*args)
                    if measured:
                        out[modes[m]].append(time.perf_counter() - t)
        return out
    finally:
        for conn in conns:
            await conn.close()


async def investigations(
    settings: dict[str, str], db: str, api: Api, population: Population
) -> None:
    staff = users()["radiologist"]
    end = min(END, datetime.now(UTC))
    scope_start = end - timedelta(days=365)
    reader = on_db(settings["LEDGER_READER_URL"], db)
    endpoint = await investigation_endpoint(api)
    async with PostgresReports(dsn=reader) as reports:
        for label, user in (
            ("busiest user", staff[0]["user_id"]),
            ("median-activity user", staff[len(staff) // 2]["user_id"]),
        ):
            scope = InvestigationScope(start=scope_start, end=end, users=(user,))
            times = []
            for _ in range(4):  # the first is cold (schemas, plans, cache)
                t = time.perf_counter()
                report = await reports.investigation(scope)
                times.append(time.perf_counter() - t)
            print(
                f"breach investigation, {label} ({len(report.timeline):,} events, "
                f"{report.individuals:,} patients) over one year, PostgresReports directly: "
                f"first {times[0]:.2f} s, then median {statistics.median(times[1:]):.2f} s "
                f"(goal < {GOAL_REPORT:.0f} s)"
            )
            if endpoint is not None:
                await investigation_via_api(api, endpoint, scope, label)
    if endpoint is None:
        print("  (the API serves no /v1/investigations endpoint yet: measured the adapter only)")


async def investigation_endpoint(api: Api) -> tuple[str, str] | None:
    """(method, path) of the API's investigation endpoint, if it has one."""
    async with (
        aiohttp.ClientSession(headers=api.headers) as session,
        session.get(f"{api.base}/openapi.json") as resp,
    ):
        if resp.status != 200:
            return None
        document = await resp.json()
    for path, operations in (document.get("paths") or {}).items():
        if path.startswith("/v1/investigations") and "{" not in path and "post" in operations:
            return "POST", path
    return None


async def investigation_via_api(
    api: Api, endpoint: tuple[str, str], scope: InvestigationScope, label: str
) -> None:
    method, path = endpoint
    body = {"users": list(scope.users), "since": scope.start.isoformat(),
            "until": scope.end.isoformat()}  # fmt: skip
    times = []
    status = 0
    async with aiohttp.ClientSession(headers=api.headers) as session:
        for _ in range(4):
            t = time.perf_counter()
            async with session.request(method, api.base + path, json=body) as resp:
                answer = await resp.read()
                status = resp.status
            times.append(time.perf_counter() - t)
            if status != 200:
                break
    if status == 200:
        warm = statistics.median(times[1:])
        print(f"  through the API ({method} {path}, {len(answer) / 1e6:.1f} MB of JSON): "
              f"first {times[0]:.2f} s, then median {warm:.2f} s")  # fmt: skip
    else:
        print(f"  {method} {path} answered {status}: {answer[:200]!r}; not measured via the API")


PROFILE_GROUPS = (
    ("asyncpg (SQL: protocol, codecs)", ("asyncpg/",)),
    ("aiokafka + producer library (recording the read)", ("aiokafka/", "producers/", "kafka/")),
    ("json encoding", ("json/",)),
    ("aiohttp (HTTP parsing, routing, writing)", ("aiohttp/", "multidict/", "yarl/")),
    ("ledger.http + ledger.pg + auth (handlers, rows -> entries)", ("ledger/",)),
    ("asyncio event loop", ("asyncio/", "selectors.py")),
)
PROFILE_FUNCTIONS = (
    ("history handler (snapshot, SQL, entries, JSON)", "history.py", "_history"),
    ("auth (token lookup, cached 30 s)", "app.py", "_authenticate"),
    ("record the read (AuditLogUsed emit)", "readaudit.py", "record"),
    ("reader.snapshot (signed sizes)", "reader.py", "snapshot"),
    ("reader.history (SQL + rows -> entries)", "reader.py", "history"),
    ("entry_json (entries -> dicts)", "common.py", "entry_json"),
    ("json_response (dumps + Response)", "web_response.py", "json_response"),
)


def print_profile(path: Path, requests: int) -> None:
    stats = pstats.Stats(str(path))
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in table.values())
    # Waiting for the network: the selector's poll (a builtin, file "~").
    idle = sum(v[2] for k, v in table.items() if k[0] == "~" and "poll" in k[2])
    busy = total - idle
    print(f"cProfile of the API process: {busy:.1f} s on CPU for {requests:,} history "
          f"requests ({busy / requests * 1e6:,.0f} µs each under the profiler)")  # fmt: skip
    print("  by package (own time):")
    seen = 0.0
    for label, parts in PROFILE_GROUPS:
        own = sum(v[2] for k, v in table.items() if any(part in k[0] for part in parts))
        seen += own
        print(f"    {label:<58} {own / busy:6.1%}")
    print(f"    {'other (builtins: socket writes, uuid, datetime, ...)':<58} "
          f"{(busy - seen) / busy:6.1%}")  # fmt: skip
    print("  top functions by own time:")
    top = sorted(
        ((v[2], k) for k, v in table.items() if not (k[0] == "~" and "poll" in k[2])),
        reverse=True,
    )[:10]
    for own, (filename, line, function) in top:
        where = "/".join(Path(filename).parts[-2:]) if filename != "~" else ""
        print(f"    {own / busy:6.1%}  {function} {where}:{line}" if where else
              f"    {own / busy:6.1%}  {function}")  # fmt: skip
    print("  by step (cumulative, while on CPU):")
    for label, filename, function in PROFILE_FUNCTIONS:
        cum = sum(v[3] for k, v in table.items() if k[0].endswith(filename) and k[2] == function)
        print(f"    {label:<58} {cum / busy:6.1%}  {cum / requests * 1e6:7,.0f} µs/request")


# ---------------------------------------------------------------------------- main


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--templates", type=int, default=0,
                        help="simulated templates (default: N/50, at most 200,000)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2,
                        help="loader processes")  # fmt: skip
    parser.add_argument("--requests", type=int, default=2000, help="per concurrency-1 row")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15.0, help="per saturated row")
    parser.add_argument("--reload", action="store_true",
                        help="drop the scratch database and load it again")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="also profile the API process (cProfile) under load")  # fmt: skip
    args = parser.parse_args()
    if args.events < 10_000:
        raise SystemExit("--events must be at least 10,000")
    settings = env()
    db = await prepare_database(
        settings, args.events, templates=args.templates, jobs=args.jobs, reload=args.reload
    )

    population = Population(args.events)
    busy = population.busy_patients()
    rng = random.Random(11)
    paths = [f"/v1/patients/{rng.choice(busy)}/accesses?limit=100" for _ in range(1000)]
    print(f"{args.events:,} events, ~{population.patients_per_log * LOGS:,} patients, "
          f"5,000 users, {FACILITIES} facilities; histories of {len(busy):,} busy "
          "patients")  # fmt: skip

    async with serve_api(settings, db) as api:
        async with aiohttp.ClientSession(headers=api.headers) as session:
            await measure(session, [api.base + p for p in paths[:300]], 4)  # warm up
            floor, floor_rps, _ = await measure(session, [f"{api.base}/healthz"] * args.requests, 1)
            hist, hist_rps, per_page = await measure(
                session, [api.base + rng.choice(paths) for _ in range(args.requests)], 1
            )
        print(f"-- concurrency 1, {args.requests:,} requests each (aiohttp client)")
        print(f"GET /healthz (HTTP floor)           {percentiles(floor)}  {floor_rps:7,.0f} req/s")
        ratio = q(hist, 99) / q(floor, 99)
        print(f"patient history, limit=100          {percentiles(hist)}  {hist_rps:7,.0f} req/s"
              f"  p99 {ratio:.1f}x floor ({per_page} accesses/page)")  # fmt: skip
        print(f"-- {args.concurrency} in flight for {args.seconds:.0f} s each "
              f"(client shares the {os.cpu_count()} cores)")  # fmt: skip
        hz = await saturate(api, ["/healthz"], args.concurrency, args.seconds, auth=False)
        hl = await saturate(api, paths, args.concurrency, args.seconds, auth=True)
        # A shallow queue: about the throughput, without 64 requests' worth of queueing.
        knee = await saturate(api, paths, 4, args.seconds, auth=True)
        for label, r in (
            ("GET /healthz (HTTP floor)", hz),
            ("patient history, limit=100", hl),
            ("patient history, 4 in flight", knee),
        ):
            print(f"{label:<36} p50 {r.p50 * 1000:6.2f} ms  p90 {r.p90 * 1000:6.2f} ms  "
                  f"p99 {r.p99 * 1000:6.2f} ms  {r.rps:7,.0f} req/s  ({r.tool}"
                  f"{f', {r.errors} errors' if r.errors else ''})")  # fmt: skip
        print(f"history vs floor: {hl.rps / hz.rps:.2f}x the throughput, "
              f"p99 {hl.p99 / hz.p99:.1f}x")  # fmt: skip
        print(f"goal: history p99 < {GOAL_P99 * 1000:.0f} ms at >= {GOAL_RPS:,} req/s -> "
              f"measured p99 {hl.p99 * 1000:.1f} ms at {hl.rps:,.0f} req/s "
              f"({hl.rps / GOAL_RPS:.2f} of the rate); at concurrency 1 p99 "
              f"{q(hist, 99) * 1000:.1f} ms")  # fmt: skip
        pages = await console_pages(
            api, [rng.choice(busy) for _ in range(args.requests + 50)], args.requests
        )
        print(f"console patient history page (server-rendered, 100 entries, concurrency 1) "
              f"{percentiles(pages)}  (goal: p99 < 100 ms)")  # fmt: skip
        plans = await history_sql(
            on_db(settings["LEDGER_READER_URL"], db),
            [rng.choice(busy) for _ in range(args.requests)],
        )
        print("the history SQL alone (reader role, prepared, concurrency 1, both plans asked "
              "for each patient in turn):")  # fmt: skip
        for mode, label in (("auto", "default plan cache (may go generic)"),
                            ("force_custom_plan", "custom plan every run")):  # fmt: skip
            print(f"  {label:<42} {percentiles(plans[mode])}")
        await investigations(settings, db, api, population)

    if args.profile:
        out = Path(tempfile.mkdtemp(prefix="ledger-bench-profile-")) / "api.prof"
        async with (
            serve_api(settings, db, profile=out) as api,
            aiohttp.ClientSession(headers=api.headers) as session,
        ):
            await measure(session, [api.base + p for p in paths[:200]], 8)  # warm up
            urls = [api.base + rng.choice(paths) for _ in range(args.requests * 2)]
            await measure(session, urls, 16)
        print_profile(out, args.requests * 2 + 200)
        print(f"  (the stats are kept in {out}: python -m pstats {out})")


if __name__ == "__main__":
    asyncio.run(main())
