"""The API process's serving loop: one aiohttp app, TLS, quiet server logs.

Invariant: SIGTERM/SIGINT stop accepting, finish in-flight requests, then return; with
a TLS context it serves TLS only; aiohttp's own log lines never carry request text.
The app's ports (reader, reports, read recorder) are wired by the composition root,
``ledgerctl.serve``: this adapter never imports the PostgreSQL one.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from pathlib import Path

from aiohttp import web

logger = logging.getLogger("ledger.http")


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


async def serve_app(
    app: web.Application,
    *,
    host: str,
    port: int,
    tls: ssl.SSLContext | None = None,
    reuse_port: bool = False,
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT; then stop accepting, finish in-flight
    requests and return. ``reuse_port``: share the port with the other API workers
    (SO_REUSEPORT: the kernel spreads new connections over them)."""
    quiet_server_logs()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Cursors pin every log's size: allow request lines up to 16 KiB.
    runner = web.AppRunner(app, access_log=None, max_line_size=16384)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls, reuse_port=reuse_port or None)
        await site.start()
        scheme = "https" if tls is not None else "http"
        logger.info("API listening on %s://%s:%d", scheme, host, port)
        await stop.wait()
    finally:
        await runner.cleanup()
