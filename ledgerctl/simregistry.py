"""``ledger simulate --registry``: a registry, its files and a stream with planted
violations, through the real producer library.

Invariant: the registry's changes are acknowledged by Kafka before the first event is
emitted, and are dated one day before the span (so the registry as known at every
access holds them); the answer file is written only after every event was acknowledged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from integrations.simplants import ComplianceSimulation, answers_document, rules_toml
from ledger.errors import UnavailableError
from ledger.pg.answers import events_present
from ledgerctl.settings import KafkaRole, Settings
from ledgerctl.simulate import emit_all, emitter_config, key_producer_id
from producers import Emitter, RegistryChange


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrySimulation:
    emitted: int
    registry_changes: int
    planted: int
    seconds: float
    directory: Path
    answers: Path
    event_ids: tuple[uuid.UUID, ...] = ()


#: How long the simulation waits for the consumer to append its registry.
REGISTRY_APPEND_TIMEOUT: Final = 60.0


async def emit_registry(settings: Settings, changes: Sequence[RegistryChange]) -> str:
    """Emit registry changes on the registry topic (``LEDGER_REGISTRY_TOPIC``) as the
    registry's producer (the ``ledger-registry`` principal, its key
    ``LEDGER_REGISTRY_PRODUCER_KEY_FILE``), wait for Kafka's acks; returns that
    producer's id."""
    key_file = settings.registry_producer_key_file
    producer_id = key_producer_id(key_file, "registry-local")
    config = emitter_config(settings, producer_id, KafkaRole.REGISTRY, key_file=key_file)
    config = dataclasses.replace(config, registry_topic=settings.registry_topic)
    async with Emitter(config) as emitter:
        for i, change in enumerate(changes):
            await emitter.emit(change.stamped(producer_id=producer_id, producer_seq=i))
        await emitter.flush()
    return producer_id


async def wait_appended(settings: Settings, changes: Sequence[RegistryChange]) -> None:
    """Wait until the ledger holds every change (the consumer appended them): a rules
    evaluator running meanwhile must not judge the stream's past accesses against a
    registry that has not arrived yet (docs/design/compliance.md, the settle hold)."""
    ids = [c.event_id for c in changes]
    dsn = settings.require("reader_url")
    deadline = time.monotonic() + REGISTRY_APPEND_TIMEOUT
    while await events_present(dsn, ids) < len(ids):
        if time.monotonic() > deadline:
            raise UnavailableError(
                f"the ledger did not append the {len(ids)} registry change(s) within "
                f"{REGISTRY_APPEND_TIMEOUT:.0f} s: is `ledger consume` running?"
            )
        await asyncio.sleep(0.5)


def write_files(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")


async def run_registry_simulation(
    settings: Settings,
    *,
    events: int,
    seed: int,
    plant: bool,
    answers: Path,
    producer_id: str,
    rate: float = 0.0,
    emit_registry_changes: bool = True,
    key_file: str | None = None,
) -> RegistrySimulation:
    """Write the registry files, the watch list, the rules' TOML and (last) the answer
    file next to ``answers``; emit the registry, then the stream."""
    started = time.perf_counter()
    sim = ComplianceSimulation(seed=seed, events=events)
    directory = answers.parent
    await asyncio.to_thread(
        write_files,
        directory,
        {
            **sim.registry_files(),
            "watchlist.csv": sim.watchlist_file(),
            "rules.toml": rules_toml("watchlist.csv"),
        },
    )
    changes = sim.registry_changes()
    if emit_registry_changes:
        await emit_registry(settings, changes)
        await wait_appended(settings, changes)
    stream = [
        e.stamped(producer_id=producer_id, producer_seq=i)
        for i, e in enumerate(sim.stream(plant=plant))
    ]
    await emit_all(settings, stream, rate=rate, producer_id=producer_id, key_file=key_file)
    document = answers_document(sim, plant=plant, producer_id=producer_id)
    await asyncio.to_thread(answers.write_text, document, "utf-8")
    return RegistrySimulation(
        emitted=len(stream),
        registry_changes=len(changes),
        planted=len(sim.answers(plant=plant)),
        seconds=time.perf_counter() - started,
        directory=directory,
        answers=answers,
        event_ids=tuple(e.event_id for e in stream),
    )
