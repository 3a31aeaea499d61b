"""The healthy path: handing an event to aiokafka within the pushback bound, and settling
it when Kafka acknowledges or fails it.

Invariant: ``hand_over`` waits for aiokafka no longer than the caller's deadline; never
more than ``max_inflight_events`` events are in flight: the one that would exceed it goes
to the spool behind them all (False) or, without one, waits for room until the deadline;
when aiokafka does not take the event in time or refuses it, the event goes to the spool
(False) or, without one, the caller gets ``EmitterPushbackError`` or
``EmitterUnavailableError`` and the event was not accepted. A failed delivery is re-sent
from the spool, or counted lost when there is none.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from aiokafka.errors import KafkaError

from producers.emitter.bounds import InFlightBounds
from producers.emitter.config import EmitterConfig, EmitterState, Meta
from producers.emitter.deliveries import Deliveries, InFlight, meta_of
from producers.emitter.kafka import KafkaLink
from producers.emitter.spooling import Route, SpoolWriter
from producers.emitter.support import Signals
from producers.errors import EmitterPushbackError, EmitterUnavailableError
from producers.spool import SpoolEntry

logger = logging.getLogger("producers.emitter")

DIRECT = EmitterState.DIRECT


class DirectSender:
    """Sends to Kafka directly while the route is DIRECT, and watches each delivery."""

    def __init__(
        self,
        config: EmitterConfig,
        *,
        route: Route,
        link: KafkaLink,
        deliveries: Deliveries,
        writer: SpoolWriter,
        signals: Signals,
    ) -> None:
        self._config = config
        self._route = route
        self._link = link
        self._deliveries = deliveries
        self._writer = writer
        self._signals = signals
        self._bounds = InFlightBounds.of(config)

    async def hand_over(
        self, entry: SpoolEntry, deadline: float, confirm: asyncio.Future[Meta] | None
    ) -> bool:
        """True when aiokafka took the event; False when it must be spooled instead."""
        route = self._route
        if route.state is DIRECT and self._bounds.full(len(self._deliveries.inflight)):
            if route.spool is not None:
                route.switch_to_spooling(
                    f"{len(self._deliveries.inflight)} events are in flight "
                    f"(max_inflight_events={self._bounds.max_events})"
                )
            else:
                await self._wait_for_room(deadline)
        producer = self._link.producer
        if route.state is not DIRECT or producer is None:
            if route.spool is None:
                raise EmitterUnavailableError("emitter is not connected to Kafka")
            return False
        try:
            async with asyncio.timeout_at(deadline):
                fut = await producer.send(entry.topic, value=entry.value, key=entry.key)
        except TimeoutError as exc:
            if route.spool is None:
                raise EmitterPushbackError(
                    f"Kafka did not accept the event within {self._config.max_block_seconds}s"
                ) from exc
            route.switch_to_spooling(
                f"Kafka did not accept an event within {self._config.max_block_seconds}s"
            )
            return False
        except KafkaError as exc:
            if route.spool is None:
                raise EmitterUnavailableError(f"Kafka refused the event: {exc}") from exc
            route.switch_to_spooling(f"Kafka refused an event: {exc!r}")
            return False
        pending = self._deliveries.track(entry, confirm)
        fut.add_done_callback(functools.partial(self._on_sent, pending))
        if route.spooling:  # spooling began while we were in send()
            route.make_suspect(pending)
        return True

    async def _wait_for_room(self, deadline: float) -> None:
        """Without a spool: wait for Kafka to settle in-flight events until the deadline."""
        inflight, bounds = self._deliveries.inflight, self._bounds
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        if not await self._signals.wait_for(lambda: not bounds.full(len(inflight)), timeout):
            raise EmitterPushbackError(
                f"{len(inflight)} events are still in flight after "
                f"{self._config.max_block_seconds}s (max_inflight_events={bounds.max_events})"
            )

    def _on_sent(self, pending: InFlight, fut: asyncio.Future[object]) -> None:
        """Delivery callback of the healthy path."""
        deliveries = self._deliveries
        if pending.ticket not in deliveries.inflight:
            return  # already accounted for by stop()
        exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        if exc is None:
            self._delivered(pending, fut)
        else:
            self._failed(pending, exc)
        deliveries.inflight.pop(pending.ticket, None)
        self._signals.wake()

    def _delivered(self, pending: InFlight, fut: asyncio.Future[object]) -> None:
        deliveries = self._deliveries
        deliveries.sent += 1
        deliveries.made_durable(pending.entry.value)
        if pending.suspect:
            deliveries.skip.add(pending.entry.value)  # delivered: the drainer skips its copy
        if pending.confirm is not None:
            deliveries.confirms.pop(pending.entry.value, None)
            if not pending.confirm.done():
                pending.confirm.set_result(meta_of(fut))

    def _failed(self, pending: InFlight, exc: BaseException) -> None:
        self._deliveries.failures += 1
        route = self._route
        if route.spool is not None and self._writer.running:
            if not pending.suspect:
                route.switch_to_spooling(f"delivery failed: {exc!r}")
                if not pending.suspect:
                    route.make_suspect(pending)
            logger.debug("delivery failed, the event is re-sent from the spool: %r", exc)
        elif route.spool is None:
            self._deliveries.lost += 1
            logger.error("event delivery failed: %r", exc)
            if pending.confirm is not None and not pending.confirm.done():
                pending.confirm.set_exception(
                    EmitterUnavailableError(f"Kafka did not store the event: {exc!r}")
                )
