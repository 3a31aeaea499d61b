"""C-STORE cut-through through the DICOM proxy (integrations/dicomproxy/cutthrough.py),
against a pynetdicom PACS that takes PDUs of 16 KiB (so every fragment is cut again):
large instances arrive byte for byte with the SCU's command; the PACS's status is
relayed and recorded; an SCU that aborts mid-instance aborts the PACS association and
nothing is stored; a data set the proxy cannot decode reaches the PACS, whose answer is
relayed and recorded as ``bad_dataset``. Needs no shared stack."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from integrations.dicomproxy import DicomProxy, MemoryRecorder, OperationKind, parse_config
from tests.dicom_upstream import ct_instance

PROXY_AET, PACS_AET, CLIENT = "LEDGERPROXY", "SMALLPDU", "STORESCU"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Pacs:
    """A storage SCP with a 16 KiB maximum PDU that keeps what it received."""

    status: int = 0x0000
    stored: list[tuple[Any, bytes]] = field(default_factory=list)
    aborts: int = 0
    #: The type byte of every PDU the PACS received (0x05: A-RELEASE-RQ, 0x07: A-ABORT).
    pdu_types: list[int] = field(default_factory=list)
    server: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> int:
        ae = AE(PACS_AET)
        ae.maximum_pdu_size = 16384
        ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian])
        self.server = ae.start_server(
            ("127.0.0.1", 0),
            block=False,
            evt_handlers=[
                (evt.EVT_C_STORE, self._store),
                (evt.EVT_ABORTED, self._aborted),
                (evt.EVT_DATA_RECV, self._received),
            ],
        )
        return int(self.server.server_address[1])

    def _store(self, event: Any) -> int:
        with self.lock:
            self.stored.append((event.request, bytes(event.encoded_dataset(include_meta=False))))
        return self.status

    def _received(self, event: Any) -> None:
        with self.lock:
            self.pdu_types.append(event.data[0])

    def _aborted(self, event: Any) -> None:
        with self.lock:
            self.aborts += 1


@pytest.fixture
def pacs() -> Iterator[Pacs]:
    pacs = Pacs()
    pacs.port = pacs.start()  # type: ignore[attr-defined]
    yield pacs
    pacs.server.shutdown()


@pytest.fixture
def recorder() -> MemoryRecorder:
    return MemoryRecorder()


@pytest.fixture
def proxy(pacs: Pacs, recorder: MemoryRecorder) -> Iterator[DicomProxy]:
    cfg = parse_config({
        "listen": {"port": 0, "ae_title": PROXY_AET, "allowed_calling_aets": [CLIENT]},
        "upstream": {"host": "127.0.0.1", "port": pacs.port, "ae_title": PACS_AET},  # type: ignore[attr-defined]
        "limits": {"acse_timeout": 5, "dimse_timeout": 10, "network_timeout": 10},
    })  # fmt: skip
    with DicomProxy(cfg, recorder) as proxy:
        yield proxy


def associate(proxy: DicomProxy) -> Any:
    ae = AE(CLIENT)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", proxy.address[1], ae_title=PROXY_AET, max_pdu=65536)
    assert assoc.is_established
    return assoc


def big_instance(patient: str, kib: int = 300) -> Dataset:
    ds = ct_instance(patient, "CUT^THROUGH", generate_uid(), generate_uid(), 1)
    ds.Rows, ds.Columns = 8, kib * 64
    ds.PixelData = bytes(range(256)) * (kib * 4)
    return ds


def encoded(ds: Dataset) -> bytes:
    """The data set as an SCU sends it on an Explicit VR Little Endian context."""
    data = encode(ds, False, True)
    assert data is not None
    return data


def eventually(condition: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def store_pdus(assoc: Any, ds_bytes: bytes, sop_instance: str, msg_id: int) -> list[bytes]:
    """The P-DATA-TF PDUs of a C-STORE-RQ carrying ``ds_bytes`` as its data set."""
    req = C_STORE()
    req.MessageID, req.Priority = msg_id, 2
    req.AffectedSOPClassUID, req.AffectedSOPInstanceUID = CTImageStorage, sop_instance
    req.DataSet = BytesIO(ds_bytes)
    message = C_STORE_RQ()
    message.primitive_to_message(req)
    cx_id = assoc.accepted_contexts[0].context_id
    pdus = []
    for primitive in message.encode_msg(cx_id, 16384):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        pdus.append(pdu.encode())
    return pdus


def test_large_instances_arrive_byte_for_byte_with_the_scus_command(
    proxy: DicomProxy, pacs: Pacs, recorder: MemoryRecorder
) -> None:
    sent = [big_instance(f"CUT{i}") for i in range(3)]
    assoc = associate(proxy)
    try:
        for i, ds in enumerate(sent):
            status = assoc.send_c_store(
                ds, msg_id=40 + i, priority=1, originator_aet="MOVER", originator_id=7
            )
            assert status.Status == 0x0000
    finally:
        assoc.release()
    assert len(pacs.stored) == 3
    for i, (ds, (request, received)) in enumerate(zip(sent, pacs.stored, strict=True)):
        assert received == encoded(ds)
        assert request.MessageID == 40 + i
        assert request.Priority == 1
        assert request.MoveOriginatorApplicationEntityTitle == "MOVER"
        assert request.MoveOriginatorMessageID == 7
        assert request.AffectedSOPInstanceUID == ds.SOPInstanceUID
    ops = recorder.wait_for(3)
    assert [op.kind for op in ops] == [OperationKind.STORE] * 3
    assert [op.result_patients[0].patient_id for op in ops] == ["CUT0", "CUT1", "CUT2"]
    assert all(op.status == 0x0000 and op.proxy_error is None for op in ops)


def test_the_pacs_status_is_relayed_and_recorded(
    proxy: DicomProxy, pacs: Pacs, recorder: MemoryRecorder
) -> None:
    pacs.status = 0xA700
    assoc = associate(proxy)
    try:
        assert assoc.send_c_store(big_instance("FULL01")).Status == 0xA700
    finally:
        assoc.release()
    (op,) = recorder.wait_for(1)
    assert op.status == 0xA700
    assert op.proxy_error is None


def test_an_scu_aborting_mid_instance_aborts_the_pacs_association(
    proxy: DicomProxy, pacs: Pacs, recorder: MemoryRecorder
) -> None:
    ds = big_instance("HALF01")
    assoc = associate(proxy)
    pdus = store_pdus(assoc, encoded(ds), ds.SOPInstanceUID, 1)
    raw = assoc.dul.socket.socket
    for pdu in pdus[: len(pdus) // 2]:  # the command and half the data set
        raw.sendall(pdu)
    eventually(lambda: pacs.server.active_associations)
    time.sleep(0.3)  # let the proxy relay what it got
    assoc.abort()
    eventually(lambda: pacs.aborts == 1)
    assert pacs.stored == []
    # Aborted, never released: an A-RELEASE-RQ after half a data set asks the PACS to
    # close normally (seen when the SCU's abort and its connection close were handled on
    # two threads at once, one releasing what the other was aborting).
    assert 0x05 not in pacs.pdu_types
    assert pacs.pdu_types[-1] == 0x07
    # The proxy serves the next association, on a new PACS association.
    again = associate(proxy)
    try:
        assert again.send_c_store(big_instance("NEXT01")).Status == 0x0000
    finally:
        again.release()
    assert len(pacs.stored) == 1


def test_a_data_set_the_proxy_cannot_decode_reaches_the_pacs_which_answers_it(
    proxy: DicomProxy, pacs: Pacs, recorder: MemoryRecorder
) -> None:
    # Patient ID with a value representation that does not exist.
    garbage = b"\x10\x00\x20\x00ZZ\x04\x00abcd"
    assoc = associate(proxy)
    replies: list[Any] = []
    assoc.bind(evt.EVT_DIMSE_RECV, lambda event: replies.append(event.message))
    try:
        for pdu in store_pdus(assoc, garbage, generate_uid(), 9):
            assoc.dul.socket.socket.sendall(pdu)
        eventually(lambda: replies)
    finally:
        assoc.release()
    eventually(lambda: pacs.stored)
    assert pacs.stored[0][1] == garbage  # forwarded as it came
    (op,) = recorder.wait_for(1)
    assert op.proxy_error == "bad_dataset"
    assert op.status == pacs.status == replies[0].command_set.Status


def test_a_command_in_the_middle_of_a_data_set_aborts_the_pacs_association(
    proxy: DicomProxy, pacs: Pacs, recorder: MemoryRecorder
) -> None:
    first, second = big_instance("MIX01"), big_instance("MIX02")
    assoc = associate(proxy)
    try:
        one = store_pdus(assoc, encoded(first), first.SOPInstanceUID, 1)
        two = store_pdus(assoc, encoded(second), second.SOPInstanceUID, 2)
        raw = assoc.dul.socket.socket
        for pdu in one[: len(one) // 2] + two:  # half of one message, then another whole
            raw.sendall(pdu)
        eventually(lambda: pacs.aborts == 1)
    finally:
        assoc.abort()
    # Nothing half-sent was stored; the proxy serves the next association.
    assert all(request.MessageID != 1 for request, _ in pacs.stored)
    again = associate(proxy)
    try:
        assert again.send_c_store(big_instance("NEXT02")).Status == 0x0000
    finally:
        again.release()


_CRASHABLE_PROXY = """
import sys
from integrations.dicomproxy import DicomProxy, MemoryRecorder, parse_config
cfg = parse_config({
    "listen": {"port": 0, "ae_title": "LEDGERPROXY", "allowed_calling_aets": ["STORESCU"]},
    "upstream": {"host": "127.0.0.1", "port": int(sys.argv[1]), "ae_title": "SMALLPDU"},
})
with DicomProxy(cfg, MemoryRecorder()) as proxy:
    print(proxy.address[1], flush=True)
    sys.stdin.read()
"""


def test_a_proxy_killed_mid_instance_leaves_nothing_half_stored(pacs: Pacs) -> None:
    """The worst moment for cut-through: half an instance already at the PACS when the
    proxy dies (SIGKILL: no abort of its own). The PACS sees the connection drop and
    stores nothing."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHABLE_PROXY, str(pacs.port)],  # type: ignore[attr-defined]
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        ae = AE(CLIENT)
        ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
        assoc = ae.associate("127.0.0.1", port, ae_title=PROXY_AET, max_pdu=65536)
        assert assoc.is_established
        ds = big_instance("KILL01")
        pdus = store_pdus(assoc, encoded(ds), ds.SOPInstanceUID, 1)
        for pdu in pdus[: len(pdus) // 2]:
            assoc.dul.socket.socket.sendall(pdu)
        eventually(lambda: pacs.server.active_associations)
        time.sleep(0.3)  # let the proxy relay what it got
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        eventually(lambda: not pacs.server.active_associations)
        assert pacs.stored == []
        assoc.abort()
    finally:
        if proc.poll() is None:
            proc.kill()
