"""The DICOM audit proxy as a service, end to end: `ledger dicom-proxy serve` (a real
process with the producer library's spooling emitter) in front of an Orthanc of the
test's own, DCMTK's echoscu, findscu, getscu, movescu and storescu and pynetdicom as
clients, then Kafka, `ledger consume` and `ledger serve`: every operation is in the right
patients' and AEs' histories with the right action and address, and has an inclusion
proof against a signed checkpoint; a C-FIND that returned 3 patients is in all 3
histories, one that matched nobody in its AE's; a C-MOVE to an unknown destination is a
failure. With Kafka unreachable (a closed port) the operations are spooled and arrive
once a proxy with the right bootstrap starts on the same spool; with the spool full as
well, fail-closed refuses (0xA700) and fail-open answers and counts the lost record.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
)

from integrations.dicomproxy import DicomProxy, LedgerRecorder, parse_config
from ledger.log.checkpoint import parse_tlog_proof, verify_tlog_proof
from ledger.log.keys import parse_verifiers
from ledger.log.leaf import decode_leaf
from ledgerctl.settings import KafkaRole
from producers import SyncEmitter
from tests.dicom_upstream import Archive, write_instances
from tests.e2e.conftest import LEDGER, Pipeline, free_port, get_json, wait_for_events
from tests.integration import test_dicom_proxy_orthanc as orthanc_test
from tests.integration.test_dicom_proxy_orthanc import ORTHANC_AET, PROXY_AET, Orthanc
from tests.support import ROOT

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not Path("/usr/sbin/Orthanc").exists() or shutil.which("findscu") is None,
        reason="needs Debian's orthanc and DCMTK",
    ),
]

# The module-scoped fixtures of the proxy's Orthanc test: an Orthanc of the test's own on
# free ports, the sample archive, and the port movescu receives on.
orthanc = orthanc_test.orthanc
archive = orthanc_test.archive
move_port = orthanc_test.move_port

CLIENTS = ["ECHOSCU", "FINDSCU", "GETSCU", "MOVESCU", "STORESCU", "PYCLIENT", "OFFLINE1"]


def dcmtk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)


def _toml(value: Any) -> str:
    return json.dumps(value)  # a JSON string or list of strings is a TOML value


def write_config(
    path: Path,
    *,
    pipeline: Pipeline,
    orthanc_port: int,
    move_port: int,
    producer_id: str,
    spool: Path,
    bootstrap: str | None = None,
    fail_closed: bool = True,
    ledger: dict[str, Any] | None = None,
) -> Path:
    """A proxy configuration file, its [ledger] writing to the pipeline's topic."""
    stack = pipeline.stack
    # The proxy's own principal (WRITE on the event topics only), as make up runs it.
    security = stack.kafka(KafkaRole.DICOMPROXY)
    kafka = {
        "protocol": security.protocol,
        "ca_file": security.ca_file,
        "sasl_mechanism": security.sasl_mechanism,
        "sasl_username": security.sasl_username,
        "sasl_password_file": security.sasl_password_file,
    }
    lines = [
        "[listen]",
        'host = "127.0.0.1"',
        f"port = {free_port()}",
        f"ae_title = {_toml(PROXY_AET)}",
        f"allowed_calling_aets = {_toml(CLIENTS)}",
        "[upstream]",
        'host = "127.0.0.1"',
        f"port = {orthanc_port}",
        f"ae_title = {_toml(ORTHANC_AET)}",
        "[destinations.MOVESCU]",
        'host = "127.0.0.1"',
        f"port = {move_port}",
        "[recording]",
        f"fail_closed = {'true' if fail_closed else 'false'}",
        "[ledger]",
        f"bootstrap_servers = {_toml(bootstrap or stack.kafka_bootstrap)}",
        f"topic = {_toml(pipeline.access_topic)}",
        f"producer_id = {_toml(producer_id)}",
        f"producer_key_file = {_toml(stack.producer_key(producer_id))}",
        'facility_id = "e2e-dicom-proxy"',
        'facility_name = "DICOM proxy e2e"',
        f"spool_dir = {_toml(str(spool))}",
        *(f"{k} = {_toml(v)}" for k, v in (ledger or {}).items()),
        "[ledger.kafka]",
        *(f"{k} = {_toml(v)}" for k, v in kafka.items() if v is not None),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class ProxyProcess:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> str:
        """SIGTERM; the process exits 0 once the emitter flushed or spooled."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        text = self.log.read_text()
        assert self.proc.returncode == 0, text[-3000:]
        return text


def start_proxy(config: Path, log: Path) -> ProxyProcess:
    port = int(
        next(line for line in config.read_text().splitlines() if line.startswith("port")).split(
            "="
        )[1]
    )
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [LEDGER, "dicom-proxy", "serve", "--config", str(config), "--stats-every", "1"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the proxy exited at start:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return ProxyProcess(port, proc, log)
        except OSError:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)


@pytest.fixture(scope="module")
def proxy(
    pipeline: Pipeline, orthanc: Orthanc, move_port: int, archive: Archive,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProxyProcess]:  # fmt: skip
    """The proxy as a service; the test study stored through it with storescu."""
    where = tmp_path_factory.mktemp("dicomproxy")
    config = write_config(
        where / "proxy.toml", pipeline=pipeline, orthanc_port=orthanc.dicom,
        move_port=move_port, producer_id=f"dicomproxy-e2e-{where.name}", spool=where / "spool",
    )  # fmt: skip
    running = start_proxy(config, where / "proxy.log")
    try:
        files = write_instances(archive, tmp_path_factory.mktemp("study"))
        run = dcmtk("storescu", "-aet", "STORESCU", "-aec", PROXY_AET, "127.0.0.1",
                    str(running.port), *map(str, files))  # fmt: skip
        assert run.returncode == 0, run.stderr
        yield running
    finally:
        log = running.stop()
        assert "PID00" not in log  # no PHI in the service's log


async def history(http: aiohttp.ClientSession, pipeline: Pipeline, path: str) -> list[dict]:  # type: ignore[type-arg]
    status, body = await get_json(http, f"{pipeline.api_url}/v1/{path}/accesses", limit="1000")
    assert status == 200, body
    return list(body["accesses"])


async def wait_history(
    http: aiohttp.ClientSession, pipeline: Pipeline, path: str, count: int, timeout: float = 90
) -> list[dict]:  # type: ignore[type-arg]
    """The history once it has at least ``count`` entries."""
    deadline = time.monotonic() + timeout
    while True:
        entries = await history(http, pipeline, path)
        if len(entries) >= count:
            return entries
        if time.monotonic() > deadline:
            log = (pipeline.logs / "consumer.log").read_text()[-3000:]
            pytest.fail(f"{path}: {len(entries)} entries, wanted {count}; consumer log:\n{log}")
        await asyncio.sleep(0.3)


async def detail(http: aiohttp.ClientSession, pipeline: Pipeline, event_id: str) -> dict:  # type: ignore[type-arg]
    status, body = await get_json(http, f"{pipeline.api_url}/v1/events/{event_id}")
    assert status == 200, body
    return body


async def check_proof(http: aiohttp.ClientSession, pipeline: Pipeline, event_id: str) -> None:
    """The event's inclusion proof verifies against a signed checkpoint, for its leaf."""
    await wait_for_events(http, pipeline, [event_id])
    async with http.get(f"{pipeline.api_url}/v1/events/{event_id}/proof") as resp:
        assert resp.status == 200
        text = await resp.text()
    leaf = parse_tlog_proof(text).extra
    assert leaf is not None
    verify_tlog_proof(text, leaf, parse_verifiers([pipeline.stack.verifier_key]))
    kafka = (await detail(http, pipeline, event_id))["ledger"]["kafka"]
    record = decode_leaf(leaf)
    assert (record.topic, record.partition, record.offset) == (
        kafka["topic"], kafka["partition"], kafka["offset"],
    )  # fmt: skip


def by_id(entries: list[dict]) -> dict[str, dict]:  # type: ignore[type-arg]
    return {e["event_id"]: e for e in entries}


def py_find(port: int, aet: str, **keys: str) -> list[int]:
    """A patient-root C-FIND with pynetdicom (the second client); the statuses."""
    ae = AE(ae_title=aet)
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientName = ""
    for k, v in keys.items():
        setattr(query, k, v)
    assoc = ae.associate("127.0.0.1", port, ae_title=PROXY_AET)
    assert assoc.is_established
    try:
        return [
            int(status.Status)
            for status, _ in assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind)
            if status
        ]
    finally:
        assoc.release()


