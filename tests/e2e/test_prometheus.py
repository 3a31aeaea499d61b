"""Debian's real Prometheus server scrapes every long-running process of the ledger: the
consumer, the API, the ATNA receiver, the rules evaluator and the Orthanc pipe process,
each on its ops listener, with JSON logs on. The series the operator needs are there, no
label carries a patient id, every process is ready, the alert rules load, and the JSON
log lines parse and carry no patient id either. A consumer that cannot reach Kafka is
alive but not ready, says why, and stops at once on SIGTERM. A real Orthanc's pipe
process serves its listener when PHI_LEDGER_PIPE_OPS is in Orthanc's environment."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from integrations.atna.rfc5424 import format_syslog, frame_octet_counted
from integrations.simulator import Simulator
from ledgerctl.settings import KafkaRole
from producers.emitter import Emitter, EmitterConfig
from producers.events import Patient, PhiAccessEvent
from producers.ops import package_version
from producers.pipe import PipeEmitter
from producers.pipe_protocol import OPS_ENV
from tests.conftest import own_ledger
from tests.e2e.conftest import LEDGER, free_port, install_or_skip
from tests.support import ROOT, Stack

pytestmark = pytest.mark.e2e

#: The marker patient id: it must never reach a metric label or a log line.
PATIENT = "OBSPAT-5521-ZQ"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
CORPUS = ROOT / "tests" / "corpus" / "dicom-audit" / "dcm4chee-export.xml"
#: The services whose ops listeners Prometheus scrapes, and their job names.
SERVICES = ("consumer", "api", "atna", "rules", "orthanc-pipe")


def ensure_prometheus() -> None:
    install_or_skip(
        "prometheus.sh",
        "Debian's prometheus",
        lambda: shutil.which("prometheus") is not None and shutil.which("promtool") is not None,
    )


@dataclass
class Observed:
    stack: Stack
    env: dict[str, str]
    access_topic: str
    relay_topic: str
    api_url: str
    ops: dict[str, int]
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]]


def _policy() -> str:
    source = CORPUS.read_text().split('AuditSourceID="', 1)[1].split('"', 1)[0]
    return f'[tcp]\n"127.0.0.1" = ["{source}"]\n'


@pytest.fixture(scope="module")
def observed(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    """The ledger's processes on a database of their own, each with an ops listener."""
    where = tmp_path_factory.mktemp("obs")
    with own_ledger(stack, f"{stack.database}_obs") as own:
        access, relay = own.topics(f"obs{uuid.uuid4().hex[:6]}")
        api_port = free_port()
        env = own.env(
            LEDGER_ACCESS_TOPIC=access,
            LEDGER_RELAY_TOPIC=relay,
            LEDGER_REGISTRY_TOPIC=f"{access}-registry",
            LEDGER_CONSUMER_GROUP=f"t{own.run_id}-obs-{uuid.uuid4().hex[:8]}",
            LEDGER_API_URL=f"http://127.0.0.1:{api_port}",
            LEDGER_LOG_FORMAT="json",
        )
        subprocess.run([LEDGER, "topics"], env=env, check=True, cwd=ROOT, capture_output=True)
        (where / "senders.toml").write_text(_policy())
        ops = {name: free_port() for name in SERVICES}
        atna_id = f"atna-obs-{uuid.uuid4().hex[:8]}"
        commands: dict[str, tuple[list[str], dict[str, str]]] = {
            "consumer": ([LEDGER, "consume"], {}),
            "api": (
                [LEDGER, "serve", "--port", str(api_port)],
                {"LEDGER_PRODUCER_KEY_FILE": own.producer_key("ledger-api-obs")},
            ),
            "atna": (
                [LEDGER, "atna", "serve", "--no-tls", "--tcp-port", str(free_port()),
                 "--senders", str(where / "senders.toml"), "--kept-dir", str(where / "kept"),
                 "--producer-id", atna_id],
                {"LEDGER_PRODUCER_KEY_FILE": own.producer_key(atna_id)},
            ),
            "rules": ([LEDGER, "rules", "run", "--interval", "1"], {}),
        }  # fmt: skip
        with contextlib.ExitStack() as files:
            procs = {
                name: subprocess.Popen(
                    command,
                    env={**env, **extra, "LEDGER_OPS_PORT": str(ops[name])},
                    cwd=ROOT,
                    stdout=files.enter_context((where / f"{name}.log").open("wb")),
                    stderr=subprocess.STDOUT,
                )
                for name, (command, extra) in commands.items()
            }
            try:
                subprocess.run(
                    [LEDGER, "wait", "api", "--timeout", "60"], env=env, check=True, cwd=ROOT
                )
                yield Observed(
                    own, env, access, relay, f"http://127.0.0.1:{api_port}", ops, where, procs
                )
            finally:
                for proc in procs.values():
                    proc.send_signal(signal.SIGTERM)
                for proc in procs.values():
                    try:
                        proc.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()


