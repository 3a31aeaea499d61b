"""The registry rules on a scratch PostgreSQL ledger: RegistryChange leaves in a registry
log and PhiAccessEvents in an access log, appended through the real appender;
registry.baa_missing raised after a BAA ended and not before, a BAA renewal known later
attached to the alert (and shown), and the same alerts and evidence when the same leaves
are evaluated from an empty database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from consumers.classify import classify
from ledger.audit.ingest import Accepted, IndexFields, WriterSchemaInfo
from ledger.audit.rules import Evaluator, PassSummary, RulesConfig, build_rules
from ledger.audit.rules.registrywatch import RegistryWatch
from ledger.log.leaf import KafkaRecord, encode_leaf
from ledger.pg.appender import PostgresAppender
from ledger.pg.compliance import PostgresRulesStore
from producers import (
    Author,
    Credential,
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
from producers.events import (
    Actor,
    EventAction,
    EventOutcome,
    Facility,
    Patient,
    PhiAccessEvent,
    Study,
    event_key,
)
from tests.conftest import own_ledger
from tests.support import APPENDED_MS, Stack

pytestmark = pytest.mark.integration

CODEC = registry_codec()
KNOWN = datetime(2025, 6, 1, tzinfo=UTC)
BAA_ENDS = date(2026, 3, 1)
RENEWED_AT = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 4, 1, tzinfo=UTC)  # the evaluator's wall clock: all settled

REGISTRY: list[RegistryRecord] = [
    POrganization(organization_id="nightrad", name="NightRad Teleradiology",
                  organization_kind=OrganizationKind.BUSINESS_ASSOCIATE),
    POrganization(organization_id="stmarys", name="St. Mary's",
                  organization_kind=OrganizationKind.FACILITY),
    PBaa(baa_id="baa-2024", facility_id="stmarys", business_associate_id="nightrad",
         effective_from=date(2024, 1, 1), effective_to=BAA_ENDS, scope="reads"),
    WorkforceMember(user_id="dr.lee", organization_id="nightrad", role="radiologist",
                    shared_or_generic=False, employed_from=date(2024, 1, 1)),
    StateLicense(license_id="ma-1", user_id="dr.lee", state="MA", number="MA-77",
                 valid_from=date(2024, 1, 1), valid_to=None),
    Credential(credential_id="c-1", user_id="dr.lee", facility_id="stmarys",
               privilege="read", valid_from=date(2024, 1, 1), valid_to=None),
]  # fmt: skip
#: The renewal, signed four days after the BAA ended, effective from the day it ended.
RENEWAL = PBaa(baa_id="baa-2026", facility_id="stmarys", business_associate_id="nightrad",
               effective_from=BAA_ENDS, effective_to=None, scope="reads")  # fmt: skip


def read(patient: str, at: datetime) -> PhiAccessEvent:
    return PhiAccessEvent(
        facility=Facility(id="stmarys", name="St. Mary's"),
        actor=Actor(user_id="dr.lee", role="radiologist", organization="NightRad"),
        dicom_event_id="110103",
        action=EventAction.READ,
        outcome=EventOutcome.SUCCESS,
        patient=Patient(id=patient, issuer="stmarys", state="MA"),
        study=Study(uid="2.25.77", accession="A7", modality="CT", instances=10),
        network_address="10.77.0.1",
        purpose_of_use="TREAT",
        details={},
        event_time=at,
    )


ACCESSES = (
    read("MRN-1", datetime(2026, 2, 27, 14, 0, tzinfo=UTC)),  # BAA in effect
    read("MRN-2", datetime(2026, 3, 2, 14, 0, tzinfo=UTC)),  # the day after it ended
    read("MRN-3", datetime(2026, 3, 2, 15, 0, tzinfo=UTC)),  # same day: no second alert
)


def registry_item(change: RegistryChange, topic: str, offset: int) -> Accepted:
    """A registry change as the appender stores it. Until the consumer accepts registry
    changes (its own part of issue #15), the index row is a stand-in: the evaluator
    reads the leaf, never that row."""
    record = KafkaRecord(
        topic=topic, partition=0, offset=offset, timestamp_ms=APPENDED_MS, timestamp_type=0,
        key=b"registry", value=CODEC.encode(change),
    )  # fmt: skip
    index = IndexFields(
        event_id=uuid.uuid4(), kind="security_event", event_time=change.event_time,
        producer_id="registry-it", producer_seq=offset + 1, facility_id="registry",
        patient_id=None, patient_issuer=None, patient_state=None, user_id="alice",
        user_name=None, user_role=None, user_org=None, dicom_event_id=None, action=None,
        outcome=None, study_uid=None, accession=None, network_address=None,
        purpose_of_use=None,
    )  # fmt: skip
    return Accepted(record=record, leaf=encode_leaf(record), index=index)


def access_item(event: PhiAccessEvent, topic: str, offset: int) -> Accepted:
    record = KafkaRecord(
        topic=topic, partition=0, offset=offset,
        timestamp_ms=APPENDED_MS, timestamp_type=0,
        key=event_key(event).encode(),
        value=CODEC.encode(event.stamped(producer_id="registry-it", producer_seq=offset + 1)),
    )  # fmt: skip
    item = classify(record, CODEC)
    assert isinstance(item, Accepted), item
    return item


async def append(dsn: str, topic: str, items: Sequence[Accepted]) -> None:
    # The registry is a reference topic (one log for ever), as the consumer appends it.
    reference = frozenset({topic}) if topic.endswith("-registry") else frozenset()
    async with PostgresAppender(
        dsn=dsn, ledger_name="test.ledger.local", reference_topics=reference
    ) as app:
        await app.register_schemas(
            [
                WriterSchemaInfo(fingerprint=s.fingerprint, full_name=s.full_name,
                                 canonical_form=s.canonical_form, schema_json=s.schema_json)
                for s in CODEC.schemas
            ]
        )  # fmt: skip
        result = await app.append(topic=topic, partition=0, items=list(items))
        assert result.appended == len(items)


def changes(records: Sequence[RegistryRecord], at: datetime, first: int) -> list[RegistryChange]:
    return [
        RegistryChange(author=Author(user_id="alice", role="compliance"), record=r,
                       operation=RegistryOperation.UPSERT, event_time=at,
                       producer_id="registry-it", producer_seq=first + i + 1)
        for i, r in enumerate(records)
    ]  # fmt: skip


@dataclass(frozen=True)
class Topics:
    registry: str
    access: str


def fill(dsn: str, t: Topics, *, renewal: bool) -> None:
    regs = changes(REGISTRY, KNOWN, 0)
    if renewal:
        regs += changes([RENEWAL], RENEWED_AT, len(regs))
    asyncio.run(append(dsn, t.registry, [registry_item(c, t.registry, i)
                                         for i, c in enumerate(regs)]))  # fmt: skip
    asyncio.run(append(dsn, t.access, [access_item(e, t.access, i)
                                       for i, e in enumerate(ACCESSES)]))  # fmt: skip


def renew(dsn: str, t: Topics) -> None:
    (c,) = changes([RENEWAL], RENEWED_AT, len(REGISTRY))
    asyncio.run(append(dsn, t.registry, [registry_item(c, t.registry, len(REGISTRY))]))


async def evaluate(dsn: str, t: Topics, *, batch: int = 2000) -> PassSummary:
    config = RulesConfig()
    async with PostgresRulesStore(dsn=dsn, registry_topic=t.registry) as store:
        evaluator = Evaluator(
            store, build_rules(config), batch=batch,
            registry=RegistryWatch(store, config, batch=batch), clock=lambda: LATER,
        )  # fmt: skip
        return await evaluator.run_pass()


Evidence = set[tuple[str, str, int, str]]


async def alerts(dsn: str) -> dict[tuple[str, str, int], Evidence]:
    """(rule, topic, leaf) -> {(rule, topic, leaf, role)} of every alert."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT a.rule_id, la.topic AS a_topic, a.leaf_index AS a_leaf, le.topic,"
            " e.leaf_index, e.role FROM alerts a JOIN logs la ON la.log_id = a.log_id"
            " JOIN alert_evidence e USING (alert_id) JOIN logs le ON le.log_id = e.log_id"
        )
    finally:
        await conn.close()
    found: dict[tuple[str, str, int], Evidence] = {}
    for r in rows:
        key = (r["rule_id"], r["a_topic"], r["a_leaf"])
        found.setdefault(key, set()).add((r["rule_id"], r["topic"], r["leaf_index"], r["role"]))
    return found