async def test_every_operation_is_in_the_right_histories_with_a_proof(
    proxy: ProxyProcess, pipeline: Pipeline, http: aiohttp.ClientSession, archive: Archive,
    move_port: int, tmp_path: Path,
) -> None:  # fmt: skip
    port = str(proxy.port)
    study = archive.studies("PID003")[0]
    assert dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", PROXY_AET, "127.0.0.1", port).returncode == 0
    run = dcmtk("findscu", "-aet", "FINDSCU", "-aec", PROXY_AET, "-S", "-k",
                "QueryRetrieveLevel=STUDY", "-k", "PatientName=*O*", "127.0.0.1", port)  # fmt: skip
    assert run.returncode == 0, run.stderr
    for tool in ("getscu", "movescu"):
        out = tmp_path / tool
        out.mkdir()
        extra = ["-aem", "MOVESCU", "+P", str(move_port)] if tool == "movescu" else []
        run = dcmtk(tool, "-aet", tool.upper(), "-aec", PROXY_AET, *extra, "-S",
                    "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                    "-od", str(out), "127.0.0.1", port)  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert len(list(out.iterdir())) == 3
    assert py_find(proxy.port, "PYCLIENT", PatientID="PID001")[-1] == 0

    stores = await wait_history(http, pipeline, "users/STORESCU", 6)
    assert {(e["event"]["dicom_event_id"], e["action"]) for e in stores} == {("110104", "C")}
    assert (
        sorted(e["patient"]["id"] for e in stores) == ["PID001"] + ["PID002"] * 2 + ["PID003"] * 3
    )
    (echo,) = await wait_history(http, pipeline, "users/ECHOSCU", 1)
    assert (echo["event"]["dicom_event_id"], echo["action"], echo["patient"]) == (
        "110112",
        "E",
        None,
    )
    (find,) = await wait_history(http, pipeline, "users/FINDSCU", 1)
    (get,) = await wait_history(http, pipeline, "users/GETSCU", 1)
    (move,) = await wait_history(http, pipeline, "users/MOVESCU", 1)
    (named,) = await wait_history(http, pipeline, "users/PYCLIENT", 1)
    assert (find["event"]["dicom_event_id"], find["action"], find["patient"]) == (
        "110112",
        "E",
        None,
    )
    for retrieve in (get, move):
        assert (retrieve["event"]["dicom_event_id"], retrieve["action"]) == ("110104", "R")
        assert retrieve["study"]["uid"] == study
        assert retrieve["outcome"] == "SUCCESS"
    assert named["patient"]["id"] == "PID001"
    everything = [*stores, echo, find, get, move, named]
    for entry in everything:
        assert entry["network_address"] == "127.0.0.1"
        assert entry["user"]["role"] == "dicom-application-entity"
        assert entry["facility"] == "e2e-dicom-proxy"

    # The query that returned 3 patients is in the 3 histories; the retrieves in PID003's.
    for pid in ("PID001", "PID002", "PID003"):
        entries = by_id(await history(http, pipeline, f"patients/{pid}"))
        assert entries[find["event_id"]]["attribution"] == "disclosed", pid
    pid3 = by_id(await history(http, pipeline, "patients/PID003"))
    assert pid3[get["event_id"]]["attribution"] == "disclosed"
    assert pid3[move["event_id"]]["attribution"] == "disclosed"
    pid1 = by_id(await history(http, pipeline, "patients/PID001"))
    assert pid1[named["event_id"]]["attribution"] == "named"

    body = (await detail(http, pipeline, find["event_id"]))["event"]
    details = dict(body["details"])
    assert details["query.PatientName"] == "*O*"
    assert (details["calling_ae"], details["called_ae"]) == ("FINDSCU", PROXY_AET)
    assert (details["tls"], details["query_level"], details["status"]) == (
        "false",
        "STUDY",
        "0x0000",
    )
    assert sorted(p["id"] for p in body["disclosed"]) == ["PID001", "PID002", "PID003"]
    moved = (await detail(http, pipeline, move["event_id"]))["event"]
    assert moved["recipient"]["name"] == "MOVESCU"
    assert dict(moved["details"])["sub_operations"] == "completed=3 failed=0 warning=0"
    for entry in everything:
        await check_proof(http, pipeline, entry["event_id"])


async def test_a_query_matching_nobody_is_in_the_aes_history(
    proxy: ProxyProcess, pipeline: Pipeline, http: aiohttp.ClientSession
) -> None:
    assert py_find(proxy.port, "PYCLIENT", PatientName="NOBODY^*") == [0]
    deadline = time.monotonic() + 90
    while True:
        for entry in await history(http, pipeline, "users/PYCLIENT"):
            event = (await detail(http, pipeline, entry["event_id"]))["event"]
            if dict(event["details"]).get("query.PatientName") == "NOBODY^*":
                assert (entry["patient"], event["disclosed"]) == (None, [])
                assert entry["event"]["dicom_event_id"] == "110112"
                await check_proof(http, pipeline, entry["event_id"])
                return
        assert time.monotonic() < deadline, "the empty query never reached the ledger"
        await asyncio.sleep(0.3)


async def test_a_move_to_an_unknown_destination_is_recorded_as_a_failure(
    proxy: ProxyProcess, pipeline: Pipeline, http: aiohttp.ClientSession
) -> None:
    run = dcmtk("movescu", "-aet", "MOVESCU", "-aec", PROXY_AET, "-aem", "ELSEWHERE", "-P",
                "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PID002",
                "127.0.0.1", str(proxy.port))  # fmt: skip
    assert "MoveDestinationUnknown" in run.stderr
    deadline = time.monotonic() + 90
    while True:
        failed = [
            e for e in await history(http, pipeline, "users/MOVESCU")
            if e["outcome"] != "SUCCESS"
        ]  # fmt: skip
        if failed:
            break
        assert time.monotonic() < deadline, "the failed C-MOVE never reached the ledger"
        await asyncio.sleep(0.3)
    (entry,) = failed
    assert entry["outcome"] == "SERIOUS_FAILURE"
    assert (entry["event"]["dicom_event_id"], entry["action"]) == ("110104", "R")
    assert entry["patient"]["id"] == "PID002"
    event = (await detail(http, pipeline, entry["event_id"]))["event"]
    assert event["recipient"]["name"] == "ELSEWHERE"
    details = dict(event["details"])
    assert (details["status"], details["proxy_error"]) == ("0xA801", "move_destination_unknown")
    await check_proof(http, pipeline, entry["event_id"])


def closed_port() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens: Kafka unreachable


async def test_with_kafka_unreachable_operations_are_spooled_and_nothing_is_lost(
    pipeline: Pipeline, orthanc: Orthanc, move_port: int, archive: Archive,
    http: aiohttp.ClientSession, tmp_path: Path,
) -> None:  # fmt: skip
    producer_id = f"dicomproxy-e2e-offline-{tmp_path.name[-8:]}"
    spool = tmp_path / "spool"
    common: dict[str, Any] = {
        "pipeline": pipeline, "orthanc_port": orthanc.dicom, "move_port": move_port,
        "producer_id": producer_id, "spool": spool,
    }  # fmt: skip
    offline = start_proxy(
        write_config(tmp_path / "offline.toml", bootstrap=closed_port(), **common),
        tmp_path / "offline.log",
    )
    port = str(offline.port)
    assert (
        dcmtk("echoscu", "-aet", "OFFLINE1", "-aec", PROXY_AET, "127.0.0.1", port).returncode == 0
    )
    run = dcmtk("findscu", "-aet", "OFFLINE1", "-aec", PROXY_AET, "-P", "-k",
                "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PID002",
                "127.0.0.1", port)  # fmt: skip
    assert run.returncode == 0, run.stderr
    files = write_instances(archive, tmp_path / "study")
    run = dcmtk("storescu", "-aet", "OFFLINE1", "-aec", PROXY_AET, "127.0.0.1", port, str(files[0]))
    assert run.returncode == 0, run.stderr
    offline.stop()
    assert any(spool.iterdir())
    assert await history(http, pipeline, "users/OFFLINE1") == []

    online = start_proxy(write_config(tmp_path / "online.toml", **common), tmp_path / "online.log")
    try:
        entries = await wait_history(http, pipeline, "users/OFFLINE1", 3)
    finally:
        online.stop()
    assert len(entries) == 3
    kinds = []
    for entry in entries:
        event = (await detail(http, pipeline, entry["event_id"]))["event"]
        kinds.append(dict(event["details"])["dimse"])
    kinds.sort()
    assert kinds == ["C-ECHO", "C-FIND", "C-STORE"]
    pid2 = by_id(await history(http, pipeline, "patients/PID002"))
    assert any(e["event_id"] in pid2 for e in entries)
    for entry in entries:
        await check_proof(http, pipeline, entry["event_id"])


def test_fail_closed_with_a_full_spool_refuses_and_fail_open_answers(
    pipeline: Pipeline, orthanc: Orthanc, move_port: int, tmp_path: Path
) -> None:
    """Kafka unreachable and a spool too small for one event: the emitter stalls."""
    config = write_config(
        tmp_path / "full.toml", pipeline=pipeline, orthanc_port=orthanc.dicom,
        move_port=move_port, producer_id=f"dicomproxy-e2e-full-{tmp_path.name[-8:]}",
        spool=tmp_path / "spool", bootstrap=closed_port(),
        ledger={"spool_max_bytes": 1024, "stalled_after_seconds": 0.5},
    )  # fmt: skip
    closed = parse_config(_with_port(config, 0))
    assert closed.ledger is not None
    open_ = dataclasses.replace(closed, fail_closed=False)
    # The recorder's own emitter, handed in so the test can stop it sooner: the default
    # stop keeps retrying the events that fit nowhere for 19 s.
    emitter = SyncEmitter(
        closed.ledger.emitter_config(), max_pending=closed.ledger.max_pending, block_seconds=0.0
    )
    with LedgerRecorder(closed.ledger, emitter=emitter) as recorder:
        with DicomProxy(closed, recorder) as proxy:
            statuses: list[int] = []
            deadline = time.monotonic() + 60
            while 0xA700 not in statuses:
                assert time.monotonic() < deadline, f"never refused: {statuses}"
                statuses = py_find(proxy.address[1], "PYCLIENT", PatientID="PID001")
                time.sleep(0.2)
            assert statuses == [0xA700]  # refused: nothing disclosed
            assert recorder.stalled
            assert proxy.gate.refused >= 1
        with DicomProxy(open_, recorder) as proxy:
            statuses = py_find(proxy.address[1], "PYCLIENT", PatientID="PID001")
            assert statuses[-1] == 0  # answered, without a record
            assert proxy.gate.lost == 1
        # Events accepted before the stall that fit in no spool: stop says they are lost.
        assert emitter.stop(timeout=1.0) is False


def _with_port(config: Path, port: int) -> dict[str, Any]:
    import tomllib

    data = tomllib.loads(config.read_text())
    data["listen"]["port"] = port
    return data
