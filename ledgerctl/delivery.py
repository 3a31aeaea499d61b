"""``ledger alerts deliver``: the alert deliverer, wired to PostgreSQL, HTTPS and syslog.

Invariant: the destinations (and their secrets) are loaded and checked before anything
is sent, so a bad file or a world-readable secret refuses the start; in the loop a pass
that finds PostgreSQL unavailable is logged and retried at the next one; a receiver that
is down only leaves alerts pending (the next pass retries them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence

from ledger.audit.delivery import (
    AnyDestination,
    Deliverer,
    DeliverySummary,
    Outcome,
    SyslogDestination,
)
from ledger.errors import UnavailableError
from ledger.http.webhook import WebhookSender
from ledger.pg.delivery import PostgresDeliveryStore
from ledgerctl.syslogsender import SyslogSender

log = logging.getLogger("ledger.alerts.delivery")


class Senders:
    """The ``Sender`` port: a webhook or a syslog receiver, by the destination's kind."""

    def __init__(self) -> None:
        self.webhook = WebhookSender()
        self.syslog = SyslogSender()

    async def send(self, d: AnyDestination, body: bytes, headers: dict[str, str]) -> Outcome:
        if isinstance(d, SyslogDestination):
            return await self.syslog.send(d, body)
        return await self.webhook.send(d, body, headers)

    async def close(self) -> None:
        await self.webhook.close()
        await self.syslog.close()


async def run_delivery(
    *,
    dsn: str,
    destinations: Sequence[AnyDestination],
    once: bool,
    interval: float,
    report: Callable[[DeliverySummary], None],
) -> None:
    """One pass (``once``) or passes every ``interval`` seconds until a signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if not once:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    sender = Senders()
    async with PostgresDeliveryStore(dsn=dsn) as store:
        try:
            await _loop(Deliverer(store, sender, destinations), stop, once, interval, report)
        finally:
            await sender.close()


async def _loop(
    deliverer: Deliverer,
    stop: asyncio.Event,
    once: bool,
    interval: float,
    report: Callable[[DeliverySummary], None],
) -> None:
    while True:
        try:
            summary = await deliverer.run_pass()
        except UnavailableError as exc:
            if once:
                raise
            log.warning("delivery pass failed, retried in %.1f s: %s", interval, exc)
        else:
            report(summary)
        if once or stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            return
