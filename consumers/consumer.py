"""The ledger consumer: Kafka topics in, ledger batches out, exactly once.

Invariant: Kafka offsets are authoritative only in PostgreSQL, where each batch's
position commits in the same transaction as its leaves. On every partition
assignment the consumer seeks to the stored position; Kafka's own commits are
advisory. A batch is appended only under the writer claim it was read under:
records read before a re-claim are read again from the stored position, never
appended past it. Every consumed record becomes exactly one of: a leaf, a
counted duplicate, or a quarantine row with a specific reason (``consumers.classify``);
a bad record never blocks its partition. Records are authenticated per poll
(``consumers.authpoll``); the index row of a leaf is ``consumers.projection``'s;
checkpoints are asked for by ``consumers.cadence``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaConnectionError, KafkaError

from consumers.authpoll import PollAuthenticator
from consumers.cadence import CheckpointCadence
from consumers.classify import classify, envelope_of, kafka_record
from ledger.audit.ingest import (
    Appender,
    AppendResult,
    BatchItem,
    Checkpointing,
    Rejected,
    WriterSchemaInfo,
)
from ledger.audit.producerauth import Authenticated, AuthFailure, ProducerSealSource
from ledger.errors import FencedError, LedgerError, UnavailableError
from producers.codec import Codec
from producers.events import utc_now
from producers.kafka_security import KafkaSecurity, client_kwargs
from producers.lifecycle import AsyncLifecycle

#: One poll's records by partition, each with its producer-authentication envelope.
_Pairs = list[tuple[TopicPartition, list[tuple[ConsumerRecord[bytes, bytes], bytes | None]]]]
logger = logging.getLogger(__name__)

#: The longest pause between attempts to reach Kafka at start.
START_RETRY_MAX_SECONDS = 5.0
#: How long the consumer keeps trying to reach Kafka at start before it gives up.
START_RETRY_TOTAL_SECONDS = 120.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerConfig:
    bootstrap_servers: str
    topics: tuple[str, ...]
    #: The topics that carry CriticalResultRelay events, and only those; every other
    #: topic carries the other kinds. A record on the wrong one is quarantined.
    relay_topics: frozenset[str] = frozenset()
    #: The topics that carry RegistryChange events, and only those (one partition each:
    #: one order of registry changes). Empty: a registry change is quarantined anywhere.
    registry_topics: frozenset[str] = frozenset()
    group_id: str = "phi-ledger"
    #: Records taken per poll (bounded work in hand). Bigger batches amortise each
    #: partition's transaction (lock, position row, fsync): 2,000 -> 10,000 took one
    #: consumer from 9,500 to 12,400 events/s here (benchmarks/ingest.py).
    max_batch: int = 10_000
    poll_timeout_ms: int = 200
    #: TLS and SASL settings (default PLAINTEXT; docs/kafka.md).
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    #: How far in the future an event time may lie before the record is quarantined
    #: (reason ``time_out_of_range``): producers' clocks drift.
    max_clock_skew_seconds: float = 300.0
    #: How long the group waits for a silent member before moving its partitions away.
    session_timeout_ms: int = 10_000
    #: Static group membership (KIP-345): a restarted consumer with the same instance id
    #: gets its partitions back at once instead of after the session timeout.
    group_instance_id: str | None = None
    #: Producer authentication (docs/producer-auth.md). Off ONLY for the side-by-side
    #: benchmark (benchmarks/producer_auth.py); never turn it off in a deployment.
    authenticate_producers: bool = True
    #: How often the producer key registry is re-read (a revocation takes effect within
    #: this); an unknown key id triggers a re-read at most every ``..._min_seconds``.
    producer_keys_refresh_seconds: float = 30.0
    producer_keys_refresh_min_seconds: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Polled:
    """One partition's batch of one poll, and the writer epoch it was read under."""

    tp: TopicPartition
    epoch: int | None
    items: list[BatchItem]
    #: ``time.monotonic()`` when the poll returned (batch latency runs from here).
    polled_at: float = 0.0


