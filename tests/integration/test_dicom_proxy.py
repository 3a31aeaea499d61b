"""The DICOM audit proxy with real clients and a real upstream: DCMTK's echoscu, findscu,
getscu, movescu and storescu, and pynetdicom, through the proxy to a pynetdicom PACS
(tests/dicom_upstream.py). Answers through the proxy equal answers direct; every
operation is recorded with its AE titles, address, patients, studies and status; bad
peers are refused and the proxy keeps serving. Needs no shared stack."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)

from integrations.dicomproxy import (
    DicomOperation,
    DicomProxy,
    MemoryRecorder,
    OperationKind,
    PatientRef,
    parse_config,
)
from tests.atna_pki import make_pki
from tests.dicom_upstream import UPSTREAM_AET, UpstreamPacs, write_instances
from tests.ports import free_port

pytestmark = pytest.mark.skipif(shutil.which("findscu") is None, reason="needs DCMTK")

PROXY_AET = "LEDGERPROXY"
CLIENTS = ["ECHOSCU", "FINDSCU", "GETSCU", "MOVESCU", "STORESCU", "PYCLIENT"]
HOSP = "HOSP"


def dcmtk(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def move_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def pacs(move_port: int) -> Iterator[UpstreamPacs]:
    pacs = UpstreamPacs(destinations={"MOVESCU": ("127.0.0.1", move_port)})
    pacs.port = pacs.start()  # type: ignore[attr-defined]
    yield pacs
    pacs.stop()


def config(pacs_port: int, move_port: int, **sections: dict[str, Any]) -> Any:
    doc: dict[str, Any] = {
        "listen": {"port": 0, "ae_title": PROXY_AET, "allowed_calling_aets": CLIENTS},
        "upstream": {"host": "127.0.0.1", "port": pacs_port, "ae_title": UPSTREAM_AET},
        "destinations": {"MOVESCU": {"host": "127.0.0.1", "port": move_port}},
        "limits": {"acse_timeout": 5, "dimse_timeout": 10, "network_timeout": 10},
    }
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    return parse_config(doc)


@pytest.fixture
def recorder() -> MemoryRecorder:
    return MemoryRecorder()


@pytest.fixture
def proxy(pacs: Any, move_port: int, recorder: MemoryRecorder) -> Iterator[DicomProxy]:
    with DicomProxy(config(pacs.port, move_port), recorder) as proxy:
        yield proxy


def port_of(proxy: DicomProxy) -> str:
    return str(proxy.address[1])


def only(recorder: MemoryRecorder, kind: OperationKind, count: int = 1) -> list[DicomOperation]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ops = [op for op in recorder.operations if op.kind == kind]
        if len(ops) >= count:
            return ops
        time.sleep(0.05)
    raise AssertionError(f"{kind} recorded {len(ops)} times, wanted {count}: {recorder.operations}")


def eventually(condition: Any, timeout: float = 10) -> None:
    """Wait for ``condition()`` (the proxy counts on its connection threads)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def echo_ok(port: str) -> bool:
    """echoscu succeeded (it exits 0 even when the peer aborted: read what it says)."""
    run = dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", PROXY_AET, "127.0.0.1", port)
    return run.returncode == 0 and "Echo Failed" not in run.stderr


def pyfind(port: int, called: str, model: str, query: Dataset) -> list[tuple[int, Any]]:
    ae = AE("PYCLIENT")
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        return [
            (int(status.Status), ident.to_json_dict() if ident is not None else None)
            for status, ident in assoc.send_c_find(query, model)
        ]
    finally:
        assoc.release()


