"""The ops listener (/metrics, /livez, /readyz, /version), the API's request metrics, the
log formats and the metric collectors: answers, refusals, and no PHI in any label."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, generate_latest

from consumers.consumer import ConsumerStats
from consumers.metrics import ConsumerCollector
from ledger.http.metrics import HttpMetrics
from producers.logformat import configure, log_format
from producers.ops import (
    OpsConfig,
    OpsServer,
    OpsState,
    StatsCollector,
    ThreadedOps,
    package_version,
    run_checks,
)
from producers.pipe_process import ops_address

PATIENT = "PAT-7731-SECRET"


async def _ok() -> str | None:
    return None


async def _down() -> str | None:
    return "Kafka unreachable; 3 event(s) spooled"


async def _raises() -> str | None:
    raise RuntimeError("postgresql://user:password@host/db")


@pytest.fixture
def state() -> OpsState:
    return OpsState()


async def _get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}{path}") as resp,
    ):
        return resp.status, await resp.text()


async def test_livez_version_and_metrics_answer(state: OpsState) -> None:
    async with OpsServer(OpsConfig(service="consumer"), state) as ops:
        assert ops.port
        status, body = await _get(ops.port, "/livez")
        assert status == 200
        assert json.loads(body) == {
            "status": "ok",
            "service": "consumer",
            "version": package_version(),
        }
        status, body = await _get(ops.port, "/version")
        assert (status, json.loads(body)["version"]) == (200, package_version())
        status, body = await _get(ops.port, "/metrics")
        assert status == 200
        assert f'ledger_build_info{{service="consumer",version="{package_version()}"}} 1.0' in body
        assert "ledger_process_start_time_seconds" in body


async def test_readyz_is_200_when_every_check_passes(state: OpsState) -> None:
    state.checks.update(database=_ok, kafka=_ok)
    async with OpsServer(OpsConfig(service="api"), state) as ops:
        status, body = await _get(ops.port or 0, "/readyz")
    answer = json.loads(body)
    assert status == 200
    assert answer["status"] == "ok"
    assert answer["checks"] == {"database": "ok", "kafka": "ok"}
    assert "reasons" not in answer
    assert answer["version"] == package_version()


async def test_readyz_is_503_with_each_failed_check_and_its_reason(state: OpsState) -> None:
    state.checks.update(database=_ok, kafka=_down, spool=_raises)
    async with OpsServer(OpsConfig(service="atna"), state) as ops:
        status, body = await _get(ops.port or 0, "/readyz")
    answer = json.loads(body)
    assert status == 503
    assert answer["status"] == "unavailable"
    assert answer["reasons"] == {
        "kafka": "Kafka unreachable; 3 event(s) spooled",
        # an exception's text can carry a DSN: only its type is told
        "spool": "check failed (RuntimeError)",
    }
    assert answer["checks"]["database"] == "ok"
    assert "password" not in body


async def test_a_port_in_use_is_refused_at_start(state: OpsState) -> None:
    async with OpsServer(OpsConfig(service="a"), state) as first:
        with pytest.raises(OSError, match="address already in use"):
            async with OpsServer(OpsConfig(service="b", port=first.port or 0)):
                pass


async def test_a_failed_refresh_keeps_the_scrape_answering(state: OpsState) -> None:
    async def broken() -> None:
        raise ConnectionError("database away")

    state.refreshers.append(broken)
    async with OpsServer(OpsConfig(service="consumer"), state) as ops:
        status, body = await _get(ops.port or 0, "/metrics")
    assert status == 200
    assert "ledger_build_info" in body


async def test_run_checks_reports_only_failures() -> None:
    assert await run_checks({"a": _ok, "b": _down}) == {
        "b": "Kafka unreachable; 3 event(s) spooled"
    }


def test_threaded_ops_serves_and_stops(state: OpsState) -> None:
    import urllib.request

    listener = ThreadedOps(OpsConfig(service="dicom-proxy"), state)
    port = listener.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=5) as resp:
            assert json.loads(resp.read())["service"] == "dicom-proxy"
    finally:
        listener.stop()


def test_threaded_ops_raises_when_the_port_is_taken(state: OpsState) -> None:
    first = ThreadedOps(OpsConfig(service="a"), OpsState())
    port = first.start()
    try:
        with pytest.raises(OSError, match="address already in use"):
            ThreadedOps(OpsConfig(service="b", port=port), state).start()
    finally:
        first.stop()


def _api(metrics: HttpMetrics) -> web.Application:
    async def accesses(request: web.Request) -> web.Response:
        return web.json_response({"entries": []})

    async def refused(request: web.Request) -> web.Response:
        raise web.HTTPForbidden()

    app = web.Application(middlewares=[metrics.middleware])
    app.router.add_get("/v1/patients/{patient_id}/accesses", accesses, name="patient_accesses")
    app.router.add_get("/v1/users/{user_id}/accesses", refused, name="user_accesses")
    return app


async def test_http_metrics_label_the_route_name_never_the_path() -> None:
    registry = CollectorRegistry()
    async with TestClient(TestServer(_api(HttpMetrics(registry)))) as client:
        assert (await client.get(f"/v1/patients/{PATIENT}/accesses")).status == 200
        assert (await client.get(f"/v1/users/{PATIENT}/accesses")).status == 403
        assert (await client.get(f"/no/such/{PATIENT}")).status == 404
        assert (await client.request("PROPFIND", f"/v1/patients/{PATIENT}/accesses")).status == 405
    text = generate_latest(registry).decode()
    assert PATIENT not in text
    assert (
        'ledger_http_requests_total{method="GET",route="patient_accesses",status="200"} 1.0' in text
    )
    assert 'ledger_http_requests_total{method="GET",route="user_accesses",status="403"} 1.0' in text
    assert 'ledger_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'method="OTHER",route="unmatched",status="405"' in text
    bucket = 'le="+Inf",method="GET",route="patient_accesses",status="200"'
    assert f"ledger_http_request_duration_seconds_bucket{{{bucket}}} 1.0" in text


def test_consumer_collector_counts_by_reason_and_lag_by_partition() -> None:
    stats = ConsumerStats(appended=7, duplicates=2, quarantined=3, alerts=3, batches=4)
    stats.by_reason.update({"bad_signature": 2, "malformed_avro": 1})
    fake = SimpleNamespace(stats=stats, lag=lambda: {("phi-access", 1): 12, ("phi-access", 0): 0})
    registry = CollectorRegistry()
    registry.register(ConsumerCollector(fake))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    assert "ledger_consumer_appended_events_total 7.0" in text
    assert "ledger_consumer_duplicate_events_total 2.0" in text
    assert "ledger_consumer_alerts_raised_total 3.0" in text
    assert 'ledger_consumer_quarantined_events_total{reason="bad_signature"} 2.0' in text
    assert 'ledger_consumer_lag_records{partition="1",topic="phi-access"} 12.0' in text


def test_stats_collector_exports_numbers_only() -> None:
    registry = CollectorRegistry()
    stats = {"recorded": 5, "stalled": False, "peer": "10.1.2.3", "detail": {"x": 1}}
    registry.register(StatsCollector("ledger_dicomproxy", lambda: stats))
    text = generate_latest(registry).decode()
    assert "ledger_dicomproxy_recorded 5.0" in text
    assert "ledger_dicomproxy_stalled 0.0" in text
    assert "10.1.2.3" not in text
    assert "peer" not in text


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_json_log_lines_parse_and_carry_service_and_version() -> None:
    out = io.StringIO()
    configure(level=logging.INFO, fmt="json", service="consumer", stream=out)
    logging.getLogger("consumers").info("consuming %s as group %s", "phi-access", "phi-ledger")
    line = json.loads(out.getvalue().splitlines()[-1])
    assert line["message"] == "consuming phi-access as group phi-ledger"
    assert line["level"] == "INFO"
    assert line["logger"] == "consumers"
    assert line["service"] == "consumer"
    assert line["version"] == package_version()
    assert line["time"]


@pytest.mark.usefixtures("restore_logging")
def test_text_log_lines_stay_as_they_were() -> None:
    out = io.StringIO()
    configure(level=logging.INFO, fmt="text", service="api", stream=out)
    logging.getLogger("ledger.http").info("API listening")
    assert out.getvalue().rstrip().endswith("INFO ledger.http: API listening")


def test_log_format_refuses_other_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_LOG_FORMAT", "JSON ")
    assert log_format() == "json"
    monkeypatch.delenv("LEDGER_LOG_FORMAT")
    assert log_format() == "text"
    with pytest.raises(ValueError, match="text or json"):
        log_format("yaml")


def test_pipe_ops_address() -> None:
    assert ops_address("18094") == ("127.0.0.1", 18094)
    assert ops_address("0.0.0.0:9100") == ("0.0.0.0", 9100)
    assert ops_address("[::1]:9100") == ("::1", 9100)
    with pytest.raises(ValueError, match="out of range"):
        ops_address("127.0.0.1:99999")
    with pytest.raises(ValueError, match="invalid literal"):
        ops_address("localhost:http")


def test_ledger_version_prints_the_installed_version() -> None:
    import subprocess
    import sys
    from pathlib import Path

    ledger = str(Path(sys.executable).with_name("ledger"))
    out = subprocess.run([ledger, "version", "--json"], capture_output=True, text=True, check=True)
    answer = json.loads(out.stdout)
    assert answer["name"] == "phi-audit-ledger"
    assert answer["version"] == package_version() != "unknown"
    text = subprocess.run([ledger, "version"], capture_output=True, text=True, check=True)
    assert text.stdout.startswith(f"phi-audit-ledger {package_version()} (Python ")


def test_ops_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from ledgerctl.commands.common import ops_config
    from ledgerctl.settings import Settings

    monkeypatch.setenv("LEDGER_ENV_FILE", "/dev/null")
    monkeypatch.delenv("LEDGER_OPS_PORT", raising=False)
    assert ops_config(Settings.load(), "consumer") is None
    monkeypatch.setenv("LEDGER_OPS_PORT", "18091")
    monkeypatch.setenv("LEDGER_OPS_HOST", "0.0.0.0")
    assert ops_config(Settings.load(), "consumer") == OpsConfig(
        host="0.0.0.0", port=18091, service="consumer"
    )
    monkeypatch.setenv("LEDGER_OPS_PORT", "70000")
    with pytest.raises(ValidationError, match="LEDGER_OPS_PORT"):
        Settings.load()
    monkeypatch.setenv("LEDGER_OPS_PORT", "1")
    monkeypatch.setenv("LEDGER_LOG_FORMAT", "yaml")
    with pytest.raises(ValidationError, match="LEDGER_LOG_FORMAT"):
        Settings.load()
