"""Every compliance rule against the simulator's answer file, end to end on real servers.

`ledger simulate --registry --plant` emits a registry and over 100,000 events with one
planted violation of every rule through the producer library to scratch Kafka topics;
the real `ledger consume` appends them to a scratch ledger, `ledger rules run --once`
evaluates them with the rules TOML the simulation wrote (its watch list), and `ledger
rules check-answers` must find every planted violation at its triggering event and no
other alert. The clean twin (the same stream without the plants, on a ledger of its own)
must raise no alert at all.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import own_ledger
from tests.support import ROOT, Stack

# Two CPU-bound 100k-event pipelines: beside another test each takes four times as long
# and slows that test too, so no other test runs with them (tests/scheduling.py).
pytestmark = [pytest.mark.integration, pytest.mark.alone]

LEDGER = str(Path(sys.executable).with_name("ledger"))
#: The issue's floor: checked on a stream of at least 100,000 events.
EVENTS = 100_000
#: Far from the other tests' seeds (a scratch ledger of its own anyway).
SEED = 2_026_015
#: Every rule id of the catalogue (docs/design/compliance.md).
CATALOGUE = frozenset(
    {
        "registry.baa_missing", "registry.license_missing", "registry.credential_missing",
        "account.shared", "account.unknown", "account.ended", "privacy.own_record",
        "privacy.coworker_record", "privacy.vip_record", "access.unusual_hours",
        "relay.overdue", "relay.no_readback", "access.bulk", "breakglass.unjustified",
        "relay.late", "transport.unencrypted",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Simulated:
    """One simulation appended to its own ledger and evaluated."""

    stack: Stack
    env: dict[str, str]
    answers: Path
    document: dict[str, object]
    seconds: dict[str, float]


def ledger(
    env: dict[str, str], *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LEDGER, *args], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


async def consumed(dsn: str, topics: Sequence[str]) -> tuple[int, int]:
    """(records the ledger took from ``topics``: appended, duplicate or quarantined;
    records quarantined)."""
    conn = await asyncpg.connect(dsn)
    try:
        taken = await conn.fetchval(
            "SELECT coalesce(sum(n), 0) FROM (SELECT max(p.next_offset) AS n"
            " FROM ingest_positions p JOIN logs l USING (log_id)"
            " WHERE l.topic = ANY($1::text[]) GROUP BY p.log_id) per_log",
            list(topics),
        )
        bad = await conn.fetchval(
            "SELECT count(*) FROM quarantine WHERE topic = ANY($1::text[])", list(topics)
        )
    finally:
        await conn.close()
    return int(taken), int(bad)


def wait_consumed(stack: Stack, topics: Sequence[str], expected: int, log: Path) -> None:
    deadline = time.monotonic() + 600
    while True:
        taken, bad = asyncio.run(consumed(stack.owner_url, topics))
        if taken >= expected:
            assert bad == 0, (
                f"{bad} record(s) quarantined; consumer log:\n{log.read_text()[-3000:]}"
            )
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{taken} of {expected} records consumed; log:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def simulate(
    stack: Stack,
    tmp: Path,
    *,
    plant: bool,
    emit_registry: bool = True,
    events: int = EVENTS,
    config: Path | None = None,
    workers: int = 1,
) -> Simulated:
    """Simulate into fresh topics, consume into ``stack``'s ledger, run the rules once
    (with ``config``, default the rules TOML the simulation wrote; in ``workers``
    evaluator processes sharing the logs)."""
    name = f"sim{uuid.uuid4().hex[:6]}"
    access, relay = stack.topics(name)
    registry = f"t{stack.run_id}-{name}-registry"
    env = stack.env(
        LEDGER_ACCESS_TOPIC=access, LEDGER_RELAY_TOPIC=relay, LEDGER_REGISTRY_TOPIC=registry,
        LEDGER_CONSUMER_GROUP=f"t{stack.run_id}-{name}",
        LEDGER_REGISTRY_PRODUCER_KEY_FILE=stack.producer_key("registry-local"),
    )  # fmt: skip
    made = ledger(env, "topics")
    assert made.returncode == 0, made.stdout + made.stderr
    answers = tmp / name / "answers.json"
    log = tmp / f"{name}-consumer.log"
    seconds: dict[str, float] = {}
    with log.open("wb") as out:
        consumer = subprocess.Popen(
            [LEDGER, "consume"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            started = time.monotonic()
            args = ["simulate", "--registry", "--plant" if plant else "--clean", "--seed",
                    str(SEED), "--events", str(events), "--answers", str(answers)]  # fmt: skip
            if not emit_registry:
                args.append("--no-emit-registry")
            done = ledger(env, *args)
            assert done.returncode == 0, done.stdout + done.stderr
            seconds["simulate"] = time.monotonic() - started
            document = json.loads(answers.read_text(encoding="utf-8"))
            expected = int(document["emitted"])
            if emit_registry:
                expected += int(document["registry_changes"])
            wait_consumed(stack, (access, relay, registry), expected, log)
            seconds["consumed"] = time.monotonic() - started
        finally:
            consumer.terminate()
            consumer.wait(timeout=30)
    started = time.monotonic()
    config = config or answers.parent / "rules.toml"
    rules = ledger(env, "rules", "run", "--once", "--config", str(config),
                   "--workers", str(workers))  # fmt: skip
    assert rules.returncode == 0, rules.stdout + rules.stderr
    seconds["rules"] = time.monotonic() - started
    return Simulated(stack=stack, env=env, answers=answers, document=document, seconds=seconds)


def check_answers(run: Simulated, *rules: str) -> subprocess.CompletedProcess[str]:
    """`ledger rules check-answers` over every alert of the ledger (of ``rules`` if given)."""
    args = ["rules", "check-answers", "--answers", str(run.answers), "--every-producer"]
    for rule in rules:
        args += ["--rule", rule]
    return ledger(run.env, *args, timeout=120)


async def alert_rules(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r["rule_id"] for r in await conn.fetch("SELECT rule_id FROM alerts")]
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def planted(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulated]:
    with own_ledger(stack, f"{stack.database}_plant") as own:
        # Two evaluator processes sharing the logs: the answers must be exact all the same.
        yield simulate(own, tmp_path_factory.mktemp("planted"), plant=True, workers=2)


@pytest.fixture(scope="module")
def clean(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulated]:
    with own_ledger(stack, f"{stack.database}_clean") as own:
        yield simulate(own, tmp_path_factory.mktemp("clean"), plant=False)


def test_every_planted_violation_raises_exactly_one_alert_and_nothing_else(
    planted: Simulated,
) -> None:
    doc = planted.document
    assert int(doc["emitted"]) >= EVENTS
    violations = doc["violations"]
    assert isinstance(violations, list)
    assert {v["rule_id"] for v in violations} == CATALOGUE
    checked = check_answers(planted)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"PASS: {len(violations)} of {len(violations)} planted" in checked.stdout
    raised = asyncio.run(alert_rules(planted.stack.reader_url))
    assert sorted(raised) == sorted(v["rule_id"] for v in violations)


def test_the_clean_twin_raises_no_alert(clean: Simulated) -> None:
    assert clean.document["violations"] == []
    assert int(clean.document["emitted"]) == EVENTS
    checked = check_answers(clean)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert asyncio.run(alert_rules(clean.stack.reader_url)) == []
