"""The registry rules through the evaluator: each planted violation raises exactly one
alert and its clean twin none, one alert per (rule, user, facility[, state], day) per log,
the evidence cites the registry, and the ``[registry]`` configuration."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from ledger.audit.registry import OrgKind, RegistryRecord
from ledger.audit.rules import Evaluator, Position, RulesConfig, build_rules, parse_config
from ledger.audit.rules.registryconfig import REGISTRY_SEVERITIES, RegistryConfig
from ledger.audit.rules.registrywatch import RegistryWatch
from ledger.errors import MalformedInputError
from tests.unit.registry_support import (
    FACILITY,
    REGISTRY_LOG,
    T0,
    MemoryStore,
    access_record,
    baa,
    cred,
    lic,
    member,
    org,
)

LATER = datetime(2027, 1, 1, tzinfo=UTC)  # a wall clock long past every access
ACCESS_LOG = 1


def run(store: MemoryStore, config: RulesConfig | None = None, *, batch: int = 100) -> int:
    config = config or RulesConfig()
    evaluator = Evaluator(
        store,
        build_rules(config),
        batch=batch,
        registry=RegistryWatch(store, config, batch=batch),
        clock=lambda: LATER,
    )
    return asyncio.run(evaluator.run_pass()).raised


def registry_alerts(store: MemoryStore) -> set[tuple[str, int]]:
    """(rule, leaf) of every alert a registry rule raised in the access log."""
    return {
        (rule, leaf)
        for rule, log, leaf in store.raised()
        if log == ACCESS_LOG and (rule.startswith("registry.") or rule.startswith("account."))
    }


BASE = [org("nightrad"), org(FACILITY, OrgKind.FACILITY), baa()]
# (rule, the user's registry with the violation, the clean twin's)
CASES: list[tuple[str, list[RegistryRecord], list[RegistryRecord]]] = [
    (
        "registry.baa_missing",
        [org("nightrad"), baa(end=date(2026, 3, 1)), member("u"), lic("u"), cred("u")],
        [org("nightrad"), baa(), member("u"), lic("u"), cred("u")],
    ),
    (
        "registry.license_missing",
        [*BASE, member("u"), lic("u", "NY"), cred("u")],
        [*BASE, member("u"), lic("u", "NY"), lic("u"), cred("u")],
    ),
    (
        "registry.credential_missing",
        [*BASE, member("u"), lic("u"), cred("u", "elsewhere")],
        [*BASE, member("u"), lic("u"), cred("u")],
    ),
    (
        "account.shared",
        [*BASE, member("u", role="clerk", shared=True)],
        [*BASE, member("u", role="clerk")],
    ),
    ("account.unknown", [*BASE, member("someone-else")], [*BASE, member("u", role="clerk")]),
    (
        "account.ended",
        [*BASE, member("u", role="clerk", end=date(2026, 2, 28))],
        [*BASE, member("u", role="clerk")],
    ),
]


def planted(records: list[RegistryRecord]) -> MemoryStore:
    """``records`` registered, then three accesses of user u the same day, and one of a
    colleague on the facility's own staff, licensed and credentialed."""
    store = MemoryStore()
    for r in [*records, member("dr.ok", FACILITY), lic("dr.ok"), cred("dr.ok")]:
        store.register(r)
    for i, patient in enumerate(("P1", "P2", "P3")):
        store.append(ACCESS_LOG, access_record("u", patient, at=T0 + timedelta(minutes=i)))
    store.append(ACCESS_LOG, access_record("dr.ok", "P4", at=T0 + timedelta(minutes=5)))
    return store


@pytest.mark.parametrize(("rule", "violation", "clean"), CASES, ids=[c[0] for c in CASES])
def test_a_planted_violation_raises_one_alert_and_its_clean_twin_none(
    rule: str, violation: list[RegistryRecord], clean: list[RegistryRecord]
) -> None:
    store = planted(violation)
    assert run(store) == 1
    assert registry_alerts(store) == {(rule, 0)}
    assert run(store) == 0  # a second pass raises nothing new
    twin = planted(clean)
    assert run(twin) == 0
    assert registry_alerts(twin) == set()


def test_the_alert_names_the_rule_severity_people_and_cites_the_registry() -> None:
    store = planted(CASES[0][1])
    run(store)
    (finding,) = store.findings.values()
    assert (finding.rule_id, finding.rule_version, finding.severity.value) == (
        "registry.baa_missing", 1, "critical"
    )  # fmt: skip
    assert (finding.user_id, finding.facility_id, finding.patient and finding.patient.id) == (
        "u", FACILITY, "P1"
    )  # fmt: skip
    reg = lambda i: Position(log_id=REGISTRY_LOG, leaf_index=i)  # noqa: E731
    assert store.evidence[1] == {
        (Position(log_id=ACCESS_LOG, leaf_index=0), "trigger"),
        (reg(0), "registry"),  # the business associate
        (reg(1), "registry"),  # the BAA that ended on March 1
        (reg(2), "registry"),  # the membership
    }
    assert "no BAA" in finding.summary
    assert "2026-03-02" in finding.summary
    assert finding.thresholds["timezone"] == "UTC"


