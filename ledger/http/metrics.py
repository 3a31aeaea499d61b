"""HTTP request metrics of the API: a count and a latency histogram per route and status.

Invariant: a request is labelled with its route's NAME from the route table (``app.py``),
``unmatched`` when no route matched, never with its path: paths carry patient and user
ids. The method label is one of a fixed set; anything else is ``OTHER``.
"""

from __future__ import annotations

import time
from importlib import metadata

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Histogram

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Seconds: most answers take milliseconds; reports and bundles can take seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def service_version() -> str:
    """The installed version of the ledger (the ``version`` of ``/healthz``)."""
    try:
        return metadata.version("phi-audit-ledger")
    except metadata.PackageNotFoundError:
        return "unknown"


def route_label(request: web.Request) -> str:
    """The matched route's name; never the request's path."""
    route = request.match_info.route
    if request.match_info.http_exception is not None:
        return "unmatched"
    name = route.name
    return name if name else "unnamed"


class HttpMetrics:
    """``ledger_http_requests_total`` and ``ledger_http_request_duration_seconds``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("route", "method", "status")
        self._count = Counter(
            "ledger_http_requests", "API requests answered", labels, registry=registry
        )
        self._seconds = Histogram(
            "ledger_http_request_duration_seconds",
            "Time to answer an API request",
            labels,
            buckets=BUCKETS,
            registry=registry,
        )

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        method = request.method if request.method in _METHODS else "OTHER"
        labels = (route_label(request), method, str(status))
        self._count.labels(*labels).inc()
        self._seconds.labels(*labels).observe(seconds)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.observe(request, status, time.monotonic() - started)
