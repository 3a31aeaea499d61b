"""deploy/prometheus/alerts.yml passes ``promtool check rules`` and its unit tests
(``promtool test rules``), and every metric the alert rules and the Grafana dashboard name
is one the ledger's processes export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from consumers.consumer import ConsumerStats
from consumers.metrics import (
    ConsumerCollector,
    ConsumerTimings,
    CosignerCollector,
    LedgerCollector,
)
from integrations.atna.receiver import AtnaStats
from ledger.http.metrics import HttpMetrics
from ledger.pg.cosigner import CosignOutcome
from ledger.pg.status import LogIngestion
from ledgerctl.atnametrics import AtnaCollector
from ledgerctl.rules import _counting
from producers.emitter import EmitterState
from producers.emitter.config import EmitterHealth
from producers.ops import EmitterCollector, OpsConfig, OpsServer, OpsState

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts-test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "ledger-dashboard.json"
#: Metrics Prometheus itself makes (not ours).
PROMETHEUS_OWN = {"up"}
_NAME = re.compile(r"\b(ledger_[a-z0-9_]+|up)\b")


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (deploy/local/prometheus.sh install; make test)")
    return found


def test_promtool_checks_the_alert_rules() -> None:
    out = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_runs_the_alert_rules_unit_tests() -> None:
    out = subprocess.run(
        [_promtool(), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_checks_the_local_stack_scrape_config() -> None:
    config = ROOT / "deploy" / "prometheus" / "prometheus-local.yml"
    out = subprocess.run(
        [_promtool(), "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _exported() -> set[str]:
    """Every sample name the processes' collectors expose (with _total, _bucket, ...)."""
    registry = CollectorRegistry()
    OpsServer(OpsConfig(service="x"), OpsState(registry=registry))
    ConsumerTimings(registry).batch(0.1)
    stats = ConsumerStats()
    stats.by_reason["bad_signature"] = 1
    registry.register(
        ConsumerCollector(SimpleNamespace(stats=stats, lag=lambda: {("t", 0): 1}))  # type: ignore[arg-type]
    )
    logs = LedgerCollector(pool=None)  # type: ignore[arg-type]
    logs._logs = [
        LogIngestion(
            origin="o", topic="t", partition=0, next_offset=1, size=2, checkpoint_size=1,
            checkpoint_age=timedelta(seconds=3),
        )
    ]  # fmt: skip
    registry.register(logs)
    cosigner = SimpleNamespace(status={
        ("k", 1): CosignOutcome(witness="w", log_id=1, origin="o", size=2, ok=True, detail="")
    })  # fmt: skip
    registry.register(CosignerCollector(cosigner))  # type: ignore[arg-type]
    health = EmitterHealth(
        state=EmitterState.DIRECT, queued=0, spooled=1, spool_bytes=2,
        oldest_undelivered_age_seconds=0.0, sent=1, failed=0, lost=0, next_sequence=1,
    )  # fmt: skip
    registry.register(EmitterCollector({"api": SimpleNamespace(health=lambda: health)}))  # type: ignore[dict-item]
    atna = AtnaStats(
        running=True, received_tls=1, received_udp=0, received_tcp=0, mapped=1, events=1,
        resent=0, kept={"not_xml": 1}, kept_bytes=1, kept_full=False, lost_at_stop=0,
        udp_dropped_overload=0, queue_depth=0, queue_max=1, connections=0,
        connections_refused=0, handshakes_refused=0, tcp_refused_sources=0,
        refused_senders=0, emit_retries=0,
    )  # fmt: skip
    registry.register(AtnaCollector(lambda: atna))
    state = OpsState(registry=registry)
    _counting(lambda s: None, state)
    http = HttpMetrics(registry)
    http._count.labels("r", "GET", "200").inc()
    http._seconds.labels("r", "GET", "200").observe(0.1)
    text = generate_latest(registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def _names(expr: str) -> set[str]:
    return set(_NAME.findall(expr))


def _alert_exprs() -> list[str]:
    """Each rule's expression: a one-line ``expr:`` or an indented ``expr: |`` block."""
    found = re.findall(r"expr: \|\n((?:\s{10}.*\n)+)|expr: (.*)\n", RULES.read_text())
    return [block or line for block, line in found]


def test_every_metric_the_alert_rules_name_is_exported() -> None:
    exported = _exported() | PROMETHEUS_OWN
    exprs = _alert_exprs()
    assert len(exprs) == RULES.read_text().count("- alert:")
    for expr in exprs:
        assert _names(expr), expr
        assert _names(expr) <= exported, (expr, _names(expr) - exported)


def test_the_dashboard_is_grafana_json_whose_every_expr_names_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = _exported() | PROMETHEUS_OWN
    panels = dashboard["panels"]
    assert dashboard["uid"]
    assert panels
    assert len({p["id"] for p in panels}) == len(panels)
    named: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = _names(target["expr"])
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)
            named |= names
    # The list: each is on the dashboard.
    for wanted in (
        "ledger_consumer_lag_records",
        "ledger_consumer_appended_events_total",
        "ledger_consumer_duplicate_events_total",
        "ledger_consumer_quarantined_events_total",
        "ledger_consumer_batch_seconds_bucket",
        "ledger_consumer_commit_seconds_bucket",
        "ledger_checkpoint_age_seconds",
        "ledger_log_unsigned_leaves",
        "ledger_spool_events",
        "ledger_spool_bytes",
        "ledger_atna_received_messages_total",
        "ledger_atna_kept_messages_total",
        "ledger_atna_refused_total",
        "ledger_http_requests_total",
        "ledger_http_request_duration_seconds_bucket",
        "ledger_rules_alerts_raised_total",
        "ledger_consumer_alerts_raised_total",
    ):
        assert wanted in named, wanted
