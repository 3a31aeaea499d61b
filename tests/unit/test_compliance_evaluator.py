"""The evaluator over a store double: findings independent of batch size and restarts,
nothing stored twice; triage transitions allowed only from the current state."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import pytest

from ledger.audit.rules import (
    AlertState,
    AppendedEvent,
    Disposition,
    Evaluator,
    Finding,
    LeafBatch,
    Position,
    RulesConfig,
    build_rules,
    check_transition,
    parse_disposition,
    transition,
)
from ledger.audit.rules.config import BulkAccessConfig
from ledger.errors import ConflictError, MalformedInputError, UnavailableError
from tests.unit.test_compliance_rules import T0, access, relay


class MemoryStore:
    """Logs of records; commits kept as the database would (unique alert keys)."""

    def __init__(self, logs: dict[int, list[tuple[str, dict[str, object]]]]) -> None:
        self.logs = logs
        self.alerts: dict[tuple[str, int, int, int], Finding] = {}
        self.cursors: dict[int, int] = {}
        self.commits = 0
        self.handed: list[Finding] = []

    async def log_ids(self) -> Sequence[int]:
        return list(self.logs)

    async def cursor(self, log_id: int) -> int:
        return self.cursors.get(log_id, 0)

    async def leaves(self, log_id: int, first: int, limit: int) -> LeafBatch:
        records = self.logs[log_id][first : first + limit]
        events = tuple(
            AppendedEvent(
                position=Position(log_id=log_id, leaf_index=first + i), schema=s, record=r
            )
            for i, (s, r) in enumerate(records)
        )
        return LeafBatch(events=events, next_leaf=first + len(records))

    async def commit(self, log_id: int, next_leaf: int, findings: Sequence[Finding]) -> int:
        self.commits += 1
        self.handed += findings
        new = [f for f in findings if f.key not in self.alerts]
        self.alerts.update((f.key, f) for f in new)
        self.cursors[log_id] = max(self.cursors.get(log_id, 0), next_leaf)
        return len(new)


def planted() -> dict[int, list[tuple[str, dict[str, object]]]]:
    one = [access("snoop", f"P{i}", T0 + timedelta(seconds=i)) for i in range(60)]
    two = [
        access("dr.x", "P1", T0, purpose="ETREAT"),
        relay("CAT2", T0, timedelta(hours=7), recorded=T0 + timedelta(hours=7)),
        access("dr.y", "P2", T0 + timedelta(hours=8)),
    ]
    return {1: one, 2: two}


def run(store: MemoryStore, batch: int, config: RulesConfig | None = None) -> int:
    evaluator = Evaluator(store, build_rules(config or RulesConfig()), batch=batch)
    return asyncio.run(evaluator.run_pass()).raised


@pytest.mark.parametrize("batch", [1, 2, 7, 1000])
def test_the_same_alerts_whatever_the_batch_size_and_a_rerun_raises_nothing(batch: int) -> None:
    store = MemoryStore(planted())
    assert run(store, batch) == 3
    assert sorted(k[0] for k in store.alerts) == [
        "access.bulk",
        "breakglass.unjustified",
        "relay.late",
    ]
    assert store.cursors == {1: 60, 2: 3}
    again = MemoryStore(planted())
    run(again, 1000)
    assert set(again.alerts) == set(store.alerts)
    assert run(store, batch) == 0  # a fresh evaluator (a restart): nothing new


def test_a_restart_after_a_commit_rebuilds_the_window_and_raises_only_new_crossings() -> None:
    logs = planted()
    store = MemoryStore({1: logs[1][:30]})
    assert run(store, 5) == 0  # 30 patients: under 50
    store.logs[1] = logs[1]  # the log grows; a new evaluator resumes from leaf 30
    assert run(store, 5) == 1
    (key,) = store.alerts
    assert key == ("access.bulk", 1, 1, 50)


def test_a_restart_hands_the_store_no_finding_decided_below_the_cursor() -> None:
    store = MemoryStore(planted())
    run(store, 5)
    store.handed.clear()
    store.logs[2].append(access("dr.y", "P3", T0 + timedelta(hours=9)))
    run(store, 5)  # rebuilds every window from leaf 0; only leaf 3 of log 2 is new
    assert store.handed == []
    assert store.cursors == {1: 60, 2: 4}


def test_a_pass_with_nothing_new_commits_nothing() -> None:
    store = MemoryStore(planted())
    evaluator = Evaluator(store, build_rules(RulesConfig()))
    asyncio.run(evaluator.run_pass())
    commits = store.commits
    summary = asyncio.run(evaluator.run_pass())
    assert (summary.leaves, summary.raised, store.commits) == (0, 0, commits)


def test_a_lower_threshold_is_a_different_finding_set_recorded_with_its_thresholds() -> None:
    store = MemoryStore(planted())
    run(store, 100, RulesConfig(bulk=BulkAccessConfig(max_patients=10)))
    bulk = [f for f in store.alerts.values() if f.rule_id == "access.bulk"]
    assert [f.trigger.leaf_index for f in bulk] == [10]
    assert bulk[0].thresholds["max_patients"] == 10


# ------------------------------------------------------------------- triage


def test_open_may_be_acknowledged_or_closed_acknowledged_closed_closed_nothing() -> None:
    ack = transition(state=AlertState.ACKNOWLEDGED, note="looking", by="alice")
    close = transition(
        state=AlertState.CLOSED, note="done", by="alice", disposition=Disposition.FALSE_POSITIVE
    )
    check_transition(1, AlertState.OPEN, ack)
    check_transition(1, AlertState.OPEN, close)
    check_transition(1, AlertState.ACKNOWLEDGED, close)
    for current, wanted in (
        (AlertState.ACKNOWLEDGED, ack),
        (AlertState.CLOSED, close),
        (AlertState.CLOSED, ack),
    ):
        with pytest.raises(ConflictError, match="cannot become"):
            check_transition(1, current, wanted)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"state": AlertState.CLOSED, "note": "x", "by": "a"}, "disposition"),
        (
            {
                "state": AlertState.ACKNOWLEDGED, "note": "x", "by": "a",
                "disposition": Disposition.POLICY_VIOLATION,
            },
            "disposition",
        ),
        ({"state": AlertState.ACKNOWLEDGED, "note": "  ", "by": "a"}, "note"),
        ({"state": AlertState.ACKNOWLEDGED, "note": "a\x1bb", "by": "a"}, "note"),
        ({"state": AlertState.ACKNOWLEDGED, "note": "x", "by": " "}, "who"),
        ({"state": AlertState.OPEN, "note": "x", "by": "a"}, "opened by the evaluator"),
    ],
)  # fmt: skip
def test_a_malformed_transition_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(MalformedInputError, match=message):
        transition(**kwargs)  # type: ignore[arg-type]


def test_an_unknown_disposition_is_refused_naming_the_choices() -> None:
    assert parse_disposition("breach_investigation") is Disposition.BREACH_INVESTIGATION
    with pytest.raises(MalformedInputError, match="false_positive, policy_violation"):
        parse_disposition("resolved")


def test_a_failed_commit_loses_no_finding_the_next_pass_rebuilds_the_log() -> None:
    class Flaky(MemoryStore):
        fail_next = True

        async def commit(self, log_id: int, next_leaf: int, findings: Sequence[Finding]) -> int:
            if self.fail_next and findings:
                self.fail_next = False
                raise UnavailableError("PostgreSQL unavailable: test")
            return await super().commit(log_id, next_leaf, findings)

    store = Flaky(planted())
    evaluator = Evaluator(store, build_rules(RulesConfig()), batch=5)
    with pytest.raises(UnavailableError):
        asyncio.run(evaluator.run_pass())
    asyncio.run(evaluator.run_pass())
    assert sorted(k[0] for k in store.alerts) == [
        "access.bulk",
        "breakglass.unjustified",
        "relay.late",
    ]
