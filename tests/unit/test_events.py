"""Event validation: each bad field is named by its dotted path."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from producers.errors import EventValidationError
from producers.events import (
    Actor,
    CriticalResultRelay,
    EventAction,
    Patient,
    PhiAccessEvent,
    Study,
    npi_checksum_ok,
    validate,
)
from producers.simulator import Simulator, make_npi


def access(**changes: Any) -> PhiAccessEvent:
    base = Simulator(seed=21).access().stamped(producer_id="unit", producer_seq=1)
    return dataclasses.replace(base, **changes)


def relay(**changes: Any) -> CriticalResultRelay:
    base = Simulator(seed=22).relay().stamped(producer_id="unit", producer_seq=1)
    return dataclasses.replace(base, **changes)


def field_of(event: PhiAccessEvent | CriticalResultRelay) -> str:
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