def study_query(**keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = ""
    ds.StudyInstanceUID = ""
    ds.StudyDate = ""
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


# --- relaying and recording, DCMTK ------------------------------------------------------


def test_echo(proxy: DicomProxy, recorder: MemoryRecorder) -> None:
    assert echo_ok(port_of(proxy))
    (op,) = only(recorder, OperationKind.ECHO)
    assert (op.calling_ae, op.called_ae, op.peer_address) == ("ECHOSCU", PROXY_AET, "127.0.0.1")
    assert op.status == 0
    assert op.tls is False
    assert op.peer_certificate_subject is None
    assert op.peer_port > 0
    assert op.ended_at >= op.started_at


def test_findscu_study_root_answers_equal_direct_and_names_every_patient(
    proxy: DicomProxy, pacs: Any, recorder: MemoryRecorder, tmp_path: Path
) -> None:
    answers = {}
    for name, port, called in (("direct", str(pacs.port), UPSTREAM_AET),
                               ("proxy", port_of(proxy), PROXY_AET)):  # fmt: skip
        out = tmp_path / name
        out.mkdir()
        run = dcmtk(
            "findscu", "-aet", "FINDSCU", "-aec", called, "-S", "-X", "-od", str(out),
            "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=PID*", "-k", "StudyDate",
            "127.0.0.1", port,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        answers[name] = sorted(
            str(dcmread(p, force=True).to_json_dict()) for p in sorted(out.iterdir())
        )
    assert len(answers["direct"]) == 3
    assert answers["proxy"] == answers["direct"]
    (op,) = only(recorder, OperationKind.FIND)
    assert op.calling_ae == "FINDSCU"
    assert op.peer_address == "127.0.0.1"
    assert op.query_level == "STUDY"
    assert op.criteria == (("PatientID", "PID*"),)
    assert op.requested_patients == (PatientRef(patient_id="PID*"),)
    # The proxy asked for the issuer and study UID as well; the answers above did not carry
    # them (equal to direct), the record does.
    assert op.result_patients == tuple(
        PatientRef(patient_id=p, issuer=HOSP) for p in ("PID001", "PID002", "PID003")
    )
    assert set(op.result_studies) == {s for p in ("PID001", "PID002", "PID003")
                                      for s in pacs.archive.studies(p)}  # fmt: skip
    assert op.result_count == 3
    assert op.status == 0x0000


def test_findscu_worklist(proxy: DicomProxy, recorder: MemoryRecorder) -> None:
    run = dcmtk(
        "findscu", "-aet", "FINDSCU", "-aec", PROXY_AET, "-W", "-k", "PatientID",
        "-k", "PatientName", "-k", "ScheduledProcedureStepSequence[0].Modality=CT",
        "127.0.0.1", port_of(proxy),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("Find Response:") == 2
    (op,) = only(recorder, OperationKind.FIND)
    assert op.query_level is None
    assert op.sop_class_uid == str(ModalityWorklistInformationFind)
    assert op.criteria == (("ScheduledProcedureStepSequence.Modality", "CT"),)
    assert [p.patient_id for p in op.result_patients] == ["PID002", "PID003"]
    assert op.requested_patients == ()


def test_getscu_relays_the_instances_on_the_same_association(
    proxy: DicomProxy, pacs: Any, recorder: MemoryRecorder, tmp_path: Path
) -> None:
    study = pacs.archive.studies("PID003")[0]
    run = dcmtk(
        "getscu", "-aet", "GETSCU", "-aec", PROXY_AET, "-S", "-k", "QueryRetrieveLevel=STUDY",
        "-k", f"StudyInstanceUID={study}", "-od", str(tmp_path), "127.0.0.1", port_of(proxy),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    got = sorted(str(dcmread(p).SOPInstanceUID) for p in tmp_path.iterdir())
    want = sorted(str(d.SOPInstanceUID) for d in pacs.archive.instances if d.PatientID == "PID003")
    assert got == want
    assert len(got) == 3
    (op,) = only(recorder, OperationKind.GET)
    assert op.calling_ae == "GETSCU"
    assert op.requested_studies == (study,)
    assert op.requested_patients == ()  # a study-root retrieve names no patient...
    assert op.result_patients == (PatientRef(patient_id="PID003", issuer=HOSP),)  # ...its data does
    assert op.status == 0
    assert op.sub_operations is not None
    assert (op.sub_operations.completed, op.sub_operations.failed) == (3, 0)


def test_movescu_equal_to_direct_and_recorded_with_its_destination(
    proxy: DicomProxy, pacs: Any, move_port: int, recorder: MemoryRecorder, tmp_path: Path
) -> None:
    study = pacs.archive.studies("PID002")[0]
    received = {}
    for name, port, called in (("direct", str(pacs.port), UPSTREAM_AET),
                               ("proxy", port_of(proxy), PROXY_AET)):  # fmt: skip
        out = tmp_path / name
        out.mkdir()
        run = dcmtk(
            "movescu", "-aet", "MOVESCU", "-aec", called, "-aem", "MOVESCU", "+P", str(move_port),
            "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
            "-od", str(out), "127.0.0.1", port,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        received[name] = sorted(str(dcmread(p).SOPInstanceUID) for p in out.iterdir())
    assert len(received["direct"]) == 2
    assert received["proxy"] == received["direct"]
    (op,) = only(recorder, OperationKind.MOVE)
    assert op.move_destination == "MOVESCU"
    assert op.calling_ae == "MOVESCU"
    assert op.result_patients == (PatientRef(patient_id="PID002", issuer=HOSP),)
    assert op.status == 0
    assert op.sub_operations is not None
    assert op.sub_operations.completed == 2


def test_move_to_an_unknown_destination_is_refused_and_recorded_as_a_failure(
    proxy: DicomProxy, pacs: Any, recorder: MemoryRecorder
) -> None:
    calls_before = len(pacs.calls)
    study = pacs.archive.studies("PID001")[0]
    run = dcmtk(
        "movescu", "-aet", "MOVESCU", "-aec", PROXY_AET, "-aem", "NOWHERE", "-S",
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
        "127.0.0.1", port_of(proxy),
    )  # fmt: skip
    assert "MoveDestinationUnknown" in run.stderr
    (op,) = only(recorder, OperationKind.MOVE)
    assert op.status == 0xA801
    assert op.proxy_error == "move_destination_unknown"
    assert op.move_destination == "NOWHERE"
    assert op.requested_studies == (study,)
    assert op.result_patients == ()
    assert op.result_count == 0
    assert len(pacs.calls) == calls_before  # nothing was fetched from the PACS


def test_storescu_reaches_the_pacs_and_each_instance_is_recorded(
    proxy: DicomProxy, pacs: Any, recorder: MemoryRecorder, tmp_path: Path
) -> None:
    files = write_instances(pacs.archive, tmp_path)
    before = len(pacs.received)
    run = dcmtk("storescu", "-aet", "STORESCU", "-aec", PROXY_AET, "127.0.0.1",
                port_of(proxy), *map(str, files))  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert len(pacs.received) - before == len(files) == 6
    ops = only(recorder, OperationKind.STORE, 6)
    assert {op.calling_ae for op in ops} == {"STORESCU"}
    assert all(op.status == 0 for op in ops)
    assert sorted(op.result_patients[0].patient_id for op in ops) == [
        "PID001", "PID002", "PID002", "PID003", "PID003", "PID003",
    ]  # fmt: skip
    assert all(len(op.result_studies) == 1 for op in ops)
    # One upstream association for the whole storescu association.
    assert [c for c in pacs.calls[-6:]] == [("store", PROXY_AET)] * 6


# --- pynetdicom as the second client ----------------------------------------------------


@pytest.mark.parametrize(
    ("model", "level"),
    [(StudyRootQueryRetrieveInformationModelFind, "STUDY"),
     (PatientRootQueryRetrieveInformationModelFind, "PATIENT")],
)  # fmt: skip
def test_pynetdicom_find_answers_equal_direct(
    proxy: DicomProxy, pacs: Any, recorder: MemoryRecorder, model: str, level: str
) -> None:
    query = Dataset()
    query.QueryRetrieveLevel = level
    query.PatientName = "*O*"
    query.PatientID = ""
    direct = pyfind(pacs.port, UPSTREAM_AET, model, query)
    proxied = pyfind(proxy.address[1], PROXY_AET, model, query)
    assert proxied == direct
    assert len(direct) == 4
    (op,) = only(recorder, OperationKind.FIND)
    assert op.calling_ae == "PYCLIENT"
    assert op.query_level == level
    assert len(op.result_patients) == 3


def test_pynetdicom_get_equals_direct(proxy: DicomProxy, pacs: Any) -> None:
    study = pacs.archive.studies("PID003")[0]

    def get(port: int, called: str) -> tuple[list[str], int]:
        got: list[str] = []

        def keep(event: Any) -> int:
            got.append(str(event.dataset.SOPInstanceUID))
            return 0

        ae = AE("PYCLIENT")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate(
            "127.0.0.1", port, ae_title=called,
            ext_neg=[build_role(CTImageStorage, scp_role=True)],
            evt_handlers=[(evt.EVT_C_STORE, keep)],
        )  # fmt: skip
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study
        *_, (final, _) = assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)
        assoc.release()
        return sorted(got), int(final.Status)

    direct = get(pacs.port, UPSTREAM_AET)
    assert get(proxy.address[1], PROXY_AET) == direct
    assert len(direct[0]) == 3


# --- who may associate, and hostile peers ------------------------------------------------


def test_a_calling_ae_not_allowed_is_rejected(proxy: DicomProxy, recorder: MemoryRecorder) -> None:
    run = dcmtk("echoscu", "-aet", "INTRUDER", "-aec", PROXY_AET, "127.0.0.1", port_of(proxy))
    assert run.returncode != 0
    assert "Calling AE Title Not Recognized" in run.stderr
    run = dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", "SOMEONEELSE", "127.0.0.1", port_of(proxy))
    assert run.returncode != 0
    assert "Called AE Title Not Recognized" in run.stderr
    assert recorder.operations == ()
    assert echo_ok(port_of(proxy))


def _raw(port: int, payload: bytes, *, wait: float = 5.0, upto: int | None = None) -> bytes:
    """Send ``payload`` and read until the proxy closes the connection (or ``upto``
    bytes came, or nothing came for ``wait`` seconds)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(payload)
        got = b""
        while upto is None or len(got) < upto:
            try:
                chunk = s.recv(4096)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            got += chunk
    return got


#: An A-ABORT PDU (PS3.8 9.3.8): type 07, length 4, then reserved, source, reason.
A_ABORT_HEADER = b"\x07\x00\x00\x00\x00\x04"


def test_hostile_pdus_are_refused_and_the_proxy_keeps_serving(
    proxy: DicomProxy, recorder: MemoryRecorder
) -> None:
    port = proxy.address[1]
    # An unknown PDU type (here with its announced body, and a client speaking HTTP to
    # the DICOM port): an A-ABORT at once (PS3.8 Evt19), not silence until the read
    # deadline.
    assert _raw(port, b"\xee\x00\x00\x00\x00\x04abcd", upto=10)[:6] == A_ABORT_HEADER
    assert _raw(port, b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n", upto=10)[:6] == A_ABORT_HEADER
    # A PDU announcing 4 GiB: A-ABORT (service provider, invalid parameter) before any of
    # it is read.
    started = time.monotonic()
    assert _raw(port, b"\x01\x00\xff\xff\xff\xf0" + b"\x00" * 1024) == bytes(
        [0x07, 0, 0, 0, 0, 4, 0, 0, 2, 6]
    )
    assert time.monotonic() - started < 3
    # An A-ASSOCIATE-RQ that is garbage inside a valid header.
    assert _raw(port, b"\x01\x00\x00\x00\x00\x10" + b"\xff" * 16)[:1] in (b"", b"\x07", b"\x03")
    # Half a PDU, then the peer vanishes.
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"\x01\x00\x00\x00\x01\x00" + b"\x00" * 10)
    # An association that proposes only an unknown SOP class gets nothing accepted.
    ae = AE("PYCLIENT")
    ae.add_requested_context("1.2.3.4.5.6.7.8.9")
    assoc = ae.associate("127.0.0.1", port, ae_title=PROXY_AET)
    assert not assoc.is_established or assoc.accepted_contexts == []
    if assoc.is_established:
        assoc.abort()
    # An association aborted by its peer in the middle.
    ae = AE("PYCLIENT")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=PROXY_AET)
    assert assoc.is_established
    assoc.abort()
    assert echo_ok(str(port))
    assert [op.kind for op in recorder.operations] == [OperationKind.ECHO]


def test_associations_are_bounded(pacs: Any, move_port: int, recorder: MemoryRecorder) -> None:
    cfg = config(pacs.port, move_port, limits={"max_associations": 2})
    with DicomProxy(cfg, recorder) as proxy:
        ae = AE("PYCLIENT")
        ae.add_requested_context(Verification)
        held = [ae.associate("127.0.0.1", proxy.address[1], ae_title=PROXY_AET) for _ in range(2)]
        assert all(a.is_established for a in held)
        extra = ae.associate("127.0.0.1", proxy.address[1], ae_title=PROXY_AET)
        assert extra.is_rejected
        # Beyond twice the limit, connections are closed without a word.
        sockets = [socket.create_connection(("127.0.0.1", proxy.address[1])) for _ in range(3)]
        eventually(lambda: proxy.server.refused_connections >= 1)
        for s in sockets:
            s.close()
        for a in held:
            a.release()
        deadline = time.monotonic() + 10
        while proxy.server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        assert echo_ok(port_of(proxy))


def test_a_connection_closed_without_a_word_frees_its_slot_at_once(
    pacs: Any, move_port: int, recorder: MemoryRecorder
) -> None:
    """Refusal of a cheap lock-out: TCP health checks and port scans connect and close.
    Each held a connection slot until the ACSE timeout (pynetdicom waits that long for
    the A-ASSOCIATE-RQ even after the peer has gone), so filling ``connection_cap`` with
    them kept real clients out for two minutes here. The slot is free once the peer is."""
    cfg = config(pacs.port, move_port, limits={"max_associations": 2, "acse_timeout": 120})
    with DicomProxy(cfg, recorder) as proxy:
        # Twice max_associations: the whole connection cap, each slot taken, then let go.
        peers = [socket.create_connection(("127.0.0.1", proxy.address[1])) for _ in range(4)]
        eventually(lambda: proxy.server.open_connections == 4)
        for peer in peers:
            peer.close()
        eventually(lambda: proxy.server.open_connections == 0, timeout=30)
        assert echo_ok(port_of(proxy))
        assert proxy.server.refused_connections == 0


def test_stopping_with_a_silent_connection_closes_it_without_an_error(
    pacs: Any, move_port: int, recorder: MemoryRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection still waiting for its A-ASSOCIATE-RQ has no association to abort
    (PS3.8 defines no A-ABORT request in Sta2): stop closes its transport. Sending the
    abort anyway made pynetdicom's DUL thread log ``InvalidEventError`` (Evt15 in Sta2)
    with a traceback on every stop that found a health check or a scan connected."""
    cfg = config(pacs.port, move_port, limits={"acse_timeout": 120})
    proxy = DicomProxy(cfg, recorder)
    proxy.start()
    peer = socket.create_connection(("127.0.0.1", proxy.address[1]))
    try:
        eventually(lambda: proxy.server.open_connections == 1)
        with caplog.at_level("ERROR", logger="pynetdicom"):
            proxy.stop()
        peer.settimeout(5)
        assert peer.recv(1) == b""  # closed, nothing sent: there was no association
    finally:
        peer.close()
        proxy.stop()  # idempotent: only a failed wait above leaves it running
    errors = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert errors == [], [r.getMessage() for r in errors]


# --- fail-closed, fail-open, upstream down ----------------------------------------------


def test_fail_closed_refuses_what_cannot_be_recorded(
    proxy: DicomProxy, pacs: Any, recorder: MemoryRecorder, tmp_path: Path
) -> None:
    recorder.available = False
    answers = pyfind(proxy.address[1], PROXY_AET, StudyRootQueryRetrieveInformationModelFind,
                     study_query(PatientID="PID001"))  # fmt: skip
    assert answers == [(0xA700, None)]  # nothing disclosed
    files = write_instances(pacs.archive, tmp_path)[:1]
    run = dcmtk("storescu", "-v", "-aet", "STORESCU", "-aec", PROXY_AET, "127.0.0.1",
                port_of(proxy), str(files[0]))  # fmt: skip
    assert run.returncode != 0
    assert "Refused: OutOfResources" in run.stderr, run.stderr
    assert not echo_ok(port_of(proxy))  # C-ECHO: association aborted
    # C-GET: the final response is withheld (the association is aborted).
    ae = AE("PYCLIENT")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(
        "127.0.0.1", proxy.address[1], ae_title=PROXY_AET,
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, lambda event: 0)],
    )  # fmt: skip
    query = study_query(StudyInstanceUID=pacs.archive.studies("PID001")[0])
    results = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
    assert all(not status or status.Status == 0xFF00 for status, _ in results)
    assert not results[-1][0]
    deadline = time.monotonic() + 5
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert assoc.is_aborted or not assoc.is_established
    assert proxy.gate.refused == 4
    assert recorder.operations == ()
    recorder.available = True
    assert echo_ok(port_of(proxy))


def test_fail_open_answers_and_counts_the_lost_records(
    pacs: Any, move_port: int, recorder: MemoryRecorder
) -> None:
    cfg = config(pacs.port, move_port, recording={"fail_closed": False})
    with DicomProxy(cfg, recorder) as proxy:
        recorder.available = False
        query = study_query(PatientID="PID001")
        model = StudyRootQueryRetrieveInformationModelFind
        assert pyfind(proxy.address[1], PROXY_AET, model, query) == pyfind(
            pacs.port, UPSTREAM_AET, model, query
        )
        assert echo_ok(port_of(proxy))
        assert proxy.gate.lost == 2
        assert recorder.operations == ()


def test_an_unreachable_pacs_is_a_recorded_failure(
    move_port: int, recorder: MemoryRecorder
) -> None:
    cfg = config(free_port(), move_port)
    with DicomProxy(cfg, recorder) as proxy:
        answers = pyfind(proxy.address[1], PROXY_AET, StudyRootQueryRetrieveInformationModelFind,
                         study_query(PatientID="PID001"))  # fmt: skip
        assert answers == [(0xC311, None)]
        (op,) = only(recorder, OperationKind.FIND)
        assert op.status == 0xC311
        assert op.proxy_error == "upstream_unavailable"
        assert op.requested_patients == (PatientRef(patient_id="PID001"),)
        assert not echo_ok(port_of(proxy))
        (echo,) = only(recorder, OperationKind.ECHO)
        assert echo.status is None
        assert echo.proxy_error == "upstream_unavailable"


# --- DICOM TLS on both sides ------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_mutual_tls_listener_records_the_certificate_subject(
    pacs: Any, move_port: int, recorder: MemoryRecorder, pki: Any
) -> None:
    crt, key = pki.client("workstation-7")
    tls = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
           "ca_file": str(pki.client_ca)}  # fmt: skip
    cfg = config(pacs.port, move_port, listen={"tls": tls})
    with DicomProxy(cfg, recorder) as proxy:
        port = port_of(proxy)
        # A silent client holding a connection open does not stop the others.
        idle = socket.create_connection(("127.0.0.1", proxy.address[1]))
        run = dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", PROXY_AET, "+tls", str(key), str(crt),
                    "+cf", str(pki.server_cert), "127.0.0.1", port)  # fmt: skip
        assert run.returncode == 0, run.stderr
        (op,) = only(recorder, OperationKind.ECHO)
        assert op.tls is True
        assert op.peer_certificate_subject == "CN=workstation-7"
        run = dcmtk("findscu", "-aet", "FINDSCU", "-aec", PROXY_AET, "+tls", str(key), str(crt),
                    "+cf", str(pki.server_cert), "-S", "-k", "QueryRetrieveLevel=STUDY",
                    "-k", "PatientID=PID002", "127.0.0.1", port)  # fmt: skip
        assert run.returncode == 0, run.stderr
        (find,) = only(recorder, OperationKind.FIND)
        assert find.tls
        assert [p.patient_id for p in find.result_patients] == ["PID002"]
        # Without a client certificate, or in plain TCP: no association.
        run = dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", PROXY_AET, "+tla",
                    "+cf", str(pki.server_cert), "127.0.0.1", port)  # fmt: skip
        assert run.returncode != 0
        assert dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", PROXY_AET, "127.0.0.1",
                     port).returncode != 0  # fmt: skip
        idle.close()
        eventually(lambda: proxy.server.failed_handshakes >= 2)
        assert len(recorder.operations) == 2


