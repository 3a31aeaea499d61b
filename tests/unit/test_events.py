"""Event validation: each bad field is named by its dotted path."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from integrations.simulator import Simulator, make_npi
from producers.codec import Codec
from producers.errors import EventValidationError
from producers.events import (
    DICOM_EVENT_IDS,
    SECURITY_EVENT_IDS,
    Actor,
    CriticalResultRelay,
    EventAction,
    EventOutcome,
    Facility,
    Patient,
    PhiAccessEvent,
    SecurityEvent,
    Study,
    event_key,
    new_event_id,
    npi_checksum_ok,
    schema_name,
    to_record,
    validate,
    validate_record,
)


def access(**changes: Any) -> PhiAccessEvent:
    base = Simulator(seed=21).access().stamped(producer_id="unit", producer_seq=1)
    return dataclasses.replace(base, **changes)


def relay(**changes: Any) -> CriticalResultRelay:
    base = Simulator(seed=22).relay().stamped(producer_id="unit", producer_seq=1)
    return dataclasses.replace(base, **changes)


def security(**changes: Any) -> SecurityEvent:
    base = SecurityEvent(
        producer_id="unit",
        producer_seq=1,
        event_time=datetime(2026, 3, 9, 6, 58, 44, tzinfo=UTC),
        facility=Facility(id="stmarys-boston"),
        actor=Actor(user_id="rad004.kowalski", role="radiologist", name="Ana Kowalski"),
        dicom_event_id="110114",
        event_type_code="110122",
        network_address="10.20.4.17",
    )
    return dataclasses.replace(base, **changes)


def field_of(event: PhiAccessEvent | CriticalResultRelay | SecurityEvent) -> str:
    with pytest.raises(EventValidationError) as info:
        validate(event)
    assert info.value.field in str(info.value)
    return info.value.field


def test_simulated_events_are_valid() -> None:
    for event in Simulator(seed=5).events(500):
        validate(event.stamped(producer_id="p", producer_seq=0))


def test_npi_check_digit() -> None:
    # CMS's published example NPI.
    assert npi_checksum_ok("1234567893")
    assert not npi_checksum_ok("1234567890")
    import random

    rng = random.Random(1)
    assert all(npi_checksum_ok(make_npi(rng)) for _ in range(50))


@pytest.mark.parametrize(
    ("changes", "expected_field"),
    [
        ({"producer_id": None}, "producer_id"),
        ({"producer_seq": -1}, "producer_seq"),
        ({"patient": Patient(id="  ")}, "patient.id"),
        ({"patient": Patient(id="x" * 300)}, "patient.id"),
        ({"patient": Patient(id="MRN1", state="Massachusetts")}, "patient.state"),
        ({"patient": Patient(id="MRN\x001")}, "patient.id"),
        ({"actor": Actor(user_id="", role="radiologist")}, "actor.user_id"),
        ({"actor": Actor(user_id="u", role="radiologist", npi="1234567890")}, "actor.npi"),
        ({"dicom_event_id": "110199"}, "dicom_event_id"),
        ({"action": "READ"}, "action"),
        ({"purpose_of_use": "because"}, "purpose_of_use"),
        ({"study": Study(uid="1.2.3.abc")}, "study.uid"),
        ({"study": Study(uid="1.2.03")}, "study.uid"),
        ({"event_time": datetime(2020, 1, 1)}, "event_time"),  # naive
        ({"event_time": datetime.now(UTC) + timedelta(hours=1)}, "event_time"),
        ({"event_time": datetime(1970, 1, 1, tzinfo=UTC)}, "event_time"),
        ({"details": {f"k{i}": "v" for i in range(100)}}, "details"),
    ],
)
def test_access_validation_names_the_bad_field(
    changes: dict[str, Any], expected_field: str
) -> None:
    assert field_of(access(**changes)) == expected_field


def test_relay_times_must_be_in_order() -> None:
    r = relay()
    assert r.communicated_at is not None
    assert (
        field_of(relay(communicated_at=r.identified_at - timedelta(minutes=1))) == "communicated_at"
    )
    assert (
        field_of(relay(acknowledged_at=r.communicated_at - timedelta(seconds=1)))
        == "acknowledged_at"
    )
    assert field_of(relay(communicated_at=None)) == "acknowledged_at"


def test_access_event_is_immutable() -> None:
    event = access()
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.patient = Patient(id="other")  # type: ignore[misc]
    assert event.action is EventAction.READ or event.action in EventAction


# --------------------------------------------------------------------------- security events


def test_security_event_ids_are_dicom_security_event_ids() -> None:
    assert {"110100", "110108", "110113", "110114"} == SECURITY_EVENT_IDS
    assert set(DICOM_EVENT_IDS) >= SECURITY_EVENT_IDS
    assert "110101" not in SECURITY_EVENT_IDS  # Audit Log Used has its own schema


@pytest.mark.parametrize(
    "event",
    [
        security(),  # login
        security(event_type_code="110123"),  # logout
        security(outcome=EventOutcome.MINOR_FAILURE, actor=Actor(user_id="x?", role="unspecified")),
        security(
            dicom_event_id="110113",
            event_type_code="110127",
            patient=Patient(id="MRN9900112", issuer="stmarys-boston", state="MA"),
            purpose_of_use="BTG",
        ),
        security(dicom_event_id="110100", event_type_code="110120", network_address=None),
        security(dicom_event_id="110108", event_type_code=None, details={"node": "ws-12"}),
    ],
)
def test_security_events_are_valid_and_encode(event: SecurityEvent) -> None:
    validate(event)
    assert schema_name(event) == "philedger.audit.SecurityEvent"
    codec = Codec()
    decoded = codec.decode(codec.encode(event), now=datetime(2026, 6, 1, tzinfo=UTC))
    assert decoded == event
    assert to_record(decoded) == to_record(event)


@pytest.mark.parametrize(
    ("changes", "expected_field"),
    [
        ({"producer_id": None}, "producer_id"),
        ({"producer_seq": 2**63}, "producer_seq"),
        ({"dicom_event_id": "110103"}, "dicom_event_id"),  # a PHI access, not security
        ({"dicom_event_id": "110101"}, "dicom_event_id"),  # Audit Log Used
        ({"dicom_event_id": "110199"}, "dicom_event_id"),
        ({"event_type_code": "not a code!"}, "event_type_code"),
        ({"action": "LOGIN"}, "action"),
        ({"outcome": "FAILED"}, "outcome"),
        ({"actor": Actor(user_id=" ", role="radiologist")}, "actor.user_id"),
        ({"actor": Actor(user_id="u", role="")}, "actor.role"),
        ({"actor": Actor(user_id="u", role="r", npi="1234567890")}, "actor.npi"),
        ({"facility": Facility(id="")}, "facility.id"),
        ({"network_address": "x" * 300}, "network_address"),
        ({"patient": Patient(id="")}, "patient.id"),
        ({"patient": Patient(id="MRN1", state="Mass.")}, "patient.state"),
        ({"purpose_of_use": "BREAKGLASS"}, "purpose_of_use"),
        ({"details": {f"k{i}": "v" for i in range(100)}}, "details"),
        ({"details": {"k": "v" * 2000}}, "details['k']"),
        ({"event_time": datetime(2020, 1, 1)}, "event_time"),
        ({"event_time": datetime.now(UTC) + timedelta(hours=1)}, "event_time"),
    ],
)
def test_security_validation_names_the_bad_field(
    changes: dict[str, Any], expected_field: str
) -> None:
    assert field_of(security(**changes)) == expected_field


def test_security_record_rules_are_the_same_for_the_consumer() -> None:
    record = to_record(security()) | {"dicom_event_id": "110103"}
    with pytest.raises(EventValidationError) as info:
        validate_record("philedger.audit.SecurityEvent", record)
    assert info.value.field == "dicom_event_id"
    assert "110114 User Authentication" in str(info.value)


def test_security_event_key_is_the_patients_else_the_users() -> None:
    assert event_key(security()) == "user|rad004.kowalski"
    named = security(patient=Patient(id="MRN9900112", issuer="stmarys-boston"))
    assert event_key(named) == "stmarys-boston|MRN9900112"
    assert named.key == named.patient.key  # type: ignore[union-attr]


def test_security_event_is_immutable_and_stamps() -> None:
    event = security(producer_id=None, producer_seq=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.actor = Actor(user_id="other", role="r")  # type: ignore[misc]
    stamped = event.stamped(producer_id="atna", producer_seq=9)
    assert (stamped.producer_id, stamped.producer_seq) == ("atna", 9)
    assert stamped.event_id == event.event_id
    assert event.action is EventAction.EXECUTE


def test_event_ids_are_uuid7_and_sort_by_creation_time() -> None:
    """New event ids are RFC 9562 version 7: the creation time in milliseconds leads, so
    the ledger's event-id index grows at its right edge (docs/design/event-ids.md)."""
    before = datetime.now(UTC)
    first = new_event_id()
    time.sleep(0.002)
    second = new_event_id()
    assert (first.version, first.variant) == (7, uuid.RFC_4122)
    assert second > first
    assert len({new_event_id() for _ in range(10_000)}) == 10_000
    made = datetime.fromtimestamp((first.int >> 80) / 1000, UTC)
    assert before - timedelta(milliseconds=1) <= made <= datetime.now(UTC)
