"""The compliance report's pure computation: counts per checklist item on a hand-built set
of accesses and registry changes, exceptions matched to alerts, the month in the rules'
time zone, order independence, and exports that neither run formulas nor markup."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from ledger.audit.registry import RegistryTimeline, parse_change
from ledger.audit.reports import (
    AlertStatus,
    Closure,
    ComplianceReport,
    RegistryLog,
    ReportCheckpoint,
    build_relay_report,
    digest_of,
    seal,
    sealed_csv,
    sealed_html,
    sealed_json,
    to_json,
)
from ledger.audit.reports.compliance import (
    AlertRow,
    ComplianceTally,
    build_compliance,
    month_window,
)
from ledger.audit.rules.checklist import ChecklistConfig
from ledger.audit.rules.model import PHI_ACCESS, AppendedEvent, Position
from ledger.errors import MalformedInputError
from producers import Credential as PCredential
from producers import RegistryRecord, WorkforceMember
from tests.unit.test_registry_timeline import BAA, LIC, MEMBER, ORG, leaf

REG_LOG, ACCESS_LOG = 9, 7
ORIGINS = {REG_LOG: "t.ledger/compliance-registry/0", ACCESS_LOG: "t.ledger/phi-access/0"}
T_REG = datetime(2026, 2, 1, tzinfo=UTC)
DAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
AT = datetime(2026, 4, 2, tzinfo=UTC)
HOSTILE = "=ghost<script>alert(1)</script>"


def registry() -> RegistryTimeline:
    ended = dataclasses.replace(BAA, effective_to=date(2026, 3, 15))
    cred = PCredential(
        credential_id="cred-1",
        user_id="dr.lee",
        facility_id="stmarys",
        privilege="read",
        valid_from=date(2024, 1, 1),
    )
    nurse = WorkforceMember(
        user_id="nurse.kim", organization_id="stmarys", role="nurse",
        shared_or_generic=False, employed_from=date(2020, 1, 1),
    )  # fmt: skip
    shared = dataclasses.replace(nurse, user_id="ws-3", role="technologist", shared_or_generic=True)
    tl = RegistryTimeline()
    records: tuple[RegistryRecord, ...] = (ORG, MEMBER, ended, LIC, cred, nurse, shared)
    for i, record in enumerate(records):
        tl.add(parse_change(leaf(record, at=T_REG, index=i)))
    return tl


def access(
    index: int,
    user: str,
    at: datetime,
    *,
    state: str | None = "CA",
    encrypted: bool | None = None,
    outcome: str = "SUCCESS",
) -> AppendedEvent:
    record: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=index + 1)),
        "event_time": at.isoformat(),
        "facility": {"id": "stmarys", "name": None},
        "actor": {"user_id": user, "role": "radiologist"},
        "action": "R",
        "outcome": outcome,
        "patient": {"id": f"P{index}", "issuer": "MRN", "state": state},
        "study": {"uid": f"2.25.{index}"},
        "disclosed": [],
    }
    if encrypted is not None:
        record["transport"] = {"channel": "HTTPS" if encrypted else "HTTP", "encrypted": encrypted}
    return AppendedEvent(
        position=Position(log_id=ACCESS_LOG, leaf_index=index), schema=PHI_ACCESS, record=record
    )


def month_of_accesses() -> list[AppendedEvent]:
    h = timedelta(hours=1)
    return [
        access(0, "dr.lee", DAY, encrypted=True),  # every item covered
        access(1, "dr.lee", DAY + h, state="NY"),  # no NY license: alert 11
        access(2, "dr.lee", DAY + 2 * h, state="NY"),  # same user, day, state: alert 11
        access(3, "dr.lee", datetime(2026, 3, 20, tzinfo=UTC), state=None),  # BAA ended
        access(4, "nurse.kim", DAY + timedelta(days=3), encrypted=False),  # plain HTTP
        access(5, "ws-3", DAY + timedelta(days=4)),  # shared workstation account
        access(6, HOSTILE, DAY + timedelta(days=5)),  # nobody the registry knows
        access(7, "dr.lee", DAY, outcome="MAJOR_FAILURE"),  # refused: recorded, not checked
    ]


ALERTS = (
    AlertRow(alert_id=11, rule_id="registry.license_missing", rule_version=1,
             trigger=Position(log_id=ACCESS_LOG, leaf_index=1), state="acknowledged"),
    AlertRow(alert_id=12, rule_id="transport.unencrypted", rule_version=1,
             trigger=Position(log_id=ACCESS_LOG, leaf_index=4), state="open"),
    # another rule at the same leaf is not this exception's alert
    AlertRow(alert_id=13, rule_id="access.bulk", rule_version=1,
             trigger=Position(log_id=ACCESS_LOG, leaf_index=3), state="open"),
)  # fmt: skip
CLOSURES = (
    Closure(alert_id=12, rule_id="transport.unencrypted", disposition="breach_investigation",
            closed_at=datetime(2026, 3, 9, tzinfo=UTC), closed_by="privacy.officer"),
    Closure(alert_id=9, rule_id="access.bulk", disposition="false_positive",
            closed_at=datetime(2026, 3, 3, tzinfo=UTC), closed_by="privacy.officer"),
)  # fmt: skip


def build(
    events: list[AppendedEvent] | None = None,
    *,
    config: ChecklistConfig | None = None,
    evaluated_to: int = 5,
) -> ComplianceReport:
    cfg = config or ChecklistConfig()
    tally = ComplianceTally(
        facility="stmarys", month="2026-03", timeline=registry(), config=cfg, origins=ORIGINS
    )
    for e in month_of_accesses() if events is None else events:
        tally.add(e)
    start, end = month_window("2026-03", cfg.zone)
    return build_compliance(
        tally,
        at=AT,
        alerts=ALERTS,
        evaluated_to={ACCESS_LOG: evaluated_to, 42: 1},
        relays=build_relay_report([], start=start, end=end, now=AT, facility="stmarys"),
        ledger_reads=17,
        closures=CLOSURES,
        registry=RegistryLog(origin=ORIGINS[REG_LOG], size=7),
    )


def counts(report: ComplianceReport) -> dict[str, tuple[int, int, int, int]]:
    return {
        i.check: (i.covered, i.exception, i.not_applicable, i.undecidable) for i in report.items
    }


def test_counts_per_item_against_the_registry_as_known_at_each_access() -> None:
    r = build()
    assert (r.accesses_recorded, r.accesses_checked) == (8, 7)
    assert counts(r) == {
        "baa": (3, 1, 3, 0),
        "license": (1, 2, 3, 1),
        "credential": (4, 0, 3, 0),
        "unique_user": (5, 2, 0, 0),
        "encrypted": (1, 1, 0, 5),
    }
    by_item = {i.check: i for i in r.items}
    assert ("undecidable", "no_patient_state", 1) in by_item["license"].reasons
    assert ("exception", "no_license:NY", 2) in by_item["license"].reasons
    assert ("not_applicable", "workforce", 2) in by_item["baa"].reasons
    assert ("undecidable", "not_recorded", 5) in by_item["encrypted"].reasons
    assert by_item["unique_user"].rule_ids == ("account.ended", "account.shared", "account.unknown")
    assert (by_item["license"].alerts, by_item["encrypted"].alerts, by_item["baa"].alerts) == (
        1,
        1,
        0,
    )
    assert r.registry_changes == 7
    assert r.ledger_reads == 17


def test_each_exception_is_matched_to_its_alert_or_says_why_there_is_none() -> None:
    r = build()
    got = [(x.position.leaf_index, x.check, x.rule_id, x.alert_status, x.alert_id)
           for x in r.exceptions]  # fmt: skip
    assert got == [  # by time: the BAA exception is on the 20th
        (1, "license", "registry.license_missing", AlertStatus.RAISED, 11),
        (2, "license", "registry.license_missing", AlertStatus.SAME_DAY, 11),
        (4, "encrypted", "transport.unencrypted", AlertStatus.RAISED, 12),
        (5, "unique_user", "account.shared", AlertStatus.NOT_EVALUATED, None),
        (6, "unique_user", "account.unknown", AlertStatus.NOT_EVALUATED, None),
        (3, "baa", "registry.baa_missing", AlertStatus.NO_ALERT, None),
    ]
    first = r.exceptions[0]
    assert first.alert_state == "acknowledged"
    assert first.reason == "no_license:NY"
    # the registry positions behind the exception: dr.lee's radiologist membership
    assert [(p.origin, p.leaf_index) for p in first.registry] == [(ORIGINS[REG_LOG], 1)]
    assert (first.patient_id, first.patient_issuer, first.patients) == ("P1", "MRN", 1)
    # the evaluator's progress is named per log the report read, never another
    assert r.evaluated_to == ((ORIGINS[ACCESS_LOG], 5),)


def test_an_evaluator_that_passed_every_access_turns_not_evaluated_into_no_alert() -> None:
    r = build(evaluated_to=8)
    assert {x.position.leaf_index: x.alert_status for x in r.exceptions}[5] is AlertStatus.NO_ALERT


def test_a_day_boundary_in_the_rules_time_zone_splits_the_daily_alert() -> None:
    # In Honolulu (UTC-10) 09:30 UTC is 23:30 the day before and 10:30 UTC is 00:30: two
    # days, so the second access is not covered by the first one's daily alert.
    late = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
    events = [access(1, "dr.lee", late, state="NY"), access(2, "dr.lee", late + timedelta(hours=1),
              state="NY")]  # fmt: skip
    utc = build(events)
    assert [x.alert_status for x in utc.exceptions] == [AlertStatus.RAISED, AlertStatus.SAME_DAY]
    hawaii = build(events, config=ChecklistConfig(timezone="Pacific/Honolulu"))
    assert [x.alert_status for x in hawaii.exceptions] == [
        AlertStatus.RAISED,
        AlertStatus.NO_ALERT,
    ]


def test_the_month_is_the_rules_time_zones_calendar_month() -> None:
    assert month_window("2026-03", ChecklistConfig().zone) == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 4, 1, tzinfo=UTC),
    )
    start, end = month_window("2026-12", ChecklistConfig(timezone="America/New_York").zone)
    assert (start, end) == (
        datetime(2026, 12, 1, 5, tzinfo=UTC),
        datetime(2027, 1, 1, 5, tzinfo=UTC),
    )
    # daylight saving time starts in March: the month is an hour shorter
    start, end = month_window("2026-03", ChecklistConfig(timezone="America/New_York").zone)
    assert (start.hour, end.hour) == (5, 4)


@pytest.mark.parametrize("month", ["2026-13", "2026-3", "26-03", "2026-00", "1969-12", "", "x"])
def test_a_malformed_month_is_refused(month: str) -> None:
    with pytest.raises(MalformedInputError, match="YYYY-MM"):
        month_window(month, ChecklistConfig().zone)


def test_the_report_does_not_depend_on_the_order_accesses_are_added() -> None:
    events = month_of_accesses()
    random.Random(15).shuffle(events)
    assert to_json(build(events)) == to_json(build())


def test_a_naive_cut_off_and_a_bad_facility_are_refused() -> None:
    tally = ComplianceTally(
        facility="stmarys", month="2026-03", timeline=registry(), config=ChecklistConfig(),
        origins=ORIGINS,
    )  # fmt: skip
    start, end = month_window("2026-03", ChecklistConfig().zone)
    relays = build_relay_report([], start=start, end=end, now=AT)
    with pytest.raises(MalformedInputError, match="at"):
        build_compliance(
            tally, at=datetime(2026, 4, 2), alerts=(), evaluated_to={}, relays=relays,
            ledger_reads=0, closures=(), registry=None,
        )  # fmt: skip
    with pytest.raises(MalformedInputError, match="facility"):
        ComplianceTally(
            facility="bad\nid", month="2026-03", timeline=registry(), config=ChecklistConfig(),
            origins=ORIGINS,
        )  # fmt: skip


def test_an_access_of_another_facility_or_month_is_refused_and_a_leaf_counts_once() -> None:
    tally = ComplianceTally(
        facility="stmarys", month="2026-03", timeline=registry(), config=ChecklistConfig(),
        origins=ORIGINS,
    )  # fmt: skip
    elsewhere = access(0, "dr.lee", DAY)
    record = dict(elsewhere.record)
    record["facility"] = {"id": "other", "name": None}
    with pytest.raises(MalformedInputError, match="not an access here"):
        tally.add(dataclasses.replace(elsewhere, record=record))
    with pytest.raises(MalformedInputError, match="not in 2026-03"):
        tally.add(access(1, "dr.lee", datetime(2026, 4, 1, tzinfo=UTC)))
    with pytest.raises(MalformedInputError, match="not an access here"):
        tally.add(dataclasses.replace(elsewhere, schema="philedger.audit.SecurityEvent"))
    tally.add(access(2, "dr.lee", DAY))
    tally.add(access(2, "dr.lee", DAY))
    assert (tally.recorded, tally.checked) == (1, 1)


def sealed() -> Any:
    cps = tuple(
        ReportCheckpoint(log_id=log, origin=origin, size=8, note=f"note of {origin}\n",
                         root_hash="ab" * 32, key_ids=("t.ledger+0a0b0c0d",))
        for log, origin in ORIGINS.items()
    )  # fmt: skip
    return seal(build(), cps)


def test_the_json_names_scope_config_registry_and_every_section() -> None:
    body = json.loads(sealed_json(sealed()))
    assert body["digest"] == digest_of(body)
    assert (body["report"], body["facility"], body["month"], body["timezone"]) == (
        "compliance", "stmarys", "2026-03", "UTC",
    )  # fmt: skip
    assert body["config"]["licensed_roles"] == ["radiologist"]
    assert body["config"]["relay_deadlines_seconds"]["CAT1"] == 1800.0
    assert body["registry"] == {"origin": ORIGINS[REG_LOG], "size": 7}
    assert body["accesses"] == {"recorded": 8, "checked": 7}
    assert [i["item"] for i in body["items"]] == [
        "baa", "license", "credential", "unique_user", "encrypted",
    ]  # fmt: skip
    assert body["exceptions"][0]["alert"] == {
        "status": "raised", "alert_id": 11, "state": "acknowledged",
    }  # fmt: skip
    assert [c["category"] for c in body["relays"]["categories"]] == ["CAT1", "CAT2", "CAT3"]
    assert body["audit_of_access"] == {"accesses_recorded": 8, "ledger_reads": 17}
    assert body["breach_process"]["closed"] == {
        "false_positive": 1, "policy_violation": 0, "breach_investigation": 1,
    }  # fmt: skip
    assert [b["alert_id"] for b in body["breach_process"]["breach_investigations"]] == [12]
    assert [c["origin"] for c in body["as_of_checkpoints"]] == sorted(ORIGINS.values())


def test_the_csv_is_one_table_that_runs_no_formula() -> None:
    text = sealed_csv(sealed())
    rows = list(csv.reader(io.StringIO(text)))
    assert len({len(r) for r in rows}) == 1  # rectangular, footer rows padded
    assert rows[0][:4] == ["section", "item", "measure", "count"]
    assert rows[
        next(i for i, r in enumerate(rows) if r[2] == "undecidable:no_patient_state" and
             r[1] == "license")
    ][:4] == ["checklist", "license", "undecidable:no_patient_state", "1"]  # fmt: skip
    hostile = [r for r in rows if r[0] == "exception" and r[1] == "unique_user" and "ghost" in r[8]]
    assert [r[8] for r in hostile] == ["'" + HOSTILE]
    assert not any(c.startswith(("=", "+", "-", "@")) for r in rows for c in r)
    assert rows[-1][0] == "#digest"


def test_the_html_page_escapes_every_value_and_loads_nothing() -> None:
    page = sealed_html(sealed())
    assert "<script>" not in page
    assert "=ghost&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not any(tag in page for tag in ("<script", "src=", "href=", "<link", "@import"))
    assert "Content-Security-Policy" in page
    assert "Compliance report: stmarys, 2026-03" in page
    assert "Content digest: sha256:" in page
    assert page == sealed_html(sealed())
