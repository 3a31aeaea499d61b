"""Delivering pending alerts to each destination, oldest first, at least once.

Invariant: every attempt is recorded (its outcome, never a body) before the next one;
an alert counts as delivered only after a 2xx, recorded in the same write. A destination
that keeps failing is left for the next pass after ``max_attempts`` tries of its oldest
pending alert (later alerts wait behind it: order is kept, nothing is skipped or lost).
A TLS failure or a 4xx other than 408/429 is not retried within the pass: retrying
cannot fix it before someone fixes a certificate or a secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ledger.audit.delivery.config import Destination, SyslogDestination
from ledger.audit.delivery.signing import backoff, canonical, headers, idempotency_key, payload
from ledger.audit.delivery.syslog import frame, syslog_message
from ledger.audit.rules.alerts import AlertDetail

log = logging.getLogger("ledger.alerts.delivery")


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """An HTTP status, or an error class (``tls``, ``connect``, ``timeout``, ``error``),
    or neither: a syslog message written to its TLS connection."""

    http_status: int | None = None
    error_class: str | None = None

    @property
    def delivered(self) -> bool:
        if self.http_status is None:
            return self.error_class is None
        return 200 <= self.http_status <= 299

    @property
    def retryable(self) -> bool:
        if self.http_status is not None:
            return self.http_status >= 500 or self.http_status in (408, 429)
        return self.error_class != "tls"

    def __str__(self) -> str:
        if self.http_status is not None:
            return f"HTTP {self.http_status}"
        return self.error_class or "written"


class DeliveryStore(Protocol):
    async def pending(self, destination: str, limit: int) -> Sequence[AlertDetail]: ...

    async def record(self, alert_id: int, destination: str, outcome: Outcome) -> None: ...


AnyDestination = Destination | SyslogDestination


class Sender(Protocol):
    async def send(
        self, destination: AnyDestination, body: bytes, headers: dict[str, str]
    ) -> Outcome: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverySummary:
    delivered: int
    failed_attempts: int
    pending_left: bool


class Deliverer:
    def __init__(
        self,
        store: DeliveryStore,
        sender: Sender,
        destinations: Sequence[AnyDestination],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._sender = sender
        self._destinations = tuple(destinations)
        self._sleep = sleep
        self._clock = clock

    async def run_pass(self) -> DeliverySummary:
        delivered = failed = 0
        left = False
        for d in self._destinations:
            done, fails, stuck = await self._destination(d)
            delivered, failed, left = delivered + done, failed + fails, left or stuck
        return DeliverySummary(delivered=delivered, failed_attempts=failed, pending_left=left)

    async def _destination(self, d: AnyDestination) -> tuple[int, int, bool]:
        delivered = failed = 0
        while True:
            batch = await self._store.pending(d.name, d.batch)
            for detail in batch:
                ok, fails = await self._deliver(d, detail)
                failed += fails
                if not ok:
                    return delivered, failed, True
                delivered += 1
            if len(batch) < d.batch:
                return delivered, failed, False

    def _request(self, d: AnyDestination, detail: AlertDetail) -> tuple[bytes, dict[str, str]]:
        if isinstance(d, SyslogDestination):
            return frame(syslog_message(detail, d)), {}
        body = canonical(payload(detail, destination=d.name, include_patient=d.include_patient))
        key = idempotency_key(detail.alert.alert_id, d.name)
        return body, headers(secret=d.secret, timestamp=int(self._clock()), body=body, key=key)

    async def _deliver(self, d: AnyDestination, detail: AlertDetail) -> tuple[bool, int]:
        alert_id = detail.alert.alert_id
        for attempt in range(1, d.max_attempts + 1):
            body, sent = self._request(d, detail)  # a webhook is signed again each time
            outcome = await self._sender.send(d, body, sent)
            await self._store.record(alert_id, d.name, outcome)
            if outcome.delivered:
                return True, attempt - 1
            log.warning("alert %d to %s: attempt %d: %s", alert_id, d.name, attempt, outcome)
            if not outcome.retryable or attempt == d.max_attempts:
                return False, attempt
            await self._sleep(backoff(attempt, base=d.backoff_seconds, cap=d.backoff_max_seconds))
        return False, d.max_attempts
