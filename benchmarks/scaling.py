"""How the history query, the inclusion proof and the breach report grow with the ledger.

Measures, in one run, the same operations on two ledgers of the queries benchmark
(``ledger_bench_queries_<N>``, default 1M and 10M events over 4 logs; built by its bulk
loader, ``benchmarks/queryload.py``, when missing, reused when complete) and prints each
figure at both sizes and their ratio:
  - storage: bytes per event of leaves, index rows, tiles and each index, and the depth
    of the main btrees (index pages one point lookup touches);
  - the patient history (``PostgresReader.history``, first page, limit 100 + 1): busy
    patients asked for the first time and again, the buffers a page touches (EXPLAIN,
    shared-buffer hits and reads), and patients with ~1,000, ~200 and a few entries;
  - inclusion proofs (``PostgresReader.inclusion`` at a random index of a random log,
    tree size = the log's size) and an event's proof by its id (``event_proof``: the
    event-id lookup, the covering checkpoint and the proof): latency and hashes;
  - a one-year breach investigation of one user (``PostgresReports.investigation``), the
    busiest and a median-activity one: latency, events read, cost per event, and the
    busiest with Python's cyclic GC on and paused in alternate runs.

Everything runs in this process on the reader role, concurrency 1, without the HTTP
layer (its cost does not depend on the ledger's size: benchmarks/queries.py and
benchmarks/proofs.py measure it). ``--no-migrate`` reads reused databases as they are.
Needs `make up` (or stack.sh infra). docs/scale.md explains the figures and
extrapolates them to 20 billion entries.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.proofs import env, on_db
from benchmarks.querydata import BUSY, END, HOT, LOGS, Population, users
from benchmarks.queryload import prepare_database
from benchmarks.scalestore import (
    Figures,
    depths,
    explain,
    fmt,
    q,
    random_events,
    storage,
)
from ledger.audit.query import HistoryKey, HistoryQuery
from ledger.audit.reports import InvestigationScope
from ledger.pg.reader import PostgresReader
from ledger.pg.reports import PostgresReports

PATIENT_ENTRIES = "SELECT count(*) FROM events WHERE patient_id = $1 AND patient_issuer = $2"


# ---------------------------------------------------------------------------- operations


class _Explaining:
    """A connection whose fetch runs EXPLAIN ANALYZE of the statement instead (so the
    reader's own argument list is used as is) and keeps the plan."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.plans: list[dict[str, Any]] = []

    async def fetch(self, statement: str, *args: object) -> list[Any]:
        self.plans.append(await explain(self.conn, statement, *args))
        return []


async def history(
    reader: PostgresReader, conn: asyncpg.Connection, figures: Figures, requests: int
) -> None:
    """Patients asked for the first time (their pages come from wherever the machine's
    caches leave them: at 10M and beyond mostly not PostgreSQL's shared buffers), then the
    same patients again (their pages now cached); EXPLAIN of 50 other first asks splits
    the buffers one page touches into shared-buffer hits and reads."""
    population = Population(figures.events)
    patients = population.busy_patients()
    random.Random(11).shuffle(patients)
    split = min(50, len(patients) // 2)  # tiny ledgers have a handful of busy patients
    explained, timed = patients[:split], patients[split : split + requests]
    snapshot = await reader.snapshot()

    def query(patient: str) -> HistoryQuery:
        k = int(patient[3:])
        return HistoryQuery(key=HistoryKey.PATIENT, value=patient,
                            qualifier=Population.patient(k)[1])  # fmt: skip

    explaining = _Explaining(conn)
    for patient in explained:
        await PostgresReader._history_rows(
            cast(Any, explaining), query(patient), snapshot, 101, None
        )
    for label in ("first ask", "asked again"):
        times, sizes = [], []
        for patient in timed:
            t = time.perf_counter()
            page = await reader.history(query(patient), snapshot=snapshot, limit=101, after=None)
            times.append(time.perf_counter() - t)
            sizes.append(len(page))
        figures.put(f"history page, {label}: p50", q(times, 50) * 1000, "ms")
        figures.put(f"history page, {label}: p99", q(times, 99) * 1000, "ms")
    figures.put("history page: rows per page (mean)", statistics.mean(sizes), "rows")
    print(f"  ({len(timed):,} busy patients, each asked twice)")
    top = [p["Plan"] for p in explaining.plans]
    hits = statistics.median(int(n.get("Shared Hit Blocks", 0)) for n in top)
    reads = statistics.median(int(n.get("Shared Read Blocks", 0)) for n in top)
    figures.put("history page, first ask: buffers hit (median, EXPLAIN)", hits, "pages")
    figures.put("history page, first ask: buffers read (median, EXPLAIN)", reads, "pages")


async def history_by_patient_size(
    reader: PostgresReader, conn: asyncpg.Connection, figures: Figures
) -> None:
    """The same first page for patients with ~1,000 (hot), ~200 (busy) and a few
    (typical) entries in all (at 1M events and more). The page also lists the reads
    that disclosed any of the patient's entries, which makes PostgreSQL visit every
    entry of the patient, not only the 100 shown (docs/scale.md). Asked twice, the
    second timed (cached), 50 patients per tier."""
    population = Population(figures.events)
    hot, busy = population.tier(HOT[1]), population.tier(BUSY[1])
    rng = random.Random(13)
    snapshot = await reader.snapshot()
    tiers = (
        ("hot patient", 0, hot),
        ("busy patient", hot, busy),
        ("typical patient", busy, population.patients_per_log),
    )
    for label, low, high in tiers:
        if high <= low:
            continue
        ks = [rng.randrange(low, high) * LOGS + rng.randrange(LOGS) for _ in range(50)]
        times, entries = [], []
        for k in ks:
            pid, issuer, _ = Population.patient(k)
            query = HistoryQuery(key=HistoryKey.PATIENT, value=pid, qualifier=issuer)
            await reader.history(query, snapshot=snapshot, limit=101, after=None)
            t = time.perf_counter()
            await reader.history(query, snapshot=snapshot, limit=101, after=None)
            times.append(time.perf_counter() - t)
            entries.append(await conn.fetchval(PATIENT_ENTRIES, pid, issuer))
        median = statistics.median(times)
        figures.put(f"history page, {label}: p50", median * 1000, "ms")
        figures.put(f"  entries of a {label} (median)", statistics.median(entries), "entries")


async def proofs(
    reader: PostgresReader, figures: Figures, requests: int, event_ids: Sequence[Any]
) -> None:
    snapshot = await reader.snapshot()
    rng = random.Random(7)
    times, lengths = [], []
    for i in range(requests + 200):
        log_id = rng.randrange(len(snapshot.sizes)) + 1
        size = snapshot.sizes[log_id - 1]
        if size == 0:
            continue
        t = time.perf_counter()
        hashes = await reader.inclusion(log_id, rng.randrange(size), size, size)
        if i >= 200:  # warm-up: the pool, and the tile cache as a running API has it
            times.append(time.perf_counter() - t)
            lengths.append(len(hashes))
    per_log = max(snapshot.sizes)
    figures.put("inclusion proof: p50", q(times, 50) * 1000, "ms")
    figures.put("inclusion proof: p99", q(times, 99) * 1000, "ms")
    figures.put("inclusion proof: hashes (mean)", statistics.mean(lengths), "hashes")
    figures.put("  ceil(log2(leaves per log))", math.ceil(math.log2(per_log)), "hashes")
    times = []
    for event_id in event_ids:
        t = time.perf_counter()
        proof = await reader.event_proof(event_id)
        times.append(time.perf_counter() - t)
        if proof is None:
            raise SystemExit(f"event {event_id} has no proof")
    figures.put("an event's proof by its id: p50", q(times, 50) * 1000, "ms")
    figures.put("an event's proof by its id: p99", q(times, 99) * 1000, "ms")


async def breach(reports: PostgresReports, figures: Figures) -> None:
    staff = users()["radiologist"]
    end = min(END, datetime.now(UTC))
    for label, user in (("busiest user", staff[0]["user_id"]),
                        ("median user", staff[len(staff) // 2]["user_id"])):  # fmt: skip
        scope = InvestigationScope(start=end - timedelta(days=365), end=end, users=(user,))
        times = []
        events = 0
        for _ in range(4):  # the first is cold (schemas, plans, cache)
            t = time.perf_counter()
            report = await reports.investigation(scope)
            times.append(time.perf_counter() - t)
            events = len(report.timeline)
        warm = statistics.median(times[1:])
        figures.put(f"breach report, one year, {label}: median of 3", warm, "s")
        if label == "busiest user":  # how much of it is Python's cyclic GC (see docs)
            on: list[float] = []
            off: list[float] = []
            for i in range(6):  # alternating, so both see the same machine
                paused = i % 2 == 1
                if paused:
                    gc.collect()
                    gc.disable()
                try:
                    t = time.perf_counter()
                    await reports.investigation(scope)
                    (off if paused else on).append(time.perf_counter() - t)
                finally:
                    gc.enable()
            figures.put("  GC on / paused, alternating: median of 3, GC on",
                        statistics.median(on), "s")  # fmt: skip
            figures.put("  GC on / paused, alternating: median of 3, GC paused",
                        statistics.median(off), "s")  # fmt: skip
        figures.put(f"breach report, {label}: events read", events, "events")
        figures.put(f"breach report, {label}: cost per event", warm / max(1, events) * 1e6, "µs")


# ---------------------------------------------------------------------------- main


async def measure(settings: dict[str, str], db: str, events: int, requests: int) -> Figures:
    figures = Figures(events)
    reader_url = on_db(settings["LEDGER_READER_URL"], db)
    conn = await asyncpg.connect(on_db(settings["DATABASE_URL"], db))
    try:
        await conn.execute("SET jit = off")  # as the reader's pool runs
        await storage(conn, figures)
        # Point lookups by index, whatever the planner would pick on a small table.
        await conn.execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        samples = await random_events(conn, requests)
        await depths(conn, figures, samples)
        await conn.execute("RESET enable_seqscan; RESET enable_bitmapscan")
        print("operations (reader role, concurrency 1, in process):")
        async with PostgresReader(dsn=reader_url, pool_size=2) as reader:
            await history(reader, conn, figures, requests)
            await history_by_patient_size(reader, conn, figures)
            await proofs(reader, figures, requests, [r["event_id"] for r in samples])
        async with PostgresReports(dsn=reader_url) as reports:
            await breach(reports, figures)
    finally:
        await conn.close()
    return figures


def compare(runs: Sequence[Figures]) -> None:
    small, large = runs[0], runs[-1]
    growth = large.events / small.events
    print(f"\n-- growth from {small.events:,} to {large.events:,} events (x{growth:g})")
    print(f"  {'figure':<58} {'small':>14} {'large':>14} {'ratio':>7}")
    for name, (value, unit) in large.values.items():
        if name not in small.values:
            print(f"  {name:<58} {'-':>14} {fmt(value, unit):>14}")
            continue
        before = small.values[name][0]
        ratio = f"{value / before:7.2f}" if before else "      -"
        print(f"  {name:<58} {fmt(before, unit):>14} {fmt(value, unit):>14} {ratio}")
    print(
        "  expected: per-event bytes and btree depth ~flat (depth +1 per ~300x); proof "
        "hashes +log2(x); history pages ~flat (depth, not size); breach report linear in "
        "the events it reads"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000000,10000000",
                        help="comma-separated event counts, smallest first")  # fmt: skip
    parser.add_argument("--requests", type=int, default=1000,
                        help="history pages and proofs per size")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2,
                        help="loader processes when a database must be built")  # fmt: skip
    parser.add_argument("--no-migrate", action="store_true",
                        help="reuse complete databases as they are (no migrations)")  # fmt: skip
    args = parser.parse_args()
    sizes = sorted(int(s.replace("_", "")) for s in args.sizes.split(","))
    if len(sizes) < 2 or sizes[0] < 10_000:
        raise SystemExit("--sizes needs at least two sizes of at least 10,000 events")
    settings = env()
    runs = []
    for n in sizes:
        db = await prepare_database(settings, n, jobs=args.jobs, migrate=not args.no_migrate)
        print(f"== {n:,} events ({db}, {LOGS} logs)")
        runs.append(await measure(settings, db, n, args.requests))
    compare(runs)


if __name__ == "__main__":
    asyncio.run(main())
