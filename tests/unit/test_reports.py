"""Unit tests for ledger.audit.reports: breach investigation, accounting of disclosures, relays."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from itertools import count
from typing import Any

import pytest

from ledger.audit.query import LedgerPosition
from ledger.audit.reports import (
    COMPLIANCE_DATE,
    AccessRow,
    DisclosureAccounting,
    InvestigationScope,
    PatientRef,
    PhiKind,
    RecipientRef,
    RelayIssue,
    RelayRow,
    ReportCheckpoint,
    StudyRef,
    accounting_period_start,
    build_disclosures,
    build_investigation,
    build_relay_report,
    describe_phi,
    phi_kinds,
    to_csv,
    to_html,
    to_json,
)
from ledger.errors import MalformedInputError

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
ORIGIN = "test.ledger/phi-access/0"
_ids = count()


def pos(index: int | None = None, *, log_id: int = 1, origin: str = ORIGIN) -> LedgerPosition:
    return LedgerPosition(
        log_id=log_id, origin=origin, leaf_index=next(_ids) if index is None else index
    )


def access(**kw: Any) -> AccessRow:
    base: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "kind": "phi_access",
        "event_time": T0,
        "position": pos(),
        "facility_id": "stmarys",
        "patient_id": "MRN1",
        "patient_issuer": "stmarys",
        "patient_state": "MA",
        "user_id": "rad001",
        "user_role": "radiologist",
        "dicom_event_id": "110103",
        "action": "R",
        "outcome": "SUCCESS",
        "study": StudyRef(uid="2.25.1", accession="A1", modality="CT", instances=12),
        "network_address": "10.0.0.1",
        "purpose_of_use": "TREAT",
    }
    base.update(kw)
    return AccessRow(**base)


def scope(**kw: Any) -> InvestigationScope:
    base: dict[str, Any] = {
        "start": T0 - timedelta(days=1),
        "end": T0 + timedelta(days=1),
        "users": ("rad001",),
    }
    base.update(kw)
    return InvestigationScope(**base)


def checkpoint(size: int = 10**6, *, log_id: int = 1, origin: str = ORIGIN) -> ReportCheckpoint:
    return ReportCheckpoint(log_id=log_id, origin=origin, size=size, note=f"{origin}\n{size}\n")


def patients_in(state: str | None, n: int, *, prefix: str = "P") -> list[AccessRow]:
    return [access(patient_id=f"{prefix}{state}{i}", patient_state=state) for i in range(n)]


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


# ============================================================================================
# Breach investigation
# ============================================================================================


@pytest.mark.parametrize(
    ("residents", "media", "hhs"),
    [(499, False, False), (500, False, True), (501, True, True)],
)
def test_notice_thresholds_at_499_500_501(residents: int, media: bool, hhs: bool) -> None:
    # 164.406(a): media notice for MORE THAN 500 residents of a state;
    # 164.408(b): the Secretary contemporaneously for 500 OR MORE individuals.
    report = build_investigation(scope(), patients_in("MA", residents), checkpoints=[checkpoint()])
    (ma,) = report.states
    assert (ma.state, ma.residents) == ("MA", residents)
    assert ma.media_notice is media
    assert report.hhs_contemporaneous_notice is hhs
    assert report.individuals == residents


def test_residents_of_different_states_do_not_add_up_for_media_but_do_for_hhs() -> None:
    rows = patients_in("MA", 300) + patients_in("NH", 300)
    report = build_investigation(scope(), rows, checkpoints=[])
    assert [(s.state, s.residents, s.media_notice) for s in report.states] == [
        ("MA", 300, False),
        ("NH", 300, False),
    ]
    assert report.hhs_contemporaneous_notice  # 600 individuals, all states together
    body: Any = to_json(report)
    assert body["notification"]["media_notice_states"] == []


def test_unknown_state_counts_for_hhs_and_flags_a_possible_media_notice() -> None:
    rows = patients_in("MA", 480) + patients_in(None, 25) + patients_in("RI", 3)
    report = build_investigation(scope(), rows, checkpoints=[])
    assert report.unknown_state == 25
    assert report.individuals == 508
    assert report.hhs_contemporaneous_notice
    by_state = {s.state: s for s in report.states}
    assert not by_state["MA"].media_notice
    assert by_state["MA"].media_notice_possible  # 480 + 25 unknown could exceed 500
    assert not by_state["RI"].media_notice_possible  # 3 + 25 cannot


def test_threshold_is_configurable_and_validated() -> None:
    report = build_investigation(scope(), patients_in("MA", 11), checkpoints=[], threshold=10)
    assert report.states[0].media_notice
    for bad in (0, -1, True, 2.5):
        with pytest.raises(MalformedInputError, match="threshold"):
            build_investigation(scope(), [], checkpoints=[], threshold=bad)  # type: ignore[arg-type]


def test_only_completed_accesses_make_a_patient_affected() -> None:
    refused = access(patient_id="DENIED", outcome="MAJOR_FAILURE")
    terminated = access(patient_id="MIXED", outcome="SERIOUS_FAILURE")
    later_ok = access(
        patient_id="MIXED", outcome="MINOR_FAILURE", event_time=T0 + timedelta(hours=1)
    )
    report = build_investigation(scope(), [refused, terminated, later_ok], checkpoints=[])
    assert [p.patient_id for p in report.patients] == ["MIXED"]
    assert [p.id for p in report.attempted_only] == ["DENIED"]
    assert report.patients[0].events == 1
    # Failed attempts stay on the timeline, marked.
    assert [(e.patient_id, e.completed) for e in report.timeline] == [
        ("DENIED", False),
        ("MIXED", False),
        ("MIXED", True),
    ]


def test_scope_window_is_half_open_and_selectors_narrow_each_other() -> None:
    s = scope(users=("rad001", "rad002"), facility="stmarys", network_addresses=("10.0.0.1",))
    inside = access(event_time=s.start)
    at_end = access(event_time=s.end)
    before = access(event_time=s.start - timedelta(microseconds=1))
    other_user = access(user_id="rad003")
    second_user = access(user_id="rad002", patient_id="MRN2")
    other_facility = access(facility_id="mercy")
    other_address = access(network_address="10.9.9.9")
    no_address = access(network_address=None)
    rows = [inside, at_end, before, other_user, second_user, other_facility, other_address,
            no_address]  # fmt: skip
    report = build_investigation(s, rows, checkpoints=[])
    assert {e.event_id for e in report.timeline} == {inside.event_id, second_user.event_id}


def test_facility_only_and_address_only_scopes() -> None:
    a = access(facility_id="mercy", user_id="x", network_address="10.1.1.1")
    b = access(facility_id="stmarys", user_id="y", network_address="10.1.1.1")
    by_facility = build_investigation(scope(users=(), facility="mercy"), [a, b], checkpoints=[])
    assert [e.event_id for e in by_facility.timeline] == [a.event_id]
    by_address = build_investigation(
        scope(users=(), network_addresses=("10.1.1.1",)), [a, b], checkpoints=[]
    )
    assert {e.event_id for e in by_address.timeline} == {a.event_id, b.event_id}


def test_affected_patient_summary() -> None:
    first = access(event_time=T0, patient_state="NH", user_id="rad001")
    export = access(
        event_time=T0 + timedelta(hours=2),
        dicom_event_id="110106",
        facility_id="mercy",
        recipient=RecipientRef(name="Law firm"),
    )
    report = build_investigation(scope(), [export, first], checkpoints=[])
    (p,) = report.patients
    assert (p.patient_id, p.issuer) == ("MRN1", "stmarys")
    assert p.state == "MA"  # the latest recorded residence
    assert p.other_states == ("NH",)
    assert (p.first_access, p.last_access) == (first.event_time, export.event_time)
    assert p.phi_kinds == (PhiKind.DEMOGRAPHICS, PhiKind.EXPORT, PhiKind.IMAGES)
    assert p.facilities == ("mercy", "stmarys")
    assert p.events == 2


def test_same_id_under_two_issuers_is_two_patients() -> None:
    rows = [access(patient_issuer="stmarys"), access(patient_issuer="mercy")]
    report = build_investigation(scope(), rows, checkpoints=[])
    assert [(p.issuer, p.patient_id) for p in report.patients] == [
        ("mercy", "MRN1"),
        ("stmarys", "MRN1"),
    ]


def test_reads_of_the_ledger_are_on_the_timeline_and_name_a_patient_only_if_queried() -> None:
    read = {"kind": "audit_log_used", "dicom_event_id": "110101", "study": None,
            "purpose_of_use": None, "user_role": "investigator"}  # fmt: skip
    named = access(**read, patient_id="MRN9", patient_issuer=None, patient_state=None)
    anonymous = access(**read, patient_id=None, patient_issuer=None, patient_state=None)
    refused = access(**read, patient_id="MRN8", outcome="MINOR_FAILURE")  # an HTTP 4xx
    report = build_investigation(scope(), [named, anonymous, refused], checkpoints=[])
    assert {e.event_id for e in report.timeline} == {
        named.event_id,
        anonymous.event_id,
        refused.event_id,
    }
    assert [p.id for p in report.attempted_only] == ["MRN8"]
    assert [(p.patient_id, p.phi_kinds) for p in report.patients] == [
        ("MRN9", (PhiKind.DEMOGRAPHICS,))
    ]
    assert report.unknown_state == 1
    entry = next(e for e in report.timeline if e.event_id == anonymous.event_id)
    assert (entry.patient_id, entry.phi_kinds) == (None, ())
    json.dumps(to_json(report))
    # A read of the ledger is never a disclosure, even one that names a recipient.
    acc = build_disclosures(
        PatientRef(id="MRN9"), [dataclasses.replace(named, recipient=LAWYER)], now=NOW
    )
    assert not acc.entries
    assert not acc.excluded


def security(**kw: Any) -> AccessRow:
    """A security event as a report sees it (a login by default: no patient, no study)."""
    base: dict[str, Any] = {
        "kind": "security_event",
        "dicom_event_id": "110114",
        "event_type_code": "110122",
        "action": "E",
        "study": None,
        "purpose_of_use": None,
        "patient_id": None,
        "patient_issuer": None,
        "patient_state": None,
    }
    base.update(kw)
    return access(**base)


def test_security_events_are_on_the_timeline_and_expose_only_a_named_patient() -> None:
    login = security(event_time=T0 - timedelta(minutes=30), network_address="198.51.100.23")
    failed = security(event_time=T0 - timedelta(minutes=31), outcome="MINOR_FAILURE")
    btg = security(
        dicom_event_id="110113",
        event_type_code="110127",
        patient_id="MRN9",
        patient_issuer="stmarys",
        patient_state="NY",
        purpose_of_use="BTG",
    )
    refused_btg = security(
        dicom_event_id="110113",
        event_type_code="110127",
        patient_id="MRN8",
        outcome="SERIOUS_FAILURE",
    )
    logout = security(event_time=T0 + timedelta(hours=1), event_type_code="110123")
    rows = [login, failed, btg, refused_btg, logout]
    report = build_investigation(scope(), rows, checkpoints=[])
    # Every security event of the user is on the timeline, in order, with its type code.
    assert [(e.kind, e.event_type_code, e.completed) for e in report.timeline] == [
        ("security_event", "110122", False),  # a wrong password, retried: no login
        ("security_event", "110122", True),
        ("security_event", "110127", True),
        ("security_event", "110127", False),
        ("security_event", "110123", True),
    ]
    # Logins and logouts touch no PHI; a successful override exposes its patient's
    # demographics; a refused one is only an attempt.
    assert [(p.patient_id, p.phi_kinds, p.state) for p in report.patients] == [
        ("MRN9", (PhiKind.DEMOGRAPHICS,), "NY")
    ]
    assert [p.id for p in report.attempted_only] == ["MRN8"]
    assert phi_kinds(login) == frozenset()
    body = to_json(report)
    json.dumps(body)
    assert [t["event_type_code"] for t in body["timeline"]] == [  # type: ignore[index,union-attr]
        "110122",
        "110122",
        "110127",
        "110127",
        "110123",
    ]
    # An investigation by address finds the login from that address.
    by_address = build_investigation(
        scope(users=(), network_addresses=("198.51.100.23",)), rows, checkpoints=[]
    )
    assert [e.event_id for e in by_address.timeline] == [login.event_id]
    assert by_address.patients == ()


def test_a_security_event_is_never_a_disclosure() -> None:
    btg = security(dicom_event_id="110113", event_type_code="110127", patient_id="MRN1",
                   recipient=LAWYER, purpose_of_use="BTG")  # fmt: skip
    export_like = security(dicom_event_id="110106", patient_id="MRN1")  # not a security ID
    acc = build_disclosures(PatientRef(id="MRN1"), [btg, export_like], now=NOW)
    assert not acc.entries
    assert not acc.excluded


def test_timeline_is_chronological_with_positions_and_checkpoint_coverage() -> None:
    late = access(event_time=T0 + timedelta(minutes=5), position=pos(7))
    early = access(event_time=T0, position=pos(3))
    other_log = access(
        event_time=T0 + timedelta(minutes=1),
        position=pos(0, log_id=2, origin="test.ledger/phi-access/1"),
    )
    report = build_investigation(
        scope(),
        [late, early, other_log],
        checkpoints=[
            checkpoint(5),
            checkpoint(3, log_id=9, origin="test.ledger/phi-access/9"),  # unused: dropped
        ],
    )
    assert [e.event_id for e in report.timeline] == [
        early.event_id,
        other_log.event_id,
        late.event_id,
    ]
    assert [e.position.leaf_index for e in report.timeline] == [3, 0, 7]
    # Leaf 3 < size 5 is covered; leaf 7 is not; log 2 has no checkpoint at all.
    assert [e.covered for e in report.timeline] == [True, False, False]
    assert report.uncovered_events == 2
    assert [c.origin for c in report.checkpoints] == [ORIGIN]
    body: Any = to_json(report)
    assert body["checkpoints"] == [
        {"log_id": 1, "origin": ORIGIN, "size": 5, "note": f"{ORIGIN}\n5\n"}
    ]
    assert body["timeline"][0]["ledger"] == {
        "log_id": 1,
        "origin": ORIGIN,
        "leaf_index": 3,
    }


def test_checkpoint_inputs_are_checked() -> None:
    with pytest.raises(MalformedInputError, match="two checkpoints"):
        build_investigation(scope(), [], checkpoints=[checkpoint(1), checkpoint(2)])
    with pytest.raises(MalformedInputError, match="checkpoint names"):
        build_investigation(
            scope(), [access()], checkpoints=[checkpoint(origin="someone.else/log/0")]
        )
    row = access()
    with pytest.raises(MalformedInputError, match="given twice"):
        build_investigation(scope(), [row, row], checkpoints=[])


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"dicom_event_id": "110103"}, {"demographics", "images"}),
        ({"dicom_event_id": "110112", "study": None}, {"demographics"}),
        ({"dicom_event_id": "110110", "study": None}, {"demographics"}),
        ({"dicom_event_id": "110109", "study": None}, {"demographics", "order"}),
        ({"dicom_event_id": "110111", "study": None}, {"demographics", "report"}),
        ({"dicom_event_id": "110106"}, {"demographics", "export", "images"}),
        ({"dicom_event_id": "110106", "study": None}, {"demographics", "export"}),
        ({"dicom_event_id": "110113", "event_type_code": "110127"}, {"demographics", "images"}),
        ({"dicom_event_id": "110114", "study": None}, {"demographics"}),
        ({"dicom_event_id": "199999"}, {"demographics", "images"}),  # unknown: conservative
        ({"kind": "critical_result_relay", "dicom_event_id": None}, {"demographics", "report"}),
        (
            {"study": StudyRef(uid="2.25.9", sop_classes=("1.2.840.10008.5.1.4.1.1.88.33",))},
            {"demographics", "report"},
        ),
        (
            {
                "study": StudyRef(
                    uid="2.25.9",
                    sop_classes=("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.104.1"),
                )
            },
            {"demographics", "images", "report"},
        ),
    ],
)
def test_phi_kinds_mapping(overrides: dict[str, Any], expected: set[str]) -> None:
    assert {str(k) for k in phi_kinds(access(**overrides))} == expected


def test_investigation_exports_json_and_csv_with_formula_cells_neutralised() -> None:
    hostile = access(patient_id="=cmd|' /C calc'!A0", user_id="rad001")
    plain = access(patient_id="MRN7", patient_issuer="-issuer", patient_state="RI")
    report = build_investigation(scope(), [hostile, plain], checkpoints=[checkpoint()])
    json.dumps(to_json(report))  # JSON-safe
    assert to_json(report) == to_json(report)
    table = csv_rows(to_csv(report))
    assert table[0][:4] == ["patient_id", "issuer", "state", "other_states"]
    cells = {row[0]: row for row in table[1:]}
    assert "'=cmd|' /C calc'!A0" in cells
    assert cells["MRN7"][1] == "'-issuer"
    assert cells["MRN7"][2] == "RI"
    assert cells["MRN7"][6] == "demographics;images"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"users": ()}, "at least one selector"),
        ({"users": (), "network_addresses": (), "facility": None}, "at least one selector"),
        ({"start": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"end": "2026-01-02T00:00:00Z"}, "timezone-aware"),
        ({"start": None}, "window"),
        ({"start": T0, "end": T0}, "before end"),
        ({"start": T0 + timedelta(1), "end": T0}, "before end"),
        ({"start": T0 - timedelta(days=3654), "end": T0}, "at most 3653 days"),
        ({"start": datetime(1, 1, 1, tzinfo=UTC), "end": datetime(1, 1, 2, tzinfo=UTC)}, "lie"),
        ({"users": tuple(f"u{i}" for i in range(101))}, "at most 100"),
        ({"users": "rad001"}, "list of strings"),
        ({"users": ("",)}, "printable"),
        ({"users": ("   ",)}, "printable"),
        ({"users": ("rad\x00001",)}, "printable"),
        ({"users": ("x" * 257,)}, "printable"),
        ({"users": (42,)}, "printable"),
        ({"facility": "f\nnewline"}, "printable"),
        ({"network_addresses": ["10.0.0.1", "\x7f"]}, "printable"),
    ],
)
def test_hostile_scopes_are_refused(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedInputError, match=message):
        scope(**kw)


def test_scope_normalises_to_utc_and_drops_duplicates() -> None:
    plus_two = timezone(timedelta(hours=2))
    s = scope(
        start=datetime(2026, 1, 1, 2, 0, tzinfo=plus_two),
        users=["a", "b", "a"],
        network_addresses=("10.0.0.1", "10.0.0.1"),
    )
    assert s.start == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert s.start.tzinfo is UTC
    assert s.users == ("a", "b")
    assert s.network_addresses == ("10.0.0.1",)
    assert scope(start=T0 - timedelta(days=3653), end=T0).start == T0 - timedelta(days=3653)


# ============================================================================================
# Accounting of disclosures
# ============================================================================================

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
PATIENT = PatientRef(id="MRN1", issuer="stmarys")
LAWYER = RecipientRef(
    name="Harbor Law Group LLP", address="100 Federal St, Boston, MA", organization="Harbor"
)


def export(**kw: Any) -> AccessRow:
    base: dict[str, Any] = {
        "dicom_event_id": "110106",
        "recipient": LAWYER,
        "purpose_of_use": "LEGAL",
        "event_time": NOW - timedelta(days=30),
    }
    base.update(kw)
    return access(**base)


@pytest.mark.parametrize(
    ("purpose", "included"),
    [
        ("TREAT", False),
        ("ETREAT", False),
        ("BTG", False),
        ("HPAYMT", False),
        ("HOPERAT", False),
        ("HQUALIMP", False),
        ("PATRQT", False),
        ("PWATRNY", False),
        ("FAMRQT", False),
        ("DISASTER", False),
        ("PUBHLTH", True),
        ("LEGAL", True),
        ("HRESCH", True),
        ("CLINTRCH", True),
        ("OVERSIGHT", True),
        ("THREAT", True),
        ("HMARKT", True),  # included for review: only permitted with an authorization
        ("HPRGRP", True),
        (None, True),  # no purpose: an exception cannot be shown to apply
        ("NEWCODE", True),
    ],
)
def test_purpose_of_use_decides_inclusion(purpose: str | None, included: bool) -> None:
    row = export(purpose_of_use=purpose)
    acc = build_disclosures(PATIENT, [row], now=NOW)
    assert len(acc.entries) == int(included)
    assert len(acc.excluded) == int(not included)
    if not included:
        assert acc.excluded[0].source.event_id == row.event_id
        assert "164.528(a)(1)" in acc.excluded[0].reason


@pytest.mark.parametrize(
    ("purpose", "basis", "outcome", "cites"),
    [
        ("LEGAL", "custody", "excluded", "(vii)"),
        ("LEGAL", "national-security", "excluded", "(vi)"),
        ("HRESCH", "authorization", "excluded", "(iv)"),
        ("PUBHLTH", "limited-data-set", "excluded", "(viii)"),
        ("PUBHLTH", "incidental", "excluded", "(iii)"),
        ("PUBHLTH", "directory", "excluded", "(v)"),
        ("LEGAL", "individual", "excluded", "(ii)"),
        (None, "required-by-law", "included", "164.512(a)"),
        ("LEGAL", "because-i-said-so", "review", "not one of"),
    ],
)
def test_recorded_basis_takes_precedence(
    purpose: str | None, basis: str, outcome: str, cites: str
) -> None:
    acc = build_disclosures(
        PATIENT, [export(purpose_of_use=purpose, disclosure_basis=basis)], now=NOW
    )
    if outcome == "excluded":
        assert not acc.entries
        assert cites in acc.excluded[0].reason
    else:
        (entry,) = acc.entries
        assert entry.needs_review is (outcome == "review")
        assert cites in entry.citation


def test_only_completed_disclosures_are_considered() -> None:
    read = access(event_time=NOW - timedelta(days=1), purpose_of_use="LEGAL")  # no recipient
    failed = export(outcome="SERIOUS_FAILURE")
    transfer = access(dicom_event_id="110104", purpose_of_use="PUBHLTH")  # no recipient known
    with_recipient = access(
        dicom_event_id="110103", recipient=LAWYER, purpose_of_use="LEGAL",
        event_time=NOW - timedelta(days=2),
    )  # fmt: skip
    relay = access(kind="critical_result_relay", dicom_event_id=None, recipient=LAWYER)
    acc = build_disclosures(PATIENT, [read, failed, transfer, with_recipient, relay], now=NOW)
    assert [e.sources[0].event_id for e in acc.entries] == [
        transfer.event_id,
        with_recipient.event_id,
    ]
    # The recipient of the transfer is not recorded: the line needs review.
    assert [e.needs_review for e in acc.entries] == [True, False]
    assert acc.entries[0].recipient_name is None
    assert not acc.excluded


def test_lookback_boundary_is_the_same_date_six_years_earlier() -> None:
    start = accounting_period_start(NOW, 6)
    assert start == datetime(2020, 3, 10, tzinfo=UTC)
    on = export(event_time=start)
    before = export(event_time=start - timedelta(microseconds=1))
    at_request = export(event_time=NOW)
    after = export(event_time=NOW + timedelta(microseconds=1))
    acc = build_disclosures(PATIENT, [on, before, at_request, after], now=NOW)
    assert [e.sources[0].event_id for e in acc.entries] == [on.event_id, at_request.event_id]
    assert acc.period_start == start
    assert acc.requested_at == NOW


def test_shorter_lookback_and_its_limits() -> None:
    assert accounting_period_start(NOW, 1) == datetime(2025, 3, 10, tzinfo=UTC)
    leap = datetime(2028, 2, 29, 9, 0, tzinfo=UTC)
    assert accounting_period_start(leap, 6) == datetime(2022, 2, 28, tzinfo=UTC)
    # Nothing before the compliance date (164.528(a)(1)(ix)).
    assert accounting_period_start(datetime(2008, 1, 1, tzinfo=UTC), 6) == COMPLIANCE_DATE
    for years in (0, 7, -1, True):
        with pytest.raises(MalformedInputError, match="lookback_years"):
            build_disclosures(PATIENT, [], now=NOW, lookback_years=years)
    with pytest.raises(MalformedInputError, match="timezone-aware"):
        build_disclosures(PATIENT, [], now=datetime(2026, 3, 10))
    with pytest.raises(MalformedInputError, match="now must lie"):
        build_disclosures(PATIENT, [], now=datetime(3, 1, 1, tzinfo=UTC))


def test_other_patients_never_appear_and_an_ambiguous_id_is_refused() -> None:
    mine = export()
    other_issuer = export(patient_issuer="mercy")
    other_patient = export(patient_id="MRN2")
    acc = build_disclosures(PATIENT, [mine, other_issuer, other_patient], now=NOW)
    assert [e.sources[0].event_id for e in acc.entries] == [mine.event_id]
    with pytest.raises(MalformedInputError, match="several issuers"):
        build_disclosures(PatientRef(id="MRN1"), [mine, other_issuer], now=NOW)
    only_one = build_disclosures(PatientRef(id="MRN2"), [other_patient], now=NOW)
    assert len(only_one.entries) == 1
    with pytest.raises(MalformedInputError, match="patient id"):
        PatientRef(id="")


def test_entry_fields_and_description() -> None:
    row = export(
        study=StudyRef(uid="2.25.77", accession="A42", modality="MR", instances=300),
        purpose_of_use="PUBHLTH",
    )
    (entry,) = build_disclosures(PATIENT, [row], now=NOW).entries
    assert entry.disclosed_at == row.event_time
    assert (entry.recipient_name, entry.recipient_address) == (LAWYER.name, LAWYER.address)
    assert entry.purpose == "Public health activities"
    assert entry.description == (
        "MR imaging study (images; accession A42, 300 instances, study UID 2.25.77); "
        "patient identifiers and demographics"
    )
    assert describe_phi(export(study=None)) == "Patient identifiers and demographics"
    assert entry.sources[0].position == row.position


def test_repeated_disclosures_to_one_recipient_may_be_summarised() -> None:
    rows = [export(event_time=NOW - timedelta(days=d)) for d in (90, 60, 30)]
    review = export(purpose_of_use=None, event_time=NOW - timedelta(days=45))
    other = export(recipient=RecipientRef(name="DPH"), purpose_of_use="PUBHLTH")
    full = build_disclosures(PATIENT, [*rows, review, other], now=NOW)
    assert len(full.entries) == 5
    summary = build_disclosures(PATIENT, [*rows, review, other], now=NOW, summarise_repeated=True)
    assert len(summary.entries) == 3
    lawyer = next(e for e in summary.entries if e.count > 1)
    assert lawyer.count == 3
    assert lawyer.disclosed_at == rows[0].event_time
    assert lawyer.last_disclosed_at == rows[2].event_time
    assert [s.event_id for s in lawyer.sources] == [r.event_id for r in rows]
    assert sum(e.count for e in summary.entries) == 5
    assert summary.needs_review == 1


def test_accounting_csv_neutralises_formula_cells() -> None:
    evil = RecipientRef(name='=HYPERLINK("http://evil.example","x")', address="+1 555 0100")
    rows = [
        export(recipient=evil),
        export(recipient=RecipientRef(name="@SUM(A1)", address="\tTabbed")),
        export(recipient=RecipientRef(name="Dr. Safe", address="-5 Main St")),
    ]
    table = csv_rows(to_csv(build_disclosures(PATIENT, rows, now=NOW)))
    assert table[0][:3] == ["date", "recipient_name", "recipient_address"]
    names = [r[1] for r in table[1:]]
    addresses = [r[2] for r in table[1:]]
    assert '\'=HYPERLINK("http://evil.example","x")' in names
    assert "'@SUM(A1)" in names
    assert "Dr. Safe" in names  # untouched
    assert set(addresses) == {"'+1 555 0100", "'-5 Main St", "'\tTabbed"}
    for row in table[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_html_is_escaped_self_contained_and_omits_exclusions() -> None:
    xss = RecipientRef(
        name="<script>alert('x')</script>",
        address='"><img src=x onerror=alert(1)>',
        organization="A & B",
    )
    shown = export(recipient=xss)
    hidden = export(purpose_of_use="TREAT")
    acc = build_disclosures(PATIENT, [shown, hidden], now=NOW)
    page = to_html(acc)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "A &amp; B" in page
    assert "default-src 'none'" in page
    assert "src=" not in page.replace("src=x", "")  # no external resources
    assert str(shown.event_id) in page
    assert str(hidden.event_id) not in page  # exclusions are the privacy officer's worksheet
    assert "DRAFT" not in page
    with_review = to_html(build_disclosures(PATIENT, [export(purpose_of_use=None)], now=NOW))
    assert "DRAFT: 1 entry needs review" in with_review
    empty = to_html(build_disclosures(PATIENT, [], now=NOW))
    assert "No disclosures to account for" in empty


def test_accounting_json_lists_entries_and_exclusions() -> None:
    inc = export()
    exc = export(purpose_of_use="HPAYMT")
    body: Any = to_json(build_disclosures(PATIENT, [inc, exc], now=NOW))
    json.dumps(body)
    assert body["report"] == "accounting-of-disclosures"
    assert body["period_start"] == "2020-03-10T00:00:00+00:00"
    (entry,) = body["entries"]
    assert entry["recipient"]["name"] == LAWYER.name
    assert entry["sources"][0]["event_id"] == str(inc.event_id)
    (excluded,) = body["excluded"]
    assert excluded["purpose_code"] == "HPAYMT"


# ============================================================================================
# Critical-result relays
# ============================================================================================

R0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
START, END = R0 - timedelta(days=1), R0 + timedelta(days=1)


def relay(**kw: Any) -> RelayRow:
    identified = kw.pop("identified_at", R0)
    delay = kw.pop("delay", timedelta(minutes=10))
    base: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "event_time": identified + timedelta(hours=1),
        "position": pos(),
        "facility_id": "stmarys",
        "patient_id": f"MRN{next(_ids)}",
        "patient_issuer": "stmarys",
        "study_uid": "2.25.5",
        "category": "CAT1",
        "identified_at": identified,
        "communicated_at": None if delay is None else identified + delay,
        "acknowledged_at": None if delay is None else identified + delay + timedelta(minutes=1),
        "read_back": True,
        "method": "PHONE",
        "sender_user_id": "rad001",
        "recipient_name": "Dr. Okafor",
        "recipient_role": "ed-attending",
    }
    base.update(kw)
    return RelayRow(**base)


def test_deadline_boundary_and_never_communicated() -> None:
    # The default CAT1 deadline is 30 minutes (the common policy in shared/reference).
    now = R0 + timedelta(hours=2)
    on_time = relay(delay=timedelta(minutes=30))
    late = relay(delay=timedelta(minutes=30, seconds=1))
    overdue = relay(delay=None, identified_at=now - timedelta(minutes=31))
    pending = relay(delay=None, identified_at=now - timedelta(minutes=29))
    report = build_relay_report([on_time, late, overdue, pending], now=now, start=START, end=END)
    cat1 = next(c for c in report.categories if c.category == "CAT1")
    assert (cat1.relays, cat1.on_time, cat1.late, cat1.overdue, cat1.pending) == (4, 1, 1, 1, 1)
    assert (cat1.communicated, cat1.acknowledged) == (2, 2)
    issues = {x.event_id: x.issues for x in report.exceptions}
    assert issues == {late.event_id: (RelayIssue.LATE,), overdue.event_id: (RelayIssue.OVERDUE,)}
    (x_overdue,) = [x for x in report.exceptions if x.event_id == overdue.event_id]
    assert x_overdue.delay == timedelta(minutes=31)
    assert x_overdue.communicated_at is None
    assert x_overdue.position == overdue.position


def test_read_back_and_verbal_contact() -> None:
    no_read_back = relay(read_back=False)
    electronic = relay(method="ELECTRONIC")
    cat2_electronic = relay(category="CAT2", method="ELECTRONIC")
    unreached = relay(delay=None, read_back=False, identified_at=R0)
    report = build_relay_report(
        [no_read_back, electronic, cat2_electronic, unreached], now=R0 + timedelta(minutes=5),
        start=START, end=END,
    )  # fmt: skip
    issues = {x.event_id: x.issues for x in report.exceptions}
    assert issues == {
        no_read_back.event_id: (RelayIssue.NO_READ_BACK,),
        electronic.event_id: (RelayIssue.NOT_VERBAL,),  # CAT1 must be direct verbal contact
    }
    cat1 = next(c for c in report.categories if c.category == "CAT1")
    assert cat1.no_read_back == 1
    assert cat1.pending == 1  # unreached, not yet due: no read-back expected yet


def test_distributions_are_nearest_rank() -> None:
    minutes = (4, 1, 10, 3, 2)
    rows = [relay(category="CAT2", delay=timedelta(minutes=m)) for m in minutes]
    report = build_relay_report(rows, now=R0 + timedelta(days=1), start=START, end=END)
    cat2 = next(c for c in report.categories if c.category == "CAT2")
    comm = cat2.identified_to_communicated
    assert comm is not None
    assert (comm.count, comm.median, comm.p90, comm.max) == (
        5,
        timedelta(minutes=3),
        timedelta(minutes=10),
        timedelta(minutes=10),
    )
    ack = cat2.identified_to_acknowledged
    assert ack is not None
    assert ack.median == timedelta(minutes=4)  # each acknowledged one minute later
    even = build_relay_report(
        [relay(category="CAT3", delay=timedelta(minutes=m)) for m in (1, 2, 3, 4)],
        now=R0 + timedelta(days=1),
        start=START,
        end=END,
    )
    cat3 = next(c for c in even.categories if c.category == "CAT3")
    assert cat3.identified_to_communicated is not None
    assert cat3.identified_to_communicated.median == timedelta(minutes=2)  # lower middle
    assert cat3.identified_to_communicated.p90 == timedelta(minutes=4)
    cat1 = next(c for c in even.categories if c.category == "CAT1")
    assert cat1.relays == 0
    assert cat1.identified_to_communicated is None


def test_later_record_of_one_relay_supersedes_the_earlier() -> None:
    first = relay(delay=None, event_time=R0 + timedelta(minutes=1))
    second = dataclasses.replace(
        first,
        event_id=uuid.uuid4(),
        event_time=R0 + timedelta(hours=2),
        position=pos(),
        communicated_at=R0 + timedelta(minutes=50),
        acknowledged_at=R0 + timedelta(minutes=51),
    )
    report = build_relay_report([second, first], now=R0 + timedelta(hours=3), start=START, end=END)
    assert report.relays == 1
    (x,) = report.exceptions
    assert x.event_id == second.event_id
    assert x.superseded == (first.event_id,)
    assert x.issues == (RelayIssue.LATE,)  # 50 minutes, not "overdue"


def test_window_is_on_identification_time_and_deadlines_are_configurable() -> None:
    inside = relay(category="CAT4", delay=timedelta(hours=9))
    outside = relay(identified_at=END)
    report = build_relay_report(
        [inside, outside],
        now=R0 + timedelta(days=2),
        deadlines={"CAT1": timedelta(minutes=10)},
        start=START,
        end=END,
    )
    assert [c.category for c in report.categories] == ["CAT1", "CAT4"]
    cat4 = report.categories[1]
    assert (cat4.deadline, cat4.relays, cat4.on_time, cat4.late) == (None, 1, 1, 0)
    assert not report.exceptions  # no deadline for CAT4, and `outside` is out of the window


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"deadlines": {"CAT1": timedelta(0)}}, "positive"),
        ({"deadlines": {"CAT1": 30}}, "positive"),
        ({"deadlines": {"": timedelta(1)}}, "printable"),
        ({"now": datetime(2026, 2, 1)}, "timezone-aware"),
        ({"start": R0, "end": R0}, "before end"),
    ],
)
def test_hostile_relay_parameters(kw: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"now": R0, "start": START, "end": END, **kw}
    with pytest.raises(MalformedInputError, match=message):
        build_relay_report([relay()], **args)


def test_inconsistent_relay_times_are_refused() -> None:
    with pytest.raises(MalformedInputError, match="communicated before identified"):
        build_relay_report([relay(delay=timedelta(minutes=-1))], now=R0, start=START, end=END)
    bad_ack = relay(acknowledged_at=R0 - timedelta(minutes=5))
    with pytest.raises(MalformedInputError, match="acknowledged before communicated"):
        build_relay_report([bad_ack], now=R0, start=START, end=END)


def test_relay_exports() -> None:
    late = relay(delay=timedelta(hours=1), recipient_name="=2+3")
    report = build_relay_report([late, relay()], now=R0 + timedelta(days=1), start=START, end=END)
    body: Any = to_json(report)
    json.dumps(body)
    assert body["deadlines_seconds"] == {"CAT1": 1800.0, "CAT2": 21600.0, "CAT3": 259200.0}
    (x,) = body["exceptions"]
    assert x["delay_seconds"] == 3600.0
    assert x["issues"] == ["late"]
    assert x["ledger"]["leaf_index"] == late.position.leaf_index
    table = csv_rows(to_csv(report))
    assert table[1][0] == str(late.event_id)
    assert table[1][9] == "'=2+3"


def test_exports_refuse_other_objects() -> None:
    with pytest.raises(MalformedInputError):
        to_json(object())  # type: ignore[arg-type]
    with pytest.raises(MalformedInputError):
        to_csv("nope")  # type: ignore[arg-type]
    relays = build_relay_report([], now=END, start=START, end=END)
    with pytest.raises(MalformedInputError):
        to_html(relays)  # type: ignore[arg-type]
    assert isinstance(build_disclosures(PATIENT, [], now=NOW), DisclosureAccounting)
