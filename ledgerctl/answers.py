"""``ledger rules check-answers``: the alerts raised against a simulation's answer file.

Invariant: a planted violation is found when an alert of its rule was triggered by the
very event the answer names; every other alert of the simulation's producer is a false
alert. The comparison is pure (``compare``); only ``alert_triggers`` reads the database,
and nothing read names a user or a patient.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ledger.errors import MalformedInputError
from ledger.pg.answers import AlertTrigger

#: The answer file's format (integrations/simplants.py writes it).
ANSWERS_FORMAT: Final = "philedger-simulated-violations/1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Planted:
    rule_id: str
    event_id: str
    note: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerFile:
    producer_id: str | None
    planted: tuple[Planted, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleResult:
    rule_id: str
    found: tuple[Planted, ...]
    missed: tuple[Planted, ...]
    false: tuple[AlertTrigger, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    rules: tuple[RuleResult, ...]

    @property
    def passed(self) -> bool:
        return all(not r.missed and not r.false for r in self.rules)


def parse_answers(text: str) -> AnswerFile:
    """An answer file's planted violations; ``MalformedInputError`` when it is not one."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise MalformedInputError(f"the answer file is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != ANSWERS_FORMAT:
        raise MalformedInputError(f"the answer file is not of format {ANSWERS_FORMAT}")
    raw = doc.get("violations")
    producer = doc.get("producer_id")
    if not isinstance(raw, list) or not (producer is None or isinstance(producer, str)):
        raise MalformedInputError("the answer file needs a violations list and a producer_id")
    return AnswerFile(
        producer_id=producer, planted=tuple(_planted(i, v) for i, v in enumerate(raw))
    )


def _planted(i: int, raw: Any) -> Planted:
    fields = ("rule_id", "event_id", "note")
    if not isinstance(raw, dict) or not all(isinstance(raw.get(f), str) for f in fields):
        raise MalformedInputError(f"violation {i} needs text rule_id, event_id and note")
    return Planted(rule_id=raw["rule_id"], event_id=raw["event_id"], note=raw["note"])


def compare(
    answers: AnswerFile,
    alerts: Sequence[AlertTrigger],
    *,
    rules: Iterable[str] | None = None,
    every_producer: bool = False,
) -> CheckResult:
    """Found, missed and false alerts per rule: of ``rules`` only when given; of alerts
    triggered by the answer file's producer unless ``every_producer``."""
    wanted = None if rules is None else frozenset(rules)

    def counted(rule_id: str) -> bool:
        return wanted is None or rule_id in wanted

    mine = [
        a
        for a in alerts
        if counted(a.rule_id) and (every_producer or a.producer_id == answers.producer_id)
    ]
    raised = {(a.rule_id, a.event_id) for a in mine}
    planted = [p for p in answers.planted if counted(p.rule_id)]
    keys = {(p.rule_id, p.event_id) for p in planted}
    ids = sorted({p.rule_id for p in planted} | {a.rule_id for a in mine} | (wanted or set()))
    return CheckResult(
        rules=tuple(
            RuleResult(
                rule_id=r,
                found=tuple(p for p in planted if p.rule_id == r and (r, p.event_id) in raised),
                missed=tuple(
                    p for p in planted if p.rule_id == r and (r, p.event_id) not in raised
                ),
                false=tuple(a for a in mine if a.rule_id == r and (r, a.event_id) not in keys),
            )
            for r in ids
        )
    )


def render(result: CheckResult) -> list[str]:
    """The report: a line per rule, then each miss and false alert (no names of people)."""
    lines = [f"{'rule':<28} {'found':>5} {'missed':>6} {'false':>5}"]
    for r in result.rules:
        lines.append(f"{r.rule_id:<28} {len(r.found):>5} {len(r.missed):>6} {len(r.false):>5}")
    for r in result.rules:
        lines += [f"MISSED {r.rule_id}: event {p.event_id} ({p.note})" for p in r.missed]
        lines += [
            f"FALSE  {r.rule_id}: alert {a.alert_id} triggered by event {a.event_id}"
            for a in r.false
        ]
    found = sum(len(r.found) for r in result.rules)
    planted = found + sum(len(r.missed) for r in result.rules)
    false = sum(len(r.false) for r in result.rules)
    verdict = "PASS" if result.passed else "FAIL"
    lines.append(
        f"{verdict}: {found} of {planted} planted violation(s) found, {false} false alert(s)"
    )
    return lines


async def check_answers(
    dsn: str,
    path: Path,
    *,
    rules: Iterable[str] | None = None,
    every_producer: bool = False,
) -> CheckResult:
    """Read the answer file and the alerts, compare them."""
    from ledger.pg.answers import alert_triggers

    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except OSError as exc:
        raise MalformedInputError(f"cannot read the answer file {path}: {exc}") from exc
    answers = parse_answers(text)
    return compare(answers, await alert_triggers(dsn), rules=rules, every_producer=every_producer)
