"""The emitter's in-flight bounds: the count and the age that send events to the spool,
and the acknowledgements that make room again.

The pure decisions (``InFlightBounds``) are tested alone; the emitter's own parts
(``DirectSender``, ``Route``, ``SpoolWriter``, ``Drainer``) run on a real spool in a
temporary directory, with a stand-in for the aiokafka producer whose futures the test
settles itself (what Kafka does to them is tested against the real broker in
tests/integration/test_emitter_durability.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from producers.emitter import EmitterConfig, EmitterState
from producers.emitter.bounds import InFlightBounds
from producers.emitter.deliveries import Deliveries
from producers.emitter.draining import Drainer
from producers.emitter.kafka import KafkaLink
from producers.emitter.sending import DirectSender
from producers.emitter.spooling import Route, SpoolWriter
from producers.emitter.stamping import Sequences
from producers.emitter.support import IoThread, Signals, now_ms
from producers.errors import EmitterPushbackError
from producers.spool import SpoolEntry

# ---------------------------------------------------------------------------- decisions


def test_count_bound_is_full_at_max_events() -> None:
    bounds = InFlightBounds(max_events=3, max_age_seconds=2.0)
    assert [bounds.full(n) for n in range(5)] == [False, False, False, True, True]


def test_age_bound_is_overdue_only_past_max_age() -> None:
    bounds = InFlightBounds(max_events=3, max_age_seconds=2.0)
    now = 1_800_000_000_000
    assert bounds.overdue(None, now) is None  # nothing in flight
    assert bounds.overdue(now - 2_000, now) is None  # exactly at the bound
    assert bounds.overdue(now - 2_001, now) == pytest.approx(2.001)


@pytest.mark.parametrize(("age", "every"), [(2.0, 0.5), (10.0, 1.0), (0.1, 0.05)])
def test_age_is_checked_every_quarter_of_the_bound_within_limits(age: float, every: float) -> None:
    assert InFlightBounds(max_events=1, max_age_seconds=age).check_every_seconds == every


def test_bounds_come_from_the_config_with_their_defaults() -> None:
    config = EmitterConfig(bootstrap_servers="127.0.0.1:9", producer_id="bounds")
    assert InFlightBounds.of(config) == InFlightBounds(max_events=20_000, max_age_seconds=2.0)
    assert config.kafka_batch_bytes == 262_144


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_inflight_events", 0), ("kafka_batch_bytes", 512), ("kafka_batch_bytes", 2 << 20)],
)
def test_bounds_out_of_range_are_refused(field: str, value: int) -> None:
    kwargs: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=field):
        EmitterConfig(bootstrap_servers="127.0.0.1:9", producer_id="bounds", **kwargs)


# ---------------------------------------------------------------------------- the parts


@dataclass(frozen=True, slots=True)
class Meta:
    topic: str
    partition: int
    offset: int


class StandInProducer:
    """Takes every record at once and lets the test settle its future (Kafka's ack)."""

    def __init__(self) -> None:
        self.sent: list[asyncio.Future[Meta]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None) -> asyncio.Future[Meta]:
        fut: asyncio.Future[Meta] = asyncio.get_running_loop().create_future()
        self.sent.append(fut)
        return fut

    def ack(self, index: int) -> None:
        self.sent[index].set_result(Meta("t-access", 0, index))


class Parts(NamedTuple):
    sender: DirectSender
    route: Route
    deliveries: Deliveries
    writer: SpoolWriter
    drainer: Drainer
    producer: StandInProducer


def entry(i: int, *, created_ms: int | None = None) -> SpoolEntry:
    return SpoolEntry(
        topic="t-access",
        key=b"issuer|patient-1",
        value=f"event-{i:04d}".encode(),
        created_ms=now_ms() if created_ms is None else created_ms,
    )


@pytest.fixture
async def parts(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Parts]:
    """The emitter's parts wired as ``Emitter`` wires them, DIRECT, with or without a spool
    (``@pytest.mark.parametrize('parts', [{...}], indirect=True)``)."""
    options: dict[str, Any] = dict(getattr(request, "param", {}))
    spooled = options.pop("spool", True)
    config = EmitterConfig(
        bootstrap_servers="127.0.0.1:9",
        producer_id="bounds",
        spool_dir=str(tmp_path / "spool") if spooled else None,
        **options,
    )
    deliveries, signals, io = Deliveries(), Signals(), IoThread()
    writer = SpoolWriter(deliveries, signals, io)
    route = Route(config, deliveries, writer, signals, io)
    link = KafkaLink(config)
    producer = StandInProducer()
    link.producer = producer  # type: ignore[assignment]
    common = dict(route=route, link=link, deliveries=deliveries, writer=writer, signals=signals)
    sender = DirectSender(config, **common)  # type: ignore[arg-type]
    drainer = Drainer(config, io=io, **common)  # type: ignore[arg-type]
    if config.spool_dir is not None:
        spool = await route.open_spool(config.spool_dir, Sequences("bounds", 0))
        writer.start(spool)
    route.state = EmitterState.DIRECT
    try:
        yield Parts(sender, route, deliveries, writer, drainer, producer)
    finally:
        if route.spool is not None:
            await writer.stop()
            await route.close_spool()
        io.shutdown()


def deadline(seconds: float = 1.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def written(parts: Parts) -> int:
    """Wait for the spool writer to be idle; the records in the spool."""
    for _ in range(200):
        if not parts.writer.busy:
            break
        await asyncio.sleep(0.01)
    spool = parts.route.spool
    assert spool is not None
    return spool.pending_records


@pytest.mark.parametrize("parts", [{"max_inflight_events": 3}], indirect=True)
async def test_the_event_past_the_count_bound_goes_to_the_spool_behind_those_in_flight(
    parts: Parts,
) -> None:
    for i in range(3):
        assert await parts.sender.hand_over(entry(i), deadline(), None)
    assert len(parts.deliveries.inflight) == 3
    assert parts.route.state is EmitterState.DIRECT

    assert not await parts.sender.hand_over(entry(3), deadline(), None)  # to the spool
    assert parts.route.state is EmitterState.SPOOLING
    assert len(parts.producer.sent) == 3  # aiokafka never saw the fourth
    # Every event in flight was queued for the spool, oldest first, before the fourth.
    assert [q.entry.value for q in parts.writer.queued + parts.writer.writing] == [
        entry(i).value for i in range(3)
    ]
    assert all(p.suspect for p in parts.deliveries.inflight.values())
    assert await written(parts) == 3


@pytest.mark.parametrize("parts", [{"max_inflight_events": 2}], indirect=True)
async def test_an_acknowledgement_makes_room_under_the_count_bound(parts: Parts) -> None:
    for i in range(2):
        assert await parts.sender.hand_over(entry(i), deadline(), None)
    parts.producer.ack(0)
    await asyncio.sleep(0)  # the delivery callback
    assert len(parts.deliveries.inflight) == 1
    assert parts.deliveries.sent == 1

    assert await parts.sender.hand_over(entry(2), deadline(), None)
    assert parts.route.state is EmitterState.DIRECT
    assert len(parts.producer.sent) == 3
    assert await written(parts) == 0  # nothing was spooled


@pytest.mark.parametrize("parts", [{"max_inflight_events": 1, "spool": False}], indirect=True)
async def test_without_a_spool_the_count_bound_pushes_back_after_the_deadline(
    parts: Parts,
) -> None:
    assert await parts.sender.hand_over(entry(0), deadline(), None)
    started = time.monotonic()
    with pytest.raises(EmitterPushbackError, match="max_inflight_events=1"):
        await parts.sender.hand_over(entry(1), deadline(0.2), None)
    assert time.monotonic() - started >= 0.15
    assert len(parts.producer.sent) == 1  # the refused event was never handed over
    assert len(parts.deliveries.inflight) == 1


@pytest.mark.parametrize("parts", [{"max_inflight_events": 1, "spool": False}], indirect=True)
async def test_without_a_spool_an_acknowledgement_releases_a_waiting_event(
    parts: Parts,
) -> None:
    assert await parts.sender.hand_over(entry(0), deadline(), None)
    waiting = asyncio.create_task(parts.sender.hand_over(entry(1), deadline(5.0), None))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    parts.producer.ack(0)
    assert await asyncio.wait_for(waiting, 1.0)
    assert len(parts.producer.sent) == 2
    assert parts.deliveries.sent == 1


@pytest.mark.parametrize("parts", [{"spool_after_seconds": 0.5}], indirect=True)
async def test_an_event_in_flight_past_the_age_bound_spools_everything_in_flight(
    parts: Parts,
) -> None:
    assert await parts.sender.hand_over(entry(0, created_ms=now_ms() - 400), deadline(), None)
    assert await parts.sender.hand_over(entry(1), deadline(), None)
    parts.drainer._watch_unacknowledged()  # what the drainer's loop does every 0.125 s
    assert parts.route.state is EmitterState.DIRECT  # 0.4 s old: within the bound

    await asyncio.sleep(0.15)
    parts.drainer._watch_unacknowledged()
    assert parts.route.state is EmitterState.SPOOLING
    assert await written(parts) == 2  # both in flight, oldest first
    # Kafka acknowledges one after all: it is settled, its spooled copy will be skipped.
    parts.producer.ack(0)
    await asyncio.sleep(0)
    assert entry(0).value in parts.deliveries.skip


@pytest.mark.parametrize("parts", [{"spool_after_seconds": 0.5}], indirect=True)
async def test_acknowledged_events_never_reach_the_age_bound(parts: Parts) -> None:
    assert await parts.sender.hand_over(entry(0, created_ms=now_ms() - 10_000), deadline(), None)
    parts.producer.ack(0)
    await asyncio.sleep(0)
    parts.drainer._watch_unacknowledged()
    assert parts.route.state is EmitterState.DIRECT
    assert not parts.deliveries.inflight