def test_baa_missing_after_the_baa_ended_and_a_renewal_known_later(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    t = Topics(registry=f"reg-{tag}-registry", access=f"reg-{tag}-phi")
    with own_ledger(stack, f"{stack.database}_reg{tag[:6]}") as own:
        dsn = own.appender_url
        fill(dsn, t, renewal=False)
        s = asyncio.run(evaluate(dsn, t))
        assert (s.raised, s.registry_changes, s.held) == (1, len(REGISTRY), 0)
        raised = asyncio.run(alerts(dsn))
        # raised at the first read after the BAA ended, not before, and once that day
        assert set(raised) == {("registry.baa_missing", t.access, 1)}
        assert raised[("registry.baa_missing", t.access, 1)] == {
            ("registry.baa_missing", t.access, 1, "trigger"),
            ("registry.baa_missing", t.registry, 0, "registry"),  # the business associate
            ("registry.baa_missing", t.registry, 2, "registry"),  # the BAA that ended
            ("registry.baa_missing", t.registry, 3, "registry"),  # the membership
        }
        assert asyncio.run(evaluate(dsn, t)).raised == 0

        # the renewal reaches the ledger after the alert: attached to it, not raised again
        renew(dsn, t)
        s = asyncio.run(evaluate(dsn, t))
        assert (s.raised, s.registry_changes, s.annotated) == (0, 1, 1)
        later = asyncio.run(alerts(dsn))
        late_row = ("registry.baa_missing", t.registry, len(REGISTRY), "later_registry_change")
        assert later[("registry.baa_missing", t.access, 1)] == {
            *raised[("registry.baa_missing", t.access, 1)],
            late_row,
        }
        assert asyncio.run(evaluate(dsn, t)).annotated == 0  # attached once

        async def shown() -> tuple[str, ...]:
            async with PostgresRulesStore(dsn=own.reader_url) as store:
                detail = await store.alert(1)
                assert detail is not None
                return detail.notes()

        (note,) = asyncio.run(shown())
        assert note == (
            f"covered by a registry change known later: log test.ledger.local/{t.registry}/0 "
            f"leaf {len(REGISTRY)}"
        )

        # the same leaves from an empty database: the renewal is known before the alert
        with own_ledger(stack, f"{stack.database}_rep{tag[:6]}") as again:
            fill(again.appender_url, t, renewal=True)
            s = asyncio.run(evaluate(again.appender_url, t, batch=2))
            assert (s.raised, s.annotated) == (1, 0)
            assert asyncio.run(alerts(again.appender_url)) == later


def test_a_ledger_with_no_registry_log_holds_nobody_to_the_registry_nor_waits(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    t = Topics(registry=f"reg-{tag}-registry", access=f"reg-{tag}-phi")
    with own_ledger(stack, f"{stack.database}_none{tag[:6]}") as own:
        items = [access_item(e, t.access, i) for i, e in enumerate(ACCESSES)]
        asyncio.run(append(own.appender_url, t.access, items))
        s = asyncio.run(evaluate(own.appender_url, t))
        assert (s.raised, s.held, s.leaves) == (0, 0, len(ACCESSES))
        assert asyncio.run(alerts(own.appender_url)) == {}


def test_an_access_waits_for_the_registry_to_settle(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    t = Topics(registry=f"reg-{tag}-registry", access=f"reg-{tag}-phi")
    with own_ledger(stack, f"{stack.database}_hold{tag[:6]}") as own:
        dsn = own.appender_url
        fill(dsn, t, renewal=False)

        async def at(now: datetime) -> PassSummary:
            config = RulesConfig()
            async with PostgresRulesStore(dsn=dsn, registry_topic=t.registry) as store:
                return await Evaluator(store, build_rules(config),
                                       registry=RegistryWatch(store, config),
                                       clock=lambda: now).run_pass()  # fmt: skip

        s = asyncio.run(at(ACCESSES[1].event_time + timedelta(seconds=0.5)))
        assert (s.held, s.leaves, s.raised) == (1, 1, 0)
        s = asyncio.run(at(LATER))
        assert (s.held, s.leaves, s.raised) == (0, 2, 1)
