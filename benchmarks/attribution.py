"""Patient histories with read attribution: the history SQL with and without the reads
that disclosed the patient's entries, and the range lookup on three kinds of index.

Builds its own database (dropped at the end) with ``--events`` index rows over two logs
(100 per patient), then reads of the ledger as they really come: a verifier reading every
index page (one 1000-leaf range per page), ``--scattered`` user-history reads of 100
entries each (100 ranges of one each), and three exports (whole logs). Prints, side by
side: the history SQL of before this change (named events only), and the current one with
the shipped SP-GiST range index, with a GiST one instead, and with a btree on (origin,
first_leaf) instead; each the median EXPLAIN ANALYZE execution time over ``--patients``
patients (JIT off, as the API's reader), plus the shipped plan.

    .venv/bin/python benchmarks/attribution.py [--events 300000] [--scattered 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.proofs import env, on_db
from ledger.pg import sql
from ledger.pg.migrate import apply_migrations
from ledger.pg.sql import reads

_OLD_PATIENT_HISTORY = reads._HISTORY.format(
    disclosed="false", key=reads._PATIENT_KEY
)  # before: named events only

#: (statement, how many of (events, scattered) it takes), run in order as the owner.
LOAD: tuple[tuple[str, int], ...] = (
    (
        "INSERT INTO logs (origin, topic, kafka_partition, period, period_end, first_offset) "
        "SELECT 'b/t/' || p, 't', p, m, (m + interval '1 month')::date, 0"
        " FROM generate_series(0, 1) p,"
        " (SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date) AS t(m)",
        0,
    ),
    (
        """
INSERT INTO events (event_id, log_id, leaf_index, kind, event_time, producer_id, producer_seq,
                    facility_id, patient_id, user_id, dicom_event_id, action, outcome, period)
SELECT gen_random_uuid(), 1 + i % 2, i / 2, 'phi_access',
       timestamptz '2026-01-01' + i * interval '1 second', 'bench', i, 'f',
       'P' || (i % ($1::int / 100)), 'u' || (i % 97), '110103', 'R', 'SUCCESS',
       (SELECT period FROM logs WHERE log_id = 1)
FROM generate_series(0, $1::int - 1) i""",
        1,
    ),
    ("CREATE TEMP TABLE r (event_id uuid, origin text, first_leaf bigint, end_leaf bigint)", 0),
    # a verifier reading every index page of both logs: one read per 1000-leaf page
    (
        """
INSERT INTO r SELECT gen_random_uuid(), 'b/t/' || l, p * 1000, p * 1000 + 1000
FROM generate_series(0, 1) l, generate_series(0, $1::int / 2000 - 1) p""",
        1,
    ),
    # user histories: $2 reads of 100 scattered entries each
    (
        """
INSERT INTO r SELECT id, o, x, x + 1 FROM (
    SELECT ids.id, 'b/t/' || (k % 2) AS o, floor(random() * ($1::int / 2))::bigint AS x
    FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $2::int)) ids,
         generate_series(1, 100) k) s""",
        2,
    ),
    # three exports of everything
    (
        """
INSERT INTO r SELECT e.id, 'b/t/' || l, 0, $1::int / 2
FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, 3)) e, generate_series(0, 1) l""",
        1,
    ),
    (
        """
INSERT INTO events (event_id, log_id, leaf_index, kind, event_time, producer_id, producer_seq,
                    facility_id, patient_id, user_id, dicom_event_id, action, outcome, period)
SELECT d.event_id, 2, $1::int / 2 + row_number() OVER (), 'audit_log_used',
       timestamptz '2026-06-01' + row_number() OVER () * interval '1 second', 'api',
       row_number() OVER (), 'ledger', NULL, 'auditor', '110101', 'R', 'SUCCESS',
       (SELECT period FROM logs WHERE log_id = 2)
FROM (SELECT DISTINCT event_id FROM r) d""",
        1,
    ),
    (
        """
INSERT INTO read_disclosures (event_id, origin, first_leaf, end_leaf, period)
SELECT DISTINCT ON (event_id, origin, first_leaf) *, (SELECT period FROM logs WHERE log_id = 2)
FROM r ORDER BY event_id, origin, first_leaf""",
        0,
    ),
    # The history shows signed entries only (migration 0020): each log signed to its end
    # (a stand-in checkpoint: the SQL reads sizes, never roots or notes).
    (
        """