def test_tls_to_the_upstream(move_port: int, recorder: MemoryRecorder, pki: Any) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    secure = UpstreamPacs()
    port = secure.start(ssl_context=ctx)
    try:
        cfg = config(port, move_port, upstream={
            "tls": {"ca_file": str(pki.server_cert)}, "tls_server_name": "localhost"})  # fmt: skip
        with DicomProxy(cfg, recorder) as proxy:
            assert echo_ok(port_of(proxy))
            answers = pyfind(proxy.address[1], PROXY_AET,
                             StudyRootQueryRetrieveInformationModelFind, study_query())  # fmt: skip
            assert len(answers) == 4
            # A C-STORE relayed as it arrives (cut-through), on TLS through the
            # association's own queue: it arrives whole.
            ds = secure.archive.instances[0].copy()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7"
            ds.PixelData = bytes(range(256)) * 1024  # 256 KiB: many fragments
            ds.Columns = 16384
            ae = AE("PYCLIENT")
            ae.add_requested_context(CTImageStorage, [ds.file_meta.TransferSyntaxUID])
            assoc = ae.associate("127.0.0.1", proxy.address[1], ae_title=PROXY_AET)
            try:
                assert assoc.send_c_store(ds).Status == 0x0000
            finally:
                assoc.release()
            assert [r.SOPInstanceUID for r in secure.received] == ["1.2.3.4.5.6.7"]
            assert secure.received[0].PixelData == ds.PixelData
        # An upstream certificate the configured CA did not sign: no association.
        other = make_pki(Path(pki.where) / "other")
        cfg = config(port, move_port, upstream={"tls": {"ca_file": str(other.server_cert)}})
        with DicomProxy(cfg, recorder) as proxy:
            assert not echo_ok(port_of(proxy))
    finally:
        secure.stop()


