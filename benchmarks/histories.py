"""Patient history pages through the real API: this tree's `ledger serve` (one worker and
more) beside a baseline commit's, side by side in one run, interleaved rounds.

Each round starts every server in turn on the same ``ledger_bench_queries_<N>`` database
(built or reused as ``queries.py`` does; every read recorded to Kafka), warms it up, then
drives ``GET /v1/patients/{id}/accesses?limit=100`` for busy patients with wrk at each
concurrency, and prints pages/s, p50/p99, the API's CPU per page (its processes' user +
system time over the run / pages), the same for the PostgreSQL backends serving the
database, and how busy the machine's cores were (other work included). Before the
rounds, the first page of a few patients is asked of the baseline and of this tree and
compared as parsed JSON (the cursor aside: each server seals its own). Goal (issue #19):
>= 2,000 pages/s at p99 < 50 ms, CPU per page < 0.5 ms. Nothing fails on a number.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.httpload import saturate
from benchmarks.proofs import Api, env, serve_api
from benchmarks.querydata import Population
from benchmarks.queryload import prepare_database

ROOT = Path(__file__).resolve().parents[1]
#: The last commit before #19's history work: rows to dicts to json.dumps, one worker.
BEFORE_19 = "d81ffb45d6cadb3439477c4135a0a1ee03208b1f"
GOAL_RPS, GOAL_P99, GOAL_CPU = 2000, 0.050, 0.0005
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Server:
    label: str
    workers: int
    source: Path | None  # None: this tree


def _tree_cpu(root: int) -> float:
    """User + system seconds of ``root`` and every process under it."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICK
    mine, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in mine:
                mine.add(pid)
                frontier.append(pid)
    return sum(times.get(pid, 0.0) for pid in mine)


