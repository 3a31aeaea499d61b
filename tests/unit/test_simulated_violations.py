"""The compliance simulator: deterministic per seed, every rule planted once in isolation,
a clean twin with no plant, clean users compliant by construction, registry files the
importer accepts; and the four rules that need no registry, run over the stream as the
ledger would store it (four partitions per topic), raise exactly the planted alerts."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2

from integrations.simplants import (
    BULK_PATIENTS,
    PLANTED_RULES,
    ComplianceSimulation,
    answers_document,
    rules_toml,
)
from integrations.simstream import DEADLINES
from integrations.simworld import PLANT_USERS, SHIFT_HOURS
from ledger.audit.records import SchemaSet, StoredSchema
from ledger.audit.rules import AppendedEvent, LogEvaluator, Position, RulesConfig
from ledger.audit.rules.breakglass import BreakGlassUnjustified
from ledger.audit.rules.bulk import BulkAccess
from ledger.audit.rules.model import RELAY
from ledger.audit.rules.relays import RelayLate
from ledger.audit.rules.transport import TransportUnencrypted
from ledgerctl.answers import parse_answers
from producers import (
    AuditEvent,
    Codec,
    CriticalResultRelay,
    PhiAccessEvent,
    load_registry_files,
    validate,
    validate_change,
)
from producers.events import event_key

#: Every rule id of the catalogue (docs/design/compliance.md; spec of #15 section 4).
CATALOGUE = {
    "registry.baa_missing", "registry.license_missing", "registry.credential_missing",
    "account.shared", "account.unknown", "account.ended", "privacy.own_record",
    "privacy.coworker_record", "privacy.vip_record", "access.unusual_hours",
    "relay.overdue", "relay.no_readback", "access.bulk", "breakglass.unjustified",
    "relay.late", "transport.unencrypted",
}  # fmt: skip
EVENTS = 4000


@cache
def simulation(seed: int = 11, events: int = EVENTS) -> ComplianceSimulation:
    return ComplianceSimulation(seed=seed, events=events)


def user_of(e: AuditEvent) -> str:
    if isinstance(e, CriticalResultRelay):
        return e.sender.user_id
    assert isinstance(e, PhiAccessEvent)
    return e.actor.user_id


def patients_of(e: AuditEvent) -> set[str]:
    named = set() if e.patient is None else {e.patient.id}
    disclosed = {d.id for d in e.disclosed} if isinstance(e, PhiAccessEvent) else set()
    return named | disclosed


def test_a_seed_always_gives_the_same_registry_stream_and_answers() -> None:
    a, b = ComplianceSimulation(seed=5, events=1500), ComplianceSimulation(seed=5, events=1500)
    assert a.stream(plant=True) == b.stream(plant=True)
    assert a.registry_changes() == b.registry_changes()
    assert a.registry_files() == b.registry_files()
    assert answers_document(a, plant=True) == answers_document(b, plant=True)
    other = ComplianceSimulation(seed=6, events=1500)
    assert {e.event_id for e in other.stream(plant=True)}.isdisjoint(
        e.event_id for e in a.stream(plant=True)
    )


def test_every_rule_of_the_catalogue_is_planted() -> None:
    sim = simulation()
    answers = sim.answers(plant=True)
    assert set(PLANTED_RULES) == CATALOGUE
    assert {a.rule_id for a in answers} == CATALOGUE
    assert len(answers) == len(CATALOGUE) + 2  # BAA and licence: never, and no longer
    assert len({a.event_id for a in answers}) == len(answers)


def test_the_clean_twin_is_the_same_stream_without_the_plants() -> None:
    sim = simulation()
    clean, planted = sim.stream(plant=False), sim.stream(plant=True)
    assert sim.answers(plant=False) == ()
    assert len(clean) == EVENTS
    clean_ids = {e.event_id for e in clean}
    kept = [e for e in planted if e.event_id in clean_ids]
    assert kept == list(clean)
    extra = [e for e in planted if e.event_id not in clean_ids]
    assert len(extra) == sum(1 + len(p.extra) for p in sim.plants)
    assert [e.event_time for e in planted] == sorted(e.event_time for e in planted)


def test_plants_are_isolated_by_user_and_patient() -> None:
    sim = simulation()
    clean = sim.stream(plant=False)
    clean_patients = set().union(*(patients_of(e) for e in clean))
    plant_users = {u for u, _, _ in PLANT_USERS}
    assert plant_users.isdisjoint(user_of(e) for e in clean)
    seen: set[str] = set()
    for p in sim.plants:
        mine = set().union(*(patients_of(e) for e in (p.trigger, *p.extra)))
        assert mine
        assert mine.isdisjoint(clean_patients)
        assert mine.isdisjoint(seen)
        seen |= mine
    assert {row[1] for row in sim.watchlist} <= seen  # watch-listed: plants only
    bulk = next(p for p in sim.plants if p.rule_id == "access.bulk").trigger
    assert isinstance(bulk, PhiAccessEvent)
    assert len(bulk.disclosed) == BULK_PATIENTS
    # the only plant by a clean user: the unusual hour of a user with a baseline
    by_clean = [p.rule_id for p in sim.plants if user_of(p.trigger) not in plant_users]
    assert set(by_clean) <= {"access.unusual_hours", "relay.late", "relay.overdue",
                             "relay.no_readback"}  # fmt: skip


def test_clean_users_work_their_shifts_encrypted_and_below_any_bulk_threshold() -> None:
    sim = simulation()
    users = {u.actor.user_id: u for u in sim.world.users}
    window: dict[str, list[tuple[datetime, frozenset[str]]]] = defaultdict(list)
    for e in sim.stream(plant=False):
        if isinstance(e, CriticalResultRelay):
            assert e.read_back
            assert e.communicated_at is not None
            assert e.communicated_at - e.identified_at <= DEADLINES[e.category] / 2
            continue
        assert isinstance(e, PhiAccessEvent)
        user = users[e.actor.user_id]
        assert (e.event_time.hour - user.shift_start) % 24 < SHIFT_HOURS
        assert e.facility.id in user.facilities
        assert e.transport is not None
        assert e.transport.encrypted is True
        if e.purpose_of_use == "ETREAT":
            assert e.details.get("justification")
        window[user.actor.user_id].append((e.event_time, frozenset(patients_of(e))))
    for accesses in window.values():
        for i, (at, _) in enumerate(accesses):
            hour = [p for t, p in accesses[i:] if t - at < timedelta(minutes=60)]
            assert len(frozenset().union(*hour)) <= 20


def test_events_and_registry_changes_validate_and_the_files_import(tmp_path: Path) -> None:
    sim = simulation()
    for i, e in enumerate(sim.stream(plant=True)):
        validate(e.stamped(producer_id="sim-test", producer_seq=i))
    changes = sim.registry_changes()
    for i, c in enumerate(changes):
        validate_change(c.stamped(producer_id="registry-test", producer_seq=i))
        assert c.event_time < sim.start
    for name, text in sim.registry_files().items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    loaded = load_registry_files(
        sorted(tmp_path.glob("*.csv")), author=changes[0].author, now=datetime.now(UTC)
    )
    assert sorted(map(repr, (c.record for c in loaded))) == sorted(map(repr, sim.world.records))


def test_the_answer_file_and_rules_toml() -> None:
    sim = simulation()
    parsed = parse_answers(answers_document(sim, plant=True, producer_id="simulator"))
    assert parsed.producer_id == "simulator"
    assert [(p.rule_id, p.event_id) for p in parsed.planted] == [
        (a.rule_id, a.event_id) for a in sim.answers(plant=True)
    ]
    assert parse_answers(answers_document(sim, plant=False)).planted == ()
    assert rules_toml("/x/watch list.csv").endswith('file = "/x/watch list.csv"\n')


def _rules_over(events: tuple[AuditEvent, ...], partitions: int) -> set[tuple[str, str]]:
    """(rule id, triggering event id) raised by the four rules that need no registry, over
    the events appended as the consumer would: keyed into ``partitions`` logs per topic."""
    codec = Codec()
    schemas = SchemaSet(
        StoredSchema(fingerprint=s.fingerprint, full_name=s.full_name, schema_json=s.schema_json)
        for s in codec.schemas
    )
    config = RulesConfig()
    rules = (BulkAccess(config.bulk), BreakGlassUnjustified(config.breakglass),
             RelayLate(config.relay_late), TransportUnencrypted(config.transport))  # fmt: skip
    logs: dict[int, LogEvaluator] = {}
    ids: dict[Position, str] = {}
    raised: set[tuple[str, str]] = set()
    for i, e in enumerate(events):
        name, record = schemas.decode(codec.encode(e.stamped(producer_id="t", producer_seq=i)))
        partition = (murmur2(event_key(e).encode()) & 0x7FFFFFFF) % partitions
        log_id = partition + (100 if name == RELAY else 0)
        state = logs.setdefault(log_id, LogEvaluator(rules))
        position = Position(log_id=log_id, leaf_index=state.next_leaf)
        state.next_leaf += 1
        ids[position] = str(e.event_id)
        for f in state.evaluate(AppendedEvent(position=position, schema=name, record=record)):
            raised.add((f.rule_id, ids[f.trigger]))
    return raised


@pytest.mark.parametrize("partitions", [1, 4])
def test_the_rules_without_registry_raise_exactly_their_plants(partitions: int) -> None:
    sim = simulation()
    mine = {"access.bulk", "breakglass.unjustified", "relay.late", "transport.unencrypted"}
    expected = {(a.rule_id, a.event_id) for a in sim.answers(plant=True) if a.rule_id in mine}
    assert len(expected) == 4
    assert _rules_over(sim.stream(plant=True), partitions) == expected
    assert _rules_over(sim.stream(plant=False), partitions) == set()


def test_a_span_shorter_than_a_baseline_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 10 days"):
        ComplianceSimulation(seed=1, events=100, days=9)
