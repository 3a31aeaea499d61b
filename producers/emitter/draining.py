"""The spool drainer: reconnects with backoff, re-sends the spool in order, and watches
the healthy path for events Kafka is slow to acknowledge.

Invariant: the spool's cursor advances only past a prefix of records Kafka acknowledged
(``acks=all``) or had acknowledged on the healthy path already (skipped); in-flight
events settle before the spool is re-sent, so the order of emits is kept; the emitter
goes back to DIRECT only once the spool is empty and nothing waits to be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Final

from aiokafka.errors import KafkaError

from producers.emitter.bounds import InFlightBounds
from producers.emitter.config import EmitterConfig, EmitterState
from producers.emitter.deliveries import Deliveries, meta_of
from producers.emitter.kafka import KafkaLink
from producers.emitter.spooling import Route, SpoolWriter
from producers.emitter.support import Backoff, IoThread, Signals, now_ms, retrieve
from producers.spool import Spool, SpoolRecord

logger = logging.getLogger("producers.emitter")

#: How long the drainer waits for Kafka to acknowledge in-flight events (or a batch it
#: re-sent) before it abandons the connection and starts a new one.
STALL_SECONDS: Final = 30.0
_DRAIN_RECORDS: Final = 500
_DRAIN_BYTES: Final = 1024 * 1024

_Sends = list["asyncio.Future[object] | None"]


class Drainer:
    """The background task's steps; ``run`` loops over them until cancelled."""

    def __init__(
        self,
        config: EmitterConfig,
        *,
        route: Route,
        link: KafkaLink,
        deliveries: Deliveries,
        writer: SpoolWriter,
        signals: Signals,
        io: IoThread,
    ) -> None:
        self._config = config
        self._route = route
        self._link = link
        self._deliveries = deliveries
        self._writer = writer
        self._signals = signals
        self._io = io
        self._resend_failures = 0
        self._bounds = InFlightBounds.of(config)

    async def run(self) -> None:
        """Reconnect, re-send the spool in order, and watch the healthy path."""
        backoff = Backoff(self._config.reconnect_backoff_max_seconds)
        watch = self._bounds.check_every_seconds
        while True:
            try:
                if self._route.state is EmitterState.DIRECT:
                    self._signals.kick.clear()
                    self._watch_unacknowledged()
                    if self._route.state is EmitterState.DIRECT:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(watch):
                                await self._signals.kick.wait()
                    continue
                self._signals.kick.clear()
                if not await self._drain_once():
                    await asyncio.sleep(backoff.next())
                else:
                    backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("spool drainer error; retrying")
                await asyncio.sleep(backoff.next())

    def _watch_unacknowledged(self) -> None:
        oldest = self._deliveries.oldest()
        age = self._bounds.overdue(None if oldest is None else oldest.entry.created_ms, now_ms())
        if age is not None:
            self._route.switch_to_spooling(f"Kafka has not acknowledged an event for {age:.1f}s")

    async def _drain_once(self) -> bool:
        """One step of draining; False when the caller should back off."""
        spool = self._route.spool
        if spool is None:  # pragma: no cover - started only with a spool
            return False
        link = self._link
        if link.producer is None and not await link.connect(self._config.connect_timeout_seconds):
            return False
        deliveries = self._deliveries
        if deliveries.inflight and not await self._signals.wait_for(
            lambda: not deliveries.inflight, timeout=STALL_SECONDS
        ):
            await link.abandon(f"Kafka has not settled in-flight events for {STALL_SECONDS}s")
            return False
        records = await self._io.run(
            functools.partial(spool.read, max_records=_DRAIN_RECORDS, max_bytes=_DRAIN_BYTES)
        )
        if records:
            return await self._resend(spool, records)
        if self._writer.busy:
            await self._signals.kick.wait()  # the writer kicks when it is done
            return True
        if spool.pending_records:
            logger.error("spool accounting disagrees with its files; re-reading")
            return False
        self._route.state = EmitterState.DIRECT
        deliveries.skip.clear()
        logger.warning(
            "emitter %s: spool drained, sending to Kafka directly again",
            self._config.producer_id,
        )
        self._signals.wake()
        return True

    async def _resend(self, spool: Spool, records: list[SpoolRecord]) -> bool:
        """Send spooled records in order; acknowledge the prefix Kafka stored."""
        if self._link.producer is None:
            return False
        futs, problem = await self._send_all(records)
        done, problem = _delivered_prefix(records, futs, problem)
        self._deliveries.failures += sum(
            1 for f in futs if f is not None and f.done() and (f.cancelled() or f.exception())
        )
        if done:
            await self._acknowledge(spool, done, futs)
        if len(done) == len(records):
            self._resend_failures = 0
            return True
        self._resend_failures += 1
        log = logger.warning if self._resend_failures == 1 else logger.debug
        log("re-sending spooled events failed: %r; retrying with backoff", problem)
        await self._link.abandon(f"re-sending failed: {problem!r}")
        return False

    async def _send_all(self, records: list[SpoolRecord]) -> tuple[_Sends, BaseException | None]:
        """Hand every record to aiokafka (skipping copies Kafka has) and wait for them all."""
        producer = self._link.producer
        futs: _Sends = []
        if producer is None:  # pragma: no cover - checked by the caller
            return futs, None
        try:
            async with asyncio.timeout(STALL_SECONDS):
                for record in records:
                    entry = record.entry
                    if entry.value in self._deliveries.skip:
                        futs.append(None)
                        continue
                    fut = await producer.send(entry.topic, value=entry.value, key=entry.key)
                    fut.add_done_callback(retrieve)
                    futs.append(fut)
                sent = [f for f in futs if f is not None]
                if sent:
                    await asyncio.wait(sent)
        except (KafkaError, TimeoutError) as exc:
            return futs, exc
        return futs, None

    async def _acknowledge(self, spool: Spool, done: list[SpoolRecord], futs: _Sends) -> None:
        """Advance the spool's cursor past ``done`` and settle their waiting futures."""
        await self._io.run(functools.partial(spool.ack, done))
        skipped = sum(1 for f in futs[: len(done)] if f is None)
        if skipped:
            logger.debug("skipped %d spooled copies Kafka had acknowledged already", skipped)
        deliveries = self._deliveries
        for record, fut in zip(done, futs, strict=False):
            value = record.entry.value
            confirm = deliveries.confirms.pop(value, None)
            if fut is None:
                deliveries.skip.discard(value)
                continue
            deliveries.sent += 1
            if confirm is not None and not confirm.done():
                confirm.set_result(meta_of(fut))
        self._signals.wake()


def _delivered_prefix(
    records: list[SpoolRecord], futs: _Sends, problem: BaseException | None
) -> tuple[list[SpoolRecord], BaseException | None]:
    """The records up to the first that Kafka did not store, and why that one failed."""
    done: list[SpoolRecord] = []
    for record, fut in zip(records, futs, strict=False):
        if fut is not None and not (fut.done() and not fut.cancelled() and fut.exception() is None):
            if fut.done() and problem is None:
                problem = asyncio.CancelledError() if fut.cancelled() else fut.exception()
            break
        done.append(record)
    return done, problem