@contextlib.contextmanager
def pipe_process(obs: Observed, spool: Path) -> Iterator[PipeEmitter]:
    """A PipeEmitter as the Orthanc plugin runs one; its child inherits PHI_LEDGER_PIPE_OPS."""
    producer_id = f"orthanc-obs-{uuid.uuid4().hex[:8]}"
    config = EmitterConfig(
        bootstrap_servers=obs.stack.kafka_bootstrap,
        producer_id=producer_id,
        access_topic=obs.access_topic,
        relay_topic=obs.relay_topic,
        spool_dir=str(spool),
        producer_key_file=obs.stack.producer_key(producer_id),
        kafka_security=obs.stack.kafka(KafkaRole.SIMULATOR),
    )
    before = os.environ.get(OPS_ENV)
    os.environ[OPS_ENV] = f"127.0.0.1:{obs.ops['orthanc-pipe']}"
    try:
        with PipeEmitter(config) as emitter:
            yield emitter
    finally:
        if before is None:
            os.environ.pop(OPS_ENV, None)
        else:
            os.environ[OPS_ENV] = before


def _start_prometheus(obs: Observed, where: Path, port: int) -> subprocess.Popen[bytes]:
    scrape = [
        {
            "job_name": f"ledger-{name}",
            "static_configs": [{"targets": [f"127.0.0.1:{obs.ops[name]}"]}],
        }
        for name in SERVICES
    ]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": scrape,
    }
    (where / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    with (where / "prometheus.log").open("wb") as log:
        return subprocess.Popen(
            ["prometheus", f"--config.file={where / 'prometheus.yml'}",
             f"--storage.tsdb.path={where / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


@contextlib.asynccontextmanager
async def prometheus(obs: Observed, where: Path) -> AsyncIterator[str]:
    """Debian's Prometheus with its own config, port and TSDB, scraping every service."""
    port = free_port()
    proc = _start_prometheus(obs, where, port)
    url = f"http://127.0.0.1:{port}"
    try:
        await _until(lambda: _status(f"{url}/-/ready"), 200, what="Prometheus ready", where=where)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _status(url: str) -> int:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status
    except aiohttp.ClientError:
        return 0


async def _until(probe: Any, expected: object, *, what: str, where: Path) -> None:
    deadline = time.monotonic() + 90
    got: object = None
    while time.monotonic() < deadline:
        got = await probe()
        if got == expected:
            return
        await asyncio.sleep(0.5)
    pytest.fail(f"{what}: last {got!r}, not {expected!r}; logs: {_tails(where)}")


def _tails(where: Path) -> str:
    logs = {p.name: p.read_text(errors="replace")[-1500:] for p in where.glob("*.log")}
    return json.dumps(logs, indent=1)


async def query(url: str, promql: str) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/api/v1/query", params={"query": promql}) as resp,
    ):
        body = await resp.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def emit_traffic(obs: Observed, spool: Path) -> PhiAccessEvent:
    """Events (one for the marker patient) through an emitter and the pipe process, one
    record that is no event, and ATNA messages: one mapped, one kept."""
    sim = Simulator(seed=9_171_000)
    events = list(sim.events(20))
    marked = replace(
        next(e for e in events if isinstance(e, PhiAccessEvent)),
        patient=Patient(id=PATIENT),
        event_id=sim.access().event_id,
    )
    simulator = EmitterConfig(
        bootstrap_servers=obs.stack.kafka_bootstrap,
        producer_id="simulator",
        access_topic=obs.access_topic,
        relay_topic=obs.relay_topic,
        producer_key_file=obs.stack.producer_key("simulator"),
        kafka_security=obs.stack.kafka(KafkaRole.SIMULATOR),
    )
    async with Emitter(simulator) as emitter:
        for event in [*events, marked]:
            await emitter.emit(event)
    producer = AIOKafkaProducer(**obs.stack.kafka_client(KafkaRole.SIMULATOR))
    await producer.start()
    try:  # no event at all: quarantined with its reason
        await producer.send_and_wait(obs.access_topic, b"\x00not an event", key=b"obs|x")
    finally:
        await producer.stop()
    message = b" ".join(CORPUS.read_bytes().split())
    atna_port = int(_arg(obs.procs["atna"], "--tcp-port"))
    _reader, writer = await asyncio.open_connection("127.0.0.1", atna_port)
    for payload in (message, b"<not-an-audit-message/>"):
        line = format_syslog(
            payload, hostname="pacs01.example", app_name="dcm4chee-arc", procid="1"
        )
        writer.write(frame_octet_counted(line))
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    return marked


def _arg(proc: subprocess.Popen[bytes], flag: str) -> str:
    args = [str(a) for a in proc.args]  # type: ignore[union-attr]
    return args[args.index(flag) + 1]


async def _series_ready(url: str) -> list[str]:
    """What is still missing (empty once every expected series is scraped)."""
    wanted = {
        "every target up": f"count(up{{job=~'ledger-.+'}} == 1) == {len(SERVICES)}",
        "appended": "ledger_consumer_appended_events_total > 20",
        "quarantined": "sum(ledger_consumer_quarantined_events_total) > 0",
        "commit latency": "ledger_consumer_commit_seconds_count > 0",
        "batch latency": "ledger_consumer_batch_seconds_count > 0",
        "lag": "ledger_consumer_lag_records",
        "checkpoint age": "ledger_checkpoint_age_seconds",
        "unsigned leaves": "ledger_log_unsigned_leaves",
        "alerts raised": "ledger_consumer_alerts_raised_total > 0",
        "http": "ledger_http_requests_total{route='patient_accesses',status='200'}",
        "api spool": "ledger_spool_events{emitter='api'}",
        "pipe spool": "ledger_spool_bytes{emitter='orthanc-pipe'}",
        "pipe sent": "ledger_emitter_sent_events_total{emitter='orthanc-pipe'} > 0",
        "atna received": "ledger_atna_received_messages_total{transport='tcp'} >= 2",
        "atna kept": "sum(ledger_atna_kept_messages_total) > 0",
        "atna mapped": "ledger_atna_mapped_messages_total > 0",
        "rules passes": "ledger_rules_passes_total > 0",
        "versions": f"count(ledger_build_info) == {len(SERVICES)}",
    }
    return [name for name, promql in wanted.items() if not await query(url, promql)]


async def test_prometheus_scrapes_every_process_without_phi(
    observed: Observed, tmp_path: Path
) -> None:
    ensure_prometheus()
    obs = observed
    with pipe_process(obs, tmp_path / "pipe-spool") as pipe:
        marked = await emit_traffic(obs, tmp_path / "pipe-spool")
        await asyncio.to_thread(pipe.emit, replace(marked, event_id=uuid.uuid4()))
        headers = obs.stack.auth("admin")
        async with aiohttp.ClientSession(headers=headers) as http:
            url = f"{obs.api_url}/v1/patients/{PATIENT}/accesses"
            async with http.get(url) as resp:
                assert resp.status == 200
            async with http.get(f"{obs.api_url}/healthz") as resp:
                health = await resp.json()
        assert health["status"] == "ok"
        assert health["version"]
        async with prometheus(obs, tmp_path) as prom:
            missing: list[str] = []

            async def still_missing() -> list[str]:
                missing[:] = await _series_ready(prom)
                return missing

            await _until(still_missing, [], what="series scraped", where=obs.logs)
            ours = {"match[]": '{__name__=~"ledger_.+"}'}
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{prom}/api/v1/series", params=ours) as resp,
            ):
                series = await resp.text()
                assert resp.status == 200
            assert PATIENT not in series
            assert marked.actor.user_id not in series
            rules = await _rules(prom)
            assert {"LedgerCheckpointStale", "LedgerConsumerLagHigh"} <= rules
            for name in SERVICES:
                ready = f"http://127.0.0.1:{obs.ops[name]}/readyz"
                async with aiohttp.ClientSession() as http, http.get(ready) as resp:
                    answer = await resp.json()
                assert (name, resp.status, answer["status"]) == (name, 200, "ok")
                assert answer["service"] == name
    _assert_json_logs_without_phi(obs.logs, marked)


async def _rules(prom: str) -> set[str]:
    async with aiohttp.ClientSession() as http, http.get(f"{prom}/api/v1/rules") as resp:
        body = await resp.json()
    return {
        r["name"] for g in body["data"]["groups"] for r in g["rules"] if r.get("health") == "ok"
    }


def _assert_json_logs_without_phi(where: Path, marked: PhiAccessEvent) -> None:
    """Every line each process wrote is one JSON object naming it, and none carries the
    marker patient's id or the user's."""
    for name in ("consumer", "api", "atna", "rules"):
        text = (where / f"{name}.log").read_text(errors="replace")
        assert PATIENT not in text, name
        assert marked.actor.user_id not in text, name
        lines = [json.loads(line) for line in text.splitlines()]
        assert lines, name
        for line in lines:
            assert (line["service"], line["version"]) == (name, package_version()), line
            assert line["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}, line
            assert isinstance(line["message"], str), line


async def test_a_consumer_without_kafka_is_alive_but_not_ready(
    observed: Observed, tmp_path: Path
) -> None:
    ops = free_port()
    env = {
        **observed.env,
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nothing listens there
        "LEDGER_CONSUMER_GROUP": f"obs-nokafka-{uuid.uuid4().hex[:8]}",
        "LEDGER_OPS_PORT": str(ops),
    }
    proc = _start(tmp_path / "consumer.log", [LEDGER, "consume"], env)
    try:
        await _until(
            lambda: _status(f"http://127.0.0.1:{ops}/livez"), 200, what="livez", where=tmp_path
        )
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{ops}/readyz") as resp,
        ):
            answer = await resp.json()
        assert resp.status == 503
        assert answer["status"] == "unavailable"
        assert answer["checks"]["database"] == "ok"
        assert answer["reasons"] == {"kafka": "Kafka poll failing (not started)"}
        # SIGTERM stops it although it is still retrying the broker (a supervisor's stop).
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _start(log: Path, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


async def test_a_real_orthancs_pipe_process_serves_its_ops_listener(
    observed: Observed, tmp_path: Path
) -> None:
    """Orthanc with the audit plugin, PHI_LEDGER_PIPE_OPS in its environment: the pipe
    process it starts serves readiness and its emitter's metrics, and an upload's import
    events count as sent."""
    from tests.e2e.test_orthanc import ROLES, ensure_orthanc, launch, make_study, stop

    ensure_orthanc()
    ops = free_port()
    users = {u: uuid.uuid4().hex for u in ROLES}
    before = os.environ.get(OPS_ENV)
    os.environ[OPS_ENV] = str(ops)  # a port alone: loopback
    try:
        server = await asyncio.to_thread(
            launch, observed, tmp_path, bootstrap=observed.stack.kafka_bootstrap,  # type: ignore[arg-type]
            users=users, producer_id=f"orthanc-obs-{uuid.uuid4().hex[:6]}",
        )  # fmt: skip
    finally:
        if before is None:
            os.environ.pop(OPS_ENV, None)
        else:
            os.environ[OPS_ENV] = before
    try:
        _, files = make_study(PATIENT, "obs-issuer", f"A{uuid.uuid4().hex[:8]}", 1)
        upload = {"data": files[0], "headers": server.auth("tech.carol")}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{server.url}/instances", **upload) as resp,
        ):
            assert resp.status == 200, await resp.text()
        base = f"http://127.0.0.1:{ops}"
        await _until(lambda: _status(f"{base}/readyz"), 200, what="pipe /readyz", where=tmp_path)

        async def sent() -> bool:
            async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            assert PATIENT not in text
            line = 'ledger_emitter_sent_events_total{emitter="orthanc-pipe"} '
            return any(
                row.startswith(line) and float(row[len(line) :]) > 0 for row in text.splitlines()
            )

        await _until(sent, True, what="pipe events sent", where=tmp_path)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/livez") as resp:
            assert (await resp.json())["service"] == "orthanc-pipe"
    finally:
        await asyncio.to_thread(stop, server, observed)  # type: ignore[arg-type]
