"""The consumer under a PostgreSQL outage at the worst moments (seen in a fresh-clone run:
PostgreSQL stopped while the partitions were being assigned).

- ``stop()`` must not hold the batch lock while aiokafka stops: aiokafka's stop waits for
  its group coordinator, which may be inside our assignment callback waiting for that
  lock. The process hung for good, SIGTERM included.
- A poll whose producer authentication cannot reach PostgreSQL must not end the fetch
  loop (the process ended with nothing to restart it) nor drop the polled records
  (aiokafka's position had moved past them): they are read again.

aiokafka's consumer is stood in for by a small object with the few methods the code
calls; what is tested is the order of locks and seeks, not Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka.structs import ConsumerRecord, TopicPartition

from consumers.consumer import ConsumerConfig, LedgerConsumer, _SeekToStored
from ledger.errors import UnavailableError
from producers.codec import Codec

TP = TopicPartition("phi-access", 0)


class LedgerDown:
    """The appender while PostgreSQL is down."""

    async def claim(self, *, topic: str, partition: int, writer_id: str) -> int:
        raise UnavailableError("PostgreSQL unavailable: ConnectionRefusedError")

    async def committed_offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        raise UnavailableError("PostgreSQL unavailable: ConnectionRefusedError")


class StoppingKafka:
    """aiokafka's consumer as far as stop() goes: its stop waits for the coordinator,
    which is running our assignment callback."""

    def __init__(self, callback: asyncio.Task[None]) -> None:
        self.callback = callback

    def pause(self, *tps: TopicPartition) -> None:
        pass

    async def stop(self) -> None:
        await self.callback


def consumer() -> LedgerConsumer:
    return LedgerConsumer(
        config=ConsumerConfig(
            bootstrap_servers="127.0.0.1:1", topics=("phi-access",), authenticate_producers=False
        ),
        appender=LedgerDown(),  # type: ignore[arg-type]
        codec=Codec(),
    )


async def test_stop_ends_while_the_assignment_callback_waits_for_the_ledger() -> None:
    ledger = consumer()
    callback = asyncio.create_task(_SeekToStored(ledger).on_partitions_assigned([TP]))
    ledger._consumer = StoppingKafka(callback)  # type: ignore[assignment]
    await asyncio.sleep(0.2)  # the callback failed once and sleeps before retrying
    assert not callback.done()
    await asyncio.wait_for(ledger.stop(), timeout=10)  # hung for good before the fix
    assert callback.done()
    assert callback.exception() is None


class Polled:
    """aiokafka's consumer for one poll: the records it returns, the seeks made after."""

    def __init__(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        self.records = records
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        return {TP: self.records}

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


class KeysUnreachable:
    """Producer authentication while PostgreSQL is down; ``then`` runs first (a
    rebalance that re-claimed the partition meanwhile)."""

    def __init__(self, then: Any = None) -> None:
        self.then = then

    async def refresh_keys(self, *, on_unknown_key: bool) -> None:
        if self.then is not None:
            self.then()
        raise UnavailableError("PostgreSQL unavailable: CannotConnectNowError")


def records(first: int, n: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        ConsumerRecord(TP.topic, TP.partition, first + i, 0, 0, b"k", b"v", None, 1, 1, [])
        for i in range(n)
    ]


async def test_a_poll_that_cannot_be_authenticated_is_read_again_not_dropped() -> None:
    ledger = consumer()
    ledger._epochs[TP] = 3
    kafka = Polled(records(first=120, n=5))
    ledger._consumer = kafka  # type: ignore[assignment]
    ledger._gate = KeysUnreachable()  # type: ignore[assignment]
    assert await ledger._poll() == []  # raised UnavailableError out of the fetch loop before
    assert kafka.seeks == [(TP, 120)]


async def test_a_partition_claimed_again_meanwhile_keeps_the_ledgers_position() -> None:
    ledger = consumer()
    ledger._epochs[TP] = 3
    kafka = Polled(records(first=120, n=5))
    ledger._consumer = kafka  # type: ignore[assignment]

    def reclaimed() -> None:
        ledger._epochs[TP] = 4  # the new claim sought the partition to the stored position

    ledger._gate = KeysUnreachable(then=reclaimed)  # type: ignore[assignment]
    assert await ledger._poll() == []
    assert kafka.seeks == []
