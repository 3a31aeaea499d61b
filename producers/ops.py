"""The operations listener of a long-running process: ``/metrics`` (Prometheus text),
``/livez``, ``/readyz`` and ``/version``, on its own port (loopback unless configured).

Invariant: it serves no request data and no PHI: metric labels are fixed words (routes,
reasons, topics, partitions), never ids. ``/livez`` answers 200 while the event loop
runs; ``/readyz`` runs every check and answers 200 only when all pass, else 503 with
each failed check's reason as JSON. Not imported by ``producers``' ``__init__``: a host
that never turns it on needs neither aiohttp nor prometheus-client. docs/observability.md.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from producers.emitter import Emitter, EmitterState

logger = logging.getLogger(__name__)

#: The distribution this code ships in (``ledger version``, the ``version`` field).
DISTRIBUTION = "phi-audit-ledger"
#: A readiness check: None when ready, else the reason (a short sentence, no PHI).
Check = Callable[[], Awaitable[str | None]]
#: Run before each scrape (refreshes gauges that need I/O, e.g. a database query).
Refresher = Callable[[], Awaitable[None]]
#: The longest a readiness check or a scrape's refreshers may take.
CHECK_TIMEOUT_SECONDS = 5.0
#: A spool fuller than this share of its cap makes the process not ready.
SPOOL_READY_SHARE = 0.9


def package_version() -> str:
    """The installed version of the ledger's distribution ("unknown" when not installed)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class OpsConfig:
    host: str = "127.0.0.1"
    port: int = 0
    #: The process's name in answers and in the ``ledger_build_info`` metric.
    service: str
    #: Let a successor bind the same port while this one drains (the Orthanc pipe process).
    reuse_port: bool = False


