"""aiokafka producers whose ``send`` returns at once: records queue here and a task of
the event loop hands them to aiokafka in ``send`` order; ``SigningProducer`` also signs
every record, one seal per partition batch.

Invariant: ``send`` returns a future at once (as aiokafka's does) unless ``max_pending``
records wait in the queue, so ``emit()`` never waits for aiokafka's per-partition batch
to drain; the queue is handed to aiokafka in ``send`` order by one task running between
the caller's awaits (docs/design/emitter.md, "Latency"). A ``SigningProducer`` record
carries the ``philedger-auth`` header built by ``producers.signing.BatchSigner`` for the
batch it was signed in, and its value unchanged; a signed batch holds records for one
partition only (computed here as aiokafka's own partitioner would, and passed to
aiokafka explicitly), and its records reach that partition in ``send`` order, the
seal-carrying first record first (docs/producer-auth.md). Whatever is not handed to
aiokafka when the producer is abandoned fails its future, as aiokafka's own pending
batches do, so the emitter spools it.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from producers.signing import ENVELOPE_HEADER, SIGN_BATCH, BatchSigner

_Pending = tuple[str, bytes, "bytes | None", "asyncio.Future[Any]"]

#: Records taken from the queue at a time (one seal per partition with a signer).
HAND_BATCH = SIGN_BATCH
#: Records the queue holds before ``send`` waits for room.
MAX_PENDING = 4 * HAND_BATCH


def _chain(outer: asyncio.Future[Any], inner: asyncio.Future[Any]) -> None:
    if outer.done():
        return
    if inner.cancelled():
        outer.cancel()
    elif (exc := inner.exception()) is not None:
        outer.set_exception(exc)
    else:
        outer.set_result(inner.result())


def _fail(pending: list[_Pending], exc: BaseException) -> None:
    for *_, fut in pending:
        if not fut.done():
            fut.set_exception(exc)
            fut.exception()  # the emitter handles it through its own callback


class QueuedProducer(AIOKafkaProducer):  # type: ignore[misc]
    """``AIOKafkaProducer`` whose ``send`` queues; a task hands the queue to aiokafka."""

    def __init__(self, *, max_pending: int = MAX_PENDING, **kwargs: Any):
        super().__init__(**kwargs)
        self._max_pending = max_pending
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._space: asyncio.Event | None = None

    @property
    def unsent(self) -> int:
        """Records queued here, not yet handed to aiokafka."""
        return len(self._queue)

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        if value is None or partition is not None or timestamp_ms is not None or headers:
            raise ValueError("a queued producer sends values with a key only")
        while len(self._queue) >= self._max_pending:
            if self._space is None:
                self._space = asyncio.Event()
            self._space.clear()
            await self._space.wait()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((topic, value, key, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_loop(), name="emitter-sender")
        return fut

    async def _flush_loop(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:HAND_BATCH], self._queue[HAND_BATCH:]
            if self._space is not None:
                self._space.set()
            sent: set[int] = set()
            error: BaseException = KafkaConnectionError("the connection was abandoned")
            try:
                await self._hand_over(batch, sent)
            except Exception as exc:
                error = exc
            finally:
                if len(sent) < len(batch):  # failed, or cancelled (abandoned) mid-batch
                    _fail([p for p in batch if id(p) not in sent], error)

    async def _hand_over(self, batch: list[_Pending], sent: set[int]) -> None:
        """Hand records to aiokafka in order; the first failure fails the rest (they are
        spooled behind it, in order)."""
        for item in batch:
            topic, value, key, fut = item
            inner = await AIOKafkaProducer.send(self, topic, value=value, key=key)
            inner.add_done_callback(functools.partial(_chain, fut))
            sent.add(id(item))

    def fail_unsent(self, exc: BaseException) -> None:
        """Fail every record not yet handed to aiokafka (the connection is abandoned)."""
        pending, self._queue = self._queue, []
        _fail(pending, exc)
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
        if self._space is not None:
            self._space.set()

    async def flush(self) -> None:
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher])
        await super().flush()

    async def stop(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher])
        await super().stop()


class SigningProducer(QueuedProducer):
    """A ``QueuedProducer`` that signs each batch it hands over (up to ``SIGN_BATCH``)."""

    def __init__(self, *, signer: BatchSigner, **kwargs: Any):
        super().__init__(**kwargs)
        self._signer = signer

    async def _hand_over(self, batch: list[_Pending], sent: set[int]) -> None:
        for (topic, partition), group in (await self._partitioned(batch)).items():
            await self._send_sealed(topic, partition, group, sent)

    async def _partitioned(self, batch: list[_Pending]) -> dict[tuple[str, int], list[_Pending]]:
        """The batch split per destination partition, each in send order. A keyed record
        goes where aiokafka's partitioner (murmur2 of the key) would send it; keyless
        records of a topic all go to one partition the partitioner picks."""
        groups: dict[tuple[str, int], list[_Pending]] = {}
        keyless: dict[str, int] = {}
        for topic in {t for t, _, _, _ in batch}:
            await self.partitions_for(topic)  # metadata; at once when already known
        for item in batch:
            topic, value, key, _ = item
            if key is None and topic in keyless:
                partition = keyless[topic]
            else:
                partition = self._partition(topic, None, key, value, key, value)
                if key is None:
                    keyless[topic] = partition
            groups.setdefault((topic, partition), []).append(item)
        return groups

    async def _send_sealed(
        self, topic: str, partition: int, group: list[_Pending], sent: set[int]
    ) -> None:
        """Sign one partition's batch (one seal) and hand it to aiokafka in order."""
        envelopes = self._signer.envelopes([(t, v) for t, v, _, _ in group])
        for i, (item, envelope) in enumerate(zip(group, envelopes, strict=True)):
            _, value, key, fut = item
            try:
                inner = await AIOKafkaProducer.send(
                    self,
                    topic,
                    value=value,
                    key=key,
                    partition=partition,
                    headers=[(ENVELOPE_HEADER, envelope)],
                )
            except Exception as exc:
                if i == 0:  # the seal did not go: its records would be refused
                    raise
                if not fut.done():
                    fut.set_exception(exc)
                    fut.exception()
            else:
                inner.add_done_callback(functools.partial(_chain, fut))
            sent.add(id(item))
