"""The emitter's Kafka connection: building the (signing) aiokafka producer, connecting
with a bound, and closing or abandoning it.

Invariant: every producer is idempotent with ``acks=all``, queues what ``send`` is given
(``signedsend``) and signs with this producer's key when it has one; closing one never
takes longer than a fixed bound, and abandoning one first fails every record it still
holds (they are spooled by then, or counted lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from producers.emitter.config import EmitterConfig
from producers.emitter.signedsend import QueuedProducer, SigningProducer
from producers.emitter.support import retrieve
from producers.errors import EmitterUnavailableError, KafkaSettingsError
from producers.kafka_security import client_kwargs
from producers.signing import BatchSigner, ProducerKeyError, load_producer_key

logger = logging.getLogger("producers.emitter")

#: How long closing an aiokafka producer may take: a graceful stop (nothing pending), and
#: one being abandoned (everything it holds is spooled already, so no need to wait).
_CLOSE_SECONDS: Final = 5.0
_ABANDON_SECONDS: Final = 1.0


def load_signer(config: EmitterConfig) -> BatchSigner | None:
    path = config.producer_key_file
    if path is None:
        logger.warning(
            "emitter %s has no producer key (producer_key_file): the ledger quarantines "
            "its events as unauthenticated",
            config.producer_id,
        )
        return None
    key = load_producer_key(path)
    if key.producer_id != config.producer_id:
        raise ProducerKeyError(
            f"the key in {path} is producer {key.producer_id!r}'s, not {config.producer_id!r}'s"
        )
    return key.signer()


def fail_pending(producer: AIOKafkaProducer) -> None:
    """Fail every batch an aiokafka producer still holds, so it can be stopped now.

    aiokafka's idempotent producer retries forever and its ``stop()`` waits for every
    batch, so while Kafka is down this is the only way to close it. Every event it holds
    is spooled by then (or, without a spool, lost and counted). This reaches into
    aiokafka 0.14 internals (the version is pinned below 0.15); if they change, the
    bounded ``stop()`` that follows still returns, only more slowly.
    """
    if isinstance(producer, QueuedProducer):  # records not yet handed to aiokafka
        producer.fail_unsent(KafkaConnectionError("the emitter abandoned this connection"))
    accumulator = getattr(producer, "_message_accumulator", None)
    fail_all = getattr(accumulator, "fail_all", None)
    if not callable(fail_all):
        return
    queued = getattr(accumulator, "_batches", {})
    batches = [b for q in queued.values() for b in q] if isinstance(queued, dict) else []
    batches += list(getattr(accumulator, "_pending_batches", ()))
    fail_all(KafkaConnectionError("the emitter abandoned this Kafka connection"))
    for batch in batches:  # nobody else waits for these: mark their exceptions as seen
        waiter = getattr(batch, "_drain_waiter", None)
        if isinstance(waiter, asyncio.Future) and waiter.done():
            retrieve(waiter)


async def close_producer(producer: AIOKafkaProducer, *, abandon: bool) -> None:
    """Close a producer within a bound; ``abandon`` fails what it still holds first."""
    if abandon:
        fail_pending(producer)
    bound = _ABANDON_SECONDS if abandon else _CLOSE_SECONDS
    try:
        async with asyncio.timeout(bound):
            await producer.stop()
    except TimeoutError:
        logger.info("aiokafka producer did not stop within %ss; closing its connections", bound)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_ABANDON_SECONDS):
                await producer.client.close()
    except Exception as exc:
        logger.debug("closing an aiokafka producer failed: %r", exc)


class KafkaLink:
    """The current aiokafka producer (``producer``, None while disconnected)."""

    def __init__(self, config: EmitterConfig) -> None:
        self._config = config
        self.signer: BatchSigner | None = None
        self.producer: AIOKafkaProducer | None = None
        self._connect_failures = 0

    def new_producer(self) -> AIOKafkaProducer:
        settings: dict[str, Any] = dict(
            bootstrap_servers=self._config.bootstrap_servers,
            client_id=f"phi-ledger-producer/{self._config.producer_id}",
            acks="all",
            enable_idempotence=True,
            linger_ms=self._config.linger_ms,
            max_batch_size=self._config.kafka_batch_bytes,
            max_request_size=1_048_576,
            **client_kwargs(self._config.kafka_security),
        )
        if self.signer is not None:
            return SigningProducer(signer=self.signer, **settings)
        return QueuedProducer(**settings)

    async def connect_or_raise(self) -> None:
        """Connect without a spool to fall back on: ``EmitterUnavailableError`` if Kafka is down."""
        producer = self.new_producer()
        try:
            async with asyncio.timeout(self._config.connect_timeout_seconds):
                await producer.start()
        except (KafkaError, TimeoutError) as exc:
            await close_producer(producer, abandon=True)
            raise EmitterUnavailableError(
                f"cannot reach Kafka at {self._config.bootstrap_servers}: {exc!r}"
            ) from exc
        self.producer = producer

    async def connect(self, timeout: float) -> bool:
        """Try to connect once; False (logged, retried by the caller) when it fails."""
        try:
            producer = self.new_producer()
        except KafkaSettingsError as exc:  # e.g. a password file being rotated
            logger.warning("cannot connect to Kafka: %s; retrying in the background", exc)
            return False
        try:
            async with asyncio.timeout(timeout):
                await producer.start()
        except asyncio.CancelledError:
            await close_producer(producer, abandon=True)
            raise
        except (KafkaError, TimeoutError, OSError) as exc:
            await close_producer(producer, abandon=True)
            self._connect_failures += 1
            log = logger.warning if self._connect_failures == 1 else logger.debug
            log(
                "cannot reach Kafka at %s: %r; retrying in the background",
                self._config.bootstrap_servers,
                exc,
            )
            return False
        if self._connect_failures:
            logger.warning("reconnected to Kafka at %s", self._config.bootstrap_servers)
        self._connect_failures = 0
        self.producer = producer
        return True

    async def abandon(self, reason: str) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            logger.info("dropping the Kafka connection: %s", reason)
            await close_producer(producer, abandon=True)