INSERT INTO checkpoints (log_id, size, root_hash, note)
SELECT log_id, max(leaf_index) + 1, decode(repeat('00', 32), 'hex'), 'bench'
FROM events GROUP BY log_id""",
        0,
    ),
    ("VACUUM ANALYZE", 0),  # what autovacuum does to an insert-only table
)


def _history_args(patient: str, sizes: list[int]) -> tuple[object, ...]:
    """The history statement's parameters: a patient's first page of 100, pinned to the
    signed sizes (log ids 1 and 2)."""
    return (patient, None, sizes, None, None, None, None, None, None, None, 100,
            None, None, None, None, None, None, None, None, None)  # fmt: skip


async def _median_ms(
    conn: asyncpg.Connection, query: str, patients: list[str], sizes: list[int]
) -> tuple[float, str]:
    times, plan = [], ""
    for p in patients:
        args = _history_args(p, sizes)
        rows = await conn.fetch("EXPLAIN (ANALYZE, FORMAT JSON) " + query, *args)
        doc = json.loads(rows[0][0])[0]
        times.append(float(doc["Execution Time"]))
        if not plan:
            text = await conn.fetch("EXPLAIN " + query, *args)
            plan = "\n".join(r[0] for r in text)
    return statistics.median(times), plan


async def main(events: int, scattered: int, n_patients: int, keep: bool) -> None:
    owner = env()["DATABASE_URL"]
    database = f"bench_attr_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(owner)
    await admin.execute(f'CREATE DATABASE "{database}"')
    try:
        url = on_db(owner, database)
        apply_migrations(url)
        conn = await asyncpg.connect(url)
        try:
            started = time.monotonic()
            for statement, takes in LOAD:
                await conn.execute(statement, *(events, scattered)[:takes])
            ranges = await conn.fetchval("SELECT count(*) FROM read_disclosures")
            reads = await conn.fetchval("SELECT count(DISTINCT event_id) FROM read_disclosures")
            print(f"loaded {events:,} events, {reads:,} reads with {ranges:,} ranges "
                  f"in {time.monotonic() - started:.0f} s")  # fmt: skip
            patients = [f"P{i * 37 % (events // 100)}" for i in range(n_patients)]
            await conn.execute("SET jit = off")  # as the API's reader (ledger/pg/reader.py)
            sizes = [r["size"] for r in await conn.fetch(
                "SELECT size FROM checkpoints ORDER BY log_id")]  # fmt: skip
            old, _ = await _median_ms(conn, _OLD_PATIENT_HISTORY, patients, sizes)
            found = await conn.fetch(sql.HISTORY_BY["patient"], *_history_args(patients[0], sizes))
            figures = []
            for label, index in (
                ("SP-GiST (shipped)", None),
                ("GiST instead", "USING gist (span) INCLUDE (origin, event_id)"),
                ("btree (origin, first_leaf) instead", "(origin, first_leaf)"),
            ):
                if index is not None:
                    await conn.execute("DROP INDEX IF EXISTS read_disclosures_span")
                    await conn.execute(
                        f"CREATE INDEX read_disclosures_span ON read_disclosures {index}"
                    )
                    await conn.execute("VACUUM ANALYZE read_disclosures")
                ms, plan = await _median_ms(conn, sql.HISTORY_BY["patient"], patients, sizes)
                figures.append((label, ms, plan))
        finally:
            await conn.close()
        print(f"patient history, limit 100, median of {n_patients} patients (EXPLAIN ANALYZE):")
        print(f"  named events only (before)                                {old:8.2f} ms")
        for label, ms, _ in figures:
            print(f"  with disclosing reads, {label:<34} {ms:8.2f} ms  (+{ms - old:.2f} ms)")
        print(f"  first patient's page: {len(found)} entries, "
              f"{sum(1 for r in found if r['via_disclosure'])} by disclosure")  # fmt: skip
        print("plan (SP-GiST):\n" + figures[0][2])
    finally:
        if keep:
            print(f"kept database {database}")
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--scattered", type=int, default=5_000)
    parser.add_argument("--patients", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the database (to EXPLAIN)")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.scattered, args.patients, args.keep))
