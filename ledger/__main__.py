"""Composition root of the API process: ``ledger serve`` runs ``serve_api``.

Invariant: one reader (role ledger_reader, SELECT only) and one aiohttp app per
process; SIGTERM/SIGINT stop accepting, finish in-flight requests, then exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from ledger.api import create_app
from ledger.pg.reader import PostgresReader

logger = logging.getLogger("ledger.api")


async def serve_api(*, reader_dsn: str, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with PostgresReader(dsn=reader_dsn) as reader:
        runner = web.AppRunner(create_app(reader), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            logger.info("API listening on http://%s:%d", host, port)
            await stop.wait()
        finally:
            await runner.cleanup()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit("run the API with `ledger serve` (it reads the settings)")
