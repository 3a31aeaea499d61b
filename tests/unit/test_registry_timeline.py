"""The ledger's reading of the registry: a RegistryChange written by the producer
library, decoded from its leaf as the evaluator does, and the state as known at any time."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import UTC, date, datetime, timedelta

import pytest

import schemas
from ledger.audit.records import SchemaSet, StoredSchema, fingerprint_of
from ledger.audit.registry import (
    Baa,
    License,
    Member,
    Organization,
    OrgKind,
    RegistryTimeline,
    in_period,
    parse_change,
)
from ledger.audit.rules import AppendedEvent, Position
from ledger.errors import MalformedInputError
from producers import (
    Author,
    OrganizationKind,
    RegistryChange,
    RegistryOperation,
    RegistryRecord,
    StateLicense,
    WorkforceMember,
    registry_codec,
)
from producers import Baa as PBaa
from producers import Organization as POrganization

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _schema_set() -> SchemaSet:
    stored = []
    for path in (*schemas.ALL_SCHEMA_FILES, *schemas.REGISTRY_SCHEMA_FILES):
        text = json.dumps(schemas.load_schema_json(path))
        stored.append(
            StoredSchema(
                fingerprint=fingerprint_of(text),
                full_name=_full_name(text),
                schema_json=text,
            )
        )
    return SchemaSet(stored)


def _full_name(text: str) -> str:
    doc = json.loads(text)
    return f"{doc['namespace']}.{doc['name']}"


SCHEMAS = _schema_set()
CODEC = registry_codec()


def leaf(
    record: RegistryRecord,
    *,
    at: datetime,
    index: int,
    operation: RegistryOperation = RegistryOperation.UPSERT,
) -> AppendedEvent:
    """A change as the evaluator sees it: encoded by the producer, decoded from the leaf."""
    change = RegistryChange(
        author=Author(user_id="alice", role="compliance"),
        record=record,
        operation=operation,
        event_time=at,
        producer_id="registry-cli",
        producer_seq=index,
    )
    name, decoded = SCHEMAS.decode(CODEC.encode(change))
    return AppendedEvent(position=Position(log_id=9, leaf_index=index), schema=name, record=decoded)


ORG = POrganization(
    organization_id="nightrad",
    name="NightRad",
    organization_kind=OrganizationKind.BUSINESS_ASSOCIATE,
)
MEMBER = WorkforceMember(
    user_id="dr.lee",
    organization_id="nightrad",
    role="radiologist",
    shared_or_generic=False,
    employed_from=date(2023, 1, 1),
)
BAA = PBaa(
    baa_id="baa-1",
    facility_id="stmarys",
    business_associate_id="nightrad",
    effective_from=date(2023, 1, 1),
    effective_to=date(2026, 6, 30),
    scope="reads",
)
LIC = StateLicense(
    license_id="lic-1",
    user_id="dr.lee",
    state="CA",
    number="A1",
    valid_from=date(2024, 1, 1),
    valid_to=None,
)


def test_a_change_decoded_from_its_leaf_has_every_field() -> None:
    change = parse_change(leaf(BAA, at=T0, index=3))
    assert change.position == Position(log_id=9, leaf_index=3)
    assert change.event_time == T0
    assert change.operation == "UPSERT"
    assert change.kind == "BAA"
    assert change.record == Baa(
        baa_id="baa-1",
        facility_id="stmarys",
        business_associate_id="nightrad",
        effective_from=date(2023, 1, 1),
        effective_to=date(2026, 6, 30),
        scope="reads",
    )
    assert (change.author_user_id, change.author_role) == ("alice", "compliance")
    org = parse_change(leaf(ORG, at=T0, index=1)).record
    assert org == Organization(
        organization_id="nightrad", name="NightRad", kind=OrgKind.BUSINESS_ASSOCIATE
    )
    member = parse_change(leaf(MEMBER, at=T0, index=2)).record
    assert isinstance(member, Member)
    assert member.employed_to is None
    lic = parse_change(leaf(LIC, at=T0, index=4)).record
    assert isinstance(lic, License)
    assert lic.state == "CA"


def test_a_leaf_that_is_not_a_registry_change_is_refused() -> None:
    event = leaf(BAA, at=T0, index=1)
    with pytest.raises(MalformedInputError):
        parse_change(dataclasses.replace(event, schema="philedger.audit.PhiAccessEvent"))
    broken = dict(event.record)
    broken["baa"] = None
    with pytest.raises(MalformedInputError, match="baa"):
        parse_change(dataclasses.replace(event, record=broken))
    bad_day = dict(event.record)
    bad_day["baa"] = {**event.record["baa"], "effective_from": "2024-02-30"}  # type: ignore[dict-item]
    with pytest.raises(MalformedInputError, match="effective_from"):
        parse_change(dataclasses.replace(event, record=bad_day))


def test_state_as_known_at_follows_each_changes_own_time() -> None:
    tl = RegistryTimeline()
    ended = dataclasses.replace(BAA, effective_to=date(2026, 3, 31))
    tl.add(parse_change(leaf(BAA, at=T0, index=0)))
    tl.add(parse_change(leaf(ended, at=T0 + timedelta(days=1), index=1)))
    tl.add(
        parse_change(
            leaf(LIC, at=T0 + timedelta(days=2), index=2, operation=RegistryOperation.RETIRE)
        )
    )
    assert tl.known_at(T0 - timedelta(seconds=1)).baas("stmarys", "nightrad") == ()
    (before,) = tl.known_at(T0).baas("stmarys", "nightrad")
    assert before.record.effective_to == date(2026, 6, 30)
    assert before.position.leaf_index == 0
    (after,) = tl.known_at(T0 + timedelta(days=1)).baas("stmarys", "nightrad")
    assert after.record.effective_to == date(2026, 3, 31)
    assert after.position.leaf_index == 1
    # a retire of a record never upserted leaves nothing; the timeline knows its time
    assert tl.known_at(T0 + timedelta(days=3)).licenses("dr.lee") == ()
    assert tl.size == 3
    assert tl.latest_event_time == T0 + timedelta(days=2)


def test_retire_withdraws_from_its_time_and_history_keeps_the_record() -> None:
    tl = RegistryTimeline()
    tl.add(parse_change(leaf(MEMBER, at=T0, index=0)))
    tl.add(
        parse_change(
            leaf(MEMBER, at=T0 + timedelta(hours=1), index=1, operation=RegistryOperation.RETIRE)
        )
    )
    assert len(tl.known_at(T0 + timedelta(minutes=59)).memberships("dr.lee")) == 1
    assert tl.known_at(T0 + timedelta(hours=1)).memberships("dr.lee") == ()
    snap = tl.known_at(T0).snapshot()
    assert [e.record.user_id for e in snap.members] == ["dr.lee"]
    assert tl.known_at(T0 + timedelta(hours=2)).snapshot().members == ()


def test_the_state_does_not_depend_on_the_order_changes_were_added() -> None:
    changes = [
        parse_change(
            leaf(
                dataclasses.replace(LIC, number=f"N{i}"), at=T0 + timedelta(minutes=i % 5), index=i
            )
        )
        for i in range(20)
    ]
    views = []
    for seed in range(5):
        shuffled = changes[:]
        random.Random(seed).shuffle(shuffled)
        tl = RegistryTimeline()
        tl.extend(shuffled)
        tl.extend(shuffled[:3])  # a leaf seen twice counts once
        assert tl.size == 20
        views.append([tl.known_at(T0 + timedelta(minutes=m)).licenses("dr.lee") for m in range(6)])
    assert all(v == views[0] for v in views)
    # ties at the same instant: the later ledger position wins
    (at_4,) = views[0][4]
    assert at_4.record.number == "N19"


def test_a_baa_moved_to_another_pair_is_found_under_its_new_pair_only() -> None:
    tl = RegistryTimeline()
    tl.add(parse_change(leaf(BAA, at=T0, index=0)))
    tl.add(
        parse_change(
            leaf(dataclasses.replace(BAA, facility_id="oakview"), at=T0 + timedelta(1), index=1)
        )
    )
    later = tl.known_at(T0 + timedelta(days=2))
    assert later.baas("stmarys", "nightrad") == ()
    assert len(later.baas("oakview", "nightrad")) == 1
    assert len(tl.known_at(T0).baas("stmarys", "nightrad")) == 1


def test_periods_are_inclusive_at_both_ends() -> None:
    assert in_period(date(2026, 1, 1), date(2026, 1, 1), date(2026, 1, 1))
    assert not in_period(date(2026, 1, 2), date(2026, 1, 1), date(2026, 1, 1))
    assert not in_period(date(2025, 12, 31), date(2026, 1, 1), None)
    assert in_period(date(2099, 1, 1), date(2026, 1, 1), None)
