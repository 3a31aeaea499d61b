"""What each producer fills in PhiAccessEvent v3 ``transport``: the Orthanc plugin (REST,
C-STORE, C-FIND), the DICOM proxy, the ATNA receiver (foreign and its own messages) and
the simulator (docs/design/transport.md). The field itself: tests/unit/test_transport.py.
"""

from __future__ import annotations

import json
import threading

import pytest

from integrations.atna.dicom_audit import events_from_dicom, to_dicom_xml
from integrations.atna.dicom_audit.model import AuditMessage, Participant
from integrations.atna.dicom_audit.transport import foreign_transport
from integrations.dicomproxy import event_of
from integrations.orthanc.audit import Auditor
from integrations.orthanc.config import parse_config
from integrations.orthanc.dimse import FindCallback
from integrations.orthanc.dimse_audit import DimseRecorder
from integrations.orthanc.transport import dicom_transport, http_transport
from integrations.simulator import Simulator
from producers import Facility, PhiAccessEvent, Transport, TransportChannel, validate
from tests.unit.test_dicomproxy_ledger import FACILITY, op
from tests.unit.test_orthanc_dimse import OUTCOME, QUERY, FakeAnswers, FakeEngine, FakeModule
from tests.unit.test_orthanc_plugin import INSTANCE, STUDY, FakeOrthanc, ListSink, minimal
from tests.unit.test_transport import HTTPS, PLAIN, WHEN, access


@pytest.mark.parametrize(
    ("ssl", "ip", "proto", "want"),
    [
        (True, "10.0.0.7", None, HTTPS),
        (False, "10.0.0.7", None, PLAIN),
        (False, "10.0.0.7", "https", PLAIN),  # not a trusted proxy: the header is ignored
        (False, "10.0.0.1", "https", Transport(channel=TransportChannel.HTTP, encrypted=True)),
        (False, "10.0.0.1", "HTTP", PLAIN),
        (False, "10.0.0.1", None, Transport(channel=TransportChannel.HTTP, encrypted=None)),
        ("yes", "10.0.0.7", None, Transport.of(TransportChannel.UNKNOWN)),
        (None, "10.0.0.7", None, PLAIN),  # absent: Orthanc's default, no TLS
    ],
)
def test_orthanc_http_transport(ssl: object, ip: str, proto: str | None, want: Transport) -> None:
    configuration = minimal(TrustedProxies=["10.0.0.1"])
    if ssl is not None:
        configuration["SslEnabled"] = ssl
    config = parse_config(configuration)
    headers = {} if proto is None else {"x-forwarded-proto": proto}
    assert http_transport(config, ip, headers) == want


@pytest.mark.parametrize(
    ("tls", "want"),
    [
        (True, Transport.of(TransportChannel.DICOM_TLS)),
        (False, Transport.of(TransportChannel.DICOM)),
        (None, Transport.of(TransportChannel.DICOM)),
        (1, Transport.of(TransportChannel.UNKNOWN)),
    ],
)
def test_orthanc_dicom_transport(tls: object, want: Transport) -> None:
    configuration = minimal()
    if tls is not None:
        configuration["DicomTlsEnabled"] = tls
    assert dicom_transport(parse_config(configuration)) == want


def _auditor(sink: ListSink, **orthanc: object) -> Auditor:
    config = parse_config(minimal(Users={"dr.alice": {"Role": "radiologist"}}) | orthanc)
    a = Auditor(config, sink, FakeOrthanc())
    a.start()
    return a


def test_orthanc_reads_and_imports_carry_their_transport() -> None:
    sink = ListSink()
    a = _auditor(sink, SslEnabled=True, DicomTlsEnabled=False)
    auth = {"authorization": "Basic ZHIuYWxpY2U6cHc="}  # dr.alice:pw
    tags = {"PatientID": "MRN777", "StudyInstanceUID": "1.2.3.4", "SOPClassUID": "1.2.840.1"}
    try:
        assert a.on_http_request("GET", f"/studies/{STUDY}", "10.0.0.7", auth, {})
        assert a.on_http_request("POST", "/instances", "10.0.0.9", auth, {})
        a.on_stored_instance(tags, INSTANCE, "REST_API", None)
        done = threading.Event()

        def from_dicom_thread() -> None:
            a.on_stored_instance(tags, INSTANCE, "DICOM_PROTOCOL", "CT01")
            a.on_stored_instance(tags, INSTANCE, "LUA", None)
            done.set()

        threading.Thread(target=from_dicom_thread).start()
        assert done.wait(5)
        assert a.drain(5)
    finally:
        a.stop()
    # A read and a REST import over HTTPS, a C-STORE over plain DICOM, a Lua import: none.
    assert all(isinstance(e, PhiAccessEvent) for e in sink.events)
    assert [getattr(e, "transport", "?") for e in sink.events] == [
        HTTPS,
        HTTPS,
        Transport.of(TransportChannel.DICOM),
        None,
    ]
    for event in sink.events:
        validate(event.stamped(producer_id="o1", producer_seq=1))


