"""`ledger dicom-proxy serve` as a process: it refuses to start (exit 1, the key or the
reason named, no traceback) without a `[ledger]` section, with a producer key that is not
its producer id's, or on a spool another proxy holds; it starts with Kafka unreachable
(spooling), answers, and stops cleanly on SIGTERM (exit 0, counters, no PHI). Needs no
shared stack: Kafka is a closed port, the PACS a pynetdicom one of the test's own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dicom_upstream import UPSTREAM_AET, UpstreamPacs
from tests.ports import free_port
from tests.support import ROOT, local_producer_key

pytestmark = pytest.mark.timeout(120)

LEDGER = str(Path(sys.executable).with_name("ledger"))


@pytest.fixture(scope="module")
def pacs() -> Iterator[UpstreamPacs]:
    pacs = UpstreamPacs(destinations={})
    pacs.port = pacs.start()  # type: ignore[attr-defined]
    yield pacs
    pacs.stop()


def config(
    tmp: Path, pacs_port: int, *, producer_id: str = "dicomproxy-service-test",
    key: str | None = None, spool: Path | None = None, ledger: bool = True,
) -> tuple[Path, int]:  # fmt: skip
    port = free_port()
    text = f"""
[listen]
host = "127.0.0.1"
port = {port}
ae_title = "LEDGERPROXY"
allowed_calling_aets = ["ECHOSCU"]

[upstream]
host = "127.0.0.1"
port = {pacs_port}
ae_title = "{UPSTREAM_AET}"
"""
    if ledger:
        text += f"""
[ledger]
bootstrap_servers = "127.0.0.1:{free_port()}"
producer_id = "{producer_id}"
producer_key_file = "{key or local_producer_key(producer_id)}"
facility_id = "service-test"
spool_dir = "{spool or tmp / "spool"}"
"""
    path = tmp / f"proxy-{port}.toml"
    path.write_text(text)
    return path, port


def serve(path: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGER_", "KAFKA_"))}
    with log.open("ab") as out:
        return subprocess.Popen(
            [LEDGER, "dicom-proxy", "serve", "--config", str(path)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def refused(path: Path, log: Path) -> str:
    proc = serve(path, log)
    assert proc.wait(timeout=60) == 1, log.read_text()
    text = log.read_text()
    assert "Traceback" not in text
    return text


def listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)


def test_no_ledger_section_is_refused(pacs: UpstreamPacs, tmp_path: Path) -> None:
    path, _ = config(tmp_path, pacs.port, ledger=False)  # type: ignore[attr-defined]
    assert "ledger: is required" in refused(path, tmp_path / "log")


def test_a_bad_ledger_value_is_refused_naming_its_key(pacs: UpstreamPacs, tmp_path: Path) -> None:
    path, _ = config(tmp_path, pacs.port, key=str(tmp_path / "missing.key"))  # type: ignore[attr-defined]
    assert "ledger.producer_key_file: no such file" in refused(path, tmp_path / "log")


def test_another_producers_key_is_refused(pacs: UpstreamPacs, tmp_path: Path) -> None:
    path, _ = config(
        tmp_path,
        pacs.port,
        key=local_producer_key("someone-else"),  # type: ignore[attr-defined]
    )
    text = refused(path, tmp_path / "log")
    assert "could not start" in text
    assert "someone-else" in text


def test_it_serves_with_kafka_away_refuses_a_second_proxy_on_its_spool_and_stops_cleanly(
    pacs: UpstreamPacs, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    path, port = config(tmp_path, pacs.port, spool=spool)  # type: ignore[attr-defined]
    log = tmp_path / "first.log"
    first = serve(path, log)
    try:
        listening(port, first, log)
        echo = subprocess.run(
            ["echoscu", "-aet", "ECHOSCU", "-aec", "LEDGERPROXY", "127.0.0.1", str(port)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert echo.returncode == 0, echo.stderr
        other, _ = config(tmp_path, pacs.port, spool=spool)  # type: ignore[attr-defined]
        text = refused(other, tmp_path / "second.log")
        assert "could not start" in text
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0, log.read_text()
    text = log.read_text()
    assert '"recorded": 1' in text
    assert '"emitter_lost": 0' in text
    assert any(spool.iterdir())  # the C-ECHO's event waits there for Kafka


def test_its_ops_listener_serves_metrics_and_readiness(pacs: UpstreamPacs, tmp_path: Path) -> None:
    """With LEDGER_OPS_PORT, the threaded proxy serves /livez, /readyz (the recorder is not
    stalled: Kafka is away but the spool takes events) and its counters as metrics."""
    import json
    import urllib.request

    path, port = config(tmp_path, pacs.port)  # type: ignore[attr-defined]
    ops = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGER_", "KAFKA_"))}
    log = tmp_path / "ops.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [LEDGER, "dicom-proxy", "serve", "--config", str(path)],
            cwd=ROOT, env={**env, "LEDGER_OPS_PORT": str(ops), "LEDGER_ENV_FILE": os.devnull},
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        listening(port, proc, log)
        listening(ops, proc, log)
        base = f"http://127.0.0.1:{ops}"
        with urllib.request.urlopen(f"{base}/readyz", timeout=10) as resp:
            ready = json.loads(resp.read())
        assert ready["status"] == "ok"
        assert ready["service"] == "dicom-proxy"
        assert ready["checks"] == {"recorder": "ok"}
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        assert "ledger_dicomproxy_refused_operations 0.0" in metrics
        assert "ledger_dicomproxy_stalled 0.0" in metrics
        assert 'ledger_build_info{service="dicom-proxy"' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
