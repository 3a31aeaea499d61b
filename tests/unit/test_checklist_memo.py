"""The remembered checklist gives check_access's answers, access by access, over the
simulator's compliance world with every plant, also after a late registry change."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from integrations.simplants import ComplianceSimulation
from ledger.audit.registry import RegistryTimeline, parse_change
from ledger.audit.rules import AppendedEvent, Position
from ledger.audit.rules.checklist import ChecklistConfig, ChecklistMemo, applies, check_access
from producers import Codec, registry_codec
from tests.unit.test_registry_timeline import SCHEMAS


def _events(sim: ComplianceSimulation) -> list[AppendedEvent]:
    codec = Codec()
    out = []
    for i, event in enumerate(sim.stream(plant=True)):
        stamped = event.stamped(producer_id="sim", producer_seq=i)
        name, record = SCHEMAS.decode_native(codec.encode(stamped))
        out.append(AppendedEvent(position=Position(log_id=1, leaf_index=i), schema=name,
                                 record=record))  # fmt: skip
    return out


def _changes(sim: ComplianceSimulation) -> list[AppendedEvent]:
    codec = registry_codec()
    out = []
    for i, change in enumerate(sim.registry_changes()):
        stamped = change.stamped(producer_id="reg", producer_seq=i)
        name, record = SCHEMAS.decode_native(codec.encode(stamped))
        out.append(AppendedEvent(position=Position(log_id=9, leaf_index=i), schema=name,
                                 record=record))  # fmt: skip
    return out


def test_the_memo_answers_as_check_access_does() -> None:
    sim = ComplianceSimulation(seed=3, events=3000)
    changes = [parse_change(e) for e in _changes(sim)]
    timeline = RegistryTimeline()
    timeline.extend(changes[:-40])  # the rest arrive late, dated as they were
    config = ChecklistConfig()
    memo = ChecklistMemo(config, limit=500)  # small: it is cleared and refilled too
    unbounded = ChecklistMemo(config)
    accesses = [e for e in _events(sim) if applies(e)]
    assert len(accesses) > 2000
    for n, event in enumerate(accesses):
        if n == len(accesses) // 2:
            timeline.extend(changes[-40:])
        view = timeline.known_at(event.event_time)
        expected = check_access(event, view, config)
        assert memo.check(event, view) == expected, n
        assert unbounded.check(event, view) == expected, n
    # Answers were reused: far fewer remembered than accesses checked.
    assert len(unbounded) < len(accesses) / 2


def test_a_change_added_at_or_before_the_instant_changes_the_key() -> None:
    sim = ComplianceSimulation(seed=4, events=1000)
    changes = [parse_change(e) for e in _changes(sim)]
    timeline = RegistryTimeline()
    timeline.extend(changes[1:])
    when = changes[0].event_time + timedelta(hours=1)
    before = timeline.known_at(when).known_key()
    earlier = dataclasses.replace(changes[0], event_time=when - timedelta(minutes=5))
    timeline.add(earlier)
    assert timeline.known_at(when).known_key() != before
