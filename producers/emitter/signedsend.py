"""An aiokafka producer that signs every record it sends, one seal per partition batch.

Invariant: every record this producer hands to Kafka carries the ``philedger-auth``
header built by ``producers.signing.BatchSigner`` for the batch it was signed in, and
its value unchanged; a batch holds records for one partition only (computed here as
aiokafka's own partitioner would, and passed to aiokafka explicitly), and its records
reach that partition in the order ``send`` was called, the seal-carrying first record
first (the idempotent producer keeps per-partition order). ``send``
returns at once (a future, as aiokafka's does) unless ``max_pending`` records wait for
signing; the signing itself runs in a task of the event loop between the caller's
awaits, so ``emit()`` does not pay for the Ed25519 signature (docs/producer-auth.md).
Whatever is not handed to aiokafka when the producer is abandoned fails its future,
as aiokafka's own pending batches do, so the emitter spools it.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from producers.signing import ENVELOPE_HEADER, SIGN_BATCH, BatchSigner

_Pending = tuple[str, bytes, "bytes | None", "asyncio.Future[Any]"]


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


class SigningProducer(AIOKafkaProducer):  # type: ignore[misc]
    """``AIOKafkaProducer`` whose ``send`` signs (batches of up to ``SIGN_BATCH``)."""

    def __init__(self, *, signer: BatchSigner, max_pending: int = 8 * SIGN_BATCH, **kwargs: Any):
        super().__init__(**kwargs)
        self._signer = signer
        self._max_pending = max_pending
        self._queue: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._space: asyncio.Event | None = None

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
            raise ValueError("a signing producer sends values with a key only")
        while len(self._queue) >= self._max_pending:
            if self._space is None:
                self._space = asyncio.Event()
            self._space.clear()
            await self._space.wait()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((topic, value, key, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_loop(), name="emitter-signer")
        return fut

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

    async def _flush_loop(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:SIGN_BATCH], self._queue[SIGN_BATCH:]
            if self._space is not None:
                self._space.set()
            sent: set[int] = set()
            error: BaseException = KafkaConnectionError("the connection was abandoned")
            try:
                for (topic, partition), group in (await self._partitioned(batch)).items():
                    await self._send_sealed(topic, partition, group, sent)
            except Exception as exc:
                error = exc
            finally:
                if len(sent) < len(batch):  # failed, or cancelled (abandoned) mid-batch
                    _fail([p for p in batch if id(p) not in sent], error)

    async def _send_sealed(
        self, topic: str, partition: int, group: list[_Pending], sent: set[int]
    ) -> None:
        """Sign one partition's batch (one seal) and hand it to aiokafka in order."""
        envelopes = self._signer.envelopes([(t, v) for t, v, _, _ in group])
        for i, (item, envelope) in enumerate(zip(group, envelopes, strict=True)):
            _, value, key, fut = item
            try:
                inner = await super().send(
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

    def fail_unsigned(self, exc: BaseException) -> None:
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
