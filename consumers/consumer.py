"""The ledger consumer: Kafka topics in, ledger batches out, exactly once.

Invariant: Kafka offsets are authoritative only in PostgreSQL, where each batch's
position commits in the same transaction as its leaves. On every partition
assignment the consumer seeks to the stored position; Kafka's own commits are
advisory. A batch is appended only under the writer claim it was read under:
records read before a re-claim are read again from the stored position, never
appended past it. Every consumed record becomes exactly one of: a leaf, a
counted duplicate, or a quarantine row with a specific reason; a bad record
never blocks its partition. A record becomes a leaf only if it is authenticated
as its producer's (``ledger.audit.producerauth``; docs/producer-auth.md); every record
that is not raises a security alert.

``index_fields`` / ``event_index`` project an event onto the ``events`` columns; the
verifier's ``ledger.verify.projection.project_event`` computes the same columns on its own,
on purpose: the verifier must not trust the code it checks. Neither imports the other;
``tests/unit/test_projections_agree.py`` holds them equal for every event kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypedDict, cast

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from ledger.audit import disclosure
from ledger.audit.ingest import (
    Accepted,
    Appender,
    BatchItem,
    Checkpointing,
    IndexFields,
    Rejected,
    WriterSchemaInfo,
)
from ledger.audit.producerauth import (
    ENVELOPE_HEADER,
    REASON_UNKNOWN_KEY,
    REASON_UNKNOWN_SEAL,
    Authenticated,
    AuthFailure,
    ProducerAuthenticator,
    ProducerSealSource,
    check_producer,
    envelope_ref,
)
from ledger.errors import FencedError, LedgerError, MalformedInputError, UnavailableError
from ledger.log.leaf import MAX_LEAF_BYTES, KafkaRecord, encode_leaf, leaf_overhead
from producers.codec import Codec
from producers.errors import DecodeError
from producers.events import (
    ACCESS_SCHEMA_NAME,
    AUDIT_LOG_USED_SCHEMA_NAME,
    MAX_FUTURE_SKEW,
    RELAY_SCHEMA_NAME,
    SECURITY_SCHEMA_NAME,
    AuditEvent,
    Record,
    schema_name,
    to_record,
    utc_now,
)
from producers.kafka_security import KafkaSecurity, client_kwargs
from producers.lifecycle import AsyncLifecycle

logger = logging.getLogger(__name__)

REASON_OVERSIZE = "oversize"
DEFAULT_SKEW = MAX_FUTURE_SKEW
REASON_EMPTY = "empty_value"
#: A valid event on a topic its schema does not belong to (a PHI access on the relay
#: topic, a relay on the access topic): producers route by schema, so this was not one.
REASON_WRONG_TOPIC = "wrong_topic"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumerConfig:
    bootstrap_servers: str
    topics: tuple[str, ...]
    #: The topics that carry CriticalResultRelay events, and only those; every other
    #: topic carries the other kinds. A record on the wrong one is quarantined.
    relay_topics: frozenset[str] = frozenset()
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
    last_append: datetime | None = None
    by_reason: dict[str, int] = field(default_factory=dict)


class _Head(TypedDict):
    event_id: uuid.UUID
    event_time: datetime
    producer_id: str
    producer_seq: int
    facility_id: str


class _People(TypedDict):
    patient_id: str | None
    patient_issuer: str | None
    patient_state: str | None
    user_id: str
    user_name: str | None
    user_role: str | None
    user_org: str | None


def _head(record: Record) -> _Head:
    return _Head(
        event_id=cast(uuid.UUID, record["event_id"]),
        event_time=cast(datetime, record["event_time"]).astimezone(UTC),
        producer_id=cast(str, record["producer_id"]),
        producer_seq=cast(int, record["producer_seq"]),
        facility_id=cast(str, cast(Record, record["facility"])["id"]),
    )


def _people(record: Record, user_field: str) -> _People:
    """The user (``actor`` or ``sender``) and the patient, if the event names one."""
    user = cast(Record, record[user_field])
    patient = cast("Record | None", record.get("patient")) or {}
    return _People(
        patient_id=cast("str | None", patient.get("id")),
        patient_issuer=cast("str | None", patient.get("issuer")),
        patient_state=cast("str | None", patient.get("state")),
        user_id=cast(str, user["user_id"]),
        user_name=cast("str | None", user.get("name")),
        user_role=cast("str | None", user.get("role")),
        user_org=cast("str | None", user.get("organization")),
    )


def index_fields(full_name: str, record: Record) -> IndexFields:
    """Project a validated Avro record onto the ledger's query index.

    ``ledger.verify.project_event`` recomputes the same columns independently from the
    stored leaf; a test keeps the two in agreement for every kind.
    """
    head = _head(record)
    if full_name == AUDIT_LOG_USED_SCHEMA_NAME:
        return IndexFields(
            kind="audit_log_used",
            **head,
            **_people(record, "actor"),
            dicom_event_id="110101",
            action="R",
            outcome=cast(str, record["outcome"]),
            study_uid=None,
            accession=None,
            network_address=cast("str | None", record.get("network_address")),
            purpose_of_use=None,
            disclosed=tuple((r.origin, r.start, r.end) for r in disclosure.from_record(record)),
        )
    if full_name == SECURITY_SCHEMA_NAME:
        return IndexFields(
            kind="security_event",
            **head,
            **_people(record, "actor"),
            dicom_event_id=cast(str, record["dicom_event_id"]),
            action=cast(str, record["action"]),
            outcome=cast(str, record["outcome"]),
            study_uid=None,
            accession=None,
            network_address=cast("str | None", record.get("network_address")),
            purpose_of_use=cast("str | None", record.get("purpose_of_use")),
        )
    study = cast("Record | None", record.get("study"))
    study_uid = None if study is None else cast(str, study["uid"])
    accession = None if study is None else cast("str | None", study.get("accession"))
    if full_name == ACCESS_SCHEMA_NAME:
        return IndexFields(
            kind="phi_access",
            **head,
            **_people(record, "actor"),
            dicom_event_id=cast(str, record["dicom_event_id"]),
            action=cast(str, record["action"]),
            outcome=cast(str, record["outcome"]),
            study_uid=study_uid,
            accession=accession,
            network_address=cast("str | None", record.get("network_address")),
            purpose_of_use=cast("str | None", record.get("purpose_of_use")),
        )
    return IndexFields(
        kind="critical_result_relay",
        **head,
        **_people(record, "sender"),
        dicom_event_id=None,
        action="E",
        outcome="SUCCESS" if record.get("communicated_at") is not None else "MINOR_FAILURE",
        study_uid=study_uid,
        accession=accession,
        network_address=None,
        purpose_of_use="TREAT",
    )


def event_index(event: AuditEvent) -> IndexFields:
    """The index row for a typed event (tests and tools; the consumer works on records)."""
    return index_fields(schema_name(event), to_record(event))


def classify(
    record: KafkaRecord,
    codec: Codec,
    *,
    now: datetime | None = None,
    max_clock_skew: timedelta = DEFAULT_SKEW,
    auth: ProducerAuthenticator | None = None,
    envelope: bytes | None = None,
    verdict: Authenticated | AuthFailure | None = None,
    relay_topics: frozenset[str] | None = None,
) -> BatchItem:
    """Turn one Kafka record into an ``Accepted`` leaf or a ``Rejected`` quarantine entry.

    With ``auth`` (the consumer always passes one unless a benchmark switched producer
    authentication off) the record is authenticated before it is decoded: a record that
    is not from a registered, unrevoked key, or whose event names another producer than
    the key's, is rejected with an alert and never reaches the ledger. A rejected record
    keeps its envelope (quarantine re-submission sends it again). A verified seal the
    record carried goes with the item either way (the appender stores it).

    With ``relay_topics`` (the consumer always gives it), an event is accepted only on
    the topic its schema belongs to: CriticalResultRelay on a relay topic, every other
    kind on any other topic; None skips that check (tools classifying synthetic topics).
    """
    if auth is not None and verdict is None:  # not checked with its poll
        try:
            verdict = auth.authenticate(topic=record.topic, value=record.value, envelope=envelope)
        except AuthFailure as exc:
            verdict = exc
    item = _classify(record, codec, now, max_clock_skew, verdict if auth else None, relay_topics)
    seal = None if verdict is None else verdict.seal
    if isinstance(item, Rejected) and (envelope is not None or seal is not None):
        return dataclasses.replace(item, envelope=envelope, seal=seal)
    if isinstance(item, Accepted) and seal is not None:
        return dataclasses.replace(item, seal=seal)
    return item


def _wrong_topic(
    record: KafkaRecord, schema_name: str, relay_topics: frozenset[str] | None
) -> Rejected | None:
    """A rejection when the event's schema does not belong on the record's topic."""
    if relay_topics is None:
        return None
    is_relay = schema_name == RELAY_SCHEMA_NAME
    if is_relay == (record.topic in relay_topics):
        return None
    where = "only on a relay topic" if is_relay else "never on a relay topic"
    return Rejected(
        record=record,
        reason=REASON_WRONG_TOPIC,
        detail=f"a {schema_name} event belongs {where}, not on {record.topic}",
    )


def _classify(
    record: KafkaRecord,
    codec: Codec,
    now: datetime | None,
    max_clock_skew: timedelta,
    verdict: Authenticated | AuthFailure | None,
    relay_topics: frozenset[str] | None,
) -> BatchItem:
    if not record.value:
        return Rejected(record=record, reason=REASON_EMPTY, detail="record has no value")
    size = leaf_overhead(record.topic, record.key) + len(record.value)
    if size > MAX_LEAF_BYTES:
        return Rejected(
            record=record,
            reason=REASON_OVERSIZE,
            detail=f"record would make a {size}-byte leaf; a leaf holds at most {MAX_LEAF_BYTES}",
        )
    if isinstance(verdict, AuthFailure):
        return Rejected(record=record, reason=verdict.reason, detail=verdict.detail, alert=True)
    try:
        schema, fields = codec.decode_valid(record.value, now=now, max_future_skew=max_clock_skew)
    except DecodeError as exc:
        return Rejected(record=record, reason=exc.reason, detail=str(exc))
    if verdict is not None:
        try:
            check_producer(verdict.key, cast(str, fields["producer_id"]))
        except AuthFailure as exc:
            return Rejected(record=record, reason=exc.reason, detail=exc.detail, alert=True)
    wrong = _wrong_topic(record, schema.full_name, relay_topics)
    if wrong is not None:
        return wrong
    try:
        leaf = encode_leaf(record)
    except MalformedInputError as exc:
        return Rejected(record=record, reason=REASON_OVERSIZE, detail=str(exc))
    return Accepted(
        record=record,
        leaf=leaf,
        index=index_fields(schema.full_name, fields),
        seal_ref=None if verdict is None else (verdict.seal_id, verdict.entry),
    )


def envelope_of(msg: ConsumerRecord[bytes, bytes]) -> bytes | None:
    """The producer-authentication header of a record (the first, if several)."""
    for name, value in msg.headers or ():
        if name == ENVELOPE_HEADER:
            return bytes(value) if value is not None else None
    return None


def _kafka_record(msg: ConsumerRecord[bytes, bytes]) -> KafkaRecord:
    return KafkaRecord(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        timestamp_ms=msg.timestamp,
        timestamp_type=msg.timestamp_type,
        key=msg.key,
        value=msg.value or b"",
    )


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

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        delay = 0.5
        while True:
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
    ) -> None:
        if config.authenticate_producers and key_source is None:
            raise ValueError("producer authentication needs a key source (the appender)")
        self._config = config
        self._key_source = key_source
        self._auth = ProducerAuthenticator() if config.authenticate_producers else None
        self._keys_read_at: float | None = None
        self._appender = appender
        self._codec = codec
        self._checkpointer = checkpointer
        self._last_sweep = 0.0
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self._batch_lock = asyncio.Lock()
        self._epochs: dict[TopicPartition, int] = {}
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
        consumer = AIOKafkaConsumer(
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
        await consumer.start()
        consumer.subscribe(list(self._config.topics), listener=_SeekToStored(self))
        self._consumer = consumer
        self._stopping.clear()

    async def stop(self) -> None:
        self._stopping.set()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            async with self._batch_lock:
                await consumer.stop()

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
                    await self._sweep_checkpoints()
                    continue
                async with self._batch_lock:
                    await asyncio.gather(*(self._append_partition(consumer, p) for p in polled))
                await self._sweep_checkpoints()
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
            logger.warning("Kafka poll failed (%s); retrying", type(exc).__name__)
            await asyncio.sleep(1.0)
            return []
        claims = {tp: self._epochs.get(tp) for tp in batches}
        await self._refresh_keys(on_unknown_key=False)
        auth = self._auth
        now = utc_now()
        skew = timedelta(seconds=self._config.max_clock_skew_seconds)
        polled = [(tp, [(m, envelope_of(m)) for m in ms]) for tp, ms in batches.items() if ms]
        verdicts: Iterator[Authenticated | AuthFailure | None] = itertools.repeat(None)
        if auth is not None:
            rows = [(m.topic, m.value or b"", e) for _, pairs in polled for m, e in pairs]
            checked = auth.authenticate_many(rows)
            unknown = any(
                isinstance(v, AuthFailure) and v.reason == REASON_UNKNOWN_KEY for v in checked
            )
            if unknown and await self._refresh_keys(on_unknown_key=True):
                checked = auth.authenticate_many(rows)  # a key registered since the last read
            checked = await self._with_stored_seals(rows, checked)
            verdicts = iter(checked)
        return [
            _Polled(
                tp=tp,
                epoch=claims[tp],
                items=[
                    classify(
                        _kafka_record(m),
                        self._codec,
                        now=now,
                        max_clock_skew=skew,
                        auth=auth,
                        envelope=e,
                        verdict=next(verdicts),
                        relay_topics=self._config.relay_topics,
                    )
                    for m, e in pairs
                ],
            )
            for tp, pairs in polled
        ]

    async def _with_stored_seals(
        self,
        rows: list[tuple[str, bytes, bytes | None]],
        checked: list[Authenticated | AuthFailure],
    ) -> list[Authenticated | AuthFailure]:
        """Records refused as ``unknown_seal`` checked again once their seals are read from
        the database (a seal read before this consumer started, or evicted from its
        cache), each verified like a received one; one query per poll at most. A seal that
        is not there either leaves its records ``unknown_seal``."""
        auth, source = self._auth, self._key_source
        redo = [
            i
            for i, v in enumerate(checked)
            if isinstance(v, AuthFailure) and v.reason == REASON_UNKNOWN_SEAL
        ]
        if not redo or auth is None or source is None:
            return checked
        wanted = {ref[0] for i in redo if (ref := envelope_ref(rows[i][2])) is not None}
        for seal in await source.producer_seals(sorted(wanted)):
            try:
                auth.add_seal(seal)
            except AuthFailure as exc:
                logger.warning("a stored producer seal does not verify (%s)", exc.reason)
        out = list(checked)
        for i, verdict in zip(redo, auth.authenticate_many([rows[i] for i in redo]), strict=True):
            out[i] = verdict
        return out

    async def _refresh_keys(self, *, on_unknown_key: bool) -> bool:
        """Re-read the key registry when it is due (``producer_keys_refresh_seconds``), or
        when a record named a key id not in it (a key registered since the last read):
        then at most once per ``producer_keys_refresh_min_seconds``, waiting out the rest
        of that interval, so records naming unknown keys slow this consumer to one poll
        per interval at worst. True when the registry was read."""
        auth, source = self._auth, self._key_source
        if auth is None or source is None:
            return False
        age = None if self._keys_read_at is None else time.monotonic() - self._keys_read_at
        if not on_unknown_key and age is not None:
            if age < self._config.producer_keys_refresh_seconds:
                return False
        elif age is not None:
            wait = self._config.producer_keys_refresh_min_seconds - age
            if wait > 0:
                await asyncio.sleep(wait)
        try:
            keys = await source.producer_keys()
        except (LedgerError, OSError) as exc:
            if self._keys_read_at is None:
                raise
            logger.warning("cannot re-read the producer key registry (%s)", exc)
            return False
        auth.replace_keys(keys)
        self._keys_read_at = time.monotonic()
        return True

    async def _sweep_checkpoints(self) -> None:
        """Time-based cadence: sign logs whose unsigned leaves have waited long enough."""
        if self._checkpointer is None:
            return
        now = time.monotonic()
        if now - self._last_sweep < self._checkpointer.sweep_interval:
            return
        self._last_sweep = now
        try:
            await self._checkpointer.checkpoint_all_due()
        except LedgerError as exc:
            logger.warning("checkpoint sweep failed: %s", exc)

    async def _append_partition(self, consumer: AIOKafkaConsumer, polled: _Polled) -> None:
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
                return
            try:
                result = await self._appender.append(
                    topic=tp.topic, partition=tp.partition, items=items, epoch=epoch
                )
            except FencedError as exc:
                # Another consumer owns this log now: drop the batch (it will append it, from
                # the stored position) and stop fetching the partition until a rebalance.
                logger.warning("%s; dropping %d record(s)", exc, len(items))
                self.stats.fenced += 1
                consumer.pause(tp)
                return
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
        s = self.stats
        s.appended += result.appended
        s.duplicates += result.duplicates
        s.quarantined += result.quarantined
        s.skipped += result.skipped
        s.batches += 1
        s.last_append = utc_now()
        for item in items:
            if isinstance(item, Rejected):
                s.by_reason[item.reason] = s.by_reason.get(item.reason, 0) + 1
        if result.quarantined:
            logger.warning(
                "%s/%d: %d record(s) quarantined", tp.topic, tp.partition, result.quarantined
            )
        if self._checkpointer is not None and result.appended:
            try:
                await self._checkpointer.after_append(
                    result.log_id, result.first_leaf + result.appended
                )
            except LedgerError as exc:
                # Never block ingestion on signing; the sweep retries and the lag is visible.
                logger.error("checkpoint for log %d failed: %s", result.log_id, exc)
        # Advisory only: the authoritative position is in PostgreSQL.
        with contextlib.suppress(KafkaError):
            await consumer.commit({tp: result.next_offset})
