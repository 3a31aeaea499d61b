"""Generating and copying one log of the queries benchmark: each event is a template
with fresh identity, re-encoded and wrapped in a leaf, its index row built beside it (a
sample re-checked with ``classify``), its full tiles built as the appender would. Chunks
commit with a progress row, so an interrupted load resumes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import asyncpg
import fastavro

from benchmarks.querydata import (
    BUSY,
    CHUNK,
    CITIES,
    END,
    EPOCH,
    FACILITIES,
    HOT,
    LOGS,
    SPAN,
    TOPIC,
    USER_SKEW,
    Population,
    facility_id,
    micros,
    templates,
    users,
)
from consumers.classify import classify
from ledger.audit.ingest import Accepted
from ledger.log import merkle, tiles
from ledger.log.leaf import KafkaRecord, encode_leaf
from ledger.pg import sql
from ledger.pg.pool import is_transient
from producers.codec import Codec

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


# ---------------------------------------------------------------------------- bulk load


class TileBuilder:
    """Full tiles of one log, built as its leaf hashes arrive (as the appender stores them)."""

    def __init__(self, log_id: int, period: date) -> None:
        self.log_id = log_id
        self.period = period
        self.levels: dict[int, list[bytes]] = {0: []}
        self.tree = merkle.TreeBuilder()
        self.size = 0
        self.done: list[tuple[int, int, int, bytes, bytes, date]] = []

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
            self.done.append((self.log_id, level, tile_index, b"".join(entries), root, self.period))
            self.levels[level] = []
            self.levels.setdefault(level + 1, []).append(root)
            level += 1

    def take(self) -> list[tuple[int, int, int, bytes, bytes, date]]:
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
        {"id": facility_id(f), "name": f"{CITIES[f % len(CITIES)].title()} Hospital {f}"}
        for f in range(FACILITIES)
    ]
    codec = Codec()
    rng = random.Random(partition)
    sha = hashlib.sha256
    period = await conn.fetchval("SELECT period FROM logs WHERE log_id = $1", log_id)
    builder = TileBuilder(log_id, period)
    start_us = micros(min(END, datetime.now(UTC)) - SPAN)
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
                        rec[name] = micros(rec[name]) + shift
                rec["attempts"] = [{**a, "at": micros(a["at"]) + shift}
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
            leaves.append((log_id, j, leaf, h, period))
            row = (
                event_id, log_id, j, t.kind, EPOCH + timedelta(microseconds=time_us),
                producer, j, facilities[f]["id"], pid, issuer, state, who["user_id"],
                who["name"], who["role"], who["organization"], t.dicom_event_id, t.action,
                t.outcome, None if study is None else study["uid"],
                None if study is None else study["accession"], address, t.purpose_of_use,
                period,
            )  # fmt: skip
            rows.append(row)
            if j % 4999 == 0:  # leaf and index row agree, as the consumer would make them
                item = classify(record, codec)
                assert isinstance(item, Accepted), item
                expected = tuple(getattr(item.index, c) for c in sql.EVENT_COLUMNS
                                 if c not in ("log_id", "leaf_index", "period"))  # fmt: skip
                got = row[:1] + row[3:-1]
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
