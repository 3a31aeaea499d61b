"""Topic replication is a setting, and every producer of ours waits for acks=all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from ledgerctl.infra import SINGLE_BROKER
from ledgerctl.replication import TopicReplication
from ledgerctl.settings import Settings
from producers.emitter import EmitterConfig
from producers.emitter.kafka import KafkaLink
from tests.support import ROOT

#: Where the shipped code lives: every Kafka producer any process of ours starts is here.
SHIPPED = ("ledger", "ledgerctl", "producers", "integrations", "consumers")
PRODUCER_CLASSES = {"AIOKafkaProducer", "QueuedProducer", "SigningProducer"}


def test_one_broker_is_the_default() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.replication == TopicReplication(factor=1, min_insync=1) == SINGLE_BROKER


def test_a_cluster_takes_three_copies_two_in_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_TOPIC_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("LEDGER_TOPIC_MIN_INSYNC_REPLICAS", "2")
    replication = Settings(_env_file=None).replication  # type: ignore[call-arg]
    assert replication == TopicReplication(factor=3, min_insync=2)
    assert replication.topic_configs() == {"retention.ms": "-1", "min.insync.replicas": "2"}


def test_more_in_sync_replicas_than_copies_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_TOPIC_REPLICATION_FACTOR", "1")
    monkeypatch.setenv("LEDGER_TOPIC_MIN_INSYNC_REPLICAS", "2")
    with pytest.raises(ValidationError, match="LEDGER_TOPIC_MIN_INSYNC_REPLICAS"):
        Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize("value", ["0", "33", "two"])
def test_a_replication_factor_out_of_range_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("LEDGER_TOPIC_REPLICATION_FACTOR", value)
    with pytest.raises(ValidationError, match="LEDGER_TOPIC_REPLICATION_FACTOR"):
        Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("factor", "min_insync", "says"),
    [(0, 1, "at least 1"), (1, 0, "at least 1"), (3, 4, "exceeds the replication factor")],
)
def test_a_replication_no_write_could_satisfy_is_refused(
    factor: int, min_insync: int, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        TopicReplication(factor=factor, min_insync=min_insync)


async def test_the_emitters_producer_waits_for_every_in_sync_replica() -> None:
    """The emitter is every producer's path (API and CLI recorders, ATNA, the Orthanc
    relay, the DICOM proxy, simulate, spool drain): aiokafka's own view of its producer."""
    link = KafkaLink(EmitterConfig(bootstrap_servers="127.0.0.1:1", producer_id="acks-test"))
    producer = link.new_producer()
    try:
        assert producer._sender._acks == -1  # acks=all
        assert producer._txn_manager is not None  # idempotent: no duplicate on a retry
    finally:
        await producer.stop()


def _keywords(call: ast.Call, function: ast.AST) -> dict[str, ast.expr]:
    """The call's keyword arguments, with ``**name`` resolved to a ``dict(...)`` that the
    enclosing function assigns to ``name``."""
    found: dict[str, ast.expr] = {}
    for keyword in call.keywords:
        if keyword.arg is not None:
            found[keyword.arg] = keyword.value
            continue
        if not isinstance(keyword.value, ast.Name):
            continue
        for node in ast.walk(function):
            target = getattr(node, "target", None) or next(iter(getattr(node, "targets", [])), None)
            value = getattr(node, "value", None)
            if (
                isinstance(target, ast.Name)
                and target.id == keyword.value.id
                and isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id == "dict"
            ):
                found.update({k.arg: k.value for k in value.keywords if k.arg is not None})
    return found


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def _producer_constructions() -> list[tuple[str, dict[str, ast.expr]]]:
    found = []
    for package in SHIPPED:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for function in ast.walk(tree):
                if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(function):
                    if isinstance(node, ast.Call) and _name(node.func) in PRODUCER_CLASSES:
                        where = f"{Path(path).relative_to(ROOT)}:{node.lineno}"
                        found.append((where, _keywords(node, function)))
    return found


def test_every_producer_the_code_builds_is_acks_all_and_idempotent() -> None:
    constructions = _producer_constructions()
    # The emitter's link (its queued and its signing producer) and quarantine resubmit.
    assert len(constructions) >= 3, constructions
    for where, keywords in constructions:
        acks = keywords.get("acks")
        idempotent = keywords.get("enable_idempotence")
        assert isinstance(acks, ast.Constant), where
        assert acks.value == "all", where
        assert isinstance(idempotent, ast.Constant), where
        assert idempotent.value is True, where
