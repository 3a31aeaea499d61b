"""PhiAccessEvent v3 ``transport``: the model and its rules, v1/v2/v3 decoding and schema
resolution, the FHIR mapping both ways, and a v3 message pinned byte for byte
(docs/design/transport.md). What each producer fills in: test_transport_producers.py."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

import schemas
from integrations.fhir import event_from_fhir
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
