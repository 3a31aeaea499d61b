"""The RegistryChange event: its model, its validation and its Avro round trip."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

import schemas
from producers import (
    Actor,
    Author,
    Baa,
    Codec,
    Credential,
    DecodeError,
    EventAction,
    Facility,
    Organization,
    OrganizationKind,
    Patient,
    PhiAccessEvent,
    ProducerError,
    RegistryChange,
    RegistryKind,
    RegistryOperation,
    RegistryRecord,
    RegistryValidationError,
    StateLicense,
    WorkforceMember,
    registry_codec,
    validate_change,
)
from producers.codec import MAGIC, load_shipped_schemas
from producers.registry import (
    REGISTRY_SCHEMA_NAME,
    registry_to_record,
    validate_registry_record,
)

AUTHOR = Author(user_id="alice", role="compliance")
WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
#: The registry schema's fingerprint (wire order): pinned here and in schemas/README.md.
REGISTRY_FINGERPRINT = "9186b9f685e14526"

ORG = Organization(
    organization_id="stmarys",
    name="St Mary's Hospital",
    organization_kind=OrganizationKind.FACILITY,
)
BAA = Baa(
    baa_id="baa-1",
    facility_id="stmarys",
    business_associate_id="nightrad",
    effective_from=date(2023, 1, 1),
    effective_to=date(2025, 12, 31),
    scope="Teleradiology reads, after-hours",
)
MEMBER = WorkforceMember(
    user_id="dr.lee",
    organization_id="nightrad",
    role="radiologist",
    shared_or_generic=False,
    employed_from=date(2023, 1, 1),
)
LICENSE = StateLicense(
    license_id="lic-1",
    user_id="dr.lee",
    state="CA",
    number="A12345",
    valid_from=date(2024, 1, 1),
    valid_to=date(2027, 3, 31),
)
CREDENTIAL = Credential(
    credential_id="cr-1",
    user_id="dr.lee",
    facility_id="stmarys",
    privilege="CT and MR reads",
    valid_from=date(2023, 1, 1),
)
RECORDS: list[RegistryRecord] = [ORG, BAA, MEMBER, LICENSE, CREDENTIAL]


def change(record: RegistryRecord, **over: Any) -> RegistryChange:
    base = RegistryChange(
        author=AUTHOR,
        record=record,
        event_time=WHEN,
        producer_id="registry-cli",
        producer_seq=7,
    )
    return dataclasses.replace(base, **over)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
@pytest.mark.parametrize("operation", list(RegistryOperation))
def test_every_kind_round_trips_through_the_codec(
    record: RegistryRecord, operation: RegistryOperation
) -> None:
    codec = registry_codec()
    c = change(record, operation=operation)
    message = codec.encode(c)
    assert message[:2] == MAGIC
    assert message[2:10].hex() == REGISTRY_FINGERPRINT
    assert codec.decode_change(message) == c


def test_the_wire_bytes_of_a_fixed_change_are_pinned() -> None:
    # A golden vector: a change to this schema or its encoding shows up here first.
    c = change(LICENSE, event_id=uuid.UUID("00000000-0000-4000-8000-000000000015"))
    assert registry_codec().encode(c).hex() == (
        "c3019186b9f685e145264830303030303030302d303030302d343030302d383030302d3030303030"
        "30303030303135eabcbae5ded7a3061872656769737472792d636c690e0a616c69636514636f6d70"
        "6c69616e63650006000000020a6c69632d310c64722e6c65650443410c41313233343596b40202d8"
        "c60200"
    )


def test_the_kind_names_the_one_record_set() -> None:
    record = registry_to_record(change(BAA))
    assert record["kind"] == "BAA"
    assert [k for k in ("organization", "baa", "member", "license", "credential") if record[k]] == [
        "baa"
    ]
    assert change(MEMBER).kind is RegistryKind.MEMBER


def test_the_schema_is_pinned_and_in_the_consumers_codec() -> None:
    registry = load_shipped_schemas(schemas.REGISTRY_SCHEMA_FILES)
    assert [(s.full_name, s.fingerprint.hex()) for s in registry] == [
        (REGISTRY_SCHEMA_NAME, REGISTRY_FINGERPRINT)
    ]
    assert schemas.REGISTRY_CHANGE_V1 in schemas.ALL_SCHEMA_FILES
    org = change(ORG)
    message = Codec().encode(org)  # what the consumer runs decodes it
    assert Codec().decode_change(message) == org
    assert registry_codec().encode(org) == message


def test_decode_and_decode_change_refuse_each_others_messages() -> None:
    codec = registry_codec()
    with pytest.raises(DecodeError, match="registry change") as caught:
        codec.decode(codec.encode(change(ORG)))
    assert caught.value.reason == "invalid_event"
    access = PhiAccessEvent(
        facility=Facility(id="stmarys"),
        actor=Actor(user_id="dr.lee", role="radiologist"),
        dicom_event_id="110103",
        action=EventAction.READ,
        patient=Patient(id="MRN-1", state="CA"),
        producer_id="viewer-01",
        producer_seq=1,
    )
    with pytest.raises(DecodeError, match="not a registry change") as caught:
        codec.decode_change(codec.encode(access))
    assert caught.value.reason == "invalid_event"


def test_prepare_routes_a_change_to_the_registry_topic_keyed_by_its_record_id() -> None:
    codec = Codec()
    c = change(MEMBER, producer_id=None, producer_seq=None)
    prepared = codec.prepare(c)
    assert (prepared.registry, prepared.relay) == (True, False)
    assert prepared.key == b"dr.lee@nightrad"
    stamped = c.stamped(producer_id="registry-local", producer_seq=3)
    assert prepared.encode_with("registry-local", 3) == codec.encode(stamped)


def test_prepare_refuses_an_invalid_change() -> None:
    bad = change(dataclasses.replace(LICENSE, state="ZZ"))
    with pytest.raises(RegistryValidationError, match=r"license\.state"):
        Codec().prepare(bad)


def test_a_message_that_breaks_a_rule_is_refused_on_decode() -> None:
    # Written without validation (as a hostile producer could): the decoder validates.
    codec = registry_codec()
    schema = codec.writer_schema(change(LICENSE))
    record = registry_to_record(change(LICENSE))
    record["license"]["state"] = "ZZ"  # type: ignore[index]
    message = codec._write(schema, record)
    with pytest.raises(DecodeError, match=r"license\.state") as caught:
        codec.decode_change(message)
    assert caught.value.reason == "invalid_event"


BAD_CHANGES: list[tuple[str, RegistryChange, str]] = [
    ("unknown state", change(dataclasses.replace(LICENSE, state="ZZ")), "license.state"),
    ("lower-case state", change(dataclasses.replace(LICENSE, state="ca")), "license.state"),
    (
        "ends before it starts",
        change(dataclasses.replace(BAA, effective_to=date(2022, 12, 31))),
        "baa.effective_to",
    ),
    (
        "employment ends before it starts",
        change(dataclasses.replace(MEMBER, employed_to=date(2022, 1, 1))),
        "member.employed_to",
    ),
    ("blank id", change(dataclasses.replace(CREDENTIAL, credential_id=" ")), "credential"),
    ("id with blanks", change(dataclasses.replace(CREDENTIAL, user_id=" x")), "credential"),
    ("id with a control", change(dataclasses.replace(CREDENTIAL, user_id="a\x1bb")), "credential"),
    ("long id", change(dataclasses.replace(ORG, organization_id="x" * 257)), "organization"),
    ("long scope", change(dataclasses.replace(BAA, scope="x" * 1025)), "baa.scope"),
    (
        "ancient day",
        change(dataclasses.replace(LICENSE, valid_from=date(1899, 1, 1))),
        "license",
    ),
    (
        "a datetime, not a day",
        change(dataclasses.replace(LICENSE, valid_from=WHEN)),
        "license.valid_from",
    ),
    ("blank author", change(ORG, author=Author(user_id="", role="x")), "author.user_id"),
    (
        "future change",
        change(ORG, event_time=datetime.now(UTC) + timedelta(days=1)),
        "event_time",
    ),
    ("naive time", change(ORG, event_time=datetime(2026, 1, 1)), "event_time"),
    ("negative seq", change(ORG, producer_seq=-1), "producer_seq"),
    ("not an operation", change(ORG, operation="DELETE"), "operation"),
    (
        "not an organization kind",
        change(dataclasses.replace(ORG, organization_kind="clinic")),  # type: ignore[arg-type]
        "organization.organization_kind",
    ),
    ("not a record", change("stmarys"), "record"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("case", "bad", "field"), BAD_CHANGES, ids=[c[0] for c in BAD_CHANGES])
def test_each_rule_refuses_with_a_named_error(case: str, bad: RegistryChange, field: str) -> None:
    with pytest.raises(RegistryValidationError) as caught:
        validate_change(bad)
    assert caught.value.field.startswith(field), caught.value.field
    assert isinstance(caught.value, ProducerError)
    with pytest.raises(RegistryValidationError):
        registry_codec().encode(bad)


def test_a_record_with_two_subjects_is_refused() -> None:
    record = registry_to_record(change(ORG))
    record["baa"] = registry_to_record(change(BAA))["baa"]
    with pytest.raises(RegistryValidationError, match="exactly one record") as caught:
        validate_registry_record(record)
    assert caught.value.field == "baa"


def test_a_record_whose_kind_names_a_missing_subject_is_refused() -> None:
    record = registry_to_record(change(ORG))
    record["kind"] = "LICENSE"
    record["organization"] = None
    with pytest.raises(RegistryValidationError, match="is required") as caught:
        validate_registry_record(record)
    assert caught.value.field == "license"


def test_a_record_without_a_uuid_or_an_author_is_refused() -> None:
    record = registry_to_record(change(ORG))
    with pytest.raises(RegistryValidationError, match="UUID"):
        validate_registry_record({**record, "event_id": "not-a-uuid"})
    with pytest.raises(RegistryValidationError, match="author"):
        validate_registry_record({**record, "author": None})
    with pytest.raises(RegistryValidationError, match="RegistryKind"):
        validate_registry_record({**record, "kind": "PATIENT"})


def test_one_day_periods_and_open_ends_are_valid() -> None:
    validate_change(change(dataclasses.replace(LICENSE, valid_to=date(2024, 1, 1))))
    validate_change(change(dataclasses.replace(LICENSE, valid_to=None)))
    validate_change(change(dataclasses.replace(MEMBER, shared_or_generic=True)))


def test_the_schema_readme_lists_the_fingerprint_and_defaults_are_set() -> None:
    from pathlib import Path

    from tests.unit.test_schemas import _nullable_fields_without_default

    readme = (Path(schemas.__file__).parent / "README.md").read_text()
    assert f"`{REGISTRY_FINGERPRINT}`" in readme
    for name in schemas.REGISTRY_SCHEMA_FILES:
        assert _nullable_fields_without_default(schemas.load_schema_json(name)) == [], name


@pytest.mark.parametrize("topic", ["phi-access", "critical-result-relay"])
def test_the_consumer_quarantines_a_change_off_the_registry_topic(topic: str) -> None:
    # The consumer's classification, with its default codec: never an index projection.
    from consumers.classify import classify
    from ledger.audit.ingest import Rejected
    from ledger.log.leaf import KafkaRecord

    message = registry_codec().encode(change(ORG))
    record = KafkaRecord(
        topic=topic,
        partition=0,
        offset=0,
        timestamp_ms=0,
        timestamp_type=0,
        key=b"stmarys",
        value=message,
    )
    item = classify(
        record,
        Codec(),
        relay_topics=frozenset({"critical-result-relay"}),
        registry_topics=frozenset({"compliance-registry"}),
    )
    assert isinstance(item, Rejected)
    assert item.reason == "wrong_topic"
    assert "only on a registry topic" in item.detail