def test_one_alert_per_rule_user_facility_state_and_day_per_log() -> None:
    store = MemoryStore()
    mercy = [org("mercy", OrgKind.FACILITY), baa(facility="mercy", baa_id="baa-2")]
    for r in [*BASE, *mercy, member("u"), cred("u"), cred("u", "mercy")]:
        store.register(r)
    day2 = T0 + timedelta(days=1)
    accesses = [
        access_record("u", "P1", at=T0),  # 0: MA, day 1 -> alert
        access_record("u", "P2", at=T0 + timedelta(hours=1)),  # same day: none
        access_record("u", "P3", at=T0 + timedelta(hours=2), state="NY"),  # 2: NY -> alert
        access_record("u", "P4", at=T0 + timedelta(hours=3), facility="mercy"),  # 3 -> alert
        access_record("u", "P5", at=day2),  # 4: day 2 -> alert
        access_record("u", "P6", at=day2 + timedelta(hours=1)),  # same day: none
    ]
    for a in accesses:
        store.append(ACCESS_LOG, a)
    store.append(2, access_record("u", "P7", at=T0))  # 0 of another log: its own day
    run(store)
    assert registry_alerts(store) == {("registry.license_missing", i) for i in (0, 2, 3, 4)}
    assert ("registry.license_missing", 2, 0) in store.raised()


def test_the_day_counts_in_the_configured_time_zone() -> None:
    def alerts(config: RulesConfig) -> set[tuple[str, int]]:
        store = MemoryStore()
        for r in [*BASE, member("u"), cred("u")]:
            store.register(r)
        # 23:30 and 00:30 UTC: two days in UTC, one evening in Boston
        night = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
        store.append(ACCESS_LOG, access_record("u", "P1", at=night))
        store.append(ACCESS_LOG, access_record("u", "P2", at=night + timedelta(hours=1)))
        run(store, config)
        return registry_alerts(store)

    assert alerts(RulesConfig()) == {("registry.license_missing", 0),
                                     ("registry.license_missing", 1)}  # fmt: skip
    assert alerts(parse_config('timezone = "America/New_York"')) == {
        ("registry.license_missing", 0)
    }


def test_refused_disclosing_nothing_or_ignored_accesses_raise_nothing() -> None:
    store = MemoryStore()
    for r in BASE:
        store.register(r)
    store.append(ACCESS_LOG, access_record("u", outcome="MINOR_FAILURE"))
    store.append(ACCESS_LOG, access_record("u", None))
    store.append(ACCESS_LOG, access_record("pacs-system"))
    run(store, parse_config('[registry]\nignore_users = ["pacs-system"]'))
    assert registry_alerts(store) == set()
    store.append(ACCESS_LOG, access_record("u", None, disclosed=("P9",)))
    run(store)
    assert registry_alerts(store) == {("account.unknown", 3)}
    (finding,) = store.findings.values()
    assert finding.patient is None
    assert "a query disclosing 1 patient(s)" in finding.summary


def test_no_registry_known_yet_holds_nobody_to_it() -> None:
    store = MemoryStore()
    store.append(ACCESS_LOG, access_record("u"))
    run(store)
    assert registry_alerts(store) == set()
    late = MemoryStore()
    late.register(member("u", role="clerk", end=date(2026, 1, 1)), at=T0 + timedelta(hours=1))
    late.append(ACCESS_LOG, access_record("u"))  # before the registry's first change
    late.append(ACCESS_LOG, access_record("u", at=T0 + timedelta(hours=2)))
    run(late)
    assert registry_alerts(late) == {("account.ended", 1)}


def test_a_license_with_no_patient_state_is_undecidable_and_raises_nothing() -> None:
    store = MemoryStore()
    for r in [*BASE, member("u"), cred("u")]:
        store.register(r)
    store.append(ACCESS_LOG, access_record("u", state=None))
    run(store)
    assert registry_alerts(store) == set()


def test_the_registry_configuration_defaults_and_overrides() -> None:
    assert RulesConfig().registry == RegistryConfig()
    assert RulesConfig().timezone.key == "UTC"
    c = parse_config(
        'timezone = "Europe/Paris"\n[registry]\nsettle_seconds = 0.5\nlookback_days = 30\n'
        'licensed_roles = ["radiologist", "resident"]\ncredentialed_roles = ["resident"]\n'
        'ignore_users = ["svc"]\n[registry.severity]\nbaa_missing = "high"\n'
        'account_shared = "low"\n'
    )
    assert c.timezone.key == "Europe/Paris"
    assert c.registry.settle == timedelta(seconds=0.5)
    assert c.registry.lookback == timedelta(days=30)
    assert c.registry.licensed_roles == ("radiologist", "resident")
    assert c.registry.credentialed_roles == ("resident",)
    assert c.registry.ignore_users == ("svc",)
    assert c.registry.severities["registry.baa_missing"].value == "high"
    assert c.registry.severities["account.shared"].value == "low"
    assert c.registry.severities["account.ended"] == REGISTRY_SEVERITIES["account.ended"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('timezone = "Nowhere/Else"', "is not a known IANA time zone"),
        ("timezone = 3", "IANA"),
        ("[registry]\nsettle = 2", "unknown key"),
        ("[registry]\nsettle_seconds = -1", "settle_seconds"),
        ("[registry]\nsettle_seconds = true", "settle_seconds"),
        ("[registry]\nlookback_days = 0", "lookback_days"),
        ("[registry]\nlookback_days = 1.5", "lookback_days"),
        ("[registry]\nlicensed_roles = []", "at least one role"),
        ('[registry]\nlicensed_roles = "radiologist"', "list of names"),
        ('[registry]\nignore_users = [""]', "list of names"),
        ('[registry.severity]\nbaa = "high"', "unknown key"),
        ('[registry.severity]\nbaa_missing = "urgent"', "must be one of"),
        ("registry = 1", "must be a table"),
        ("[registry]\nseverity = 1", "must be a table"),
    ],
)
def test_a_bad_registry_setting_is_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(MalformedInputError, match=message):
        parse_config(text)
