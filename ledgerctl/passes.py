"""A background job as repeated passes: one pass (``once``) or a pass every ``interval``
seconds until SIGTERM or SIGINT, for ``ledger rules run`` and ``ledger alerts deliver``.

Invariant: a pass that fails because PostgreSQL is unavailable ends a ``once`` run with
the error and is retried after ``interval`` otherwise; a signal stops the loop between
passes, never inside one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ledger.errors import UnavailableError

__all__ = ["run_passes"]

log = logging.getLogger(__name__)

Summary = TypeVar("Summary")


async def run_passes(
    run_pass: Callable[[], Awaitable[Summary]],
    *,
    what: str,
    once: bool,
    interval: float,
    report: Callable[[Summary], None],
) -> None:
    stop = asyncio.Event()
    if not once:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    while True:
        try:
            summary = await run_pass()
        except UnavailableError as exc:
            if once:
                raise
            log.warning("%s pass failed, retried in %.1f s: %s", what, interval, exc)
        else:
            report(summary)
        if once or stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            return
