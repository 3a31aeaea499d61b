"""The registry topic rule: a RegistryChange is accepted only on a registry topic, where it
becomes a ``registry_change`` index row with no patient and no facility; an audit event on
a registry topic, and a change anywhere else, are quarantined ``wrong_topic``. The emitter
routes a change to its registry topic, keyed by the record's id."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from consumers.classify import REASON_WRONG_TOPIC, classify
from integrations.simulator import Simulator
from ledger.audit.ingest import Accepted, Rejected
from ledger.log.leaf import KafkaRecord
from producers.codec import Codec
from producers.emitter.config import EmitterConfig
from producers.emitter.stamping import Sequences, Stamper
from producers.events import AuditEvent, AuditLogUsed, SecurityEvent
from producers.registry import Author, RegistryChange, StateLicense
from tests.unit.test_projections_agree import _handmade

ACCESS, RELAY, REGISTRY = "phi-access", "critical-result-relay", "compliance-registry"
CODEC = Codec()
WHEN = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
CHANGE = RegistryChange(
    author=Author(user_id="privacy.officer", role="privacy_officer"),
    event_time=WHEN,
    record=StateLicense(
        license_id="lic-1", user_id="dr.lee", state="CA", number="A1", valid_from=date(2024, 1, 1)
    ),
    producer_id="registry-local",
    producer_seq=0,
)


def _stamped(event: AuditEvent) -> AuditEvent:
    return event.stamped(producer_id="sim", producer_seq=1)


def _classify(topic: str, value: bytes, *, rule: bool = True) -> Accepted | Rejected:
    record = KafkaRecord(
        topic=topic,
        partition=0,
        offset=5,
        timestamp_ms=1_765_000_000_000,
        timestamp_type=0,
        key=b"lic-1",
        value=value,
    )
    return classify(
        record,
        CODEC,
        relay_topics=frozenset({RELAY}) if rule else None,
        registry_topics=frozenset({REGISTRY}),
    )


def test_a_change_on_the_registry_topic_is_a_registry_change_row() -> None:
    item = _classify(REGISTRY, CODEC.encode(CHANGE))
    assert isinstance(item, Accepted)
    index = item.index
    assert (index.kind, index.event_id, index.event_time) == (
        "registry_change",
        CHANGE.event_id,
        WHEN,
    )
    assert (index.patient_id, index.facility_id, index.patients, index.disclosed) == (
        None,
        "",
        (),
        (),
    )
    assert (index.user_id, index.user_role) == ("privacy.officer", "privacy_officer")
    assert (index.producer_id, index.producer_seq) == ("registry-local", 0)


@pytest.mark.parametrize("topic", [ACCESS, RELAY, "some-other-topic"])
def test_a_change_anywhere_else_is_wrong_topic(topic: str) -> None:
    item = _classify(topic, CODEC.encode(CHANGE))
    assert isinstance(item, Rejected)
    assert item.reason == REASON_WRONG_TOPIC
    assert "belongs only on a registry topic" in item.detail


def test_a_change_is_wrong_topic_when_the_consumer_names_no_registry_topic() -> None:
    record = KafkaRecord(
        topic=REGISTRY,
        partition=0,
        offset=0,
        timestamp_ms=0,
        timestamp_type=0,
        key=None,
        value=CODEC.encode(CHANGE),
    )
    item = classify(record, CODEC, now=WHEN, relay_topics=frozenset({RELAY}))
    assert isinstance(item, Rejected)
    assert item.reason == REASON_WRONG_TOPIC


@pytest.mark.parametrize("kind", ["access", "relay", "security", "ledger_read"])
def test_an_audit_event_on_the_registry_topic_is_wrong_topic(kind: str) -> None:
    sim = Simulator(seed=3)
    event = {
        "access": sim.access(),
        "relay": sim.relay(),
        "security": next(e for e in _handmade() if isinstance(e, SecurityEvent)),
        "ledger_read": next(e for e in _handmade() if isinstance(e, AuditLogUsed)),
    }[kind]
    message = CODEC.encode(_stamped(event))
    item = _classify(REGISTRY, message)
    assert isinstance(item, Rejected)
    assert item.reason == REASON_WRONG_TOPIC
    where = "only on a relay topic" if kind == "relay" else "never on a registry topic"
    assert f"belongs {where}, not on {REGISTRY}" in item.detail
    # ... and where it belongs, it is accepted as before.
    home = RELAY if kind == "relay" else ACCESS
    assert isinstance(_classify(home, message), Accepted)


def test_without_a_topic_rule_a_change_is_accepted_anywhere() -> None:
    # Tools that classify synthetic topics pass no rule (relay_topics=None).
    assert isinstance(_classify(ACCESS, CODEC.encode(CHANGE), rule=False), Accepted)


def test_the_emitter_sends_a_change_to_the_registry_topic_keyed_by_its_record_id() -> None:
    config = EmitterConfig(
        bootstrap_servers="127.0.0.1:1",
        producer_id="registry-local",
        registry_topic="t1-registry",
    )
    stamper = Stamper(config, Sequences("registry-local", 0))
    unstamped = RegistryChange(author=CHANGE.author, record=CHANGE.record, event_time=WHEN)
    entry, seq, stamped = stamper.stamp(CODEC.prepare(unstamped), None)
    assert (entry.topic, entry.key, seq, stamped) == ("t1-registry", b"lic-1", 0, True)
    access, _, _ = stamper.stamp(CODEC.prepare(Simulator(seed=1).access()), None)
    assert access.topic == "phi-access"


def _acls() -> list[tuple[str, str, str, str, frozenset[str]]]:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "deploy/local/kafka/acls.txt").read_text()
    rows = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    return [(p, r, pat, name, frozenset(ops.split(","))) for p, r, pat, name, ops in rows]


def test_only_the_registry_principal_writes_the_registry_topic_and_nothing_else() -> None:
    # Production prefixes only: `t` and `bench-` are the local stack's scratch topics.
    scratch = {"t", "bench-"}
    writes = {
        (principal, name)
        for principal, resource, _, name, ops in _acls()
        if resource == "TOPIC" and "WRITE" in ops and name not in scratch
    }
    assert {p for p, name in writes if name == REGISTRY} == {"ledger-registry"}
    assert {name for p, name in writes if p == "ledger-registry"} == {REGISTRY}
    readers = {
        principal
        for principal, resource, _, name, ops in _acls()
        if resource == "TOPIC" and name == REGISTRY and "READ" in ops
    }
    assert readers == {"ledger-consumer", "ledger-replay"}
    from ledgerctl.settings import KafkaRole, Settings

    assert KafkaRole.REGISTRY.value == "ledger-registry"
    defaults = {
        name: Settings.model_fields[name].default
        for name in ("access_topic", "relay_topic", "registry_topic")
    }
    assert Settings.model_construct(**defaults).topics == (ACCESS, RELAY, REGISTRY)
