"""Drive the simulator through the real producer library (simulate and demo commands).

Invariant: every event the simulator yields goes through ``Emitter.emit`` and is
acknowledged by Kafka (``flush``) before the command reports success.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import aiohttp

from integrations.simulator import Simulator
from ledgerctl.settings import KafkaRole, Settings
from ledgerctl.tables import fetch_history
from producers.emitter import Emitter, EmitterConfig, EmitterHealth
from producers.events import AuditEvent, CriticalResultRelay, Patient, PhiAccessEvent
from producers.signing import load_producer_key


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationSummary:
    emitted: int
    relays: int
    seconds: float
    busiest_patient: str
    event_ids: tuple[str, ...]


def emitter_config(
    settings: Settings,
    producer_id: str,
    role: KafkaRole = KafkaRole.SIMULATOR,
    *,
    key_file: str | None = None,
) -> EmitterConfig:
    """A durable emitter: while Kafka is away, events go to a spool per producer id
    (``LEDGER_SPOOL_DIR/<producer id>``) and are re-sent in order when it returns. It
    authenticates to Kafka as ``role``'s principal and signs with ``key_file`` (default
    LEDGER_PRODUCER_KEY_FILE)."""
    spool = Path(settings.spool_dir) / producer_id
    spool.parent.mkdir(parents=True, exist_ok=True)
    return EmitterConfig(
        bootstrap_servers=settings.kafka_bootstrap,
        producer_id=producer_id,
        access_topic=settings.access_topic,
        relay_topic=settings.relay_topic,
        max_block_seconds=2.0,
        spool_dir=str(spool),
        producer_key_file=key_file or settings.producer_key_file,
        kafka_security=settings.kafka(role),
    )


def key_producer_id(key_file: str | None, default: str) -> str:
    """The producer id a key file was issued to (the process's identity), else ``default``."""
    if key_file is None:
        return default
    return load_producer_key(key_file).producer_id


async def emit_all(
    settings: Settings,
    stream: Sequence[AuditEvent],
    *,
    rate: float,
    producer_id: str,
    accepted: IO[str] | None = None,
    key_file: str | None = None,
) -> float:
    """Emit every event (paced at ``rate``/s when > 0) and wait for Kafka's acks.

    With ``accepted``, each event id is written (and flushed to the OS) as soon as
    ``emit`` returned for it: the events the producer promised not to lose.
    """
    started = time.perf_counter()
    async with Emitter(emitter_config(settings, producer_id, key_file=key_file)) as emitter:
        for i, event in enumerate(stream):
            if rate > 0:
                due = started + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await emitter.emit(event)
            if accepted is not None:
                accepted.write(f"{event.event_id}\n")
                accepted.flush()
        await emitter.flush()
    return time.perf_counter() - started


async def drain_spool(settings: Settings, producer_id: str, timeout: float) -> EmitterHealth:
    """Start an emitter on a producer's spool, wait until Kafka has every spooled event."""
    config = emitter_config(settings, producer_id, KafkaRole.OPERATOR)
    async with Emitter(config) as emitter:
        deadline = time.monotonic() + timeout
        while True:
            health = emitter.health()
            if health.spooled == 0 and health.queued == 0:
                return health
            if time.monotonic() > deadline:
                raise TimeoutError(f"{health.spooled} event(s) still spooled after {timeout}s")
            await asyncio.sleep(0.2)


async def run_simulation(
    settings: Settings,
    *,
    events: int,
    rate: float,
    seed: int | None,
    ids_out: Path | None,
    producer_id: str,
    accepted_out: Path | None = None,
) -> SimulationSummary:
    sim = Simulator(seed=seed if seed is not None else time.time_ns())
    # The simulated stream numbers its own events, so one seed always yields byte-identical
    # messages: a re-run is a stream of duplicates, which the ledger counts and skips.
    stream: list[PhiAccessEvent | CriticalResultRelay] = [
        e.stamped(producer_id=producer_id, producer_seq=i) for i, e in enumerate(sim.events(events))
    ]
    ids = tuple(str(e.event_id) for e in stream)
    if ids_out is not None:
        await asyncio.to_thread(ids_out.write_text, "".join(f"{i}\n" for i in ids), "utf-8")
    if accepted_out is None:
        seconds = await emit_all(settings, stream, rate=rate, producer_id=producer_id)
    else:
        with accepted_out.open("a", encoding="utf-8") as accepted:
            seconds = await emit_all(
                settings, stream, rate=rate, producer_id=producer_id, accepted=accepted
            )
    counts = collections.Counter(e.patient.id for e in stream if e.patient is not None)
    return SimulationSummary(
        emitted=len(stream),
        relays=sum(isinstance(e, CriticalResultRelay) for e in stream),
        seconds=seconds,
        busiest_patient=counts.most_common(1)[0][0],
        event_ids=ids,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoResult:
    patient_id: str
    history: list[dict[str, object]]
    emitted: int
    facilities: int
    users: int
    patients: int
    seconds: float


async def run_demo(
    settings: Settings, *, events: int, seed: int | None, timeout: float
) -> DemoResult:
    """Emit a burst with exactly one critical-result relay; return its patient's history."""
    sim = Simulator(
        seed=seed if seed is not None else time.time_ns(),
        patients=12,
        start=datetime.now(UTC) - timedelta(hours=3),
    )
    stream = list(sim.events(events, relay_every=events))
    relay = next(e for e in stream if isinstance(e, CriticalResultRelay))
    patient = relay.patient
    mine = {str(e.event_id) for e in stream if e.patient == patient}
    demo_id = f"demo-{time.strftime('%Y%m%dT%H%M%S')}"
    producer_id = key_producer_id(settings.producer_key_file, demo_id)
    started = time.perf_counter()
    await emit_all(settings, stream, rate=0, producer_id=producer_id)
    entries = await _await_history(settings, patient, mine, timeout)
    return DemoResult(
        patient_id=patient.id,
        history=entries,
        emitted=len(stream),
        facilities=len({e.facility.id for e in stream}),
        users=len({_actor_id(e) for e in stream}),
        patients=len({e.patient for e in stream}),
        seconds=time.perf_counter() - started,
    )


async def _await_history(
    settings: Settings, patient: Patient, mine: set[str], timeout: float
) -> list[dict[str, object]]:
    """``patient``'s history through the API once it holds every event id in ``mine``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            entries = await fetch_history(settings.api(), patient.id, patient.issuer, 1000)
        except aiohttp.ClientError:
            entries = []
        seen = {str(e["event_id"]) for e in entries}
        if mine <= seen:
            return entries
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"only {len(mine & seen)} of {len(mine)} events for patient {patient.id} "
                f"reached the ledger within {timeout:.0f}s; is the consumer running? "
                "(see .local/log/consumer.log)"
            )
        await asyncio.sleep(0.5)


def _actor_id(event: AuditEvent) -> str:
    return event.sender.user_id if isinstance(event, CriticalResultRelay) else event.actor.user_id
