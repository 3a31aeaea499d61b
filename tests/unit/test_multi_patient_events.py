"""PhiAccessEvent v2: a query's result set, or no patient (docs/design/multi-patient-events.md)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from consumers.projection import event_index
from ledger.audit import fhir
from ledger.audit.query import LedgerPosition
from ledger.audit.records import SchemaSet, StoredSchema
from ledger.verify.patients import expected_patients, patients_problem
from producers.codec import Codec, load_shipped_schemas
from producers.errors import DecodeError, EventValidationError
from producers.events import (
    MAX_DISCLOSED_PATIENTS,
    Actor,
    DisclosedPatient,
    EventAction,
    Facility,
    Patient,
    PhiAccessEvent,
    event_key,
    to_record,
    validate,
)

V1 = "ee6e393ef1d478ae"
V2 = "1f7e8aa358e48ee9"
V3 = "e6ba5b1e5a454708"  # adds ``transport``; new access events are written with it
_WHEN = datetime(2026, 12, 6, 2, 13, tzinfo=UTC)
STUDY = "1.2.840.113619.2.55.3"


def dp(
    pid: str, issuer: str | None = "hosp", *studies: str, state: str | None = None
) -> DisclosedPatient:
    return DisclosedPatient(id=pid, issuer=issuer, state=state, studies=tuple(studies))


def query(**kw: object) -> PhiAccessEvent:
    fields: dict[str, object] = {
        "event_id": uuid.UUID(int=7),
        "event_time": _WHEN,
        "facility": Facility(id="stmarys"),
        "actor": Actor(user_id="dr.x", role="radiologist"),
        "dicom_event_id": "110112",
        "action": EventAction.EXECUTE,
        "patient": None,
        "details": {"criteria": "PatientName=SMITH*"},
        "producer_id": "dicom-proxy",
        "producer_seq": 1,
    }
    return PhiAccessEvent(**(fields | kw))  # type: ignore[arg-type]


THREE = (
    dp("MRN1", "hosp", STUDY + ".1", STUDY + ".2", state="MA"),
    dp("MRN2", "hosp"),
    dp("MRN0", "other"),
)


def test_a_query_with_three_patients_is_written_with_v3_and_round_trips() -> None:
    codec = Codec()
    event = query(disclosed=THREE)
    data = codec.encode(event)
    assert data[2:10].hex() == V3
    assert codec.decode(data) == event
    assert event_key(event) == "user|dr.x"  # names nobody: keyed by its user


def test_a_query_that_matched_nothing_is_an_event_without_any_patient() -> None:
    codec = Codec()
    empty = query()
    assert codec.decode(codec.encode(empty)) == empty
    row = event_index(empty)
    assert row.patient_id is None
    assert row.patients == ()
    assert row.user_id == "dr.x"


def test_a_truncated_answer_keeps_its_total() -> None:
    codec = Codec()
    event = query(disclosed=THREE, disclosed_truncated=True, disclosed_total=4321)
    assert codec.decode(codec.encode(event)) == event


def test_an_access_with_a_named_patient_is_v3_too_and_v1_still_decodes() -> None:
    named = query(dicom_event_id="110103", action=EventAction.READ, patient=Patient(id="MRN1"))
    assert Codec().encode(named)[2:10].hex() == V3
    v1_only = Codec(s for s in load_shipped_schemas() if s.fingerprint.hex() not in (V2, V3))
    old = v1_only.encode(named)
    assert old[2:10].hex() == V1
    decoded = Codec().decode(old)
    assert decoded == named
    assert isinstance(decoded, PhiAccessEvent)
    assert decoded.disclosed == ()


def test_v1_cannot_carry_a_result_set() -> None:
    v1_only = Codec(s for s in load_shipped_schemas() if s.fingerprint.hex() not in (V2, V3))
    with pytest.raises(EventValidationError):
        v1_only.encode(query())  # v1 requires a patient


def test_the_projection_lists_each_disclosed_patient_in_leaf_order() -> None:
    row = event_index(query(disclosed=THREE))
    assert row.patients == (
        ("hosp", "MRN1", "MA", (STUDY + ".1", STUDY + ".2")),
        ("hosp", "MRN2", None, ()),
        ("other", "MRN0", None, ()),
    )


def test_sort_key_is_issuer_then_id_without_issuer_first() -> None:
    assert sorted([dp("A", "z"), dp("B", None), dp("A", "a")], key=lambda p: p.sort_key) == [
        dp("B", None), dp("A", "a"), dp("A", "z"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        # Named nobody, disclosed nobody: only a Query may.
        ({"dicom_event_id": "110103"}, "patient"),
        ({"disclosed": (dp("MRN2"), dp("MRN1"))}, "disclosed[1]"),  # unsorted
        ({"disclosed": (dp("MRN1"), dp("MRN1"))}, "disclosed[1]"),  # twice
        ({"disclosed": (dp("MRN1", "b"), dp("MRN1", "a"))}, "disclosed[1]"),  # issuers unsorted
        ({"disclosed": (dp("MRN1", "a"), dp("MRN0", None))}, "disclosed[1]"),  # none sorts first
        ({"disclosed": (dp(""),)}, "disclosed[0].id"),
        ({"disclosed": (dp("M", "x" * 257),)}, "disclosed[0].issuer"),
        ({"disclosed": (dp("M", state="Massachusetts"),)}, "disclosed[0].state"),
        ({"disclosed": (dp("M", "h", "not-a-uid"),)}, "disclosed[0].studies[0]"),
        ({"disclosed": (dp("M", "h", STUDY + ".2", STUDY + ".1"),)}, "disclosed[0].studies[1]"),
        ({"disclosed": (dp("M", "h", STUDY, STUDY),)}, "disclosed[0].studies[1]"),
        (
            {"disclosed": tuple(dp(f"M{i:05}") for i in range(MAX_DISCLOSED_PATIENTS + 1))},
            "disclosed",
        ),
        (
            {
                "disclosed": tuple(
                    dp(f"M{i:04}", "h", *sorted(f"{STUDY}.{i}.{j}" for j in range(11)))
                    for i in range(100)
                )
            },
            "disclosed",
        ),  # more than 1000 studies
        ({"disclosed": THREE, "disclosed_total": 4}, "disclosed_total"),  # not truncated
        ({"disclosed": THREE, "disclosed_truncated": True}, "disclosed_total"),  # no larger total
        ({"disclosed": (), "disclosed_truncated": True, "disclosed_total": 5}, "disclosed_total"),
        (
            {"disclosed": THREE, "disclosed_truncated": True, "disclosed_total": 2**31},
            "disclosed_total",
        ),
        (
            {"disclosed": THREE, "disclosed_truncated": True, "disclosed_total": -1},
            "disclosed_total",
        ),
        ({"disclosed": THREE, "disclosed_truncated": 1}, "disclosed_truncated"),
    ],
)
def test_every_non_canonical_or_unbounded_result_set_is_refused(
    kw: dict[str, object], field: str
) -> None:
    with pytest.raises(EventValidationError) as caught:
        validate(query(**kw))
    assert caught.value.field == field


def test_the_named_patient_is_still_checked() -> None:
    with pytest.raises(EventValidationError) as caught:
        validate(query(patient=Patient(id="")))
    assert caught.value.field == "patient.id"


def test_the_consumer_refuses_a_non_canonical_v2_record_too() -> None:
    """A producer that skips validation cannot make the projection differ from the leaf."""
    codec = Codec()
    good = codec.encode(query(disclosed=(dp("MRN1", None), dp("MRN2", None))))
    bad = good.replace(b"MRN2", b"MRN0")  # same length; now unsorted
    assert bad != good
    with pytest.raises(DecodeError) as caught:
        codec.decode(bad)
    assert caught.value.reason == "invalid_event"
    lying = dataclasses.replace(query(disclosed=THREE), disclosed_total=3)
    data = codec.encode(lying)
    # disclosed_total is the last field but v3's transport (null: 0): zig-zag 3 -> 6;
    # claim 4 (8) untruncated.
    assert data.endswith(b"\x00\x06\x00")
    with pytest.raises(DecodeError) as caught:
        codec.decode(data[:-2] + b"\x08\x00")
    assert caught.value.reason == "invalid_event"


def test_the_fhir_audit_event_has_one_patient_entity_per_disclosed_patient() -> None:
    schemas = SchemaSet(
        StoredSchema(fingerprint=s.fingerprint, full_name=s.full_name, schema_json=s.schema_json)
        for s in load_shipped_schemas()
    )
    event = query(disclosed=THREE, disclosed_truncated=True, disclosed_total=9)
    name, record = schemas.decode(Codec().encode(event))
    position = LedgerPosition(log_id=1, origin="o/phi-access/0", leaf_index=4)
    resource = fhir.audit_event(name, record, event_id=event.event_id, position=position)
    patients = [e for e in resource["entity"] if e.get("what", {}).get("type") == "Patient"]
    assert [p["what"]["identifier"]["value"] for p in patients] == ["MRN1", "MRN2", "MRN0"]
    assert all({"type": "attribution", "valueString": "disclosed"} in p["detail"] for p in patients)
    assert {"type": "study", "valueString": STUDY + ".2"} in patients[0]["detail"]
    assert {"type": "state", "valueString": "MA"} in patients[0]["detail"]
    assert "disclosed_total" in str(resource["extension"])
    empty = query()
    name, record = schemas.decode(Codec().encode(empty))
    resource = fhir.audit_event(name, record, event_id=empty.event_id, position=position)
    assert all(e.get("what", {}).get("type") != "Patient" for e in resource.get("entity", []))


@pytest.mark.parametrize(
    ("cell", "says"),
    [
        (None, "1 missing or changed"),  # a bundle without the column: nobody listed
        ([], "3 missing or changed"),
        ("x", "malformed"),
        ([["hosp", "MRN1"]], "malformed"),
        ([[None, 5, None, []]], "malformed"),
        ([["hosp", "MRN1", "MA", "1.2"]], "malformed"),
        ([["hosp", "MRN1", "MA", [STUDY + ".1", STUDY + ".2"]]], "2 missing or changed"),
        ("four", "extra"),
        ("twice", "duplicated"),
        ("reversed", "out of order"),
        ("other-studies", "1 missing or changed, 1 extra"),
    ],
)
def test_the_verifier_reports_each_kind_of_patients_mismatch(cell: object, says: str) -> None:
    schemas = SchemaSet(
        StoredSchema(fingerprint=s.fingerprint, full_name=s.full_name, schema_json=s.schema_json)
        for s in load_shipped_schemas()
    )
    name, record = schemas.decode(Codec().encode(query(disclosed=THREE)))
    want = expected_patients(name, record)
    assert want is not None
    assert patients_problem(name, record, {"patients": [list(p) for p in want]}) is None
    rows = [[p[0], p[1], p[2], list(p[3])] for p in want]
    cells = {
        "four": [*rows, ["zz", "MRN9", None, []]],
        "twice": [*rows, rows[-1]],
        "reversed": rows[::-1],
        "other-studies": [[*rows[0][:3], [STUDY + ".9"]], *rows[1:]],
    }
    chosen = cells.get(cell, cell) if isinstance(cell, str) else cell
    if cell is None:
        name, record = schemas.decode(Codec().encode(query(disclosed=THREE[:1])))
    problem = patients_problem(name, record, {} if cell is None else {"patients": chosen})
    assert problem is not None
    assert says in problem
    assert "MRN" not in problem  # findings name nobody


def test_a_patients_cell_on_any_other_event_is_a_mismatch() -> None:
    named = query(dicom_event_id="110103", action=EventAction.READ, patient=Patient(id="MRN1"))
    record = to_record(named)
    assert patients_problem("philedger.audit.PhiAccessEvent", record, {"patients": []}) is None
    problem = patients_problem(
        "philedger.audit.SecurityEvent", record, {"patients": [["h", "MRN1", None, []]]}
    )
    assert problem is not None
    assert "1 extra" in problem
