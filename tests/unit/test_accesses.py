"""A history entry's JSON: the row path (orjson) answers what the AccessEntry path does."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.audit.query import AccessEntry, LedgerPosition, entry_row
from ledger.http.accesses import access_object, entry_json, json_bytes

_TEXT = st.one_of(st.none(), st.text(min_size=1, max_size=12))
_TIMES = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2100, 1, 1),
    timezones=st.just(timezone(timedelta(hours=-5, minutes=-30))),
)


@st.composite
def entries(draw: st.DrawFn) -> AccessEntry:
    kind = draw(st.sampled_from(["phi_access", "critical_result_relay", "audit_log_used"]))
    return AccessEntry(
        event_id=uuid.UUID(int=draw(st.integers(min_value=0, max_value=2**128 - 1))),
        kind=kind,
        event_time=draw(_TIMES),
        facility_id=draw(st.text(min_size=1, max_size=8)),
        patient_id=draw(_TEXT),
        patient_issuer=draw(_TEXT),
        patient_state=draw(_TEXT),
        user_id=draw(st.text(min_size=1, max_size=8)),
        user_name=draw(_TEXT),
        user_role=draw(_TEXT),
        user_org=draw(_TEXT),
        dicom_event_id=draw(st.sampled_from([None, "110103", "110110", "110112", "nope"])),
        action=draw(st.sampled_from([None, "C", "R", "U", "D", "E"])),
        outcome=draw(st.sampled_from([None, "SUCCESS", "MINOR_FAILURE"])),
        study_uid=draw(_TEXT),
        accession=draw(_TEXT),
        network_address=draw(_TEXT),
        purpose_of_use=draw(_TEXT),
        position=LedgerPosition(
            log_id=draw(st.integers(min_value=1, max_value=600)),
            origin=draw(st.text(min_size=1, max_size=20)),
            leaf_index=draw(st.integers(min_value=0, max_value=2**62)),
        ),
        via_disclosure=draw(st.booleans()),
    )


@given(entries())
def test_the_row_path_writes_the_json_of_the_entry_path(entry: AccessEntry) -> None:
    """orjson of the row's object parses to what json.dumps of ``entry_json`` does (times
    as isoformat writes them, microseconds or not, any offset; ids as text)."""
    fast = orjson.loads(json_bytes(access_object(entry_row(entry))))
    assert fast == json.loads(json.dumps(entry_json(entry)))
    assert fast["time"] == entry.event_time.isoformat()


class DriverUuid(uuid.UUID):
    """A UUID subclass, as the database driver returns ids."""


def test_the_drivers_uuid_subclass_is_written_as_text() -> None:
    ident = DriverUuid("6f1c2a4e-8d0b-4c0e-9a55-0b8f0e3c1d2a")
    assert json_bytes({"id": ident}) == b'{"id":"6f1c2a4e-8d0b-4c0e-9a55-0b8f0e3c1d2a"}'


def test_anything_else_is_refused() -> None:
    with pytest.raises(TypeError):
        json_bytes({"x": object()})