def _pg_cpu(db: str) -> float:
    """User + system seconds of the PostgreSQL backends serving database ``db``."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            title = Path(entry.path, "cmdline").read_bytes()
            if not title.startswith(b"postgres: ") or f" {db} ".encode() not in title:
                continue
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def _machine() -> tuple[float, float]:
    """(busy, total) jiffies of all cores."""
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(x) for x in cpu]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass(frozen=True, slots=True)
class Row:
    server: str
    concurrency: int
    rps: float
    p50: float
    p99: float
    cpu_per_page: float
    pg_cpu_per_page: float
    wrk_cpu_per_page: float
    busy: float
    load: float
    errors: int


async def measure(
    api: Api, db: str, label: str, paths: list[str], conc: int, seconds: float
) -> Row:
    cpu0, pg0, (busy0, total0) = _tree_cpu(api.process.pid), _pg_cpu(db), _machine()
    wrk0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = await saturate(api, paths, conc, seconds, auth=True)
    wrk1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1, pg1, (busy1, total1) = _tree_cpu(api.process.pid), _pg_cpu(db), _machine()
    pages = max(1.0, load.rps * seconds)
    wrk_cpu = (wrk1.ru_utime + wrk1.ru_stime) - (wrk0.ru_utime + wrk0.ru_stime)
    return Row(
        server=label, concurrency=conc, rps=load.rps, p50=load.p50, p99=load.p99,
        cpu_per_page=(cpu1 - cpu0) / pages, pg_cpu_per_page=(pg1 - pg0) / pages,
        wrk_cpu_per_page=wrk_cpu / pages,
        busy=(busy1 - busy0) / max(1, total1 - total0), load=os.getloadavg()[0],
        errors=load.errors,
    )  # fmt: skip


async def first_pages(api: Api, paths: list[str]) -> list[dict[str, object]]:
    out = []
    async with aiohttp.ClientSession(headers=api.headers) as session:
        for p in paths:
            async with session.get(api.base + p) as resp:
                body = await resp.json()
                if resp.status != 200:
                    raise SystemExit(f"{p}: {resp.status} {body}")
            body["next_cursor"] = body.get("next_cursor") is not None
            out.append(body)
    return out


def export(rev: str) -> Path:
    """The baseline commit's tree, exported to a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="ledger-bench-baseline-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument(
        "--baseline", default=BEFORE_19, help="git revision to compare with (default: before #19)"
    )
    parser.add_argument("--workers", default="1,2", help="this tree's worker counts")
    parser.add_argument("--concurrency", default="16,64", help="requests in flight")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("install wrk (the load generator): apt-get install wrk")
    settings = env()
    db = await prepare_database(settings, args.events)
    busy = Population(args.events).busy_patients()
    rng = random.Random(19)
    paths = [f"/v1/patients/{rng.choice(busy)}/accesses?limit=100" for _ in range(1000)]
    baseline = export(args.baseline)
    servers = [Server(f"baseline {args.baseline}", 1, baseline)] + [
        Server(f"this tree, {w} worker{'s' if w > 1 else ''}", w, None)
        for w in (int(x) for x in args.workers.split(","))
    ]
    try:
        pages: list[list[dict[str, object]]] = []
        for s in servers[:2]:
            async with serve_api(settings, db, workers=s.workers, source=s.source) as api:
                pages.append(await first_pages(api, paths[:20]))
        print(f"first pages of 20 patients: baseline and this tree answer the same JSON: "
              f"{pages[0] == pages[1]}")  # fmt: skip
        rows: list[Row] = []
        for r in range(args.rounds):
            for s in servers if r % 2 == 0 else list(reversed(servers)):
                async with serve_api(settings, db, workers=s.workers, source=s.source) as api:
                    await saturate(api, paths, 8, 3, auth=True)  # warm up
                    for c in (int(x) for x in args.concurrency.split(",")):
                        rows.append(await measure(api, db, s.label, paths, c, args.seconds))
                        print(_line(rows[-1]), flush=True)
        print(f"-- medians over {args.rounds} rounds ({args.events:,} events, "
              f"{os.cpu_count()} cores, wrk with 1 thread on the same cores)")  # fmt: skip
        for s in servers:
            for c in (int(x) for x in args.concurrency.split(",")):
                mine = [x for x in rows if x.server == s.label and x.concurrency == c]
                print(_line(_median(mine)))
        print(f"goal: >= {GOAL_RPS:,} pages/s at p99 < {GOAL_P99 * 1000:.0f} ms; "
              f"API CPU per page < {GOAL_CPU * 1000:.1f} ms")  # fmt: skip
    finally:
        shutil.rmtree(baseline, ignore_errors=True)


def _median(rows: list[Row]) -> Row:
    m = statistics.median
    return Row(
        server=rows[0].server, concurrency=rows[0].concurrency, rps=m(x.rps for x in rows),
        p50=m(x.p50 for x in rows), p99=m(x.p99 for x in rows),
        cpu_per_page=m(x.cpu_per_page for x in rows),
        pg_cpu_per_page=m(x.pg_cpu_per_page for x in rows),
        wrk_cpu_per_page=m(x.wrk_cpu_per_page for x in rows), busy=m(x.busy for x in rows),
        load=m(x.load for x in rows), errors=sum(x.errors for x in rows),
    )  # fmt: skip


def _line(r: Row) -> str:
    return (f"{r.server:<28} c={r.concurrency:<3} {r.rps:7,.0f} pages/s  "
            f"p50 {r.p50 * 1000:6.1f} ms  p99 {r.p99 * 1000:6.1f} ms  "
            f"CPU ms/page: API {r.cpu_per_page * 1000:4.2f} PostgreSQL "
            f"{r.pg_cpu_per_page * 1000:4.2f} wrk {r.wrk_cpu_per_page * 1000:4.2f}  "
            f"cores busy {r.busy:4.0%}  load {r.load:4.1f}"
            f"{f'  {r.errors} errors' if r.errors else ''}")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
