"""``ledger alerts deliver``: the alert deliverer, wired to PostgreSQL, HTTPS and syslog.

Invariant: the destinations (and their secrets) are loaded and checked before anything
is sent, so a bad file or a world-readable secret refuses the start; in the loop a pass
that finds PostgreSQL unavailable is logged and retried at the next one; a receiver that
is down only leaves alerts pending (the next pass retries them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ledger.audit.delivery import (
    AnyDestination,
    Deliverer,
    DeliverySummary,
    Outcome,
    SyslogDestination,
)
from ledger.http.webhook import WebhookSender
from ledger.pg.delivery import PostgresDeliveryStore
from ledgerctl.passes import run_passes
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
    sender = Senders()
    async with PostgresDeliveryStore(dsn=dsn) as store:
        deliverer = Deliverer(store, sender, destinations)
        try:
            await run_passes(
                deliverer.run_pass, what="delivery", once=once, interval=interval, report=report
            )
        finally:
            await sender.close()