# --- limits on what is held, the PACS's own failures, a peer that aborts mid-retrieve ---


def _get_client(port: int, on_store: Any) -> Any:
    ae = AE("PYCLIENT")
    ae.dimse_timeout = 5
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    return ae.associate(
        "127.0.0.1", port, ae_title=PROXY_AET,
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )  # fmt: skip


def test_the_pacs_failures_are_relayed_with_their_counts(
    pacs: Any, move_port: int, recorder: MemoryRecorder
) -> None:
    # The proxy holds 2 instances at most: the PACS's third sub-operation fails (0xA700),
    # and the PACS answers 0xB000 with one failure, which the proxy relays.
    cfg = config(pacs.port, move_port, limits={"max_retrieve_instances": 2})
    with DicomProxy(cfg, recorder) as proxy:
        got: list[str] = []
        assoc = _get_client(proxy.address[1], lambda e: got.append(e.dataset.SOPInstanceUID) or 0)
        query = study_query(StudyInstanceUID=pacs.archive.studies("PID003")[0])
        *_, (final, _) = assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)
        assoc.release()
    assert final.Status == 0xB000
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (2, 1)
    assert len(got) == 2
    (op,) = only(recorder, OperationKind.GET)
    assert op.status == 0xB000
    assert op.sub_operations is not None
    assert (op.sub_operations.completed, op.sub_operations.failed) == (2, 1)
    assert op.result_count == 2


