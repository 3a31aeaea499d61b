"""The HIPAA reports over access events that name many patients, or none (PhiAccessEvent
v2 ``disclosed``): a breach investigation counts every patient an answer returned, with
each one's state where the answer carried it, and says how many a truncated answer did
not list; an accounting of disclosures lists a transfer to every patient it returned."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from ledger.audit.reports import (
    DisclosedRef,
    PatientRef,
    PhiKind,
    RecipientRef,
    build_disclosures,
    build_investigation,
    disclosed_phi_kinds,
    to_csv,
    to_json,
)
from ledger.errors import MalformedInputError
from tests.unit.test_reports import NOW, T0, access, checkpoint, csv_rows, scope

STUDY = "1.2.826.0.1.3680043.8.498"


def query(*disclosed: DisclosedRef, **kw: Any) -> Any:
    """A Query (110112) that named nobody and returned ``disclosed``."""
    base: dict[str, Any] = {
        "patient_id": None,
        "patient_issuer": None,
        "patient_state": None,
        "dicom_event_id": "110112",
        "action": "E",
        "study": None,
        "disclosed": disclosed,
    }
    base.update(kw)
    return access(**base)


def who(report: Any) -> dict[str, tuple[str | None, int, int, tuple[str, ...]]]:
    return {
        p.patient_id: (p.state, p.events, p.disclosed_events, tuple(map(str, p.phi_kinds)))
        for p in report.patients
    }


def test_every_patient_a_query_returned_is_affected_with_their_own_state() -> None:
    q = query(
        DisclosedRef(id="A", issuer="h", state="MA"),
        DisclosedRef(id="B", issuer="h"),
        DisclosedRef(id="C", issuer="h", state="NH", studies=(f"{STUDY}.1",)),
    )
    report = build_investigation(scope(), [q], checkpoints=[checkpoint()])
    assert who(report) == {
        "A": ("MA", 1, 1, ("demographics",)),
        "B": (None, 1, 1, ("demographics",)),
        "C": ("NH", 1, 1, ("demographics",)),
    }
    assert [(s.state, s.residents) for s in report.states] == [("MA", 1), ("NH", 1)]
    assert report.unknown_state == 1
    assert report.individuals == report.individuals_at_most == 3
    assert report.truncated_answers == ()
    (entry,) = report.timeline
    assert (entry.patient_id, entry.disclosed_patients, entry.disclosed_total) == (None, 3, 3)
    assert entry.phi_kinds == ()  # the event itself names no one


def test_a_query_that_matched_nobody_is_on_the_timeline_and_touches_no_one() -> None:
    report = build_investigation(scope(), [query()], checkpoints=[checkpoint()])
    assert report.patients == ()
    assert report.attempted_only == ()
    assert len(report.timeline) == 1
    assert report.timeline[0].disclosed_total == 0


def test_the_patient_named_and_returned_is_counted_once_as_named() -> None:
    named = access(
        patient_id="A",
        patient_issuer="h",
        patient_state=None,
        dicom_event_id="110112",
        study=None,
        disclosed=(DisclosedRef(id="A", issuer="h", state="RI"), DisclosedRef(id="B", issuer="h")),
    )
    report = build_investigation(scope(), [named], checkpoints=[checkpoint()])
    assert who(report) == {
        "A": ("RI", 1, 0, ("demographics",)),  # named: its state from the answer
        "B": (None, 1, 1, ("demographics",)),
    }


def test_named_and_disclosed_events_add_up_and_the_latest_state_wins() -> None:
    first = query(DisclosedRef(id="MRN1", issuer="stmarys", state="NH"))
    later = access(patient_id="MRN1", patient_issuer="stmarys", patient_state="MA",
                   event_time=T0.replace(hour=13))  # fmt: skip
    report = build_investigation(scope(), [later, first], checkpoints=[checkpoint()])
    (p,) = report.patients
    assert (p.state, p.other_states, p.events, p.disclosed_events) == ("MA", ("NH",), 2, 1)
    assert p.first_access == T0
    assert p.phi_kinds == (PhiKind.DEMOGRAPHICS, PhiKind.IMAGES)


def test_an_answer_counts_even_when_the_operation_then_failed() -> None:
    """A C-FIND that failed after returning matches disclosed them; the patient a failed
    request only named is an attempt, not affected."""
    failed = access(
        patient_id="X",
        patient_issuer="h",
        outcome="SERIOUS_FAILURE",
        disclosed=(DisclosedRef(id="Y", issuer="h"),),
    )
    report = build_investigation(scope(), [failed], checkpoints=[checkpoint()])
    assert [p.patient_id for p in report.patients] == ["Y"]
    assert [p.id for p in report.attempted_only] == ["X"]
    failed_named_returned = access(
        patient_id="X",
        patient_issuer="h",
        outcome="SERIOUS_FAILURE",
        disclosed=(DisclosedRef(id="X", issuer="h"),),
    )
    report = build_investigation(scope(), [failed_named_returned], checkpoints=[])
    assert [p.patient_id for p in report.patients] == ["X"]
    assert report.attempted_only == ()


def test_a_truncated_answer_is_flagged_and_never_undercounted() -> None:
    listed = tuple(DisclosedRef(id=f"P{i:03}", issuer="h", state="MA") for i in range(3))
    big = query(*listed, disclosed_total=600)
    report = build_investigation(scope(), [big], checkpoints=[checkpoint()])
    assert report.individuals == 3
    assert report.unlisted_patients == 597
    assert report.individuals_at_most == 600
    assert report.hhs_contemporaneous_notice is False
    assert report.hhs_contemporaneous_notice_possible is True
    (ma,) = report.states
    assert (ma.residents, ma.media_notice, ma.media_notice_possible) == (3, False, True)
    (t,) = report.truncated_answers
    assert (t.source.event_id, t.listed, t.total) == (big.event_id, 3, 600)
    body: Any = to_json(report)
    json.dumps(body)
    note = body["notification"]
    assert (note["individuals"], note["unlisted_patients"], note["individuals_at_most"]) == (
        3,
        597,
        600,
    )
    assert note["hhs_contemporaneous_notice_possible"] is True
    assert body["truncated_answers"][0]["listed"] == 3
    assert body["truncated_answers"][0]["total"] == 600
    assert body["timeline"][0]["disclosed_total"] == 600
    table = csv_rows(to_csv(report))
    assert table[0][-2:] == ["disclosed_events", "note"]
    patients = [row for row in table[1:] if not row[0].startswith("#")]
    assert len(patients) == 3 + 1
    assert patients[-1][0] == ""
    assert "597 more patient(s)" in patients[-1][-1]
    # Then the verdict and the per-state counts, padded to the table's width.
    verdict = table[-2]
    assert verdict[0] == "#verdict"
    assert verdict[1].startswith("3 people in 1 state, and 597 more not listed")
    assert "HHS notice possible" in verdict[1]
    assert "media notice possible in MA" in verdict[1]
    assert table[-1][:5] == ["#state", "MA", "3", "no media notice", "media notice possible"]
    assert {len(row) for row in table} == {len(table[0])}


def test_without_truncation_the_csv_has_no_note_row() -> None:
    report = build_investigation(scope(), [query(DisclosedRef(id="A", issuer="h"))], checkpoints=[])
    table = csv_rows(to_csv(report))
    assert [row[0] for row in table[1:]] == ["A", "#verdict", "#state"]
    assert table[1][-2:] == ["1", ""]


def test_hhs_notice_is_not_possible_when_the_identified_already_reach_it() -> None:
    listed = tuple(DisclosedRef(id=f"P{i:03}", issuer="h") for i in range(500))
    report = build_investigation(
        scope(), [query(*listed, disclosed_total=501)], checkpoints=[], threshold=500
    )
    assert report.hhs_contemporaneous_notice is True
    assert report.hhs_contemporaneous_notice_possible is False


@pytest.mark.parametrize(
    ("event_id", "studies", "expected"),
    [
        ("110112", (), {"demographics"}),
        ("110112", (f"{STUDY}.1",), {"demographics"}),
        ("110103", (f"{STUDY}.1",), {"demographics", "images"}),
        ("110106", (f"{STUDY}.1",), {"demographics", "export", "images"}),
        ("110106", (), {"demographics", "export"}),
        ("110109", (), {"demographics", "order"}),
        ("999999", (f"{STUDY}.1",), {"demographics", "images"}),
        ("999999", (), {"demographics"}),
    ],
)
def test_disclosed_phi_kinds(event_id: str, studies: tuple[str, ...], expected: set[str]) -> None:
    row = access(dicom_event_id=event_id)
    p = DisclosedRef(id="Z", studies=studies)
    assert {str(k) for k in disclosed_phi_kinds(row, p)} == expected


def test_a_disclosed_patient_id_is_validated() -> None:
    with pytest.raises(MalformedInputError):
        DisclosedRef(id="")
    with pytest.raises(MalformedInputError):
        DisclosedRef(id="A", issuer="\x00")


def _transfer(**kw: Any) -> Any:
    base: dict[str, Any] = {
        "patient_id": None,
        "patient_issuer": None,
        "dicom_event_id": "110104",
        "action": "R",
        "study": None,
        "purpose_of_use": "LEGAL",
        "recipient": RecipientRef(name="court-archive"),
        "event_time": T0,
        "disclosed": (
            DisclosedRef(id="A", issuer="h", studies=(f"{STUDY}.1", f"{STUDY}.2")),
            DisclosedRef(id="B", issuer="h"),
        ),
    }
    base.update(kw)
    return access(**base)


def test_an_accounting_lists_a_transfer_to_each_patient_it_returned() -> None:
    t = _transfer()
    a = build_disclosures(PatientRef(id="A", issuer="h"), [t], now=NOW)
    (entry,) = a.entries
    assert entry.sources[0].event_id == t.event_id
    assert entry.recipient_name == "court-archive"
    assert entry.description == (
        f"Diagnostic images (study UID {STUDY}.1, {STUDY}.2); patient identifiers and demographics"
    )
    b = build_disclosures(PatientRef(id="B"), [t], now=NOW)
    assert b.entries[0].description == "Diagnostic images; patient identifiers and demographics"
    assert build_disclosures(PatientRef(id="C"), [t], now=NOW).entries == ()
    assert build_disclosures(PatientRef(id="A", issuer="other"), [t], now=NOW).entries == ()


def test_an_accounting_without_issuer_refuses_one_id_under_two_issuers() -> None:
    named = access(patient_id="A", patient_issuer="h", dicom_event_id="110106",
                   recipient=RecipientRef(name="x"), purpose_of_use="LEGAL")  # fmt: skip
    listed = _transfer(event_id=uuid.uuid4(), disclosed=(DisclosedRef(id="A", issuer="k"),))
    with pytest.raises(MalformedInputError, match="several issuers"):
        build_disclosures(PatientRef(id="A"), [named, listed], now=NOW)


def test_a_query_that_returned_the_patient_is_not_a_disclosure_to_account() -> None:
    """A query by the covered entity's own staff is a use, not a disclosure (164.528)."""
    q = query(DisclosedRef(id="A", issuer="h"), purpose_of_use=None)
    assert build_disclosures(PatientRef(id="A", issuer="h"), [q], now=NOW).entries == ()
