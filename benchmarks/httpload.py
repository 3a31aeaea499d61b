"""HTTP load for the queries benchmark: latencies at a fixed concurrency (aiohttp), the
console's history page signed in, and saturation with wrk when installed."""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from benchmarks.proofs import Api


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
