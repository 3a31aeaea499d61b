"""The async emitter a PACS integration embeds to send audit events to Kafka.

Invariant: an event is validated and encoded before anything is sent, so an
invalid event raises ``EventValidationError`` in the caller and never reaches
Kafka; every accepted event is stamped with this producer's id and the next
per-producer sequence number, keyed by its patient (one patient's events stay
in one partition, in order), and sent by an idempotent ``acks=all`` producer.
``emit`` never waits longer than ``EmitterConfig.max_block_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from producers.codec import Codec
from producers.errors import (
    EmitterPushbackError,
    EmitterUnavailableError,
    EventValidationError,
    ProducerError,
)
from producers.events import AuditEvent, PhiAccessEvent

logger = logging.getLogger(__name__)

#: Largest encoded event accepted: a ledger leaf (value plus ~100 bytes of Kafka
#: coordinates) must fit the 64 KiB tlog-tiles entry limit.
MAX_EVENT_BYTES = 60_000


@dataclass(frozen=True, slots=True, kw_only=True)
class EmitterConfig:
    bootstrap_servers: str
    producer_id: str
    access_topic: str = "phi-access"
    relay_topic: str = "critical-result-relay"
    max_block_seconds: float = 2.0
    linger_ms: int = 5
    first_sequence: int = 0
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """Where Kafka stored an event."""

    event_id: str
    topic: str
    partition: int
    offset: int


class Emitter:
    """``async with Emitter(config) as em: await em.emit(event)``."""

    def __init__(self, config: EmitterConfig, *, codec: Codec | None = None) -> None:
        self._config = config
        self._codec = codec or Codec()
        self._producer: AIOKafkaProducer | None = None
        self._next_seq = config.first_sequence
        self._pending: set[asyncio.Future[object]] = set()
        self._failures = 0
        self._sent = 0

    @property
    def config(self) -> EmitterConfig:
        return self._config

    async def start(self) -> None:
        if self._producer is not None:
            return
        ssl_context = None
        if self._config.security_protocol == "SSL":
            ssl_context = create_ssl_context(cafile=self._config.ssl_cafile)
        producer = AIOKafkaProducer(
            bootstrap_servers=self._config.bootstrap_servers,
            client_id=f"phi-ledger-producer/{self._config.producer_id}",
            acks="all",
            enable_idempotence=True,
            linger_ms=self._config.linger_ms,
            max_request_size=1_048_576,
            security_protocol=self._config.security_protocol,
            ssl_context=ssl_context,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise EmitterUnavailableError(
                f"cannot reach Kafka at {self._config.bootstrap_servers}: {exc}"
            ) from exc
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            await self._drain()
        finally:
            await producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def topic_for(self, event: AuditEvent) -> str:
        if isinstance(event, PhiAccessEvent):
            return self._config.access_topic
        return self._config.relay_topic

    def _prepare(self, event: AuditEvent) -> tuple[AuditEvent, bytes]:
        stamping = event.producer_id is None or event.producer_seq is None
        if stamping:
            event = event.stamped(producer_id=self._config.producer_id, producer_seq=self._next_seq)
        value = self._codec.encode(event)
        if len(value) > MAX_EVENT_BYTES:
            raise EventValidationError(
                f"encoded event is {len(value)} bytes; at most {MAX_EVENT_BYTES} are accepted",
                field="<event>",
            )
        if stamping:
            # Only a valid event consumes a sequence number, so a gap always means a loss.
            self._next_seq += 1
        return event, value

    async def _send(self, event: AuditEvent) -> asyncio.Future[object]:
        producer = self._producer
        if producer is None:
            raise EmitterUnavailableError("emitter is not started")
        event, value = self._prepare(event)
        try:
            fut: asyncio.Future[object] = await asyncio.wait_for(
                producer.send(
                    self.topic_for(event), value=value, key=event.patient.key.encode("utf-8")
                ),
                timeout=self._config.max_block_seconds,
            )
        except TimeoutError as exc:
            raise EmitterPushbackError(
                f"Kafka did not accept the event within {self._config.max_block_seconds}s"
            ) from exc
        except KafkaError as exc:
            raise EmitterUnavailableError(f"Kafka refused the event: {exc}") from exc
        self._pending.add(fut)
        fut.add_done_callback(self._delivered)
        return fut

    def _delivered(self, fut: asyncio.Future[object]) -> None:
        self._pending.discard(fut)
        if fut.cancelled() or fut.exception() is not None:
            self._failures += 1
            logger.error("event delivery failed: %r", None if fut.cancelled() else fut.exception())
        else:
            self._sent += 1

    async def emit(self, event: AuditEvent) -> None:
        """Validate, stamp and hand the event to Kafka; delivery completes in the background."""
        await self._send(event)

    async def emit_and_confirm(self, event: AuditEvent) -> Delivery:
        """Like ``emit``, then wait until Kafka has acknowledged the event (acks=all)."""
        fut = await self._send(event)
        try:
            meta = await fut
        except KafkaError as exc:
            raise EmitterUnavailableError(f"Kafka did not store the event: {exc}") from exc
        return Delivery(
            event_id=str(event.event_id),
            topic=meta.topic,  # type: ignore[attr-defined]
            partition=meta.partition,  # type: ignore[attr-defined]
            offset=meta.offset,  # type: ignore[attr-defined]
        )

    async def _drain(self) -> None:
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def flush(self) -> None:
        """Wait until every event handed to Kafka so far is acknowledged or failed."""
        if self._producer is not None:
            await self._producer.flush()
        await self._drain()
        if self._failures:
            raise ProducerError(f"{self._failures} event(s) could not be delivered to Kafka")

    @property
    def stats(self) -> dict[str, int]:
        return {"sent": self._sent, "failed": self._failures, "in_flight": len(self._pending)}
