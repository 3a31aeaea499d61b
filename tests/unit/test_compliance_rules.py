"""The compliance rules that need no registry: a planted violation raises exactly one
finding, its clean twin none, and the window edges fall where the thresholds say."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.audit.rules import (
    AppendedEvent,
    Finding,
    LogEvaluator,
    Position,
    RulesConfig,
    build_rules,
    parse_config,
)
from ledger.audit.rules.breakglass import BreakGlassUnjustified
from ledger.audit.rules.bulk import BulkAccess
from ledger.audit.rules.config import BreakGlassConfig, BulkAccessConfig, RelayLateConfig
from ledger.audit.rules.model import PHI_ACCESS, RELAY, SECURITY_EVENT
from ledger.audit.rules.relays import RelayLate
from ledger.errors import MalformedInputError

T0 = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)


class Log:
    """Appends records to one log (positions 0, 1, ...) and feeds them to a rule."""

    def __init__(self, rule: Any, log_id: int = 7) -> None:
        self.rule = rule
        self.window = rule.new_window()
        self.log_id = log_id
        self.next = 0
        self.findings: list[Finding] = []

    def add(self, schema: str, record: dict[str, Any]) -> Position:
        pos = Position(log_id=self.log_id, leaf_index=self.next)
        self.next += 1
        self.findings += self.rule.evaluate(
            AppendedEvent(position=pos, schema=schema, record=record), self.window
        )
        return pos


def access(
    user: str,
    patient: str | None,
    at: datetime,
    *,
    purpose: str | None = "TREAT",
    outcome: str = "SUCCESS",
    details: dict[str, str] | None = None,
    disclosed: Sequence[str] = (),
    schema: str = PHI_ACCESS,
) -> tuple[str, dict[str, Any]]:
    record: dict[str, Any] = {
        "event_time": at.isoformat(),
        "facility": {"id": "stmarys", "name": None},
        "actor": {"user_id": user, "role": "radiologist"},
        "outcome": outcome,
        "patient": None if patient is None else {"id": patient, "issuer": "MRN", "state": "MA"},
        "purpose_of_use": purpose,
        "details": details or {},
        "disclosed": [{"id": d, "issuer": "MRN", "state": None, "studies": []} for d in disclosed],
    }
    return schema, record


def relay(
    category: str,
    identified: datetime,
    communicated: timedelta | None,
    *,
    recorded: datetime,
    method: str = "PHONE",
    read_back: bool = True,
    acknowledged: timedelta | None = None,
    patient: str = "P1",
) -> tuple[str, dict[str, Any]]:
    return RELAY, {
        "event_time": recorded.isoformat(),
        "facility": {"id": "stmarys", "name": None},
        "category": category,
        "patient": {"id": patient, "issuer": "MRN", "state": "MA"},
        "study": {"uid": "2.25.1", "accession": None},
        "identified_at": identified.isoformat(),
        "communicated_at": None
        if communicated is None
        else (identified + communicated).isoformat(),
        "acknowledged_at": None
        if acknowledged is None
        else (identified + acknowledged).isoformat(),
        "sender": {"user_id": "rad-relay", "role": "radiologist"},
        "method": method,
        "read_back": read_back,
    }


# ------------------------------------------------------------------ access.bulk


def bulk(n: int = 3, minutes: int = 10) -> Log:
    return Log(BulkAccess(BulkAccessConfig(max_patients=n, window=timedelta(minutes=minutes))))


def test_bulk_a_user_over_n_patients_in_the_window_raises_exactly_one_finding() -> None:
    log = bulk()
    positions = [log.add(*access("snoop", f"P{i}", T0 + timedelta(minutes=i))) for i in range(4)]
    # more accesses while still over the line: no second alert
    for i in range(4, 8):
        log.add(*access("snoop", f"P{i}", T0 + timedelta(minutes=4, seconds=i)))
    assert len(log.findings) == 1
    f = log.findings[0]
    assert (f.rule_id, f.rule_version, f.user_id) == ("access.bulk", 1, "snoop")
    assert f.trigger == positions[3]
    assert {e.position for e in f.evidence if e.role == "window"} == set(positions)
    assert f.thresholds == {"max_patients": 3, "window_minutes": 10}


def test_bulk_clean_twin_n_patients_or_the_same_patient_again_raises_none() -> None:
    log = bulk()
    for i in range(3):
        log.add(*access("busy", f"P{i}", T0 + timedelta(minutes=i)))
    for i in range(10):  # the same three patients again and again
        log.add(*access("busy", f"P{i % 3}", T0 + timedelta(minutes=3, seconds=i)))
    log.add(*access("other", "P9", T0 + timedelta(minutes=4)))  # another user
    assert log.findings == []


def test_bulk_window_edge_an_access_exactly_m_minutes_later_is_outside() -> None:
    log = bulk()
    for i in range(3):
        log.add(*access("u", f"P{i}", T0 + timedelta(minutes=i)))
    # P0 was at T0; at T0 + 10 min it has left the (t - 10 min, t] window
    log.add(*access("u", "P3", T0 + timedelta(minutes=10)))
    assert log.findings == []
    # one second earlier it would still count
    early = bulk()
    for i in range(3):
        early.add(*access("u", f"P{i}", T0 + timedelta(minutes=i)))
    early.add(*access("u", "P3", T0 + timedelta(minutes=9, seconds=59)))
    assert len(early.findings) == 1


def test_bulk_a_second_crossing_after_falling_back_raises_a_second_finding() -> None:
    log = bulk()
    for i in range(4):
        log.add(*access("u", f"A{i}", T0 + timedelta(minutes=i)))
    for i in range(4):
        log.add(*access("u", f"B{i}", T0 + timedelta(hours=2, minutes=i)))
    assert len(log.findings) == 2


def test_bulk_counts_a_querys_disclosed_patients_and_skips_refused_accesses() -> None:
    log = bulk()
    log.add(*access("u", None, T0, disclosed=["P1", "P2", "P3"]))
    log.add(*access("u", "P4", T0 + timedelta(minutes=1), outcome="MAJOR_FAILURE"))
    assert log.findings == []
    log.add(*access("u", "P4", T0 + timedelta(minutes=2)))
    assert len(log.findings) == 1


def test_bulk_patients_with_and_without_an_issuer_in_one_answer_are_distinct() -> None:
    log = bulk()
    schema, record = access("u", "P1", T0, disclosed=["P1", "P2"])
    record["disclosed"].append({"id": "P1", "issuer": None, "state": None, "studies": []})
    log.add(schema, record)  # P1 (MRN), P2 (MRN), P1 (no issuer): three patients
    assert log.findings == []
    log.add(*access("u", "P3", T0 + timedelta(minutes=1)))
    assert len(log.findings) == 1


# ------------------------------------------------------- breakglass.unjustified


def breakglass(minutes: int = 60) -> Log:
    return Log(BreakGlassUnjustified(BreakGlassConfig(within=timedelta(minutes=minutes))))


def test_breakglass_without_justification_raises_once_when_the_log_passes_the_deadline() -> None:
    log = breakglass()
    override = log.add(*access("dr.x", "P1", T0, purpose="ETREAT"))
    log.add(*access("dr.y", "P2", T0 + timedelta(minutes=60)))  # at the deadline: not past
    assert log.findings == []
    passed = log.add(*access("dr.y", "P2", T0 + timedelta(minutes=61)))
    log.add(*access("dr.y", "P2", T0 + timedelta(minutes=90)))
    assert len(log.findings) == 1
    f = log.findings[0]
    assert (f.rule_id, f.trigger, f.user_id) == ("breakglass.unjustified", override, "dr.x")
    assert f.patient is not None
    assert f.patient.id == "P1"
    assert {(e.position, e.role) for e in f.evidence} == {
        (override, "trigger"),
        (passed, "deadline_passed"),
    }


def test_breakglass_clean_twin_justified_in_time_raises_none() -> None:
    log = breakglass()
    log.add(*access("dr.x", "P1", T0, purpose="ETREAT"))
    log.add(
        *access("dr.x", "P1", T0 + timedelta(minutes=60), details={"justification": "trauma bay"})
    )
    log.add(*access("dr.y", "P2", T0 + timedelta(hours=5)))
    assert log.findings == []


def test_breakglass_justified_on_the_override_itself_or_by_a_security_event() -> None:
    log = breakglass()
    log.add(*access("dr.x", "P1", T0, purpose="BTG", details={"justification": "code blue"}))
    log.add(*access("dr.x", "P2", T0, purpose="BTG", schema=SECURITY_EVENT))
    log.add(
        *access(
            "dr.x", "P2", T0 + timedelta(minutes=5), schema=SECURITY_EVENT,
            details={"justification": "stroke alert"},
        )
    )  # fmt: skip
    log.add(*access("dr.y", "P3", T0 + timedelta(hours=5)))
    assert log.findings == []


def test_breakglass_a_justification_too_late_by_another_user_or_blank_does_not_count() -> None:
    for justification in (
        ("dr.x", "P1", T0 + timedelta(minutes=61), "late"),
        ("dr.other", "P1", T0 + timedelta(minutes=5), "not theirs"),
        ("dr.x", "P9", T0 + timedelta(minutes=5), "other patient"),
        ("dr.x", "P1", T0 + timedelta(minutes=5), "   "),
    ):
        log = breakglass()
        log.add(*access("dr.x", "P1", T0, purpose="ETREAT"))
        user, patient, at, why = justification
        log.add(*access(user, patient, at, details={"justification": why}))
        log.add(*access("dr.y", "P3", T0 + timedelta(hours=2)))
        assert len(log.findings) == 1, justification


# ------------------------------------------------------------------ relay.late


def relays() -> Log:
    return Log(RelayLate(RelayLateConfig()))


def test_relay_communicated_after_the_category_deadline_raises_exactly_one_finding() -> None:
    log = relays()
    late = log.add(*relay("CAT1", T0, timedelta(minutes=31), recorded=T0 + timedelta(hours=1)))
    # a later record of the same relay (acknowledged): no second alert
    log.add(*relay("CAT1", T0, timedelta(minutes=31), recorded=T0 + timedelta(hours=2)))
    assert len(log.findings) == 1
    f = log.findings[0]
    assert (f.rule_id, f.trigger, f.user_id) == ("relay.late", late, "rad-relay")
    assert f.thresholds == {"cat1_minutes": 30, "cat2_minutes": 360, "cat3_minutes": 4320}


@pytest.mark.parametrize(
    ("category", "delay"),
    [
        ("CAT1", timedelta(minutes=30)),  # exactly at the deadline: on time
        ("CAT2", timedelta(hours=6)),
        ("CAT3", timedelta(days=3)),
        ("CAT1", None),  # not communicated (yet): not "late"
    ],
)
def test_relay_clean_twin_on_time_raises_none(category: str, delay: timedelta | None) -> None:
    log = relays()
    log.add(*relay(category, T0, delay, recorded=T0 + timedelta(days=4)))
    assert log.findings == []


def test_relay_deadlines_come_from_the_configuration() -> None:
    config = parse_config("[relay_late]\ncat2_minutes = 60\n")
    log = Log(RelayLate(config.relay_late))
    log.add(*relay("CAT2", T0, timedelta(minutes=61), recorded=T0 + timedelta(hours=2)))
    assert len(log.findings) == 1
    assert log.findings[0].thresholds["cat2_minutes"] == 60


# ----------------------------------------------------------------- configuration


def test_the_shipped_configuration_file_is_the_defaults() -> None:
    from tests.support import ROOT

    shipped = parse_config((ROOT / "deploy" / "compliance-rules.toml").read_text())
    assert shipped == RulesConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[access_bulk]\nmax_patient = 3\n", "unknown key"),
        ("[acces_bulk]\n", "unknown rule table"),
        ("[access_bulk]\nmax_patients = 0\n", "max_patients"),
        ("[access_bulk]\nwindow_minutes = true\n", "window_minutes"),
        ("[relay_late]\nseverity = 'urgent'\n", "severity"),
        ("[breakglass_unjustified]\npurposes = []\n", "purposes"),
        ("access_bulk = 3\n", "must be a table"),
        ("not toml", "not TOML"),
    ],
)
def test_a_bad_configuration_is_refused_naming_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(MalformedInputError, match=message):
        parse_config(text)


# ----------------------------------------------------------------- all together


def test_every_rule_together_each_event_in_leaf_order() -> None:
    evaluator = LogEvaluator(build_rules(RulesConfig()))
    found: list[Finding] = []
    records = [
        access("dr.x", "P1", T0, purpose="ETREAT"),
        relay("CAT1", T0, timedelta(hours=1), recorded=T0 + timedelta(hours=1)),
        access("dr.y", "P2", T0 + timedelta(hours=2)),
    ]
    for i, (schema, record) in enumerate(records):
        event = AppendedEvent(
            position=Position(log_id=1, leaf_index=i), schema=schema, record=record
        )
        found += evaluator.evaluate(event)
    assert sorted(f.rule_id for f in found) == ["breakglass.unjustified", "relay.late"]
