"""PhiAccessEvent v3 ``transport``: the model and its rules, v1/v2/v3 decoding and schema
resolution, the FHIR mapping both ways, and what each producer fills in
(docs/design/transport.md)."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

import schemas
from integrations.atna.dicom_audit import events_from_dicom, to_dicom_xml
from integrations.atna.dicom_audit.model import AuditMessage, Participant
from integrations.atna.dicom_audit.transport import foreign_transport
from integrations.dicomproxy import event_of
from integrations.fhir import event_from_fhir
from integrations.orthanc.audit import Auditor
from integrations.orthanc.config import parse_config
from integrations.orthanc.dimse import FindCallback
from integrations.orthanc.dimse_audit import DimseRecorder
from integrations.orthanc.transport import dicom_transport, http_transport
from integrations.simulator import Simulator
from ledger.audit import fhir
from ledger.audit.query import LedgerPosition
from ledger.audit.records import SchemaSet, StoredSchema
from producers import (
    Actor,
    Codec,
    DecodeError,
    EventAction,
    EventValidationError,
    Facility,
    Patient,
    PhiAccessEvent,
    SecurityEvent,
    Transport,
    TransportChannel,
    validate,
)
from producers.codec import load_shipped_schemas
from producers.events import to_record, validate_record
from tests.unit.test_dicomproxy_ledger import FACILITY, op
from tests.unit.test_orthanc_dimse import OUTCOME, QUERY, FakeAnswers, FakeEngine, FakeModule
from tests.unit.test_orthanc_plugin import INSTANCE, STUDY, FakeOrthanc, ListSink, minimal

V1 = "ee6e393ef1d478ae"
V2 = "1f7e8aa358e48ee9"
V3 = "e6ba5b1e5a454708"
WHEN = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
POSITION = LedgerPosition(log_id=1, origin="test.ledger/phi-access/0", leaf_index=3)
SCHEMAS = SchemaSet(
    StoredSchema(fingerprint=s.fingerprint, full_name=s.full_name, schema_json=s.schema_json)
    for s in load_shipped_schemas()
)
HTTPS = Transport.of(TransportChannel.HTTPS)
PLAIN = Transport.of(TransportChannel.HTTP)


def access(**kw: Any) -> PhiAccessEvent:
    base = PhiAccessEvent(
        facility=Facility(id="stmarys"),
        actor=Actor(user_id="dr.x", role="radiologist"),
        dicom_event_id="110103",
        action=EventAction.READ,
        patient=Patient(id="MRN1", issuer="hosp"),
        network_address="10.0.0.7",
        event_time=WHEN,
        producer_id="test-producer",
        producer_seq=1,
    )
    return dataclasses.replace(base, **kw)


def codec_without(*fingerprints: str) -> Codec:
    return Codec(s for s in load_shipped_schemas() if s.fingerprint.hex() not in fingerprints)


# ------------------------------------------------------------------ model and rules


def test_a_channel_says_by_itself_whether_it_is_encrypted() -> None:
    assert Transport.of(TransportChannel.HTTPS).encrypted is True
    assert Transport.of(TransportChannel.DICOM_TLS).encrypted is True
    assert Transport.of(TransportChannel.HTTP).encrypted is False
    assert Transport.of(TransportChannel.DICOM).encrypted is False
    assert Transport.of(TransportChannel.HL7_MLLP).encrypted is False
    assert Transport.of(TransportChannel.UNKNOWN).encrypted is None


@pytest.mark.parametrize(
    "transport",
    [
        None,
        HTTPS,
        PLAIN,
        Transport(channel=TransportChannel.HTTP, encrypted=True),  # behind a TLS terminator
        Transport(channel=TransportChannel.HTTP, encrypted=None),
        Transport(channel=TransportChannel.UNKNOWN, encrypted=False),
        Transport.of(TransportChannel.HL7_MLLP),
    ],
)
def test_valid_transports_are_accepted_and_round_trip(transport: Transport | None) -> None:
    event = access(transport=transport)
    validate(event)
    codec = Codec()
    data = codec.encode(event)
    assert data[2:10].hex() == V3
    assert codec.decode(data) == event


@pytest.mark.parametrize("channel", [TransportChannel.HTTPS, TransportChannel.DICOM_TLS])
def test_a_tls_channel_is_never_recorded_unencrypted(channel: TransportChannel) -> None:
    with pytest.raises(EventValidationError) as caught:
        validate(access(transport=Transport(channel=channel, encrypted=False)))
    assert caught.value.field == "transport.encrypted"


def test_the_model_refuses_what_is_not_a_transport() -> None:
    with pytest.raises(EventValidationError) as caught:
        validate(access(transport="HTTPS"))  # type: ignore[arg-type]
    assert caught.value.field == "transport"
    with pytest.raises(EventValidationError) as caught:
        validate(access(transport=Transport(channel="HTTPS", encrypted=True)))  # type: ignore[arg-type]
    assert caught.value.field == "transport.channel"


@pytest.mark.parametrize(
    ("transport", "field"),
    [
        ("HTTPS", "transport"),
        ({"channel": "FTP", "encrypted": None}, "transport.channel"),
        ({"channel": None}, "transport.channel"),
        ({"channel": "HTTP", "encrypted": "no"}, "transport.encrypted"),
        ({"channel": "HTTP", "encrypted": 0}, "transport.encrypted"),
        ({"channel": "DICOM_TLS", "encrypted": False}, "transport.encrypted"),
    ],
)
def test_the_record_rules_name_the_bad_field(transport: object, field: str) -> None:
    record = to_record(access())
    record["transport"] = transport
    with pytest.raises(EventValidationError) as caught:
        validate_record("philedger.audit.PhiAccessEvent", record, now=WHEN)
    assert caught.value.field == field


def test_the_consumer_quarantines_a_contradiction_a_producer_skipped_validation_for() -> None:
    """Written straight with fastavro (no producer rules): the consumer refuses it."""
    record = to_record(access())
    record["transport"] = {"channel": "HTTPS", "encrypted": False}
    v3 = next(s for s in load_shipped_schemas() if s.fingerprint.hex() == V3)
    buf = io.BytesIO()
    buf.write(b"\xc3\x01" + v3.fingerprint)
    fastavro.schemaless_writer(buf, dict(v3.parsed), record)
    with pytest.raises(DecodeError) as caught:
        Codec().decode(buf.getvalue())
    assert caught.value.reason == "invalid_event"
    assert "transport.encrypted" in str(caught.value)


# ------------------------------------------------------------------ old versions, resolution


@pytest.mark.parametrize(("dropped", "written"), [((V2, V3), V1), ((V3,), V2)])
def test_v1_and_v2_events_still_decode_with_no_transport(
    dropped: tuple[str, ...], written: str
) -> None:
    event = access()
    old = codec_without(*dropped).encode(event)
    assert old[2:10].hex() == written
    decoded = Codec().decode(old)
    assert decoded == event
    assert isinstance(decoded, PhiAccessEvent)
    assert decoded.transport is None
    name, record = SCHEMAS.decode(old)
    assert (name, "transport" in record) == ("philedger.audit.PhiAccessEvent", False)


def test_an_older_writer_cannot_carry_transport() -> None:
    """A v2 writer drops the field: the producer is upgraded after the consumer."""
    data = codec_without(V3).encode(access(transport=PLAIN))
    decoded = Codec().decode(data)
    assert isinstance(decoded, PhiAccessEvent)
    assert decoded.transport is None


def _resolve(data: bytes, writer_fp: str, reader_file: str) -> dict[str, Any]:
    writer = next(s for s in load_shipped_schemas() if s.fingerprint.hex() == writer_fp)
    reader = fastavro.parse_schema(schemas.load_schema_json(reader_file))
    record: dict[str, Any] = fastavro.schemaless_reader(
        io.BytesIO(data[10:]), dict(writer.parsed), reader
    )
    return record


def test_avro_resolution_both_ways_between_v2_and_v3() -> None:
    """Evolution rule 1: a v3 reader reads v2 data (transport defaults to null) and a v2
    reader reads v3 data (the field is skipped)."""
    v2_data = codec_without(V3).encode(access())
    assert _resolve(v2_data, V2, schemas.PHI_ACCESS_V3)["transport"] is None
    v3_data = Codec().encode(access(transport=HTTPS))
    as_v2 = _resolve(v3_data, V3, schemas.PHI_ACCESS_V2)
    assert "transport" not in as_v2
    assert as_v2["patient"]["id"] == "MRN1"


def test_a_channel_a_reader_does_not_know_reads_as_unknown() -> None:
    """The enum's default: a later version's new symbol maps to UNKNOWN for v3 readers."""
    later = schemas.load_schema_json(schemas.PHI_ACCESS_V3)
    fields: list[Any] = later["fields"]  # type: ignore[assignment]
    channel = fields[-1]["type"][1]["fields"][0]["type"]
    channel["symbols"] = [*channel["symbols"], "SFTP"]
    record = to_record(access())
    record["transport"] = {"channel": "SFTP", "encrypted": True}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(later), record)
    reader = fastavro.parse_schema(schemas.load_schema_json(schemas.PHI_ACCESS_V3))
    read = fastavro.schemaless_reader(
        io.BytesIO(buf.getvalue()), fastavro.parse_schema(later), reader
    )
    assert read["transport"] == {"channel": "UNKNOWN", "encrypted": True}  # type: ignore[index]


def test_the_v3_schema_is_v2_plus_one_trailing_optional_field() -> None:
    v2 = schemas.load_schema_json(schemas.PHI_ACCESS_V2)
    v3 = schemas.load_schema_json(schemas.PHI_ACCESS_V3)
    v2_fields: list[Any] = v2["fields"]  # type: ignore[assignment]
    v3_fields: list[Any] = v3["fields"]  # type: ignore[assignment]
    assert v3_fields[:-1] == v2_fields
    assert (v3_fields[-1]["name"], v3_fields[-1]["default"]) == ("transport", None)


# ------------------------------------------------------------------ FHIR


def resource(event: PhiAccessEvent) -> dict[str, Any]:
    name, record = SCHEMAS.decode(Codec().encode(event))
    return fhir.audit_event(name, record, event_id=event.event_id, position=POSITION)


def test_fhir_puts_transport_on_the_users_agent_network() -> None:
    out = resource(access(transport=PLAIN))
    network = out["agent"][0]["network"]
    assert network["address"] == "10.0.0.7"
    assert network["extension"] == [
        {
            "url": f"{fhir.DEFAULT_BASE_URL}/StructureDefinition/transport",
            "extension": [
                {"url": "channel", "valueCode": "HTTP"},
                {"url": "encrypted", "valueBoolean": False},
            ],
        }
    ]
    assert "network" not in out["agent"][1]  # the producer's agent


def test_fhir_leaves_out_what_is_unknown_and_what_v2_lacks() -> None:
    unknown = resource(
        access(transport=Transport.of(TransportChannel.UNKNOWN), network_address=None)
    )
    network = unknown["agent"][0]["network"]
    assert "address" not in network
    assert network["extension"][0]["extension"] == [{"url": "channel", "valueCode": "UNKNOWN"}]
    event = access(transport=HTTPS)
    name, record = SCHEMAS.decode(codec_without(V3).encode(event))
    out = fhir.audit_event(name, record, event_id=event.event_id, position=POSITION)
    assert out["agent"][0]["network"] == {"address": "10.0.0.7", "type": "2"}


@pytest.mark.parametrize("transport", [HTTPS, PLAIN, Transport.of(TransportChannel.UNKNOWN)])
def test_the_inbound_feed_reads_the_ledgers_own_extension_back(transport: Transport) -> None:
    event = access(transport=transport)
    assert event_from_fhir(resource(event), keep_producer=True, now=WHEN) == event


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (
            lambda ext: ext["extension"].__setitem__(0, {"url": "channel", "valueCode": "FTP"}),
            "valueCode",
        ),
        (lambda ext: ext["extension"].pop(0), "extension"),
        (
            lambda ext: ext["extension"].__setitem__(1, {"url": "encrypted", "valueBoolean": "no"}),
            "valueBoolean",
        ),
        (
            lambda ext: ext["extension"].__setitem__(0, {"url": "channel", "valueCode": "HTTPS"}),
            "HTTPS channel",
        ),
    ],
)
def test_the_inbound_feed_refuses_a_bad_transport_extension(mutate: Any, where: str) -> None:
    out = resource(access(transport=PLAIN))
    mutate(out["agent"][0]["network"]["extension"][0])
    with pytest.raises(EventValidationError) as caught:
        event_from_fhir(out, keep_producer=True, now=WHEN)
    assert where in caught.value.field or where in str(caught.value)


def test_a_foreign_audit_event_has_no_transport() -> None:
    out = resource(access(transport=HTTPS))
    del out["agent"][0]["network"]["extension"]
    back = event_from_fhir(out, keep_producer=True, now=WHEN)
    assert isinstance(back, PhiAccessEvent)
    assert back.transport is None


def test_a_security_event_with_a_transport_extension_is_refused() -> None:
    login = SecurityEvent(
        facility=Facility(id="stmarys"),
        actor=Actor(user_id="dr.x", role="radiologist"),
        dicom_event_id="110114",
        event_type_code="110122",
        network_address="10.0.0.7",
        event_time=WHEN,
        producer_id="p",
        producer_seq=2,
    )
    name, record = SCHEMAS.decode(Codec().encode(login))
    out = fhir.audit_event(name, record, event_id=login.event_id, position=POSITION)
    out["agent"][0]["network"]["extension"] = resource(access(transport=HTTPS))["agent"][0][
        "network"
    ]["extension"]
    with pytest.raises(EventValidationError, match="records no transport"):
        event_from_fhir(out, keep_producer=True, now=WHEN)


# ------------------------------------------------------------------ producers


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


#: A v3 message pinned byte for byte (tests/vectors holds only upstream vectors, so the
#: wire form of the new field is pinned here): the header (C3 01, fingerprint), then the
#: Avro body, ending ``... 00 00 00`` (no result set) ``02`` (transport present) ``04``
#: (symbol 2, HTTP) ``02 00`` (encrypted: present, false).
V3_MESSAGE = bytes.fromhex(
    "c301e6ba5b1e5a4547084830303030303030302d303030302d343030302d383030302d3030303030303030"
    "3030303380d8f78cf8fcb006027006026600027500027200000c31313031303300020002023100000000"
    "00000000000002040200"
)


def test_a_pinned_v3_message_encodes_and_decodes_exactly() -> None:
    import uuid

    event = PhiAccessEvent(
        event_id=uuid.UUID("00000000-0000-4000-8000-000000000003"),
        event_time=WHEN,
        producer_id="p",
        producer_seq=3,
        facility=Facility(id="f"),
        actor=Actor(user_id="u", role="r"),
        dicom_event_id="110103",
        action=EventAction.READ,
        patient=Patient(id="1"),
        transport=PLAIN,
    )
    assert Codec().encode(event) == V3_MESSAGE
    assert Codec().decode(V3_MESSAGE) == event
    assert V3_MESSAGE.endswith(bytes([0, 0, 0, 2, 4, 2, 0]))
