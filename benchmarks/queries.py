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
and prints the figures beside the goals (history p99 < 50 ms at >= 2,000 pages/s, #19; breach
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
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.apiprofile import print_profile
from benchmarks.httpload import console_pages, measure, q, saturate
from benchmarks.proofs import Api, env, on_db, percentiles, serve_api
from benchmarks.querydata import END, FACILITIES, LOGS, Population, users
from benchmarks.queryload import prepare_database
from ledger.audit.reports import InvestigationScope
from ledger.pg import sql
from ledger.pg.reports import PostgresReports

GOAL_P99 = 0.050
GOAL_RPS = 2000
GOAL_REPORT = 2.0


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
    parser.add_argument("--workers", type=int, default=1,
                        help="API processes (ledger serve --workers)")  # fmt: skip
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

    async with serve_api(settings, db, workers=args.workers) as api:
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
        if args.workers == 1:  # several workers serve no console (docs/api.md)
            pages = await console_pages(
                api, [rng.choice(busy) for _ in range(args.requests + 50)], args.requests
            )
            print(f"console patient history page (server-rendered, 100 entries, concurrency "
                  f"1) {percentiles(pages)}  (goal: p99 < 100 ms)")  # fmt: skip
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
