"""The async emitter a PACS integration embeds to send audit events to Kafka.

Invariant: an event is validated and encoded before anything is sent, so an
invalid event raises ``EventValidationError`` in the caller and never reaches
Kafka; every accepted event is stamped with this producer's id and the next
per-producer sequence number, keyed by its patient (one patient's events stay
in one partition, in order), and sent by an idempotent ``acks=all`` producer.
``emit`` never waits on Kafka longer than ``EmitterConfig.max_block_seconds``.

With ``EmitterConfig.spool_dir`` set, no accepted event is lost and the emit order
is kept, whatever Kafka does:

* Healthy path: ``emit`` hands the event to aiokafka (no disk I/O) and returns.
* When aiokafka does not take an event within ``max_block_seconds``, refuses it,
  fails to deliver it, or leaves it unacknowledged for ``spool_after_seconds``,
  the emitter starts *spooling*: every event still in flight is copied to the
  spool (oldest first), and from then on every new event is appended behind
  them. ``emit`` returns only once its event is fsynced in the spool. A full
  spool raises ``SpoolFullError`` (the event is refused, never dropped silently).
* A background drainer reconnects with exponential backoff, waits until the
  in-flight events have settled (one Kafka acknowledged is skipped in the spool,
  one that failed is re-sent from it), re-sends the spool in order and advances
  the spool's persisted cursor only after Kafka acknowledged (``acks=all``). Once
  the spool is empty, events go straight to Kafka again.
* ``stop`` waits up to ``stop_timeout_seconds`` for Kafka, then spools (fsync)
  whatever it has not acknowledged; the next ``start`` re-sends it.
* ``start`` does not need Kafka: it opens the spool and keeps connecting in the
  background.

Delivery is at least once from the producer: after a crash, or when Kafka stored
an event but its acknowledgement was lost, the same bytes are sent again, and the
ledger counts the identical re-send as a duplicate of the event id (exactly once in
the ledger). On the healthy path an event is durable only once Kafka acknowledged
it (``emit_and_confirm``); a host killed before that may lose what aiokafka held.

Sequence numbers: with a spool, the emitter persists a high-water mark in the spool
directory, reserving ``SEQUENCE_BLOCK`` numbers at a time before handing any out, so
after a restart it continues above every number it ever handed out. A crash skips at
most ``SEQUENCE_BLOCK`` numbers (the unused rest of the reserved block); numbers never
repeat. An event that is refused (validation, pushback, full spool) gives its number back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from producers.codec import Codec, PreparedEvent
from producers.errors import (
    EmitterPushbackError,
    EmitterUnavailableError,
    EventValidationError,
    KafkaSettingsError,
    ProducerError,
    SpoolError,
)
from producers.events import AuditEvent, check_producer_id
from producers.kafka_security import KafkaSecurity, client_kwargs
from producers.lifecycle import AsyncLifecycle
from producers.signedsend import SigningProducer
from producers.signing import BatchSigner, ProducerKeyError, load_producer_key
from producers.spool import (
    DEFAULT_MAX_BYTES,
    DEFAULT_SEGMENT_BYTES,
    Spool,
    SpoolEntry,
    SpoolRecord,
    record_size,
)

logger = logging.getLogger(__name__)

#: Largest encoded event accepted: a ledger leaf (value plus ~100 bytes of Kafka
#: coordinates) must fit the 64 KiB tlog-tiles entry limit.
MAX_EVENT_BYTES = 60_000

#: Sequence numbers reserved (persisted) at a time; a crash skips at most this many.
SEQUENCE_BLOCK: Final = 1024

#: How long the drainer waits for Kafka to acknowledge in-flight events (or a batch it
#: re-sent) before it abandons the connection and starts a new one.
_STALL_SECONDS: Final = 30.0
#: How long closing an aiokafka producer may take: a graceful stop (nothing pending), and
#: one being abandoned (everything it holds is spooled already, so no need to wait).
_CLOSE_SECONDS: Final = 5.0
_ABANDON_SECONDS: Final = 1.0
_DRAIN_RECORDS: Final = 500
_DRAIN_BYTES: Final = 1024 * 1024
_FIRST_BACKOFF: Final = 0.1

T = TypeVar("T")

#: (topic, partition, offset) of an acknowledged event.
_Meta = tuple[str, int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class EmitterConfig:
    bootstrap_servers: str
    producer_id: str
    access_topic: str = "phi-access"
    relay_topic: str = "critical-result-relay"
    #: Longest ``emit`` waits for Kafka (aiokafka's buffer) before the event is spooled
    #: or, without a spool, refused with ``EmitterPushbackError``.
    max_block_seconds: float = 2.0
    linger_ms: int = 5
    first_sequence: int = 0
    #: TLS and SASL settings (default PLAINTEXT; docs/kafka.md).
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    #: Directory of the local spool (one per emitter, on a disk as protected as any
    #: PHI store); None disables spooling.
    spool_dir: str | None = None
    #: Most bytes of undelivered events the spool holds before ``SpoolFullError``.
    spool_max_bytes: int = DEFAULT_MAX_BYTES
    spool_segment_bytes: int = DEFAULT_SEGMENT_BYTES
    #: With a spool: an event Kafka has not acknowledged for this long is spooled.
    spool_after_seconds: float = 5.0
    #: Longest ``stop`` waits for Kafka before spooling what is left (without a
    #: spool, what is left is lost and logged).
    stop_timeout_seconds: float = 10.0
    #: Longest one connection attempt may take.
    connect_timeout_seconds: float = 10.0
    #: Cap of the exponential backoff between reconnection attempts.
    reconnect_backoff_max_seconds: float = 5.0
    #: This producer's key file (``ledger producer add``; docs/producer-auth.md). Every
    #: record is signed with it; without one the ledger quarantines every event sent.
    producer_key_file: str | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_block_seconds",
            "spool_after_seconds",
            "stop_timeout_seconds",
            "connect_timeout_seconds",
            "reconnect_backoff_max_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"EmitterConfig.{name} must be positive")
        if self.spool_max_bytes <= 0 or self.spool_segment_bytes <= 0:
            raise ValueError(
                "EmitterConfig.spool_max_bytes and spool_segment_bytes must be positive"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """Where Kafka stored an event."""

    event_id: str
    topic: str
    partition: int
    offset: int


class EmitterState(StrEnum):
    STOPPED = "stopped"
    #: Events go straight to Kafka.
    DIRECT = "direct"
    #: Kafka is unreachable or slow: events go to the spool, which is being re-sent.
    SPOOLING = "spooling"


@dataclass(frozen=True, slots=True, kw_only=True)
class EmitterHealth:
    """A snapshot for the host's health checks and metrics.

    An event in flight when spooling began is counted in both ``queued`` and
    ``spooled`` until Kafka has settled it.
    """

    state: EmitterState
    #: Events handed to aiokafka (in memory / in flight) and not yet acknowledged.
    queued: int
    #: Events in the spool (fsynced or being written) not yet acknowledged.
    spooled: int
    spool_bytes: int
    #: Age of the oldest event Kafka has not acknowledged; 0.0 when there is none.
    oldest_undelivered_age_seconds: float
    #: Events Kafka acknowledged since ``start``.
    sent: int
    #: Failed delivery attempts; with a spool each one is re-sent from it.
    failed: int
    #: Events that failed with no spool to fall back on (only without ``spool_dir``).
    lost: int
    next_sequence: int


class _InFlight:
    """An event aiokafka holds; ``suspect`` once a copy of it is (being) spooled."""

    __slots__ = ("confirm", "entry", "suspect", "ticket")

    def __init__(
        self, ticket: int, entry: SpoolEntry, confirm: asyncio.Future[_Meta] | None
    ) -> None:
        self.ticket = ticket
        self.entry = entry
        self.confirm = confirm
        self.suspect = False


class _Queued:
    """An event waiting for the spool writer; ``waiter`` is None for suspect copies."""

    __slots__ = ("entry", "waiter")

    def __init__(self, entry: SpoolEntry, waiter: asyncio.Future[None] | None) -> None:
        self.entry = entry
        self.waiter = waiter


class _Backoff:
    def __init__(self, cap: float) -> None:
        self._cap = max(cap, _FIRST_BACKOFF)
        self._next = _FIRST_BACKOFF
        self._rng = random.SystemRandom()

    def next(self) -> float:
        delay = self._next
        self._next = min(self._cap, delay * 2)
        return delay * self._rng.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._next = _FIRST_BACKOFF


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _retrieve(fut: asyncio.Future[T]) -> None:
    """Mark a future's exception as seen (it is handled elsewhere)."""
    if not fut.cancelled():
        fut.exception()


