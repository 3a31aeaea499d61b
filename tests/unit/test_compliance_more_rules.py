"""The session-4 rules that need no registry (watch lists, unusual hours, relay deadlines):
a planted violation raises exactly one finding, its clean twin none, replay and batch
boundaries change nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.audit.rules import Evaluator, Position, RulesConfig, build_rules, parse_config
from ledger.audit.rules.config import (
    PrivacyListsConfig,
    RelayLateConfig,
    RelayNoReadbackConfig,
    RelayOverdueConfig,
    UnusualHoursConfig,
)
from ledger.audit.rules.hours import UnusualHours
from ledger.audit.rules.model import Severity
from ledger.audit.rules.privacy import CoworkerRecord, OwnRecord, VipRecord
from ledger.audit.rules.relay_deadlines import RelayNoReadback, RelayOverdue
from ledger.audit.rules.watchlist import WatchList, parse_watchlist
from ledger.errors import MalformedInputError
from tests.unit.test_compliance_evaluator import MemoryStore
from tests.unit.test_compliance_rules import T0, Log, access, relay

UTC_ZONE = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
LIST_CSV = b"""list,patient_id,issuer,user_id,note
workforce,EMP-ANNA,MRN,anna,Anna's own chart
workforce,EMP-BOB,,bob,any issuer
vip,VIP-1,MRN,,the mayor
"""


def watchlist() -> WatchList:
    return parse_watchlist("watch.csv", LIST_CSV)


def own(zone: ZoneInfo = UTC_ZONE, wl: WatchList | None = None) -> Log:
    return Log(OwnRecord(wl or watchlist(), Severity.HIGH, zone))


def coworker() -> Log:
    return Log(CoworkerRecord(watchlist(), Severity.MEDIUM, UTC_ZONE))


def vip() -> Log:
    return Log(VipRecord(watchlist(), Severity.HIGH, UTC_ZONE))


# ------------------------------------------------------------- privacy.own_record


def test_own_record_raises_once_per_user_patient_and_day() -> None:
    log = own()
    first = log.add(*access("anna", "EMP-ANNA", T0))
    log.add(*access("anna", "EMP-ANNA", T0 + timedelta(minutes=30)))  # same day
    assert len(log.findings) == 1
    f = log.findings[0]
    assert (f.rule_id, f.rule_version, f.trigger, f.user_id) == (
        "privacy.own_record", 1, first, "anna",
    )  # fmt: skip
    assert f.patient is not None
    assert (f.patient.id, f.patient.issuer) == ("EMP-ANNA", "MRN")
    assert f.severity is Severity.HIGH
    assert f.thresholds["list_sha256"] == watchlist().sha256
    assert f.thresholds["list_entries"] == 3
    log.add(*access("anna", "EMP-ANNA", T0 + timedelta(days=1)))  # the next day: again
    assert len(log.findings) == 2


def test_own_record_clean_twin_raises_none() -> None:
    log = own()
    log.add(*access("anna", "P-OTHER", T0))  # not listed
    log.add(*access("anna", "EMP-BOB", T0))  # Bob's record: co-worker, not own
    log.add(*access("anna", "EMP-ANNA", T0, outcome="MAJOR_FAILURE"))  # refused
    schema, record = access("anna", "EMP-ANNA", T0)
    record["patient"]["issuer"] = "OTHER-ISSUER"  # same id, another issuer's patient
    log.add(schema, record)
    assert log.findings == []


def test_a_blank_issuer_on_the_list_matches_the_id_under_any_issuer() -> None:
    log = own()
    schema, record = access("bob", "EMP-BOB", T0)
    record["patient"]["issuer"] = "ANY"
    log.add(schema, record)
    assert len(log.findings) == 1


def test_the_day_is_the_rules_time_zones() -> None:
    # 04:30Z and 05:30Z on one UTC day are 23:30 and 00:30 in New York (EST in March)
    at = datetime(2026, 3, 3, 4, 30, tzinfo=UTC)
    for zone, expected in ((UTC_ZONE, 1), (NEW_YORK, 2)):
        log = own(zone)
        log.add(*access("anna", "EMP-ANNA", at))
        log.add(*access("anna", "EMP-ANNA", at + timedelta(hours=1)))
        assert len(log.findings) == expected, zone
    assert own(NEW_YORK).rule.thresholds()["timezone"] == "America/New_York"


def test_no_list_configured_the_watch_list_rules_are_inert() -> None:
    for rule in build_rules(RulesConfig()):
        if rule.id.startswith("privacy."):
            log = Log(rule)
            log.add(*access("anna", "EMP-ANNA", T0))
            log.add(*access("x", "VIP-1", T0))
            assert log.findings == []
            assert rule.thresholds()["list_file"] is None


# ---------------------------------------------------------- privacy.coworker_record


def test_coworker_record_raises_once_for_another_members_record() -> None:
    log = coworker()
    trigger = log.add(*access("carol", "EMP-ANNA", T0))
    log.add(*access("carol", "EMP-ANNA", T0 + timedelta(hours=1)))
    log.add(*access("dave", "EMP-ANNA", T0 + timedelta(hours=1)))  # another user: its own
    assert [(f.trigger, f.user_id) for f in log.findings] == [
        (trigger, "carol"),
        (Position(log_id=7, leaf_index=2), "dave"),
    ]
    assert log.findings[0].severity is Severity.MEDIUM


def test_coworker_record_clean_twin_own_record_or_unlisted_raises_none() -> None:
    log = coworker()
    log.add(*access("anna", "EMP-ANNA", T0))  # her own: privacy.own_record's case
    log.add(*access("carol", "P-UNLISTED", T0))
    log.add(*access("carol", "VIP-1", T0))  # a VIP: privacy.vip_record's case
    assert log.findings == []


# --------------------------------------------------------------- privacy.vip_record


def test_vip_record_raises_once_per_user_and_day_from_a_querys_disclosed_patients() -> None:
    log = vip()
    trigger = log.add(*access("eve", None, T0, disclosed=["P1", "VIP-1", "P2"]))
    log.add(*access("eve", "VIP-1", T0 + timedelta(minutes=5)))
    assert len(log.findings) == 1
    f = log.findings[0]
    assert (f.rule_id, f.trigger) == ("privacy.vip_record", trigger)
    assert f.patient is not None
    assert f.patient.id == "VIP-1"


def test_an_access_reaching_several_listed_patients_raises_one_finding_counting_them() -> None:
    text = LIST_CSV + b"vip,VIP-2,MRN,,\n"
    log = Log(VipRecord(parse_watchlist("w.csv", text), Severity.HIGH, UTC_ZONE))
    log.add(*access("eve", "VIP-2", T0, disclosed=["VIP-1"]))
    assert len(log.findings) == 1
    assert log.findings[0].patient is not None
    assert log.findings[0].patient.id == "VIP-1"
    assert "1 more listed patient" in log.findings[0].summary
    log.add(*access("eve", "VIP-2", T0 + timedelta(minutes=1)))  # both alerted today
    assert len(log.findings) == 1


# ------------------------------------------------------------ access.unusual_hours


def hours(**kwargs: Any) -> Log:
    return Log(UnusualHours(UnusualHoursConfig(**kwargs), UTC_ZONE))


DAY0 = datetime(2026, 3, 2, tzinfo=UTC)


def day_shift(log: Log, user: str = "ron", days: int = 10, per_day: int = 8) -> datetime:
    """``per_day`` accesses between 09:00 and 17:00 on ``days`` days; the next morning."""
    for d in range(days):
        for i in range(per_day):
            log.add(*access(user, f"P{i}", DAY0 + timedelta(days=d, hours=9 + i)))
    return DAY0 + timedelta(days=days)


def test_unusual_hours_an_access_at_3am_after_a_day_shift_baseline_raises_once() -> None:
    log = hours()
    morning = day_shift(log)
    assert log.findings == []
    trigger = log.add(*access("ron", "P9", morning + timedelta(hours=3)))
    log.add(*access("ron", "P9", morning + timedelta(hours=3, minutes=40)))  # same day
    assert len(log.findings) == 1
    f = log.findings[0]
    assert (f.rule_id, f.trigger, f.user_id) == ("access.unusual_hours", trigger, "ron")
    assert "between 03:00 and 04:00 (UTC)" in f.summary
    assert "0 of their 80 accesses" in f.summary
    assert f.thresholds == {
        "baseline_days": 28, "min_events": 50, "min_days": 7, "min_share": 0.01,
        "timezone": "UTC",
    }  # fmt: skip


def test_unusual_hours_clean_twin_within_the_users_hours_raises_none() -> None:
    log = hours()
    morning = day_shift(log)
    log.add(*access("ron", "P9", morning + timedelta(hours=10, minutes=30)))
    log.add(*access("ron", "P9", morning + timedelta(hours=16, minutes=59)))
    log.add(*access("nina", "P9", morning + timedelta(hours=3)))  # no baseline of her own
    assert log.findings == []


@pytest.mark.parametrize(
    ("days", "per_day"),
    [
        (6, 10),  # 60 accesses but only 6 days (min_days 7)
        (7, 7),  # 7 days but only 49 accesses (min_events 50)
    ],
)
def test_unusual_hours_needs_a_full_baseline_first(days: int, per_day: int) -> None:
    log = hours()
    morning = day_shift(log, days=days, per_day=per_day)
    log.add(*access("ron", "P9", morning + timedelta(hours=3)))
    assert log.findings == []


def test_unusual_hours_the_baseline_forgets_accesses_older_than_baseline_days() -> None:
    log = hours()
    morning = day_shift(log)
    # 29 days after the last day shift, the whole baseline has aged out
    log.add(*access("ron", "P9", morning + timedelta(days=28, hours=3)))
    assert log.findings == []


def test_unusual_hours_refused_accesses_build_no_baseline_and_raise_nothing() -> None:
    log = hours()
    for d in range(10):
        for i in range(8):
            at = DAY0 + timedelta(days=d, hours=9 + i)
            log.add(*access("ron", f"P{i}", at, outcome="MAJOR_FAILURE"))
    log.add(*access("ron", "P9", DAY0 + timedelta(days=10, hours=3)))
    assert log.findings == []


def test_unusual_hours_an_hour_at_or_above_min_share_is_usual() -> None:
    for nights, raised in ((4, True), (5, False)):  # 80 day accesses: 4/84 < 5% <= 5/85
        log = hours(min_share=0.05)
        morning = day_shift(log)
        for d in range(nights):  # earlier nights at 03:xx, appended late
            log.add(*access("ron", "P9", DAY0 + timedelta(days=d, hours=3)))
        last = log.add(*access("ron", "P9", morning + timedelta(hours=3)))
        assert any(f.trigger == last for f in log.findings) is raised, nights


def test_unusual_hours_are_hours_and_days_of_the_rules_time_zone() -> None:
    june = datetime(2026, 6, 1, tzinfo=UTC)  # no DST change in the month (EDT, UTC-4)

    def shifted(zone: ZoneInfo) -> Log:
        log = Log(UnusualHours(UnusualHoursConfig(), zone))
        for d in range(10):
            for i in range(8):  # 14:00-21:59Z, 10:00-17:59 New York
                log.add(*access("ron", f"P{i}", june + timedelta(days=d, hours=14 + i)))
        return log

    ny, utc = shifted(NEW_YORK), shifted(UTC_ZONE)
    for log in (ny, utc):
        log.add(*access("ron", "P9", june + timedelta(days=10, hours=3)))  # 23:00 NY
        log.add(*access("ron", "P9", june + timedelta(days=10, hours=5)))  # 01:00 NY, next day
    assert len(ny.findings) == 2
    assert len(utc.findings) == 1
    assert "on 2026-06-10 between 23:00 and 00:00 (America/New_York)" in ny.findings[0].summary
    assert "on 2026-06-11 between 03:00 and 04:00 (UTC)" in utc.findings[0].summary


# ------------------------------------------------------------------ relay.overdue


def overdue(**deadline_minutes: int) -> Log:
    config = parse_config(
        "[relay_late]\n" + "".join(f"{k}_minutes = {v}\n" for k, v in deadline_minutes.items())
    )
    return Log(RelayOverdue(RelayOverdueConfig(), config.relay_late.deadlines))


def test_overdue_a_relay_never_communicated_raises_once_when_the_log_passes_the_deadline() -> None:
    log = overdue()
    opened = log.add(*relay("CAT1", T0, None, recorded=T0 + timedelta(minutes=5)))
    again = log.add(*relay("CAT1", T0, None, recorded=T0 + timedelta(minutes=10)))
    log.add(*access("dr.y", "P2", T0 + timedelta(minutes=30)))  # at the deadline: not past
    assert log.findings == []
    passed = log.add(*access("dr.y", "P2", T0 + timedelta(minutes=31)))
    log.add(*access("dr.y", "P2", T0 + timedelta(hours=2)))
    log.add(*relay("CAT1", T0, timedelta(hours=2), recorded=T0 + timedelta(hours=2)))  # late
    assert len(log.findings) == 1
    f = log.findings[0]
    assert (f.rule_id, f.trigger, f.user_id, f.severity) == (
        "relay.overdue", opened, "rad-relay", Severity.CRITICAL,
    )  # fmt: skip
    # The relay's records made by the deadline; not the leaf that happened to pass it
    # (a quiet log's wall clock raises the same finding without one).
    assert {(e.position, e.role) for e in f.evidence} == {
        (opened, "trigger"),
        (again, "relay_record"),
    }
    assert passed not in {e.position for e in f.evidence}
    assert f.thresholds == {"cat1_minutes": 30, "cat2_minutes": 360, "cat3_minutes": 4320}


def test_overdue_in_a_quiet_log_is_raised_by_the_wall_clock_with_the_same_finding() -> None:
    quiet, busy = overdue(), overdue()
    for log in (quiet, busy):
        log.add(*relay("CAT1", T0, None, recorded=T0 + timedelta(minutes=5)))
        log.add(*relay("CAT1", T0, None, recorded=T0 + timedelta(minutes=10)))
    rule, window = quiet.rule, quiet.window
    # Within the deadline and its grace (60 s by default): nothing yet.
    assert rule.idle(T0 + timedelta(minutes=31), window) == []
    raised = rule.idle(T0 + timedelta(minutes=31, seconds=1), window)
    assert [f.rule_id for f in raised] == ["relay.overdue"]
    assert rule.idle(T0 + timedelta(hours=5), window) == []  # once
    busy.add(*access("dr.y", "P2", T0 + timedelta(minutes=45)))
    assert busy.findings == list(raised)  # what the log's own clock raises later


def test_overdue_a_late_communication_is_overdue_whichever_clock_sees_it() -> None:
    log = overdue()
    opened = log.add(*relay("CAT1", T0, None, recorded=T0 + timedelta(minutes=5)))
    # The next record of the relay says it was communicated after the deadline: the
    # relay was overdue (and late), whether or not a clock passed the deadline first.
    log.add(*relay("CAT1", T0, timedelta(minutes=45), recorded=T0 + timedelta(minutes=46)))
    assert [(f.rule_id, f.trigger) for f in log.findings] == [("relay.overdue", opened)]


def test_overdue_clean_twin_communicated_before_the_deadline_passes_raises_none() -> None:
    log = overdue()
    log.add(*relay("CAT1", T0, None, recorded=T0 + timedelta(minutes=5)))
    log.add(*relay("CAT1", T0, timedelta(minutes=20), recorded=T0 + timedelta(minutes=21)))
    log.add(*relay("CAT2", T0, timedelta(hours=1), recorded=T0 + timedelta(hours=1)))
    log.add(*access("dr.y", "P2", T0 + timedelta(days=5)))
    assert log.findings == []


def test_overdue_a_record_made_after_the_deadline_raises_at_its_own_leaf() -> None:
    log = overdue()
    opened = log.add(*relay("CAT1", T0, None, recorded=T0 + timedelta(hours=1)))
    assert [(f.trigger, [e.role for e in f.evidence]) for f in log.findings] == [
        (opened, ["trigger"])
    ]


def test_overdue_another_relay_does_not_settle_it_and_deadlines_come_from_relay_late() -> None:
    log = overdue(cat2=60)
    log.add(*relay("CAT2", T0, None, recorded=T0))
    log.add(*relay("CAT2", T0, timedelta(minutes=5), recorded=T0, patient="OTHER"))
    log.add(*access("dr.y", "P2", T0 + timedelta(minutes=61)))
    assert len(log.findings) == 1
    assert log.findings[0].thresholds["cat2_minutes"] == 60


# -------------------------------------------------------------- relay.no_readback


def no_readback() -> Log:
    return Log(RelayNoReadback(RelayNoReadbackConfig(), RelayLateConfig().deadlines))


def test_no_readback_by_phone_raises_once_when_the_deadline_passes() -> None:
    log = no_readback()
    opened = log.add(
        *relay("CAT1", T0, timedelta(minutes=10), recorded=T0 + timedelta(minutes=11),
               read_back=False)
    )  # fmt: skip
    log.add(*access("dr.y", "P2", T0 + timedelta(minutes=30)))
    assert log.findings == []
    log.add(*access("dr.y", "P2", T0 + timedelta(minutes=31)))
    log.add(*access("dr.y", "P2", T0 + timedelta(hours=3)))
    assert len(log.findings) == 1
    f = log.findings[0]
    assert (f.rule_id, f.trigger, f.severity) == ("relay.no_readback", opened, Severity.HIGH)
    assert "by PHONE with no read-back" in f.summary


def test_no_readback_clean_twin_a_record_adding_the_read_back_in_time_raises_none() -> None:
    log = no_readback()
    log.add(
        *relay("CAT1", T0, timedelta(minutes=10), recorded=T0 + timedelta(minutes=11),
               read_back=False)
    )  # fmt: skip
    log.add(*relay("CAT1", T0, timedelta(minutes=10), recorded=T0 + timedelta(minutes=30)))
    log.add(*relay("CAT2", T0, timedelta(minutes=10), recorded=T0, method="IN_PERSON"))
    log.add(*relay("CAT3", T0, None, recorded=T0, read_back=False))  # not communicated
    log.add(*access("dr.y", "P2", T0 + timedelta(days=5)))
    assert log.findings == []


def test_no_readback_a_read_back_recorded_after_the_deadline_does_not_settle_it() -> None:
    log = no_readback()
    log.add(
        *relay("CAT1", T0, timedelta(minutes=10), recorded=T0 + timedelta(minutes=11),
               read_back=False)
    )  # fmt: skip
    log.add(*relay("CAT1", T0, timedelta(minutes=10), recorded=T0 + timedelta(minutes=45)))
    assert len(log.findings) == 1
    # the late record passed the deadline; it is no evidence (made after the deadline)
    assert [e.role for e in log.findings[0].evidence] == ["trigger"]


def test_no_readback_electronic_needs_an_acknowledgement_instead() -> None:
    log = no_readback()
    ten = timedelta(minutes=10)
    log.add(*relay("CAT2", T0, ten, recorded=T0 + ten, method="ELECTRONIC", read_back=False))
    log.add(*access("dr.y", "P2", T0 + timedelta(hours=7)))
    assert len(log.findings) == 1
    assert "electronically with no acknowledgement" in log.findings[0].summary
    twin = no_readback()
    twin.add(*relay("CAT2", T0, ten, recorded=T0 + ten, method="ELECTRONIC", read_back=False))
    twin.add(
        *relay("CAT2", T0, ten, recorded=T0 + 2 * ten, method="ELECTRONIC", read_back=False,
               acknowledged=2 * ten)
    )  # fmt: skip
    twin.add(
        *relay("CAT3", T0, ten, recorded=T0 + ten, method="ELECTRONIC", read_back=False,
               acknowledged=ten)
    )  # fmt: skip
    twin.add(*access("dr.y", "P2", T0 + timedelta(days=7)))
    assert twin.findings == []


# ------------------------------------------------- replay and batch boundaries


def planted_logs() -> dict[int, list[tuple[str, dict[str, object]]]]:
    morning = DAY0 + timedelta(days=10)
    accesses = [
        access("ron", f"P{i}", DAY0 + timedelta(days=d, hours=9 + i))
        for d in range(10)
        for i in range(8)
    ]
    accesses += [
        access("ron", "P9", morning + timedelta(hours=3)),  # unusual hours
        access("anna", "EMP-ANNA", morning + timedelta(hours=10)),  # own record
        access("carol", "EMP-BOB", morning + timedelta(hours=10)),  # co-worker
        access("carol", None, morning + timedelta(hours=11), disclosed=["VIP-1"]),  # vip
    ]
    relays = [
        relay("CAT1", T0, None, recorded=T0),  # overdue
        relay("CAT1", T0, timedelta(minutes=5), recorded=T0, patient="RB", read_back=False),
        relay("CAT1", T0, timedelta(minutes=5), recorded=T0, patient="OK"),
        relay("CAT3", T0, None, recorded=T0 + timedelta(hours=1), patient="CLOCK"),
    ]
    return {1: accesses, 2: relays}


def config_with_list() -> RulesConfig:
    return RulesConfig(privacy=PrivacyListsConfig(file="watch.csv", watchlist=watchlist()))


@pytest.mark.parametrize("batch", [1, 3, 7, 1000])
def test_the_same_findings_whatever_the_batch_size_replay_or_restart(batch: int) -> None:
    store = MemoryStore(planted_logs())
    # The evaluator's wall clock: the CLOCK relay's deadline (three days) has not passed.
    clock = lambda: T0 + timedelta(hours=2)  # noqa: E731
    evaluator = Evaluator(store, build_rules(config_with_list()), batch=batch, clock=clock)
    assert asyncio.run(evaluator.run_pass()).raised == 6
    assert sorted((k[0], k[2], k[3]) for k in store.alerts) == [
        ("access.unusual_hours", 1, 80),
        ("privacy.coworker_record", 1, 82),
        ("privacy.own_record", 1, 81),
        ("privacy.vip_record", 1, 83),
        ("relay.no_readback", 2, 1),
        ("relay.overdue", 2, 0),
    ]
    replayed = MemoryStore(planted_logs())
    asyncio.run(
        Evaluator(replayed, build_rules(config_with_list()), batch=1000, clock=clock).run_pass()
    )
    assert replayed.alerts == store.alerts
    restarted = Evaluator(store, build_rules(config_with_list()), batch=batch, clock=clock)
    assert asyncio.run(restarted.run_pass()).raised == 0
    # Once the wall clock passes the quiet relay log's CAT3 deadline, it is raised
    # without waiting for the log's next record.
    later = Evaluator(
        store, build_rules(config_with_list()), batch=batch,
        clock=lambda: T0 + timedelta(days=3, hours=2),
    )  # fmt: skip
    assert asyncio.run(later.run_pass()).raised == 1
    assert ("relay.overdue", 1, 2, 3) in store.alerts


@pytest.mark.parametrize("value", ["-1", "86401", "1.5", "true", '"60"'])
def test_a_bad_relay_grace_is_refused_by_name(value: str) -> None:
    with pytest.raises(MalformedInputError, match=r"\[relay_overdue\] grace_seconds"):
        parse_config(f"[relay_overdue]\ngrace_seconds = {value}\n")


def test_the_relay_grace_is_read_per_rule() -> None:
    c = parse_config(
        "[relay_overdue]\ngrace_seconds = 0\n[relay_no_readback]\ngrace_seconds = 300\n"
    )
    assert c.relay_overdue.grace == timedelta(0)
    assert c.relay_no_readback.grace == timedelta(minutes=5)