class BatchTimings(Protocol):
    """Where the consumer reports how long its batches take (``consumers.metrics``)."""

    def batch(self, seconds: float) -> None:
        """From the poll's return to the batch appended and counted."""

    def commit(self, seconds: float) -> None:
        """The append transaction alone (leaves, index, position: one commit)."""


@dataclass
class ConsumerStats:
    appended: int = 0
    duplicates: int = 0
    quarantined: int = 0
    skipped: int = 0
    batches: int = 0
    fenced: int = 0
    #: Records dropped because the claim they were read under is not this writer's any
    #: more (read around a rebalance); they are re-read from the stored position.
    unclaimed: int = 0
    #: Security alerts the appended batches raised (one per quarantined record, mostly).
    alerts: int = 0
    last_append: datetime | None = None
    by_reason: dict[str, int] = field(default_factory=dict)

    def record(self, result: AppendResult, items: Sequence[BatchItem]) -> None:
        """Count one appended batch: its outcome and each rejected record's reason."""
        self.appended += result.appended
        self.duplicates += result.duplicates
        self.quarantined += result.quarantined
        self.skipped += result.skipped
        self.alerts += result.alerts
        self.batches += 1
        self.last_append = utc_now()
        for item in items:
            if isinstance(item, Rejected):
                self.by_reason[item.reason] = self.by_reason.get(item.reason, 0) + 1


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, position each partition at the offset stored in PostgreSQL."""

    def __init__(self, owner: LedgerConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # Let an in-flight append finish; its position is committed with it either way.
        async with self._owner._batch_lock:
            for tp in revoked:
                # No claim, no append: batches of these partitions still in hand are dropped.
                self._owner._epochs.pop(tp, None)
                self._owner._next_offsets.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        delay = 0.5
        while not self._owner._stopping.is_set():  # stopping: leave them paused
            try:
                # No append while the partitions are claimed and positioned (an append's
                # back-pressure resume must not un-pause a partition not yet positioned).
                async with self._owner._batch_lock:
                    await self._owner._seek_assigned(assigned)
                return
            except UnavailableError as exc:
                # Without the stored position and a writer claim we must not consume: wait
                # for the ledger (the group's rebalance timeout is minutes).
                logger.warning("cannot position assigned partitions (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


class LedgerConsumer(AsyncLifecycle):
    """``async with LedgerConsumer(...) as c: await c.run()``; ``stop()`` ends ``run``."""

    def __init__(
        self,
        *,
        config: ConsumerConfig,
        appender: Appender,
        codec: Codec,
        checkpointer: Checkpointing | None = None,
        key_source: ProducerSealSource | None = None,
        timings: BatchTimings | None = None,
    ) -> None:
        self._gate: PollAuthenticator | None = None
        if config.authenticate_producers:
            if key_source is None:
                raise ValueError("producer authentication needs a key source (the appender)")
            self._gate = PollAuthenticator(
                source=key_source,
                refresh_seconds=config.producer_keys_refresh_seconds,
                refresh_min_seconds=config.producer_keys_refresh_min_seconds,
            )
        self._config = config
        self._appender = appender
        self._codec = codec
        self._cadence = CheckpointCadence(checkpointer)
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self._batch_lock = asyncio.Lock()
        self._epochs: dict[TopicPartition, int] = {}
        #: The next offset the ledger holds for each assigned partition (lag's floor).
        self._next_offsets: dict[TopicPartition, int] = {}
        self._timings = timings
        #: Why the last poll failed (an exception's type name); None after a good poll.
        self.kafka_error: str | None = "not started"
        self._writer_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stats = ConsumerStats()

    async def start(self) -> None:
        if self._consumer is not None:
            return
        await self._appender.register_schemas(
            [
                WriterSchemaInfo(
                    fingerprint=s.fingerprint,
                    full_name=s.full_name,
                    canonical_form=s.canonical_form,
                    schema_json=s.schema_json,
                )
                for s in self._codec.schemas
            ]
        )
        consumer = await self._connected()
        consumer.subscribe(list(self._config.topics), listener=_SeekToStored(self))
        self._consumer = consumer
        self._stopping.clear()

    async def _connected(self) -> AIOKafkaConsumer:
        """A started Kafka consumer: while the broker cannot be reached (a consumer
        started, or restarted by its supervisor, while the broker restarts), it retries
        with a growing pause, logging each failure, for up to START_RETRY_TOTAL_SECONDS;
        then the error stands (a wrong password or address looks the same to aiokafka,
        and must not be retried for ever)."""
        pause = 0.5
        deadline = asyncio.get_running_loop().time() + START_RETRY_TOTAL_SECONDS
        while True:
            consumer = self._new_kafka_consumer()
            try:
                await consumer.start()
            except KafkaConnectionError as exc:
                await consumer.stop()
                if asyncio.get_running_loop().time() + pause > deadline:
                    raise
                logger.warning("Kafka unreachable (%s); retrying in %.1f s", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, START_RETRY_MAX_SECONDS)
                continue
            return consumer

    def _new_kafka_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self._config.bootstrap_servers,
            group_id=self._config.group_id,
            client_id="phi-ledger-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self._config.max_batch,
            session_timeout_ms=self._config.session_timeout_ms,
            group_instance_id=self._config.group_instance_id,
            heartbeat_interval_ms=max(1000, self._config.session_timeout_ms // 3),
            **client_kwargs(self._config.kafka_security),
        )

    async def stop(self) -> None:
        """Let an append in progress finish, then stop Kafka. The batch lock is not held
        while aiokafka stops: its group coordinator may be inside our rebalance callback,
        waiting for that lock, and aiokafka's stop waits for the coordinator (a process
        that hung for good on SIGTERM after PostgreSQL went away mid-assignment)."""
        self._stopping.set()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            async with self._batch_lock:
                pass  # no append starts after this: run() stops at _stopping
            await consumer.stop()

    async def kafka_answers(self) -> bool:
        """Whether a broker answers a metadata request now (readiness: a poll does not
        fail when the brokers go away, it only comes back empty)."""
        consumer = self._consumer
        if consumer is None:
            return False
        # aiokafka refreshes metadata on its own task; True once a broker answered.
        return bool(await consumer._client.force_metadata_update())

    def lag(self) -> dict[tuple[str, int], int]:
        """Per assigned partition: records Kafka holds (up to its last stable offset, as
        this read_committed consumer sees them) that the ledger does not yet."""
        consumer = self._consumer
        if consumer is None:
            return {}
        out: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            end = consumer.last_stable_offset(tp)
            if end is None:
                end = consumer.highwater(tp)
            ours = self._next_offsets.get(tp)
            if end is not None and ours is not None:
                out[(tp.topic, tp.partition)] = max(0, end - ours)
        return out

    async def _seek_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        # aiokafka fetches for a new assignment while this callback runs; nothing fetched
        # from these partitions may be appended before they are claimed and positioned.
        consumer.pause(*assigned)
        by_topic: dict[str, list[int]] = {}
        for tp in assigned:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        for topic, partitions in by_topic.items():
            for partition in partitions:
                # Claim first: from now on any older writer of this log is fenced, so the
                # stored position read next cannot move under us.
                self._epochs[TopicPartition(topic, partition)] = await self._appender.claim(
                    topic=topic, partition=partition, writer_id=self._writer_id
                )
            stored = await self._appender.committed_offsets(topic, partitions)
            for partition in partitions:
                tp = TopicPartition(topic, partition)
                if partition in stored:
                    consumer.seek(tp, stored[partition])
                    self._next_offsets[tp] = stored[partition]
                else:
                    await consumer.seek_to_beginning(tp)
        consumer.resume(*assigned)  # a partition fenced earlier may be ours again
        logger.info("assigned %d partition(s); positioned from the ledger", len(assigned))

    async def run(self) -> None:
        """Consume until ``stop()``; each partition's batch is one ledger transaction.

        Two stages overlap: while one poll's batches are being appended (PostgreSQL
        working, this process waiting), the next poll is fetched and classified
        (decode, validate, leaf). The hand-over queue holds one classified poll, so
        the work in hand is bounded by two polls. Correctness does not depend on the
        overlap: each append re-checks the stored position and the writer epoch in its
        own transaction, so a batch classified before a rebalance is either still ours
        to append or is fenced/skipped there.
        """
        handover: asyncio.Queue[list[_Polled]] = asyncio.Queue(1)
        fetcher = asyncio.create_task(self._fetch_loop(handover), name="ledger-fetch")
        try:
            while not self._stopping.is_set():
                consumer = self._consumer
                if consumer is None or fetcher.done():
                    break
                try:
                    polled = await asyncio.wait_for(handover.get(), timeout=0.5)
                except TimeoutError:
                    await self._cadence.sweep()
                    continue
                async with self._batch_lock:
                    if self._stopping.is_set():
                        break  # stop() is under way; the ledger's stored positions stand
                    await asyncio.gather(*(self._append_partition(consumer, p) for p in polled))
                await self._cadence.sweep()
        finally:
            fetcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetcher  # re-raises what ended the fetcher, if it failed

    async def _fetch_loop(self, handover: asyncio.Queue[list[_Polled]]) -> None:
        while not self._stopping.is_set():
            if self._consumer is None:
                return
            polled = await self._poll()
            if polled:
                await handover.put(polled)

    async def _poll(self) -> list[_Polled]:
        """One poll, classified, each partition's batch with the claim it was read under.

        The claim is taken as ``getmany`` returns, with no ``await`` in between: a batch
        read before a rebalance carries the epoch of the claim it was read under, and is
        appended only if that claim is still this writer's (``_append_partition``).
        After a re-claim the partition was sought to the stored position, so such a batch
        is re-read from there; appending it under the new claim could skip the records
        between the stored position and the batch, for good.
        """
        consumer = self._consumer
        if consumer is None:
            return []
        try:
            batches = await consumer.getmany(
                timeout_ms=self._config.poll_timeout_ms, max_records=self._config.max_batch
            )
        except KafkaError as exc:
            self.kafka_error = type(exc).__name__
            logger.warning("Kafka poll failed (%s); retrying", type(exc).__name__)
            await asyncio.sleep(1.0)
            return []
        self.kafka_error = None
        polled_at = time.monotonic()
        claims = {tp: self._epochs.get(tp) for tp in batches}
        now = utc_now()
        polled = [(tp, [(m, envelope_of(m)) for m in ms]) for tp, ms in batches.items() if ms]
        verdicts: Iterator[Authenticated | AuthFailure | None] = itertools.repeat(None)
        try:
            verdicts = await self._verdicts(polled) or verdicts
        except UnavailableError as exc:
            # The producers' keys live in PostgreSQL. Read these records again once it
            # answers: aiokafka's position moved past them in memory only.
            self._read_again(consumer, polled, claims)
            logger.warning("cannot authenticate a poll (%s); reading it again", exc)
            await asyncio.sleep(1.0)
            return []
        return [
            _Polled(
                tp=tp,
                epoch=claims[tp],
                items=self._classify_all(pairs, verdicts, now),
                polled_at=polled_at,
            )
            for tp, pairs in polled
        ]

    async def _verdicts(
        self, polled: _Pairs
    ) -> Iterator[Authenticated | AuthFailure | None] | None:
        """Each record's producer authentication, in poll order (None: not required)."""
        gate = self._gate
        if gate is None:
            return None
        await gate.refresh_keys(on_unknown_key=False)
        rows = [(m.topic, m.value or b"", e) for _, pairs in polled for m, e in pairs]
        return iter(await gate.authenticate_poll(rows))

    def _read_again(
        self,
        consumer: AIOKafkaConsumer,
        polled: _Pairs,
        claims: dict[TopicPartition, int | None],
    ) -> None:
        """Move each partition back to the first record of its batch, unless it was claimed
        again since the poll (that claim positioned it from the ledger: keep that)."""
        assigned = consumer.assignment()
        for tp, pairs in polled:
            if tp in assigned and pairs and self._epochs.get(tp) == claims[tp]:
                consumer.seek(tp, pairs[0][0].offset)

    def _classify_all(
        self,
        pairs: list[tuple[ConsumerRecord[bytes, bytes], bytes | None]],
        verdicts: Iterator[Authenticated | AuthFailure | None],
        now: datetime,
    ) -> list[BatchItem]:
        """One partition's records of a poll, classified with their verdicts in order."""
        skew = timedelta(seconds=self._config.max_clock_skew_seconds)
        auth = None if self._gate is None else self._gate.authenticator
        return [
            classify(
                kafka_record(m),
                self._codec,
                now=now,
                max_clock_skew=skew,
                auth=auth,
                envelope=e,
                verdict=next(verdicts),
                relay_topics=self._config.relay_topics,
                registry_topics=self._config.registry_topics,
            )
            for m, e in pairs
        ]

    async def _append_partition(self, consumer: AIOKafkaConsumer, polled: _Polled) -> None:
        result = await self._append_retrying(consumer, polled)
        if result is not None:
            await self._after_append(consumer, polled, result)

    async def _append_retrying(
        self, consumer: AIOKafkaConsumer, polled: _Polled
    ) -> AppendResult | None:
        """Append one batch under the claim it was read under, retrying while the ledger
        cannot take writes; None when the batch is dropped (unclaimed or fenced)."""
        tp, items = polled.tp, polled.items
        result = None
        delay = 0.5
        paused: set[TopicPartition] = set()
        while result is None:
            epoch = self._epochs.get(tp)
            if epoch is None or epoch != polled.epoch:
                # Not claimed by this writer when read, or claimed again since (a
                # rebalance): the partition was sought to the stored position at the
                # claim, so these records are read again from there.
                self.stats.unclaimed += len(items)
                return None
            try:
                started = time.monotonic()
                result = await self._appender.append(
                    topic=tp.topic, partition=tp.partition, items=items, epoch=epoch
                )
                if self._timings is not None:
                    self._timings.commit(time.monotonic() - started)
            except FencedError as exc:
                # Another consumer owns this log now: drop the batch (it will append it, from
                # the stored position) and stop fetching the partition until a rebalance.
                logger.warning("%s; dropping %d record(s)", exc, len(items))
                self.stats.fenced += 1
                consumer.pause(tp)
                return None
            except (LedgerError, OSError) as exc:
                if self._stopping.is_set():
                    raise
                if not paused:
                    # Backpressure: stop fetching while the ledger cannot take writes.
                    paused = set(consumer.assignment())
                    consumer.pause(*paused)
                logger.warning(
                    "append to %s/%d failed (%s); retrying in %.1fs",
                    tp.topic,
                    tp.partition,
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if paused:
            consumer.resume(*(p for p in paused if p in consumer.assignment()))
        return result

    async def _after_append(
        self, consumer: AIOKafkaConsumer, polled: _Polled, result: AppendResult
    ) -> None:
        """Count the batch, sign a checkpoint when due, and tell Kafka the position."""
        tp = polled.tp
        if self._gate is not None:  # the batch's seals are in the database now
            self._gate.committed(item.seal for item in polled.items)
        self.stats.record(result, polled.items)
        self._next_offsets[tp] = result.next_offset
        if self._timings is not None:
            self._timings.batch(time.monotonic() - polled.polled_at)
        if result.quarantined:
            logger.warning(
                "%s/%d: %d record(s) quarantined", tp.topic, tp.partition, result.quarantined
            )
        await self._cadence.after_append(result)
        # Advisory only: the authoritative position is in PostgreSQL.
        with contextlib.suppress(KafkaError):
            await consumer.commit({tp: result.next_offset})
