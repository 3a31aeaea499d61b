"""The evaluator's registry handling: the settle hold with an injected clock, a late
license annotated on the alert whichever comes first, and replay giving the same alerts
and evidence whatever the batch size."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone

import pytest

from ledger.audit.registry import RegistryRecord
from ledger.audit.rules import Evaluator, PassSummary, Position, RulesConfig, build_rules
from ledger.audit.rules.registrywatch import RegistryWatch
from tests.unit.registry_support import (
    REGISTRY_LOG,
    T0,
    MemoryStore,
    access_record,
    baa,
    clean_registry,
    cred,
    lic,
    member,
)

ACCESS_LOG = 1
LICENSE_MISSING = "registry.license_missing"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def evaluator(store: MemoryStore, clock: Clock, *, batch: int = 100) -> Evaluator:
    config = RulesConfig()
    return Evaluator(store, build_rules(config), batch=batch,
                     registry=RegistryWatch(store, config, batch=batch), clock=clock)  # fmt: skip


def run(e: Evaluator) -> PassSummary:
    return asyncio.run(e.run_pass())


def unlicensed(store: MemoryStore) -> None:
    """dr.lee (member, BAA, credential, no Massachusetts license), known long ago."""
    for r in [*clean_registry()[:3], member("dr.lee"), cred("dr.lee")]:
        store.register(r)


def test_an_access_waits_until_the_registry_is_known_complete_for_its_time() -> None:
    store = MemoryStore()
    unlicensed(store)
    store.append(ACCESS_LOG, access_record("dr.lee", "P0", at=T0 - timedelta(minutes=5)))
    store.append(ACCESS_LOG, access_record("dr.lee", "P1", at=T0))
    store.append(ACCESS_LOG, access_record("dr.lee", "P2", at=T0 + timedelta(minutes=1)))
    clock = Clock(T0 + timedelta(seconds=0.5))  # 0.5 s after the access, settle is 1 s
    e = evaluator(store, clock)
    s = run(e)
    assert (s.held, s.raised) == (1, 1)  # the first access, 5 minutes old, is decided
    assert store.cursors[ACCESS_LOG] == 1  # and the log stops at the one that waits
    # a license for Massachusetts, signed just before the access, reaches the ledger late
    store.register(lic("dr.lee"), at=T0 - timedelta(seconds=1))
    clock.now = T0 + timedelta(seconds=1)  # settle time reached for P1, not for P2
    s = run(e)
    assert (s.held, s.raised, store.cursors[ACCESS_LOG]) == (1, 0, 2)  # P1 covered now
    clock.now = T0 + timedelta(minutes=1, seconds=1)
    s = run(e)
    assert (s.held, s.raised, store.cursors[ACCESS_LOG]) == (0, 0, 3)
    assert {k[0] for k in store.alerts} == {LICENSE_MISSING}


def test_a_registry_change_at_or_after_the_access_settles_it_before_the_clock() -> None:
    store = MemoryStore()
    unlicensed(store)
    store.append(ACCESS_LOG, access_record("dr.lee", "P1", at=T0))
    store.register(cred("dr.other"), at=T0)  # the registry's clock reached the access
    s = run(evaluator(store, Clock(T0)))
    assert (s.held, s.raised, store.cursors[ACCESS_LOG]) == (0, 1, 1)


def test_accesses_the_registry_rules_ignore_never_wait() -> None:
    store = MemoryStore()
    unlicensed(store)
    store.append(ACCESS_LOG, access_record("dr.lee", "P1", at=T0, outcome="MINOR_FAILURE"))
    store.append(ACCESS_LOG, access_record("dr.lee", None, at=T0))
    s = run(evaluator(store, Clock(T0)))
    assert (s.held, store.cursors[ACCESS_LOG]) == (0, 2)


def later_license() -> RegistryRecord:
    """A Massachusetts license valid since January, uploaded after the reads it covers."""
    return lic("dr.lee", start=date(2026, 1, 1))


UPLOADED = T0 + timedelta(days=3)
NOW = T0 + timedelta(days=10)


def reads(store: MemoryStore) -> None:
    store.append(ACCESS_LOG, access_record("dr.lee", "P1", at=T0))
    store.append(ACCESS_LOG, access_record("dr.lee", "P2", at=T0 + timedelta(days=1)))


def test_a_late_license_is_attached_to_the_alerts_it_would_have_prevented_in_either_order() -> None:
    # alert first: the reads are evaluated, then the license arrives
    first = MemoryStore()
    unlicensed(first)
    reads(first)
    e = evaluator(first, Clock(NOW))
    assert run(e).raised == 2
    license_at = first.register(later_license(), at=UPLOADED)
    s = run(e)
    assert (s.raised, s.annotated, s.registry_changes) == (0, 2, 1)
    # change first (a replay): the license is known when the alerts are raised
    replay = MemoryStore()
    unlicensed(replay)
    reads(replay)
    replay.register(later_license(), at=UPLOADED)
    s = run(evaluator(replay, Clock(NOW)))
    assert (s.raised, s.annotated) == (2, 0)
    assert first.raised() == replay.raised()
    for evidence in first.raised().values():
        assert (license_at, "later_registry_change") in evidence
    # the alerts stay: the registry as known at each read lacked the license
    assert {k[0] for k in replay.alerts} == {LICENSE_MISSING}


def test_a_later_change_that_would_not_have_prevented_the_alert_is_not_attached() -> None:
    store = MemoryStore()
    unlicensed(store)
    reads(store)
    e = evaluator(store, Clock(NOW))
    run(e)
    store.register(lic("dr.lee", "NY", start=date(2026, 1, 1)), at=UPLOADED)  # other state
    store.register(lic("dr.lee", start=date(2026, 3, 3), lic_id="x"), at=UPLOADED)  # too late
    store.register(lic("dr.lee", start=date(2026, 1, 1), lic_id="y"), at=T0 + timedelta(days=200))
    store.register(cred("dr.lee", start=date(2026, 1, 1), cred_id="z"), at=UPLOADED)  # other rule
    s = run(evaluator(store, Clock(T0 + timedelta(days=300))))  # a restart, too
    assert s.annotated == 1  # only the license from March 3 covers the read of March 3
    annotated = {k: {p for p, role in v if role == "later_registry_change"}
                 for k, v in store.raised().items()}  # fmt: skip
    assert annotated == {
        (LICENSE_MISSING, ACCESS_LOG, 0): set(),
        (LICENSE_MISSING, ACCESS_LOG, 1): {Position(log_id=REGISTRY_LOG, leaf_index=6)},
    }


def test_a_late_baa_and_a_late_membership_are_attached_too() -> None:
    store = MemoryStore()
    for r in clean_registry()[:2]:  # the associate and the facility, no BAA
        store.register(r)
    for r in (member("dr.lee"), lic("dr.lee"), cred("dr.lee")):
        store.register(r)
    store.append(ACCESS_LOG, access_record("dr.lee", "P1", at=T0))
    store.append(ACCESS_LOG, access_record("dr.new", "P2", at=T0))
    e = evaluator(store, Clock(NOW))
    assert run(e).raised == 2
    store.register(baa(start=date(2026, 1, 1)), at=UPLOADED)
    store.register(member("dr.new", role="clerk", start=date(2026, 3, 1)), at=UPLOADED)
    assert run(e).annotated == 2
    late = {k[0]: {r for _, r in v} for k, v in store.raised().items()}
    assert late == {
        "registry.baa_missing": {"trigger", "registry", "later_registry_change"},
        "account.unknown": {"trigger", "later_registry_change"},
    }


def test_replay_of_the_same_leaves_gives_the_same_alerts_and_evidence() -> None:
    def planted() -> MemoryStore:
        store = MemoryStore()
        unlicensed(store)
        store.register(member("dr.old", role="clerk", end=date(2026, 2, 1)))
        for day in range(4):
            at = T0 + timedelta(days=day)
            store.append(ACCESS_LOG, access_record("dr.lee", f"P{day}", at=at))
            store.append(2, access_record("dr.old", f"Q{day}", at=at))
            store.append(ACCESS_LOG, access_record("dr.lee", f"R{day}", at=at, state="NY"))
        store.register(later_license(), at=T0 + timedelta(days=2, hours=1))
        return store

    live = planted()
    e = evaluator(live, Clock(NOW), batch=3)
    run(e)
    run(e)
    replays = [planted() for _ in range(3)]
    for store, batch in zip(replays, (1, 7, 1000), strict=True):
        run(evaluator(store, Clock(NOW), batch=batch))
        assert store.raised() == live.raised()
    # per day: a license alert for NY and one account.ended; for MA on days 0 to 2 only
    assert len(live.alerts) == 11
    annotated = [k for k, v in live.raised().items()
                 if any(r == "later_registry_change" for _, r in v)]  # fmt: skip
    assert len(annotated) == 3  # the MA reads of days 0, 1 and 2 (day 3 knew the license)


def test_an_unreadable_registry_leaf_is_counted_and_skipped() -> None:
    store = MemoryStore()
    unlicensed(store)
    store.append(REGISTRY_LOG, {"event_time": T0.isoformat(), "operation": "PATCH"},
                 "philedger.registry.RegistryChange")  # fmt: skip
    store.append(ACCESS_LOG, access_record("dr.lee", "P1", at=T0))
    s = run(evaluator(store, Clock(NOW)))
    assert (s.undecodable, s.registry_changes, s.raised) == (1, 5, 1)
    assert store.cursors[REGISTRY_LOG] == 6


def test_a_failed_registry_read_is_read_again_whole() -> None:
    class Flaky(MemoryStore):
        fail = False

        async def commit_registry(self, log_id, next_leaf, evidence):  # type: ignore[no-untyped-def]
            if self.fail:
                self.fail = False
                raise OSError("database gone")
            return await super().commit_registry(log_id, next_leaf, evidence)

    store = Flaky()
    unlicensed(store)
    reads(store)
    e = evaluator(store, Clock(NOW))
    run(e)
    store.register(later_license(), at=UPLOADED)
    store.fail = True
    with pytest.raises(OSError, match="database gone"):
        run(e)
    s = run(e)
    assert (s.annotated, s.registry_changes) == (2, 1)


def test_timestamps_compare_as_instants_whatever_their_offset() -> None:
    store = MemoryStore()
    unlicensed(store)
    # the registry's clock (UTC) at the access, which was written with a -05:00 offset
    store.register(cred("dr.other"), at=T0)
    boston = T0.astimezone(timezone(timedelta(hours=-5)))
    store.append(ACCESS_LOG, access_record("dr.lee", "P1", at=boston))
    s = run(evaluator(store, Clock(T0)))
    assert (s.held, s.raised) == (0, 1)


def test_a_ledger_with_no_registry_at_all_holds_nothing() -> None:
    store = MemoryStore()  # its registry log has no leaf
    store.append(ACCESS_LOG, access_record("dr.lee", "P1", at=T0))
    s = run(evaluator(store, Clock(T0)))
    assert (s.held, s.raised, store.cursors[ACCESS_LOG]) == (0, 0, 1)
