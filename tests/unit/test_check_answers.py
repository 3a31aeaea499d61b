"""``ledger rules check-answers``' comparison: found, missed and false alerts per rule,
only the simulation's producer's alerts unless told otherwise, and hostile answer files
refused."""

from __future__ import annotations

import json

import pytest

from ledger.errors import MalformedInputError
from ledger.pg.answers import AlertTrigger
from ledgerctl.answers import ANSWERS_FORMAT, compare, parse_answers, render


def answers(*planted: tuple[str, str], producer: str | None = "simulator") -> str:
    return json.dumps(
        {
            "format": ANSWERS_FORMAT,
            "producer_id": producer,
            "violations": [{"rule_id": r, "event_id": e, "note": "n"} for r, e in planted],
        }
    )


def alert(n: int, rule: str, event: str | None, producer: str | None = "simulator") -> AlertTrigger:
    return AlertTrigger(alert_id=n, rule_id=rule, rule_version=1, event_id=event,
                        producer_id=producer)  # fmt: skip


def test_found_missed_and_false_per_rule() -> None:
    file = parse_answers(answers(("account.unknown", "e1"), ("access.bulk", "e2"),
                                 ("relay.late", "e3")))  # fmt: skip
    result = compare(
        file,
        [alert(1, "account.unknown", "e1"), alert(2, "access.bulk", "e9"),
         alert(3, "transport.unencrypted", None, None), alert(4, "relay.late", "e3")],
    )  # fmt: skip
    by_rule = {r.rule_id: (len(r.found), len(r.missed), len(r.false)) for r in result.rules}
    # alert 3's trigger is no audit event of the simulation's producer: not counted
    assert by_rule == {
        "access.bulk": (0, 1, 1),
        "account.unknown": (1, 0, 0),
        "relay.late": (1, 0, 0),
    }
    assert not result.passed
    text = "\n".join(render(result))
    assert "MISSED access.bulk: event e2" in text
    assert "FALSE  access.bulk: alert 2 triggered by event e9" in text
    assert text.endswith("FAIL: 2 of 3 planted violation(s) found, 1 false alert(s)")


def test_a_right_alert_for_the_wrong_rule_is_both_a_miss_and_a_false_alert() -> None:
    result = compare(parse_answers(answers(("account.shared", "e1"))),
                     [alert(1, "account.unknown", "e1")])  # fmt: skip
    assert [(r.rule_id, len(r.missed), len(r.false)) for r in result.rules] == [
        ("account.shared", 1, 0),
        ("account.unknown", 0, 1),
    ]


def test_other_producers_count_only_when_asked_and_rules_can_be_chosen() -> None:
    file = parse_answers(answers(("relay.late", "e3")))
    others = [alert(1, "relay.late", "e3"), alert(2, "transport.unencrypted", "x", "demo")]
    assert compare(file, others).passed
    assert not compare(file, others, every_producer=True).passed
    only = compare(file, others, every_producer=True, rules=["relay.late"])
    assert only.passed
    assert [r.rule_id for r in only.rules] == ["relay.late"]
    # a rule asked for that raised nothing and had no plant is listed, and passes
    empty = compare(file, [], rules=["account.ended"])
    assert [r.rule_id for r in empty.rules] == ["account.ended"]
    assert empty.passed


def test_a_clean_twin_passes_only_with_no_alert() -> None:
    clean = parse_answers(answers())
    assert compare(clean, []).passed
    assert (
        render(compare(clean, []))[-1]
        == "PASS: 0 of 0 planted violation(s) found, 0 false alert(s)"
    )
    assert not compare(clean, [alert(1, "account.unknown", "e1")]).passed


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not json", "not JSON"),
        ('{"format": "other/1", "violations": []}', "not of format"),
        (json.dumps({"format": ANSWERS_FORMAT, "violations": {}}), "violations list"),
        (json.dumps({"format": ANSWERS_FORMAT, "violations": [], "producer_id": 7}), "producer"),
        (json.dumps({"format": ANSWERS_FORMAT, "violations": [{"rule_id": "a"}]}), "violation 0"),
        (json.dumps({"format": ANSWERS_FORMAT, "violations": ["x"]}), "violation 0"),
    ],
)
def test_a_malformed_answer_file_is_refused(text: str, why: str) -> None:
    with pytest.raises(MalformedInputError, match=why):
        parse_answers(text)
