"""Evaluator processes sharing the logs: each audit log in exactly one share, and the
same findings as one evaluator."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from ledger.audit.rules import Evaluator, RulesConfig, build_rules
from ledger.errors import MalformedInputError
from ledgerctl.rules import parse_shard
from tests.unit.test_compliance_more_rules import T0, MemoryStore, planted_logs


def test_each_log_is_evaluated_by_exactly_one_share_and_the_findings_are_one_evaluators() -> None:
    clock = lambda: T0 + timedelta(hours=2)  # noqa: E731
    whole = MemoryStore(planted_logs())
    asyncio.run(Evaluator(whole, build_rules(RulesConfig()), clock=clock).run_pass())
    shared = MemoryStore(planted_logs())
    for index in range(3):
        evaluator = Evaluator(shared, build_rules(RulesConfig()), clock=clock, shard=(index, 3))
        asyncio.run(evaluator.run_pass())
    assert shared.alerts == whole.alerts
    assert whole.alerts


@pytest.mark.parametrize("bad", [(1, 1), (-1, 2), (2, 2)])
def test_a_share_outside_its_count_is_refused(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="shard"):
        Evaluator(MemoryStore({}), (), shard=bad)


@pytest.mark.parametrize("text", ["1", "a/2", "2/2", "0/0", "0/17", "-1/2"])
def test_a_bad_shard_option_is_refused(text: str) -> None:
    with pytest.raises(MalformedInputError, match="--shard"):
        parse_shard(text)


def test_a_good_shard_option_is_read() -> None:
    assert parse_shard("1/4") == (1, 4)