def _fail_pending(producer: AIOKafkaProducer) -> None:
    """Fail every batch an aiokafka producer still holds, so it can be stopped now.

    aiokafka's idempotent producer retries forever and its ``stop()`` waits for every
    batch, so while Kafka is down this is the only way to close it. Every event it holds
    is spooled by then (or, without a spool, lost and counted). This reaches into
    aiokafka 0.14 internals (the version is pinned below 0.15); if they change, the
    bounded ``stop()`` that follows still returns, only more slowly.
    """
    if isinstance(producer, SigningProducer):  # records still waiting to be signed
        producer.fail_unsigned(KafkaConnectionError("the emitter abandoned this connection"))
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
            _retrieve(waiter)


class Emitter(AsyncLifecycle):
    """``async with Emitter(config) as em: await em.emit(event)``."""

    def __init__(self, config: EmitterConfig, *, codec: Codec | None = None) -> None:
        self._config = config
        self._codec = codec or Codec()
        # Checked once here (not per event): an id events may not carry fails every emit.
        self._own_id_problem: str | None = None
        try:
            check_producer_id(config.producer_id)
        except EventValidationError as exc:
            self._own_id_problem = str(exc)
        self._producer: AIOKafkaProducer | None = None
        self._signer: BatchSigner | None = None
        self._state = EmitterState.STOPPED
        self._closing = False
        self._next_seq = config.first_sequence
        self._seq_limit: int | None = None
        self._seq_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._write_wanted = asyncio.Event()
        self._inflight: dict[int, _InFlight] = {}
        self._tickets = 0
        self._to_spool: list[_Queued] = []
        self._writing: list[_Queued] = []
        self._skip: set[bytes] = set()
        self._confirms: dict[bytes, asyncio.Future[_Meta]] = {}
        #: Futures of ``emit_tracked`` events by message: done once Kafka acknowledged it
        #: or it is fsynced in the spool.
        self._durables: dict[bytes, list[asyncio.Future[None]]] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._spool: Spool | None = None
        self._io: ThreadPoolExecutor | None = None
        self._writer: asyncio.Task[None] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._connect_failures = 0
        self._resend_failures = 0
        self._sent = 0
        self._failures = 0
        self._lost = 0

    @property
    def config(self) -> EmitterConfig:
        return self._config

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect to Kafka; with a spool, open it and never fail just because Kafka is down."""
        if self._state is not EmitterState.STOPPED:
            return
        if self._closing:
            raise EmitterUnavailableError("the emitter is stopping")
        self._lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._write_wanted = asyncio.Event()
        self._sent = self._failures = self._lost = 0
        client_kwargs(self._config.kafka_security)  # bad settings or files fail here, clearly
        self._signer = self._load_signer()
        if self._config.spool_dir is None:
            producer = self._new_producer()
            try:
                async with asyncio.timeout(self._config.connect_timeout_seconds):
                    await producer.start()
            except (KafkaError, TimeoutError) as exc:
                await self._close_producer(producer, abandon=True)
                raise EmitterUnavailableError(
                    f"cannot reach Kafka at {self._config.bootstrap_servers}: {exc!r}"
                ) from exc
            self._producer = producer
            self._state = EmitterState.DIRECT
            return
        await self._open_spool(self._config.spool_dir)
        spool = self._spool
        if spool is None:  # pragma: no cover - _open_spool sets it or raises
            raise EmitterUnavailableError("the spool did not open")
        connect_within = min(self._config.connect_timeout_seconds, self._config.max_block_seconds)
        try:
            connected = await self._connect(connect_within)
        except BaseException:
            await self._in_io(spool.close)
            self._spool = None
            if self._io is not None:
                self._io.shutdown(wait=False)
                self._io = None
            raise
        if spool.pending_records or not connected:
            self._state = EmitterState.SPOOLING
            logger.warning(
                "emitter %s starts spooling: %d event(s) in %s, Kafka %s",
                self._config.producer_id,
                spool.pending_records,
                spool.directory,
                "connected" if connected else "unreachable",
            )
        else:
            self._state = EmitterState.DIRECT
        self._writer = asyncio.create_task(self._write_loop(), name="emitter-spool-writer")
        self._drainer = asyncio.create_task(self._drain_loop(), name="emitter-spool-drainer")

    def _load_signer(self) -> BatchSigner | None:
        path = self._config.producer_key_file
        if path is None:
            logger.warning(
                "emitter %s has no producer key (producer_key_file): the ledger quarantines "
                "its events as unauthenticated",
                self._config.producer_id,
            )
            return None
        key = load_producer_key(path)
        if key.producer_id != self._config.producer_id:
            raise ProducerKeyError(
                f"the key in {path} is producer {key.producer_id!r}'s, "
                f"not {self._config.producer_id!r}'s"
            )
        return key.signer()

    async def _open_spool(self, directory: str) -> None:
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emitter-spool")
        spool = Spool(
            directory,
            max_bytes=self._config.spool_max_bytes,
            segment_bytes=self._config.spool_segment_bytes,
        )
        pid = self._config.producer_id
        try:
            await self._in_io(spool.open)
            floor = await self._in_io(functools.partial(spool.load_sequence_floor, pid))
            self._next_seq = max(self._next_seq, floor)
            limit = self._next_seq + SEQUENCE_BLOCK
            await self._in_io(functools.partial(spool.store_sequence_floor, pid, limit))
        except BaseException:
            await self._in_io(spool.close)
            self._io.shutdown(wait=False)
            self._io = None
            raise
        self._seq_limit = limit
        self._spool = spool

    async def stop(self) -> None:
        """Flush to Kafka within ``stop_timeout_seconds``, spool the rest; idempotent.

        Returns at once when Kafka is unreachable and every pending event is already in
        the spool. Closing an abandoned Kafka connection adds at most about two seconds,
        and spooling what is in flight one fsync.
        """
        if self._state is EmitterState.STOPPED:
            return
        if self._closing:
            await self._wait_for(lambda: self._state is EmitterState.STOPPED)
            return
        self._closing = True
        try:
            await self._shutdown()
        finally:
            self._state = EmitterState.STOPPED
            self._closing = False
            self._wake()

    async def _shutdown(self) -> None:
        spool = self._spool
        await self._wait_for(
            self._stop_waited_enough if spool is not None else lambda: not self._inflight,
            timeout=self._config.stop_timeout_seconds,
        )
        async with self._lock:  # no emit is between stamping and handing over any more
            pass
        await self._cancel(self._drainer)
        self._drainer = None
        if spool is not None:
            if self._inflight:
                self._switch_to_spooling("stopping before Kafka acknowledged every event")
                for pending in list(self._inflight.values()):
                    if not pending.suspect:
                        self._make_suspect(pending)
            await self._wait_for(lambda: not self._to_spool and not self._writing)
            await self._cancel(self._writer)
            self._writer = None
        producer, self._producer = self._producer, None
        if producer is not None:
            # Anything aiokafka still holds is spooled by now (or, without a spool, lost).
            await self._close_producer(producer, abandon=not self._idle())
        await asyncio.sleep(0)  # let delivery callbacks of an abandoned producer run
        if self._inflight and spool is None:
            self._lost += len(self._inflight)
            logger.error(
                "%d event(s) were not acknowledged by Kafka before stop and are lost "
                "(configure spool_dir to keep them)",
                len(self._inflight),
            )
        self._inflight.clear()
        for fut in self._confirms.values():
            if not fut.done():
                fut.set_exception(
                    EmitterUnavailableError(
                        "the emitter stopped before Kafka acknowledged the event; it is in the "
                        "spool and is sent when an emitter with the same spool_dir starts"
                    )
                )
                _retrieve(fut)
        self._confirms.clear()
        for futs in self._durables.values():
            for waiting in futs:
                if not waiting.done():
                    waiting.set_exception(
                        EmitterUnavailableError("the emitter stopped; the event was not kept")
                    )
                    _retrieve(waiting)
        self._durables.clear()
        self._skip.clear()
        if self._seq_task is not None:
            with contextlib.suppress(Exception):
                await self._seq_task
        if spool is not None:
            if spool.pending_records:
                logger.warning(
                    "emitter stopped with %d event(s) in the spool %s; they are sent on the "
                    "next start",
                    spool.pending_records,
                    spool.directory,
                )
            await self._in_io(spool.close)
            self._spool = None
            self._seq_limit = None
        if self._io is not None:
            self._io.shutdown(wait=False)
            self._io = None

    # ------------------------------------------------------------------ emitting

    def _entry(self, prepared: PreparedEvent) -> tuple[SpoolEntry, int, bool]:
        """The message of a prepared event, stamped with its own stamp or this producer's
        next number; ``stamping`` tells which (only a new number is given back on refusal)."""
        producer_id, seq = prepared.producer_id, prepared.producer_seq
        stamping = producer_id is None or seq is None
        if producer_id is None or seq is None:
            if self._own_id_problem is not None:
                raise EventValidationError(self._own_id_problem, field="producer_id")
            producer_id, seq = self._config.producer_id, self._next_seq
        else:
            check_producer_id(producer_id)
        if self._signer is not None and producer_id != self._signer.producer_id:
            raise EventValidationError(
                f"producer_id: this emitter signs as {self._signer.producer_id!r} and cannot "
                f"send an event stamped by {producer_id!r}",
                field="producer_id",
            )
        value = prepared.encode_with(producer_id, seq)
        if len(value) > MAX_EVENT_BYTES:
            raise EventValidationError(
                f"encoded event is {len(value)} bytes; at most {MAX_EVENT_BYTES} are accepted",
                field="<event>",
            )
        if stamping:
            # Only an accepted event keeps its number (see _submit), so numbers are only
            # skipped by a crash (at most one reserved block) or a lost event.
            self._next_seq += 1
        # Reads of the ledger itself (AuditLogUsed) and security events (logins, emergency
        # overrides) belong to the access history too: only relays have their own topic.
        entry = SpoolEntry(
            topic=self._config.relay_topic if prepared.relay else self._config.access_topic,
            key=prepared.key,
            value=value,
            created_ms=_now_ms(),
        )
        return entry, seq, stamping

    def _require_running(self) -> None:
        if self._state is EmitterState.STOPPED or self._closing:
            raise EmitterUnavailableError("emitter is not started")

    async def _submit(
        self,
        event: AuditEvent | PreparedEvent,
        confirm: asyncio.Future[_Meta] | None,
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
            if self._seq_limit is not None and self._seq_limit - self._next_seq <= (
                SEQUENCE_BLOCK // 2
            ):
                await self._reserve_sequences()
            entry, seq, stamped = self._entry(prepared)
            if durable is not None:  # before the hand-over: Kafka may acknowledge at once
                self._durables.setdefault(entry.value, []).append(durable)
            try:
                if not await self._hand_to_kafka(entry, deadline, confirm):
                    waiter = self._enqueue(entry, confirm)
            except BaseException:
                self._forget_durable(entry.value, durable)
                if stamped:
                    self._next_seq -= 1  # nothing was sent; we hold the lock, nobody stamped since
                raise
        if waiter is not None:
            # Durable once written; a cancelled caller does not stop the write.
            try:
                await asyncio.shield(waiter)
            except ProducerError:
                self._forget_durable(entry.value, durable)
                raise
        return seq

    def _forget_durable(self, value: bytes, durable: asyncio.Future[None] | None) -> None:
        futs = self._durables.get(value)
        if durable is not None and futs and durable in futs:
            futs.remove(durable)
            if not futs:
                del self._durables[value]

    async def _hand_to_kafka(
        self, entry: SpoolEntry, deadline: float, confirm: asyncio.Future[_Meta] | None
    ) -> bool:
        """True when aiokafka took the event; False when it must be spooled instead."""
        producer = self._producer
        if self._state is not EmitterState.DIRECT or producer is None:
            if self._spool is None:
                raise EmitterUnavailableError("emitter is not connected to Kafka")
            return False
        try:
            async with asyncio.timeout_at(deadline):
                fut = await producer.send(entry.topic, value=entry.value, key=entry.key)
        except TimeoutError as exc:
            if self._spool is None:
                raise EmitterPushbackError(
                    f"Kafka did not accept the event within {self._config.max_block_seconds}s"
                ) from exc
            self._switch_to_spooling(
                f"Kafka did not accept an event within {self._config.max_block_seconds}s"
            )
            return False
        except KafkaError as exc:
            if self._spool is None:
                raise EmitterUnavailableError(f"Kafka refused the event: {exc}") from exc
            self._switch_to_spooling(f"Kafka refused an event: {exc!r}")
            return False
        pending = _InFlight(self._tickets, entry, confirm)
        self._tickets += 1
        self._inflight[pending.ticket] = pending
        fut.add_done_callback(functools.partial(self._on_sent, pending))
        if self._is_spooling():  # spooling began while we were in send()
            self._make_suspect(pending)
        return True

    async def emit(self, event: AuditEvent) -> None:
        """Validate, stamp and hand the event over; delivery completes in the background.

        Returns once aiokafka took the event or, when Kafka is unreachable or slow and a
        spool is configured, once the event is fsynced in the spool. Raises
        ``EventValidationError``, ``EmitterPushbackError`` (``SpoolFullError`` when the
        spool is full), ``EmitterUnavailableError`` or ``SpoolError``; after any of them
        the event was not accepted and may be emitted again.
        """
        await self._submit(event, None)

    async def emit_tracked(self, event: AuditEvent) -> asyncio.Future[None]:
        """``emit``, and a future that is done once the event is durable: acknowledged by
        Kafka or fsynced in the spool (what a relay may acknowledge to its host; ``emit``
        returns earlier, when aiokafka holds the event in memory)."""
        durable: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._submit(event, None, durable)
        return durable

    def _made_durable(self, value: bytes) -> None:
        for waiting in self._durables.pop(value, ()):
            if not waiting.done():
                waiting.set_result(None)

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
            start = self._next_seq
            end = start + count
            if self._seq_limit is not None:
                if self._seq_limit < end:
                    task = self._seq_task
                    if task is not None:
                        await asyncio.shield(task)
                    await self._store_sequence_floor(end + SEQUENCE_BLOCK)
                if self._seq_limit < end:
                    raise SpoolError("cannot persist the sequence high-water mark in the spool")
            self._next_seq = end
            return start

    async def emit_and_confirm(self, event: AuditEvent) -> Delivery:
        """Like ``emit``, then wait until Kafka has acknowledged the event (acks=all).

        With a spool this waits for as long as Kafka is down. If it is cancelled after the
        event was accepted, the event is still delivered: do not emit it again.
        """
        confirm: asyncio.Future[_Meta] = asyncio.get_running_loop().create_future()
        await self._submit(event, confirm)
        try:
            topic, partition, offset = await confirm
        except KafkaError as exc:
            raise EmitterUnavailableError(f"Kafka did not store the event: {exc}") from exc
        return Delivery(
            event_id=str(event.event_id), topic=topic, partition=partition, offset=offset
        )

    def _on_sent(self, pending: _InFlight, fut: asyncio.Future[object]) -> None:
        """Delivery callback of the healthy path."""
        if pending.ticket not in self._inflight:
            return  # already accounted for by stop()
        exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        if exc is None:
            self._sent += 1
            self._made_durable(pending.entry.value)
            if pending.suspect:
                self._skip.add(pending.entry.value)  # delivered: the drainer skips its copy
            if pending.confirm is not None:
                self._confirms.pop(pending.entry.value, None)
                if not pending.confirm.done():
                    meta = fut.result()
                    pending.confirm.set_result(
                        (str(meta.topic), int(meta.partition), int(meta.offset))  # type: ignore[attr-defined]
                    )
        else:
            self._failures += 1
            if self._spool is not None and self._writer is not None:
                if not pending.suspect:
                    self._switch_to_spooling(f"delivery failed: {exc!r}")
                    if not pending.suspect:
                        self._make_suspect(pending)
                logger.debug("delivery failed, the event is re-sent from the spool: %r", exc)
            elif self._spool is None:
                self._lost += 1
                logger.error("event delivery failed: %r", exc)
                if pending.confirm is not None and not pending.confirm.done():
                    pending.confirm.set_exception(
                        EmitterUnavailableError(f"Kafka did not store the event: {exc!r}")
                    )
        self._inflight.pop(pending.ticket, None)
        self._wake()

    # ------------------------------------------------------------------ spooling

    def _switch_to_spooling(self, reason: str) -> None:
        """From now on events go behind the spool; copy what is in flight there first."""
        if self._spool is None or self._state is not EmitterState.DIRECT:
            return
        self._state = EmitterState.SPOOLING
        logger.warning(
            "emitter %s: %s; spooling events to %s until Kafka is back",
            self._config.producer_id,
            reason,
            self._spool.directory,
        )
        for pending in self._inflight.values():  # oldest first
            if not pending.suspect:
                self._make_suspect(pending)
        self._kick.set()
        self._wake()

    def _is_spooling(self) -> bool:
        return self._state is EmitterState.SPOOLING

    def _make_suspect(self, pending: _InFlight) -> None:
        pending.suspect = True
        # Owed to Kafka already, so never refused: it may take the spool past its bound.
        self._enqueue(pending.entry, pending.confirm, force=True)

    def _enqueue(
        self,
        entry: SpoolEntry,
        confirm: asyncio.Future[_Meta] | None,
        *,
        force: bool = False,
    ) -> asyncio.Future[None] | None:
        spool = self._spool
        if spool is None:
            raise EmitterUnavailableError("emitter has no spool")
        spool.reserve(record_size(entry), force=force)  # SpoolFullError: nothing happened
        waiter: asyncio.Future[None] | None = None
        if not force:
            waiter = asyncio.get_running_loop().create_future()
            waiter.add_done_callback(_retrieve)
        self._to_spool.append(_Queued(entry, waiter))
        if confirm is not None:
            self._confirms[entry.value] = confirm
        self._write_wanted.set()
        return waiter

    async def _write_loop(self) -> None:
        """Group commit: everything queued meanwhile is written with one fsync."""
        spool = self._spool
        if spool is None:  # pragma: no cover - started only with a spool
            return
        while True:
            await self._write_wanted.wait()
            self._write_wanted.clear()
            while self._to_spool:
                batch, self._to_spool = self._to_spool, []
                self._writing = batch
                try:
                    await self._in_io(
                        functools.partial(spool.append, [q.entry for q in batch], reserved=True)
                    )
                except Exception as exc:
                    error = (
                        exc
                        if isinstance(exc, ProducerError)
                        else SpoolError(f"cannot write to the spool: {exc!r}")
                    )
                    logger.error("could not spool %d event(s): %s", len(batch), error)
                    for q in batch:
                        if q.waiter is None:
                            logger.error(
                                "an in-flight event could not be spooled; only aiokafka has it"
                            )
                            continue
                        self._confirms.pop(q.entry.value, None)  # its emit raises instead
                        if not q.waiter.done():
                            q.waiter.set_exception(error)
                else:
                    for q in batch:
                        self._made_durable(q.entry.value)
                        if q.waiter is not None and not q.waiter.done():
                            q.waiter.set_result(None)
                finally:
                    self._writing = []
                    self._kick.set()
                    self._wake()

    def _stop_waited_enough(self) -> bool:
        """Everything is delivered, or Kafka is unreachable and everything is on disk."""
        if self._idle():
            return True
        return (
            self._producer is None
            and not self._inflight
            and not self._to_spool
            and not self._writing
        )

    def _idle(self) -> bool:
        spool = self._spool
        return (
            not self._inflight
            and not self._to_spool
            and not self._writing
            and (spool is None or spool.pending_records == 0)
        )

    async def _drain_loop(self) -> None:
        """Reconnect, re-send the spool in order, and watch the healthy path."""
        backoff = _Backoff(self._config.reconnect_backoff_max_seconds)
        watch = max(0.05, min(1.0, self._config.spool_after_seconds / 4))
        while True:
            try:
                if self._state is EmitterState.DIRECT:
                    self._kick.clear()
                    self._watch_unacknowledged()
                    if self._state is EmitterState.DIRECT:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(watch):
                                await self._kick.wait()
                    continue
                self._kick.clear()
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
        if not self._inflight:
            return
        oldest = next(iter(self._inflight.values()))
        age = (_now_ms() - oldest.entry.created_ms) / 1000
        if age > self._config.spool_after_seconds:
            self._switch_to_spooling(f"Kafka has not acknowledged an event for {age:.1f}s")

    async def _drain_once(self) -> bool:
        """One step of draining; False when the caller should back off."""
        spool = self._spool
        if spool is None:  # pragma: no cover - started only with a spool
            return False
        if self._producer is None and not await self._connect(self._config.connect_timeout_seconds):
            return False
        if self._inflight and not await self._wait_for(
            lambda: not self._inflight, timeout=_STALL_SECONDS
        ):
            await self._abandon(f"Kafka has not settled in-flight events for {_STALL_SECONDS}s")
            return False
        records = await self._in_io(
            functools.partial(spool.read, max_records=_DRAIN_RECORDS, max_bytes=_DRAIN_BYTES)
        )
        if not records:
            if self._to_spool or self._writing:
                await self._kick.wait()  # the writer kicks when it is done
                return True
            if spool.pending_records:
                logger.error("spool accounting disagrees with its files; re-reading")
                return False
            self._state = EmitterState.DIRECT
            self._skip.clear()
            logger.warning(
                "emitter %s: spool drained, sending to Kafka directly again",
                self._config.producer_id,
            )
            self._wake()
            return True
        return await self._resend(records)

    async def _resend(self, records: list[SpoolRecord]) -> bool:
        """Send spooled records in order; acknowledge the prefix Kafka stored."""
        spool, producer = self._spool, self._producer
        if spool is None or producer is None:
            return False
        futs: list[asyncio.Future[object] | None] = []
        problem: BaseException | None = None
        try:
            async with asyncio.timeout(_STALL_SECONDS):
                for record in records:
                    entry = record.entry
                    if entry.value in self._skip:
                        futs.append(None)
                        continue
                    fut = await producer.send(entry.topic, value=entry.value, key=entry.key)
                    fut.add_done_callback(_retrieve)
                    futs.append(fut)
                sent = [f for f in futs if f is not None]
                if sent:
                    await asyncio.wait(sent)
        except (KafkaError, TimeoutError) as exc:
            problem = exc
        done: list[SpoolRecord] = []
        for record, fut in zip(records, futs, strict=False):
            if fut is not None and not (
                fut.done() and not fut.cancelled() and fut.exception() is None
            ):
                if fut.done() and problem is None:
                    problem = asyncio.CancelledError() if fut.cancelled() else fut.exception()
                break
            done.append(record)
        self._failures += sum(
            1 for f in futs if f is not None and f.done() and (f.cancelled() or f.exception())
        )
        if done:
            await self._in_io(functools.partial(spool.ack, done))
            skipped = sum(1 for f in futs[: len(done)] if f is None)
            if skipped:
                logger.debug("skipped %d spooled copies Kafka had acknowledged already", skipped)
            for record, fut in zip(done, futs, strict=False):
                value = record.entry.value
                confirm = self._confirms.pop(value, None)
                if fut is None:
                    self._skip.discard(value)
                    continue
                self._sent += 1
                if confirm is not None and not confirm.done():
                    meta = fut.result()
                    confirm.set_result(
                        (str(meta.topic), int(meta.partition), int(meta.offset))  # type: ignore[attr-defined]
                    )
            self._wake()
        if len(done) == len(records):
            self._resend_failures = 0
            return True
        self._resend_failures += 1
        log = logger.warning if self._resend_failures == 1 else logger.debug
        log("re-sending spooled events failed: %r; retrying with backoff", problem)
        await self._abandon(f"re-sending failed: {problem!r}")
        return False

    # ------------------------------------------------------------------ Kafka connections

    def _new_producer(self) -> AIOKafkaProducer:
        settings: dict[str, Any] = dict(
            bootstrap_servers=self._config.bootstrap_servers,
            client_id=f"phi-ledger-producer/{self._config.producer_id}",
            acks="all",
            enable_idempotence=True,
            linger_ms=self._config.linger_ms,
            max_request_size=1_048_576,
            **client_kwargs(self._config.kafka_security),
        )
        if self._signer is not None:
            return SigningProducer(signer=self._signer, **settings)
        return AIOKafkaProducer(**settings)

    async def _connect(self, timeout: float) -> bool:
        try:
            producer = self._new_producer()
        except KafkaSettingsError as exc:  # e.g. a password file being rotated
            logger.warning("cannot connect to Kafka: %s; retrying in the background", exc)
            return False
        try:
            async with asyncio.timeout(timeout):
                await producer.start()
        except asyncio.CancelledError:
            await self._close_producer(producer, abandon=True)
            raise
        except (KafkaError, TimeoutError, OSError) as exc:
            await self._close_producer(producer, abandon=True)
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
        self._producer = producer
        return True

    async def _abandon(self, reason: str) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            logger.info("dropping the Kafka connection: %s", reason)
            await self._close_producer(producer, abandon=True)

    @staticmethod
    async def _close_producer(producer: AIOKafkaProducer, *, abandon: bool) -> None:
        """Close a producer within a bound; ``abandon`` fails what it still holds first."""
        if abandon:
            _fail_pending(producer)
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

    # ------------------------------------------------------------------ helpers

    async def _reserve_sequences(self) -> None:
        """Persist the next block of sequence numbers before any of it is handed out."""
        task = self._seq_task
        if task is None:
            task = self._seq_task = asyncio.create_task(
                self._store_sequence_floor(self._next_seq + SEQUENCE_BLOCK)
            )
        if self._seq_limit is not None and self._next_seq >= self._seq_limit:
            await asyncio.shield(task)
            if self._next_seq >= self._seq_limit:
                raise SpoolError("cannot persist the sequence high-water mark in the spool")

    async def _store_sequence_floor(self, target: int) -> None:
        try:
            spool = self._spool
            if spool is None:
                return
            pid = self._config.producer_id
            await self._in_io(functools.partial(spool.store_sequence_floor, pid, target))
            if self._seq_limit is not None:
                self._seq_limit = max(self._seq_limit, target)
        except Exception as exc:
            logger.error("cannot reserve sequence numbers: %r", exc)
        finally:
            self._seq_task = None

    async def _in_io(self, fn: Callable[[], T]) -> T:
        if self._io is None:
            raise EmitterUnavailableError("emitter has no spool")
        return await asyncio.get_running_loop().run_in_executor(self._io, fn)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until ``predicate()`` holds (re-checked on every state change) or time runs out."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not predicate():
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            try:
                if deadline is None:
                    await fut
                else:
                    async with asyncio.timeout_at(deadline):
                        await fut
            except TimeoutError:
                return predicate()
            finally:
                if fut in self._waiters:
                    self._waiters.remove(fut)
        return True

    @staticmethod
    async def _cancel(task: asyncio.Task[None] | None) -> None:
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # ------------------------------------------------------------------ observing

    async def flush(self) -> None:
        """Wait until every event accepted so far is acknowledged by Kafka (or lost).

        With a spool this includes the spooled events, so it waits for as long as Kafka
        is down. Raises ``ProducerError`` if events were lost (only possible without a
        spool).
        """
        if self._spool is None:
            if self._producer is not None:
                await self._producer.flush()
            await self._wait_for(lambda: not self._inflight)
        else:
            await self._wait_for(self._idle)
        if self._lost:
            raise ProducerError(f"{self._lost} event(s) could not be delivered to Kafka")

    def health(self) -> EmitterHealth:
        spool = self._spool
        candidates: list[int] = []
        if self._inflight:
            candidates.append(next(iter(self._inflight.values())).entry.created_ms)
        if self._writing:
            candidates.append(self._writing[0].entry.created_ms)
        if self._to_spool:
            candidates.append(self._to_spool[0].entry.created_ms)
        if spool is not None and spool.oldest_created_ms is not None:
            candidates.append(spool.oldest_created_ms)
        age = max(0.0, (_now_ms() - min(candidates)) / 1000) if candidates else 0.0
        spooled = len(self._writing) + len(self._to_spool)
        spool_bytes = 0
        if spool is not None:
            spooled += spool.pending_records
            spool_bytes = spool.pending_bytes + spool.reserved_bytes
        return EmitterHealth(
            state=self._state,
            queued=len(self._inflight),
            spooled=spooled,
            spool_bytes=spool_bytes,
            oldest_undelivered_age_seconds=age,
            sent=self._sent,
            failed=self._failures,
            lost=self._lost,
            next_sequence=self._next_seq,
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