@pytest.mark.parametrize("tls", [True, False])
def test_orthanc_c_find_carries_dicom_tls(tls: bool) -> None:
    sink = ListSink()
    config = parse_config(minimal() | {"DicomTlsEnabled": tls})
    auditor = Auditor(config, sink, FakeOrthanc())
    recorder = DimseRecorder(
        submit=auditor.submit, delivery=auditor.delivery, resolver=auditor.resolver,
        facility=Facility(id="f1"), purpose_of_use="TREAT", default_issuer="dflt",
        transport=dicom_transport(config),
    )  # fmt: skip
    cb = FindCallback(FakeModule(), FakeEngine(OUTCOME), recorder, auditor.counters,  # type: ignore[arg-type]
                      fail_closed=False)  # fmt: skip
    auditor.start()
    try:
        cb(FakeAnswers(), QUERY, "WORKSTATION", "ORTHANC")
    finally:
        assert auditor.drain(5)
        auditor.stop()
    (event,) = sink.events
    assert isinstance(event, PhiAccessEvent)
    channel = TransportChannel.DICOM_TLS if tls else TransportChannel.DICOM
    assert event.transport == Transport.of(channel)


@pytest.mark.parametrize(
    ("tls", "channel"), [(True, TransportChannel.DICOM_TLS), (False, TransportChannel.DICOM)]
)
def test_the_dicom_proxy_records_the_workstations_association(
    tls: bool, channel: TransportChannel
) -> None:
    from integrations.dicomproxy import OperationKind

    event = event_of(op(OperationKind.FIND, tls=tls), FACILITY)
    assert event.transport == Transport.of(channel)
    assert event.details["tls"] == ("true" if tls else "false")  # unchanged
    validate(event.stamped(producer_id="dicom-proxy", producer_seq=1))


def _message(*participants: Participant) -> AuditMessage:
    from integrations.atna.dicom_audit.model import Code

    return AuditMessage(
        event_id=Code("110103", "DCM"),
        action="R",
        event_time=WHEN,
        outcome="0",
        event_types=(),
        outcome_description=None,
        purposes=(),
        participants=participants,
        source_id="src",
        enterprise_site_id=None,
        source_types=(),
        objects=(),
    )


@pytest.mark.parametrize(
    ("responders", "want"),
    [
        (["https://repo.example/xds"], TransportChannel.HTTPS),
        (["HTTP://archive.example:8080/rs/studies"], TransportChannel.HTTP),
        (["DCM4CHEE"], TransportChannel.UNKNOWN),
        ([], TransportChannel.UNKNOWN),
        (["https://a.example/", "http://b.example/"], TransportChannel.UNKNOWN),
        (["http://www.w3.org/2005/08/addressing/anonymous"], TransportChannel.UNKNOWN),
    ],
)
def test_atna_foreign_transport_is_the_responders_url_scheme_or_unknown(
    responders: list[str], want: TransportChannel
) -> None:
    requestor = Participant(user_id="https://client.example/", is_requestor=True)
    others = [Participant(user_id=u) for u in responders]
    assert foreign_transport(_message(requestor, *others)) == Transport.of(want)


def test_atna_corpus_messages_map_to_their_transport() -> None:
    from pathlib import Path

    corpus = Path(__file__).resolve().parents[1] / "corpus" / "dicom-audit"
    want = {
        "ihe-iti43-retrieve-document-set.xml": HTTPS,
        "dcm4chee-query-no-patient.xml": PLAIN,
        "query.xml": Transport.of(TransportChannel.UNKNOWN),
    }
    for name, transport in want.items():
        events = events_from_dicom((corpus / name).read_bytes(), default_facility="f")
        assert [e.transport for e in events if isinstance(e, PhiAccessEvent)] == [transport], name


@pytest.mark.parametrize(
    "transport",
    [None, HTTPS, PLAIN, Transport(channel=TransportChannel.HTTP, encrypted=None)],
)
def test_atna_writer_carries_transport_and_maps_it_back(transport: Transport | None) -> None:
    event = access(transport=transport)
    assert events_from_dicom(to_dicom_xml(event), keep_producer=True) == (event,)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'value="SFRUUA=="', b'value="RlRQ"'),  # base64 of HTTP, FTP
        (b'type="transport-channel"', b'type="transport-chan"'),
        (b'value="ZmFsc2U="', b'value="bm8="'),  # base64 of false, no
    ],
)
def test_atna_refuses_a_bad_written_transport(old: bytes, new: bytes) -> None:
    from integrations.errors import AtnaUnmappableError

    xml = to_dicom_xml(access(transport=PLAIN))
    assert old in xml
    with pytest.raises(AtnaUnmappableError):
        events_from_dicom(xml.replace(old, new), keep_producer=True)


def test_the_simulator_is_mostly_encrypted_with_a_few_plain_accesses() -> None:
    sim = Simulator(seed=3)
    events = [sim.access() for _ in range(2000)]
    plain = [e for e in events if e.transport is not None and e.transport.encrypted is False]
    assert all(e.transport is not None for e in events)
    assert 10 <= len(plain) <= 100
    imports = {e.transport.channel for e in events if e.dicom_event_id == "110107" and e.transport}
    assert imports == {TransportChannel.DICOM_TLS, TransportChannel.DICOM}
    assert json.dumps(sorted({e.transport.channel.value for e in events if e.transport}))
