"""``Emitter``: the coordinator of the async emitter a PACS integration embeds.

Invariant: an event is validated and encoded before anything is sent; every accepted
event is stamped, then handed to aiokafka or, when Kafka cannot take it, fsynced in the
spool before ``emit`` returns; ``emit`` never waits on Kafka longer than
``max_block_seconds``; ``stop`` spools what Kafka has not acknowledged. How the parts
work together: docs/design/emitter.md.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError

from producers.codec import Codec, PreparedEvent
from producers.emitter.config import (
    Delivery,
    EmitterConfig,
    EmitterHealth,
    EmitterState,
    Meta,
)
from producers.emitter.deliveries import Deliveries
from producers.emitter.draining import Drainer
from producers.emitter.kafka import KafkaLink, close_producer, load_signer
from producers.emitter.sending import DirectSender
from producers.emitter.spooling import Route, SpoolWriter
from producers.emitter.stamping import Sequences, Stamper
from producers.emitter.support import IoThread, Signals, cancel, now_ms
from producers.errors import EmitterUnavailableError, ProducerError
from producers.events import AuditEvent
from producers.kafka_security import client_kwargs
from producers.lifecycle import AsyncLifecycle
from producers.registry import RegistryChange

logger = logging.getLogger("producers.emitter")


class Emitter(AsyncLifecycle):
    """``async with Emitter(config) as em: await em.emit(event)``."""

    def __init__(self, config: EmitterConfig, *, codec: Codec | None = None) -> None:
        self._config = config
        self._codec = codec or Codec()
        self._sequences = Sequences(config.producer_id, config.first_sequence)
        self._stamper = Stamper(config, self._sequences)
        self._lock = asyncio.Lock()
        self._signals = Signals()
        self._io = IoThread()
        self._deliveries = Deliveries()
        self._link = KafkaLink(config)
        self._writer = SpoolWriter(self._deliveries, self._signals, self._io)
        self._route = Route(config, self._deliveries, self._writer, self._signals, self._io)
        self._sender = DirectSender(
            config,
            route=self._route,
            link=self._link,
            deliveries=self._deliveries,
            writer=self._writer,
            signals=self._signals,
        )
        self._drainer = Drainer(
            config,
            route=self._route,
            link=self._link,
            deliveries=self._deliveries,
            writer=self._writer,
            signals=self._signals,
            io=self._io,
        )
        self._drain_task: asyncio.Task[None] | None = None

    @property
    def config(self) -> EmitterConfig:
        return self._config

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect to Kafka; with a spool, open it and never fail just because Kafka is down."""
        route = self._route
        if route.state is not EmitterState.STOPPED:
            return
        if route.closing:
            raise EmitterUnavailableError("the emitter is stopping")
        self._lock = asyncio.Lock()
        self._signals.renew()
        self._writer.renew()
        self._deliveries.reset_counters()
        client_kwargs(self._config.kafka_security)  # bad settings or files fail here, clearly
        self._link.signer = load_signer(self._config)
        if self._config.spool_dir is None:
            await self._link.connect_or_raise()
            route.state = EmitterState.DIRECT
            return
        spool = await route.open_spool(self._config.spool_dir, self._sequences)
        connect_within = min(self._config.connect_timeout_seconds, self._config.max_block_seconds)
        try:
            connected = await self._link.connect(connect_within)
        except BaseException:
            await self._io.run(spool.close)
            route.spool = None
            await self._sequences.close()
            self._io.shutdown()
            raise
        if spool.pending_records or not connected:
            route.state = EmitterState.SPOOLING
            logger.warning(
                "emitter %s starts spooling: %d event(s) in %s, Kafka %s",
                self._config.producer_id,
                spool.pending_records,
                spool.directory,
                "connected" if connected else "unreachable",
            )
        else:
            route.state = EmitterState.DIRECT
        self._writer.start(spool)
        self._drain_task = asyncio.create_task(self._drainer.run(), name="emitter-spool-drainer")

    async def stop(self) -> None:
        """Flush to Kafka within ``stop_timeout_seconds``, spool the rest; idempotent.

        Returns at once when Kafka is unreachable and every pending event is already in
        the spool. Closing an abandoned Kafka connection adds at most about two seconds,
        and spooling what is in flight one fsync.
        """
        route = self._route
        if route.state is EmitterState.STOPPED:
            return
        if route.closing:
            await self._signals.wait_for(lambda: route.state is EmitterState.STOPPED)
            return
        route.closing = True
        try:
            await self._shutdown()
        finally:
            route.state = EmitterState.STOPPED
            route.closing = False
            self._signals.wake()

    async def _shutdown(self) -> None:
        spool = self._route.spool
        await self._signals.wait_for(
            self._stop_waited_enough if spool is not None else self._nothing_in_flight,
            timeout=self._config.stop_timeout_seconds,
        )
        async with self._lock:  # no emit is between stamping and handing over any more
            pass
        await cancel(self._drain_task)
        self._drain_task = None
        if spool is not None:
            await self._route.spool_in_flight()
        producer, self._link.producer = self._link.producer, None
        if producer is not None:
            # Anything aiokafka still holds is spooled by now (or, without a spool, lost).
            await close_producer(producer, abandon=not self._idle())
        await asyncio.sleep(0)  # let delivery callbacks of an abandoned producer run
        inflight = self._deliveries.inflight
        if inflight and spool is None:
            self._deliveries.lost += len(inflight)
            logger.error(
                "%d event(s) were not acknowledged by Kafka before stop and are lost "
                "(configure spool_dir to keep them)",
                len(inflight),
            )
        self._deliveries.abandon_waiting()
        await self._sequences.close()
        if spool is not None:
            await self._route.close_spool()
        self._io.shutdown()

    def _nothing_in_flight(self) -> bool:
        return not self._deliveries.inflight

    def _stop_waited_enough(self) -> bool:
        """Everything is delivered, or Kafka is unreachable and everything is on disk."""
        if self._idle():
            return True
        return (
            self._link.producer is None and not self._deliveries.inflight and not self._writer.busy
        )

    def _idle(self) -> bool:
        spool = self._route.spool
        return (
            not self._deliveries.inflight
            and not self._writer.busy
            and (spool is None or spool.pending_records == 0)
        )

    # ------------------------------------------------------------------ emitting

    def _require_running(self) -> None:
        if self._route.state is EmitterState.STOPPED or self._route.closing:
            raise EmitterUnavailableError("emitter is not started")

    async def _submit(
        self,
        event: AuditEvent | RegistryChange | PreparedEvent,
        confirm: asyncio.Future[Meta] | None,
        durable: asyncio.Future[None] | None = None,
    ) -> int:
        """Stamp, encode and hand over one event: to aiokafka, or else durably to the
        spool; returns its producer sequence number."""
        self._require_running()
        prepared = event if isinstance(event, PreparedEvent) else self._codec.prepare(event)
        deadline = asyncio.get_running_loop().time() + self._config.max_block_seconds
        waiter: asyncio.Future[None] | None = None
        async with self._lock:  # one event at a time between stamping and handing over
            self._require_running()
            await self._sequences.reserve_ahead()
            entry, seq, stamped = self._stamper.stamp(prepared, self._link.signer)
            if durable is not None:  # before the hand-over: Kafka may acknowledge at once
                self._deliveries.add_durable(entry.value, durable)
            try:
                if not await self._sender.hand_over(entry, deadline, confirm):
                    waiter = self._route.enqueue(entry, confirm)
            except BaseException:
                self._deliveries.forget_durable(entry.value, durable)
                if stamped:
                    self._stamper.give_back()
                raise
        if waiter is not None:
            # Durable once written; a cancelled caller does not stop the write.
            try:
                await asyncio.shield(waiter)
            except ProducerError:
                self._deliveries.forget_durable(entry.value, durable)
                raise
        return seq

    async def emit(self, event: AuditEvent | RegistryChange) -> None:
        """Validate, stamp and hand the event over; delivery completes in the background.
        A ``RegistryChange`` goes to the registry topic, keyed by its record id.

        Returns once aiokafka took the event or, when Kafka is unreachable or slow and a
        spool is configured, once the event is fsynced in the spool. Raises
        ``EventValidationError``, ``EmitterPushbackError`` (``SpoolFullError`` when the
        spool is full), ``EmitterUnavailableError`` or ``SpoolError``; after any of them
        the event was not accepted and may be emitted again.
        """
        await self._submit(event, None)

    async def emit_tracked(self, event: AuditEvent | RegistryChange) -> asyncio.Future[None]:
        """``emit``, and a future that is done once the event is durable: acknowledged by
        Kafka or fsynced in the spool (what a pipe process may acknowledge to its host; ``emit``
        returns earlier, when aiokafka holds the event in memory)."""
        durable: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._submit(event, None, durable)
        return durable

    async def emit_prepared(self, prepared: PreparedEvent) -> int:
        """``emit`` for an event ``Codec.prepare`` already validated and encoded (in a
        worker process, or the host's thread), so this side only stamps it; returns the
        producer sequence number it carries (its own stamp, if it had one)."""
        return await self._submit(prepared, None)

    async def reserve_block(self, count: int) -> int:
        """Set aside ``count`` sequence numbers for another process to stamp events with
        (``producers.pipe``); returns the first. With a spool they are persisted before
        this returns, so after a crash this emitter never hands any of them out again."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self._require_running()
        async with self._lock:
            return await self._sequences.reserve_block(count)

    async def emit_and_confirm(self, event: AuditEvent | RegistryChange) -> Delivery:
        """Like ``emit``, then wait until Kafka has acknowledged the event (acks=all).

        With a spool this waits for as long as Kafka is down. If it is cancelled after the
        event was accepted, the event is still delivered: do not emit it again.
        """
        confirm: asyncio.Future[Meta] = asyncio.get_running_loop().create_future()
        await self._submit(event, confirm)
        try:
            topic, partition, offset = await confirm
        except KafkaError as exc:
            raise EmitterUnavailableError(f"Kafka did not store the event: {exc}") from exc
        return Delivery(
            event_id=str(event.event_id), topic=topic, partition=partition, offset=offset
        )

    # ------------------------------------------------------------------ observing

    async def flush(self) -> None:
        """Wait until every event accepted so far is acknowledged by Kafka (or lost).

        With a spool this includes the spooled events, so it waits for as long as Kafka
        is down. Raises ``ProducerError`` if events were lost (only possible without a
        spool).
        """
        if self._route.spool is None:
            if self._link.producer is not None:
                await self._link.producer.flush()
            await self._signals.wait_for(self._nothing_in_flight)
        else:
            await self._signals.wait_for(self._idle)
        if self._deliveries.lost:
            raise ProducerError(f"{self._deliveries.lost} event(s) could not be delivered to Kafka")

    def health(self) -> EmitterHealth:
        spool, writer, deliveries = self._route.spool, self._writer, self._deliveries
        candidates: list[int] = []
        oldest = deliveries.oldest()
        if oldest is not None:
            candidates.append(oldest.entry.created_ms)
        if writer.writing:
            candidates.append(writer.writing[0].entry.created_ms)
        if writer.queued:
            candidates.append(writer.queued[0].entry.created_ms)
        if spool is not None and spool.oldest_created_ms is not None:
            candidates.append(spool.oldest_created_ms)
        age = max(0.0, (now_ms() - min(candidates)) / 1000) if candidates else 0.0
        spooled = len(writer.writing) + len(writer.queued)
        spool_bytes = 0
        if spool is not None:
            spooled += spool.pending_records
            spool_bytes = spool.pending_bytes + spool.reserved_bytes
        return EmitterHealth(
            state=self._route.state,
            queued=len(deliveries.inflight),
            spooled=spooled,
            spool_bytes=spool_bytes,
            oldest_undelivered_age_seconds=age,
            sent=deliveries.sent,
            failed=deliveries.failures,
            lost=deliveries.lost,
            next_sequence=self._sequences.next,
        )

    @property
    def stats(self) -> dict[str, int]:
        health = self.health()
        return {
            "sent": health.sent,
            "failed": health.failed,
            "in_flight": health.queued,
            "spooled": health.spooled,
            "lost": health.lost,
        }
