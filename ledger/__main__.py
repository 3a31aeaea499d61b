"""The API process's serving loop; ``ledger serve`` (ledgerctl) composes and runs it.

Invariant: one reader (role ledger_reader, SELECT only) and one aiohttp app per
process; the read recorder is injected by the composition root (ledgerctl), since
the ledger never imports the producer library; SIGTERM/SIGINT stop accepting,
finish in-flight requests, then exit. With a certificate and key it serves TLS only.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from pathlib import Path

from aiohttp import web

from ledger.api import Route, create_app
from ledger.api.fhir import FhirSubmitter
from ledger.api.openapi import document
from ledger.cursors import CursorKey
from ledger.pg.reader import PostgresReader
from ledger.pg.reports import PostgresReports
from ledger.readlog import ReadRecorder

logger = logging.getLogger("ledger.api")


class _NoRequestText(logging.Filter):
    """aiohttp logs malformed requests with their raw bytes (which may carry PHI): keep
    the fact, drop the text and the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            kind = record.exc_info[0].__name__ if record.exc_info[0] else "error"
            record.msg = "rejected a request aiohttp could not handle (%s)"
            record.args = (kind,)
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_server_logs() -> None:
    """No request text in the service's own log: no access log, no raw-request dumps."""
    logging.getLogger("aiohttp.access").setLevel(logging.CRITICAL)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _NoRequestText) for f in server.filters):
        server.addFilter(_NoRequestText())


def bind_url(host: str, port: int, *, tls: bool) -> str:
    """The default public base URL: the bind address, or this machine's name for a
    wildcard bind (set LEDGER_PUBLIC_URL behind a proxy or a DNS name)."""
    name = host if host not in ("", "0.0.0.0", "::") else socket.getfqdn()  # noqa: S104
    if ":" in name:
        name = f"[{name}]"
    return f"{'https' if tls else 'http'}://{name}:{port}"


def tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """Server-side TLS 1.2+ with the certificate chain and key (PEM) given."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


async def serve_api(
    *,
    reader_dsn: str,
    host: str,
    port: int,
    recorder: ReadRecorder,
    fhir_submitter: FhirSubmitter | None = None,
    tls: ssl.SSLContext | None = None,
    extra_routes: tuple[Route, ...] = (),
    reader: PostgresReader | None = None,
    public_url: str | None = None,
    cursor_key: CursorKey | None = None,
) -> None:
    """Serve until SIGTERM. Links go under ``public_url`` (default: ``bind_url``); page
    tokens are sealed with ``cursor_key`` (default: a key of this process only)."""
    quiet_server_logs()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with (
        reader or PostgresReader(dsn=reader_dsn) as store,
        PostgresReports(dsn=reader_dsn, pool_size=2) as reports,
    ):
        app = create_app(
            reader=store,
            tokens=store,
            recorder=recorder,
            report_source=reports,
            fhir_submitter=fhir_submitter,
            extra_routes=extra_routes,
            openapi=document(),
            public_url=public_url or bind_url(host, port, tls=tls is not None),
            cursor_key=cursor_key,
        )
        # Cursors pin every log's size: allow request lines up to 16 KiB.
        runner = web.AppRunner(app, access_log=None, max_line_size=16384)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, ssl_context=tls)
            await site.start()
            scheme = "https" if tls is not None else "http"
            logger.info("API listening on %s://%s:%d", scheme, host, port)
            await stop.wait()
        finally:
            await runner.cleanup()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit("run the API with `ledger serve` (it reads the settings)")