@dataclass(slots=True)
class OpsState:
    """What the listener serves: the registry and the readiness checks (added to after start)."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    checks: dict[str, Check] = field(default_factory=dict)
    refreshers: list[Refresher] = field(default_factory=list)


class OpsServer:
    """``async with OpsServer(config, state) as ops:``; ``ops.port`` is the bound port."""

    def __init__(self, config: OpsConfig, state: OpsState | None = None) -> None:
        self.config = config
        self.state = state or OpsState()
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._started = time.time()
        self.state.registry.register(_BuildInfo(config.service, self._started))
        ProcessCollector(registry=self.state.registry)

    async def __aenter__(self) -> OpsServer:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/version", self._version)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(
            runner, self.config.host, self.config.port, reuse_port=self.config.reuse_port or None
        )
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or ()
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        logger.info("ops listener on http://%s:%d", self.config.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _identity(self) -> dict[str, object]:
        return {"service": self.config.service, "version": package_version()}

    async def _metrics(self, request: web.Request) -> web.Response:
        for refresh in self.state.refreshers:
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                    await refresh()
            except Exception as exc:  # a failed refresh leaves the last values; say so once
                logger.warning("metrics refresh failed (%s)", type(exc).__name__)
        body = generate_latest(self.state.registry)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})

    async def _livez(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **self._identity()})

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response(self._identity())

    async def _readyz(self, request: web.Request) -> web.Response:
        failed = await run_checks(self.state.checks)
        body: dict[str, object] = {"status": "ok" if not failed else "unavailable"}
        body.update(self._identity())
        body["checks"] = {name: failed.get(name, "ok") for name in self.state.checks}
        if failed:
            body["reasons"] = failed
        return web.json_response(body, status=200 if not failed else 503)


async def run_checks(checks: Mapping[str, Check]) -> dict[str, str]:
    """Every check at once; the failed ones by name with their reason."""

    async def one(check: Check) -> str | None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                return await check()
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT_SECONDS:.0f} s"
        except Exception as exc:
            return f"check failed ({type(exc).__name__})"

    names = list(checks)
    results = await asyncio.gather(*(one(checks[n]) for n in names))
    return {n: r for n, r in zip(names, results, strict=True) if r is not None}


def emitter_checks(emitter: Emitter, *, max_bytes: int, prefix: str = "") -> dict[str, Check]:
    """Readiness of a process that emits: Kafka reachable (not spooling), spool not nearly full."""

    async def kafka() -> str | None:
        health = emitter.health()
        if health.state is EmitterState.DIRECT:
            return None
        if health.state is EmitterState.STOPPED:
            return "emitter stopped"
        return f"Kafka unreachable; {health.spooled} event(s) spooled"

    async def spool() -> str | None:
        used = emitter.health().spool_bytes
        if used > SPOOL_READY_SHARE * max_bytes:
            return f"spool {used} of {max_bytes} bytes used"
        return None

    return {f"{prefix}kafka": kafka, f"{prefix}spool": spool}


class EmitterCollector(Collector):
    """Spool depth and bytes, in-flight events and delivery counts of named emitters."""

    def __init__(self, emitters: Mapping[str, Emitter]) -> None:
        self._emitters = dict(emitters)

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "ledger_spool_events", "Events in the spool not yet acknowledged", labels=["emitter"]
        )
        size = GaugeMetricFamily(
            "ledger_spool_bytes", "Bytes the spool holds or reserves", labels=["emitter"]
        )
        age = GaugeMetricFamily(
            "ledger_emitter_oldest_undelivered_seconds",
            "Age of the oldest event Kafka has not acknowledged",
            labels=["emitter"],
        )
        inflight = GaugeMetricFamily(
            "ledger_emitter_in_flight_events",
            "Events handed to Kafka, unacknowledged",
            labels=["emitter"],
        )
        spooling = GaugeMetricFamily(
            "ledger_emitter_spooling",
            "1 while events go to the spool (Kafka away)",
            labels=["emitter"],
        )
        sent = CounterMetricFamily(
            "ledger_emitter_sent_events",
            "Events Kafka acknowledged since start",
            labels=["emitter"],
        )
        for name, emitter in self._emitters.items():
            h = emitter.health()
            depth.add_metric([name], h.spooled)
            size.add_metric([name], h.spool_bytes)
            age.add_metric([name], h.oldest_undelivered_age_seconds)
            inflight.add_metric([name], h.queued)
            spooling.add_metric([name], 1.0 if h.state is EmitterState.SPOOLING else 0.0)
            sent.add_metric([name], h.sent)
        yield from (depth, size, age, inflight, spooling, sent)


class _BuildInfo(Collector):
    def __init__(self, service: str, started: float) -> None:
        self._service, self._started = service, started

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "ledger_build_info", "The running version (always 1)", labels=["service", "version"]
        )
        info.add_metric([self._service, package_version()], 1.0)
        started = GaugeMetricFamily(
            "ledger_process_start_time_seconds", "When this process started (Unix time)"
        )
        started.add_metric([], self._started)
        yield from (info, started)


class StatsCollector(Collector):
    """Gauges ``<prefix>_<key>`` from a process's stats dict (numbers and booleans only;
    keys are fixed words in the code, never data)."""

    def __init__(self, prefix: str, stats: Callable[[], Mapping[str, object]]) -> None:
        self._prefix, self._stats = prefix, stats

    def collect(self) -> Iterator[Metric]:
        for key, value in sorted(self._stats().items()):
            if isinstance(value, bool | int | float):
                gauge = GaugeMetricFamily(f"{self._prefix}_{key}", f"{key} (see the process's log)")
                gauge.add_metric([], float(value))
                yield gauge


class ThreadedOps:
    """An ``OpsServer`` on an event loop of its own thread, for a process without asyncio
    (the DICOM proxy). ``start`` returns the bound port or raises what binding raised."""

    def __init__(self, config: OpsConfig, state: OpsState) -> None:
        self._server = OpsServer(config, state)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> int:
        self._thread = threading.Thread(target=self._run, name="ops-listener", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the ops listener did not start")
        if self._error is not None:
            raise self._error
        return self._server.port or 0

    def stop(self, timeout: float = 10.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            async with self._server:
                self._ready.set()
                await self._stop.wait()
        except OSError as exc:
            self._error = exc
            self._ready.set()
