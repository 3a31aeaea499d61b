"""The DICOM audit proxy in front of a real Orthanc (Debian's 1.10, no plugin: the proxy
needs nothing from the PACS but DIMSE). The test starts its own Orthanc on free ports
(the shared stack's is left alone), stores the test study through the proxy with
storescu, then compares findscu, getscu and movescu answers through the proxy with the
answers Orthanc gives directly, and checks what was recorded."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from integrations.dicomproxy import (
    DicomProxy,
    MemoryRecorder,
    OperationKind,
    PatientRef,
    parse_config,
)
from tests.dicom_upstream import Archive, write_instances
from tests.ports import free_port
from tests.reaping import stop_later

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not Path("/usr/sbin/Orthanc").exists() or shutil.which("findscu") is None,
        reason="needs Debian's orthanc and DCMTK",
    ),
]

PROXY_AET = "LEDGERPROXY"
ORTHANC_AET = "PROXYTESTPACS"
CLIENTS = ["FINDSCU", "GETSCU", "MOVESCU", "STORESCU"]


def dcmtk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)


@dataclass
class Orthanc:
    http: int
    dicom: int
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def move_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, move_port: int) -> Iterator[Orthanc]:
    home = tmp_path_factory.mktemp("orthanc")
    http, dicom = free_port(), free_port()
    modalities = {aet.lower(): [aet, "127.0.0.1", 104] for aet in [PROXY_AET, *CLIENTS]}
    modalities["movescu"] = ["MOVESCU", "127.0.0.1", move_port]
    config = {
        "Name": "dicomproxy-test",
        "StorageDirectory": str(home / "db"),
        "IndexDirectory": str(home / "db"),
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": ORTHANC_AET,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomModalities": modalities,
        "Plugins": [],
    }
    (home / "orthanc.json").write_text(json.dumps(config))
    log = home / "orthanc.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["/usr/sbin/Orthanc", str(home / "orthanc.json")], cwd=home, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Orthanc(http, dicom, proc, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Orthanc exited at start:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/system", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        yield server
    finally:
        stop_later(proc)


@pytest.fixture(scope="module")
def archive() -> Archive:
    return Archive.sample()


@pytest.fixture(scope="module")
def recorder() -> MemoryRecorder:
    return MemoryRecorder()


@pytest.fixture(scope="module")
def proxy(
    orthanc: Orthanc, move_port: int, recorder: MemoryRecorder, archive: Archive,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DicomProxy]:  # fmt: skip
    cfg = parse_config({
        "listen": {"port": 0, "ae_title": PROXY_AET, "allowed_calling_aets": CLIENTS},
        "upstream": {"host": "127.0.0.1", "port": orthanc.dicom, "ae_title": ORTHANC_AET},
        "destinations": {"MOVESCU": {"host": "127.0.0.1", "port": move_port}},
    })  # fmt: skip
    with DicomProxy(cfg, recorder) as proxy:
        files = write_instances(archive, tmp_path_factory.mktemp("study"))
        run = dcmtk("storescu", "-aet", "STORESCU", "-aec", PROXY_AET, "127.0.0.1",
                    str(proxy.address[1]), *map(str, files))  # fmt: skip
        assert run.returncode == 0, run.stderr
        yield proxy


def kinds(recorder: MemoryRecorder, kind: OperationKind) -> list[Any]:
    return [op for op in recorder.operations if op.kind == kind]


def test_storescu_through_the_proxy_reached_orthanc(
    proxy: DicomProxy, orthanc: Orthanc, recorder: MemoryRecorder
) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{orthanc.http}/instances") as resp:
        assert len(json.load(resp)) == 6
    stores = kinds(recorder, OperationKind.STORE)
    assert len(stores) == 6
    assert {op.status for op in stores} == {0}
    assert {op.result_patients[0].patient_id for op in stores} == {"PID001", "PID002", "PID003"}


@pytest.mark.parametrize("model", ["-S", "-P"])
def test_findscu_through_the_proxy_equals_orthanc_direct(
    proxy: DicomProxy, orthanc: Orthanc, recorder: MemoryRecorder, tmp_path: Path, model: str
) -> None:
    level = "STUDY" if model == "-S" else "PATIENT"
    answers = {}
    for name, port, called in (("direct", orthanc.dicom, ORTHANC_AET),
                               ("proxy", proxy.address[1], PROXY_AET)):  # fmt: skip
        out = tmp_path / name
        out.mkdir()
        keys = ["-k", f"QueryRetrieveLevel={level}", "-k", "PatientName=*O*"]
        if level == "STUDY":
            keys += ["-k", "StudyDate", "-k", "ModalitiesInStudy"]
        run = dcmtk("findscu", "-aet", "FINDSCU", "-aec", called, model, "-X", "-od", str(out),
                    *keys, "127.0.0.1", str(port))  # fmt: skip
        assert run.returncode == 0, run.stderr
        answers[name] = sorted(str(dcmread(p, force=True).to_json_dict()) for p in out.iterdir())
    assert len(answers["direct"]) == 3
    assert answers["proxy"] == answers["direct"]
    op = kinds(recorder, OperationKind.FIND)[-1]
    assert op.query_level == level
    assert op.criteria == (("PatientName", "*O*"),)
    assert sorted(p.patient_id for p in op.result_patients) == ["PID001", "PID002", "PID003"]


def test_getscu_and_movescu_through_the_proxy_equal_orthanc_direct(
    proxy: DicomProxy, orthanc: Orthanc, recorder: MemoryRecorder, archive: Archive,
    move_port: int, tmp_path: Path,
) -> None:  # fmt: skip
    study = archive.studies("PID003")[0]
    got = {}
    for name, port, called in (("direct", orthanc.dicom, ORTHANC_AET),
                               ("proxy", proxy.address[1], PROXY_AET)):  # fmt: skip
        for tool in ("getscu", "movescu"):
            out = tmp_path / f"{tool}-{name}"
            out.mkdir()
            extra = ["-aem", "MOVESCU", "+P", str(move_port)] if tool == "movescu" else []
            run = dcmtk(tool, "-aet", tool.upper(), "-aec", called, *extra, "-S",
                        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                        "-od", str(out), "127.0.0.1", str(port))  # fmt: skip
            assert run.returncode == 0, run.stderr
            got[tool, name] = sorted(str(dcmread(p).SOPInstanceUID) for p in out.iterdir())
    for tool in ("getscu", "movescu"):
        assert len(got[tool, "direct"]) == 3
        assert got[tool, "proxy"] == got[tool, "direct"]
    for kind in (OperationKind.GET, OperationKind.MOVE):
        (op,) = kinds(recorder, kind)
        assert op.status == 0
        assert op.sub_operations is not None
        assert op.sub_operations.completed == 3
        assert op.requested_studies == (study,)
        assert op.result_patients == (PatientRef(patient_id="PID003", issuer="HOSP"),)


def test_move_to_an_unknown_destination(proxy: DicomProxy, recorder: MemoryRecorder) -> None:
    run = dcmtk("movescu", "-aet", "MOVESCU", "-aec", PROXY_AET, "-aem", "ELSEWHERE", "-S",
                "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PID001",
                "127.0.0.1", str(proxy.address[1]))  # fmt: skip
    assert "MoveDestinationUnknown" in run.stderr
    op = kinds(recorder, OperationKind.MOVE)[-1]
    assert op.status == 0xA801
    assert op.move_destination == "ELSEWHERE"
    assert op.requested_patients == (PatientRef(patient_id="PID001"),)
