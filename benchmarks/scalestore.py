"""What the scaling benchmark reads of a ledger's storage: bytes per event of each table
and index, btree depths from the buffers of index-only point lookups (EXPLAIN), and
events at random positions of the logs. Read-only: SELECT and EXPLAIN only."""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

EXPLAIN = "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) "
#: Relations whose size per event docs/scale.md uses (tables with their TOAST; indexes).
TABLES = ("leaves", "events", "tiles")
#: Point lookups whose buffers give a btree's depth: (index, statement).
DEPTH_PROBES = (
    ("leaves_pkey", "SELECT leaf_index FROM leaves WHERE log_id = $1 AND leaf_index = $2"),
    ("events_pkey", "SELECT event_id FROM events WHERE event_id = $1"),
    ("events_patient_time", "SELECT event_time FROM events WHERE patient_id = $1 "
     "ORDER BY event_time DESC, event_id DESC LIMIT 1"),
)  # fmt: skip


@dataclass(slots=True)
class Figures:
    """One ledger's figures: name -> (value, unit)."""

    events: int
    values: dict[str, tuple[float, str]] = field(default_factory=dict)

    def put(self, name: str, value: float, unit: str) -> None:
        self.values[name] = (value, unit)
        print(f"  {name:<58} {fmt(value, unit)}", flush=True)


def fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:9.2f} ms"
    if unit == "s":
        return f"{value:9.3f} s"
    if unit == "µs":
        return f"{value:9.1f} µs"
    if unit == "MB":
        return f"{value:9,.0f} MB"
    return f"{value:9,.1f} {unit}".rstrip()


def q(samples: Sequence[float], p: int) -> float:
    return statistics.quantiles(samples, n=100)[p - 1]


# ---------------------------------------------------------------------------- storage


# Partitioned tables (migration 0018) keep no rows themselves: their size is the sum over
# their partitions (pg_partition_tree lists a plain table as its own only leaf).
SIZES = """
SELECT p.relname, sum(pg_total_relation_size(t.relid)) AS total,
       sum(pg_indexes_size(t.relid)) AS indexes
FROM pg_class p, LATERAL pg_partition_tree(p.oid) t
WHERE p.relnamespace = 'public'::regnamespace AND p.relname = ANY($1::text[]) AND t.isleaf
GROUP BY p.relname
"""
INDEX_SIZES = """
SELECT i.relname AS name, sum(pg_relation_size(t.relid)) AS size
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class p ON p.oid = x.indrelid,
     LATERAL pg_partition_tree(i.oid) t
WHERE p.relnamespace = 'public'::regnamespace AND p.relname = ANY($1::text[]) AND t.isleaf
GROUP BY i.relname
ORDER BY size DESC
"""
#: An index and the indexes of its partitions (what EXPLAIN names in a scan).
INDEX_PARTS = """
SELECT t.relid::regclass::text AS name FROM pg_partition_tree($1::regclass) t WHERE t.isleaf
"""


async def storage(conn: asyncpg.Connection, figures: Figures) -> None:
    n = figures.events
    print("storage (bytes per event; tables without their indexes, TOAST included):")
    for r in await conn.fetch(SIZES, list(TABLES)):
        heap = int(r["total"]) - int(r["indexes"])
        figures.put(f"table {r['relname']}", heap / n, "B/event")
    total_ix = 0
    for r in await conn.fetch(INDEX_SIZES, list(TABLES)):
        size = int(r["size"])
        total_ix += size
        if size >= 1 << 20:
            figures.put(f"index {r['name']}", size / n, "B/event")
    figures.put("all indexes of leaves, events, tiles", total_ix / n, "B/event")
    everything = await conn.fetchval(
        "SELECT sum(pg_total_relation_size(oid)) FROM pg_class "
        "WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'"
    )
    figures.put("whole database (all tables, indexes, TOAST)", int(everything) / n, "B/event")
    level = await conn.fetchval("SELECT max(migration_id) FROM _yoyo_migration")
    print(f"  (schema at migration {level})")


async def depths(conn: asyncpg.Connection, figures: Figures, samples: Sequence[Any]) -> None:
    """Pages one point lookup reads per index (root to leaf), the heap's excluded. On a
    partitioned table a lookup without the period descends every partition's index; the
    depth is that of the deepest (the one holding the rows)."""
    print("btree depth (index pages one point lookup touches, median of 20):")
    for name, statement in DEPTH_PROBES:
        parts = {r["name"] for r in await conn.fetch(INDEX_PARTS, name)}
        counts = []
        for args in samples[:20]:
            arguments = {
                "leaves_pkey": (args["log_id"], args["leaf_index"]),
                "events_pkey": (args["event_id"],),
                "events_patient_time": (args["patient_id"],),
            }[name]
            nodes = index_nodes(await explain(conn, statement, *arguments), parts)
            if nodes:
                counts.append(max([await _index_pages(conn, node) for node in nodes]))
        if counts:
            figures.put(f"depth of {name}", statistics.median(counts), "pages")
        else:
            print(f"  {name}: the planner used no index-only scan of it; not measured")


async def _index_pages(conn: asyncpg.Connection, node: dict[str, Any]) -> int:
    # An index-only scan also reads the table's visibility-map page when the table has
    # one (after a VACUUM), and the heap page when the map does not say all-visible
    # (counted as a heap fetch): neither is the index's.
    table = node["Relation Name"]
    vm = int(await conn.fetchval("SELECT pg_relation_size($1::regclass, 'vm') > 0", table))
    return node_buffers(node) - int(node.get("Heap Fetches", 0)) - vm


async def explain(conn: Any, statement: str, *args: object) -> dict[str, Any]:
    rows = await conn.fetch(EXPLAIN + statement, *args)
    document = rows[0][0]
    plan: dict[str, Any] = (json.loads(document) if isinstance(document, str) else document)[0]
    return plan


def plan_buffers(plan: dict[str, Any]) -> int:
    return node_buffers(plan["Plan"])


def node_buffers(node: dict[str, Any]) -> int:
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


def index_nodes(plan: dict[str, Any], indexes: set[str]) -> list[dict[str, Any]]:
    """The index-only scans of any of ``indexes`` in ``plan`` (one per partition)."""
    found: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("Node Type") == "Index Only Scan" and node.get("Index Name") in indexes:
            found.append(node)
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan["Plan"])
    return found


SAMPLE = """
SELECT e.event_id, e.log_id, e.leaf_index, e.patient_id
FROM unnest($1::integer[], $2::bigint[]) AS p (log_id, leaf_index)
JOIN events e ON e.log_id = p.log_id AND e.leaf_index = p.leaf_index
"""


async def random_events(conn: asyncpg.Connection, count: int) -> list[asyncpg.Record]:
    """``count`` events at uniformly random positions of the logs (a block sample would
    give runs of neighbours, whose proofs share tiles)."""
    rows = await conn.fetch("SELECT log_id, max(size) AS size FROM checkpoints GROUP BY log_id")
    sizes = {int(r["log_id"]): int(r["size"]) for r in rows}
    logs = sorted(sizes)
    rng = random.Random(3)
    picks = [rng.choice(logs) for _ in range(count)]
    positions = [rng.randrange(sizes[log_id]) for log_id in picks]
    return list(await conn.fetch(SAMPLE, picks, positions))