def test_a_peer_that_aborts_mid_retrieve_leaves_an_aborted_record(
    proxy: DicomProxy, pacs: Any, recorder: MemoryRecorder
) -> None:
    assoc = _get_client(proxy.address[1], lambda event: 0)
    query = study_query(StudyInstanceUID=pacs.archive.studies("PID003")[0])
    for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
        assert status.Status == 0xFF00  # the first sub-operation is done: abort
        assoc.abort()
        break
    (op,) = only(recorder, OperationKind.GET)
    assert op.status is None
    assert op.proxy_error == "aborted"
    assert [p.patient_id for p in op.result_patients] == ["PID003"]  # fetched for it
    assert echo_ok(port_of(proxy))


def test_too_many_find_responses(pacs: Any, move_port: int, recorder: MemoryRecorder) -> None:
    cfg = config(pacs.port, move_port, limits={"max_find_responses": 2})
    with DicomProxy(cfg, recorder) as proxy:
        answers = pyfind(proxy.address[1], PROXY_AET, StudyRootQueryRetrieveInformationModelFind,
                         study_query(PatientID="PID*"))  # fmt: skip
    assert [status for status, _ in answers] == [0xFF00, 0xFF00, 0xA700]
    (op,) = only(recorder, OperationKind.FIND)
    assert op.status == 0xA700
    assert op.proxy_error == "too_many_responses"
    assert op.result_count == 2


