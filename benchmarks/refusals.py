"""What an unauthenticated flood costs now that refusals are recorded.

Serves a fresh scratch database with the real API (`ledger serve`, its own process,
every non-public request recorded to throwaway Kafka topics before it is answered)
and measures, side by side in one run, at concurrency 1 and saturated:
  - GET /healthz (the HTTP floor: public, no database, no record),
  - GET /logs/1/checkpoint (public: one database lookup, no record),
  - GET /v1/logs with no token (401, recorded as ``(anonymous)``),
  - GET /v1/logs with a token whose role lacks nothing (200, recorded),
and prints p50/p99 and requests/s, plus the size of the leaf each recorded refusal
adds to the ledger. Nothing fails on a number. Needs `make up` (or stack.sh infra).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.proofs import env, on_db, serve_api
from ledger.audit.readlog import LedgerRead
from ledger.pg.migrate import apply_migrations
from ledgerctl.readaudit import audit_event
from producers.codec import Codec


async def measure(
    headers: dict[str, str], url: str, n: int, concurrency: int, status: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    left = [n]

    async def worker(http: aiohttp.ClientSession) -> None:
        while left[0] > 0:
            left[0] -= 1
            t = time.perf_counter()
            async with http.get(url, headers=headers) as resp:
                await resp.read()
                if resp.status != status:
                    raise RuntimeError(f"{url}: {resp.status}, expected {status}")
            latencies.append(time.perf_counter() - t)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        return latencies, n / (time.perf_counter() - started)


def refusal_leaf_bytes() -> int:
    """Encoded size of the AuditLogUsed a refused anonymous request becomes."""
    read = LedgerRead(
        read_id=uuid.uuid4(), at=datetime.now(UTC), subject="(anonymous)",
        role="(anonymous)", client="203.0.113.7", method="GET", path="/v1/logs",
        status=401, parameters={"auth.failure": "no_token"},
    )  # fmt: skip
    event = audit_event(read, ledger_name="bench.ledger.local").stamped(
        producer_id="ledger-api-bench-8080", producer_seq=123_456
    )
    return len(Codec().encode(event))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    settings = env()
    db = f"ledger_bench_refusals_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(settings["DATABASE_URL"])
    await admin.execute(f'CREATE DATABASE "{db}"')
    try:
        apply_migrations(on_db(settings["DATABASE_URL"], db))
        async with serve_api(settings, db) as api:
            cases = [
                ("GET /healthz (public, floor)", {}, "/healthz", 200),
                ("GET /logs/1/checkpoint (public, no log: 404)", {}, "/logs/1/checkpoint", 404),
                ("GET /v1/logs, no token (401, recorded)", {}, "/v1/logs", 401),
                ("GET /v1/logs, admin token (200, recorded)", api.headers, "/v1/logs", 200),
            ]
            for concurrency in (1, args.concurrency):
                print(f"\nconcurrency {concurrency}, {args.requests} requests each")
                for name, headers, path, status in cases:
                    await measure(headers, api.base + path, 50, concurrency, status)  # warm
                    samples, rate = await measure(
                        headers, api.base + path, args.requests, concurrency, status
                    )
                    qs = statistics.quantiles(samples, n=100)
                    print(
                        f"  {name:46s} p50 {qs[49] * 1000:6.2f} ms  "
                        f"p99 {qs[98] * 1000:6.2f} ms  {rate:8,.0f} req/s"
                    )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
    print(f"\neach recorded refusal adds one leaf: an AuditLogUsed of {refusal_leaf_bytes()} bytes")


if __name__ == "__main__":
    asyncio.run(main())
