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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from integrations.simplants import ComplianceSimulation, answers_document, rules_toml
from ledger.errors import LedgerError
from ledgerctl.settings import KafkaRole, Settings
from ledgerctl.simulate import emit_all, emitter_config, key_producer_id
from producers import Emitter, EmitterConfig, RegistryChange


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrySimulation:
    emitted: int
    registry_changes: int
    planted: int
    seconds: float
    directory: Path
    answers: Path


class RegistryTopicMissingError(LedgerError):
    """The producer library cannot send registry changes yet (no registry topic)."""


async def emit_registry(settings: Settings, changes: Sequence[RegistryChange]) -> str:
    """Emit registry changes on the registry topic as the registry's producer, wait for
    Kafka's acks; returns that producer's id.

    The registry topic (``EmitterConfig.registry_topic``, ``LEDGER_REGISTRY_TOPIC``, the
    ``ledger-registry`` principal and ``LEDGER_REGISTRY_PRODUCER_KEY_FILE``) comes from
    the registry pipeline; without it this raises ``RegistryTopicMissingError``.
    """
    topic: str | None = getattr(settings, "registry_topic", None)
    if topic is None or "registry_topic" not in {f.name for f in dataclasses.fields(EmitterConfig)}:
        raise RegistryTopicMissingError(
            "this build has no registry topic: registry changes cannot be emitted "
            "(write the files only with --no-emit-registry)"
        )
    key_file: str | None = getattr(settings, "registry_producer_key_file", None)
    producer_id = key_producer_id(key_file, "registry-local")
    role = getattr(KafkaRole, "REGISTRY", KafkaRole.SIMULATOR)
    config = emitter_config(settings, producer_id, role, key_file=key_file)
    routed: dict[str, Any] = {"registry_topic": topic}
    config = dataclasses.replace(config, **routed)
    async with Emitter(config) as emitter:
        send = cast(Any, emitter).emit  # emit() takes a RegistryChange with the registry topic
        for i, change in enumerate(changes):
            await send(change.stamped(producer_id=producer_id, producer_seq=i))
        await emitter.flush()
    return producer_id


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
    stream = [
        e.stamped(producer_id=producer_id, producer_seq=i)
        for i, e in enumerate(sim.stream(plant=plant))
    ]
    await emit_all(settings, stream, rate=rate, producer_id=producer_id)
    document = answers_document(sim, plant=plant, producer_id=producer_id)
    await asyncio.to_thread(answers.write_text, document, "utf-8")
    return RegistrySimulation(
        emitted=len(stream),
        registry_changes=len(changes),
        planted=len(sim.answers(plant=plant)),
        seconds=time.perf_counter() - started,
        directory=directory,
        answers=answers,
    )