def test_serve_runs_until_told_to_stop(pacs: Any, move_port: int, recorder: MemoryRecorder) -> None:
    from integrations.dicomproxy import serve

    port = free_port()
    cfg = config(pacs.port, move_port, listen={"port": port})
    stop = threading.Event()
    runner = threading.Thread(target=serve, args=(cfg, recorder, stop))
    runner.start()
    try:
        eventually(lambda: echo_ok(str(port)))
    finally:
        stop.set()
        runner.join(timeout=15)
    assert not runner.is_alive()
    assert not echo_ok(str(port))


def test_findscu_cancel_is_honoured(proxy: DicomProxy, recorder: MemoryRecorder) -> None:
    run = dcmtk(
        "findscu", "-v", "-aet", "FINDSCU", "-aec", PROXY_AET, "-S", "--cancel", "1",
        "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=PID*", "127.0.0.1", port_of(proxy),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Sending Cancel Request" in run.stderr
    # Whether the cancel arrives before the last response is a race (the same one direct:
    # the PACS has usually sent everything by then); the operation ends cleanly either way.
    assert "Received Final Find Response (Success)" in run.stderr or (
        "Received Final Find Response (Cancel: MatchingTerminatedDueToCancelRequest)" in run.stderr
    )
    assert echo_ok(port_of(proxy))
    (op,) = only(recorder, OperationKind.FIND)
    assert op.result_count == 3  # held and recorded before the cancel arrived
