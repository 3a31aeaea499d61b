"""Avro single-object codec: fingerprints, round trips, and every kind of bad input."""

from __future__ import annotations

import contextlib
import io
import struct
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import pytest

from integrations.atna.dicom_audit import events_from_dicom
from integrations.errors import AtnaParseError, AtnaUnmappableError
from integrations.simulator import Simulator
from producers.codec import (
    MAGIC,
    REASON_BAD_MAGIC,
    REASON_INVALID_EVENT,
    REASON_MALFORMED_AVRO,
    REASON_TOO_SHORT,
    REASON_TRAILING_BYTES,
    REASON_UNKNOWN_SCHEMA,
    Codec,
    _zigzag,
    schema_fingerprint,
    to_record,
)
from producers.errors import DecodeError, EventValidationError
from producers.events import (
    Actor,
    AuditEvent,
    CriticalResultRelay,
    EventOutcome,
    Facility,
    Patient,
    PhiAccessEvent,
    SecurityEvent,
    event_key,
)

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "dicom-audit"


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec()


def stamped(event: PhiAccessEvent) -> PhiAccessEvent:
    return event.stamped(producer_id="unit", producer_seq=7)


# Known answers from the Avro specification's schema-tests (Java SchemaNormalization):
# the 64-bit Rabin fingerprints of "null" and "int", as signed longs.
@pytest.mark.parametrize(
    ("schema", "expected"),
    [("null", 7195948357588979594), ("int", 8247732601305521295)],
)
def test_crc64_avro_fingerprint_matches_the_avro_spec(schema: str, expected: int) -> None:
    fp, canonical = schema_fingerprint({"type": schema})
    assert canonical == f'"{schema}"'
    # Single-object encoding writes the fingerprint little-endian.
    assert fp == struct.pack("<q", expected if expected < 2**63 else expected - 2**64)


def test_shipped_schemas_have_distinct_fingerprints(codec: Codec) -> None:
    fps = [s.fingerprint for s in codec.schemas]
    # AuditLogUsed v1, v2; PhiAccessEvent v1 to v3; RegistryChange v1
    assert len(fps) == len(set(fps)) == 8
    assert all(len(fp) == 8 for fp in fps)


def test_message_starts_with_marker_and_writer_fingerprint(codec: Codec) -> None:
    event = stamped(Simulator(seed=1).access())
    message = codec.encode(event)
    assert message[:2] == MAGIC == b"\xc3\x01"
    assert message[2:10] == codec.writer_schema(event).fingerprint
    # The body is plain Avro binary that any Avro library decodes with the writer schema.
    schema = fastavro.parse_schema(dict(codec.writer_schema(event).parsed))
    import io

    body = fastavro.schemaless_reader(io.BytesIO(message[10:]), schema, None)
    assert body["event_id"] == event.event_id
    assert body["patient"]["id"] == event.patient.id


def test_round_trip_of_every_simulated_event(codec: Codec) -> None:
    sim = Simulator(seed=42)
    events = [e.stamped(producer_id="unit", producer_seq=i) for i, e in enumerate(sim.events(400))]
    kinds = {type(e).__name__ for e in events}
    assert kinds == {"PhiAccessEvent", "CriticalResultRelay"}
    for event in events:
        decoded = codec.decode(codec.encode(event))
        assert to_record(decoded) == to_record(event)
        assert decoded.event_time.tzinfo is not None
        assert decoded.event_time.utcoffset() == timedelta(0)


@pytest.mark.parametrize("patient", [None, Patient(id="MRN9900112", issuer="stmarys", state="MA")])
def test_round_trip_of_a_security_event(codec: Codec, patient: Patient | None) -> None:
    event = SecurityEvent(
        producer_id="atna-receiver",
        producer_seq=12,
        event_time=datetime(2026, 3, 9, 6, 57, 1, 120000, tzinfo=UTC),
        facility=Facility(id="stmarys-boston", name="St. Mary's"),
        actor=Actor(user_id="rad004.kowalski", role="unspecified"),
        dicom_event_id="110114",
        event_type_code="110122",
        outcome=EventOutcome.MINOR_FAILURE,
        network_address="198.51.100.23",
        patient=patient,
        details={"outcome_description": "invalid password"},
    )
    message = codec.encode(event)
    assert codec.writer_schema(event).full_name == "philedger.audit.SecurityEvent"
    assert message[2:10] == bytes.fromhex("e6a9ad8d8576fb89")
    decoded = codec.decode(message)
    assert decoded == event
    assert to_record(decoded) == to_record(event)


def test_encoding_is_deterministic(codec: Codec) -> None:
    event = stamped(Simulator(seed=3).access())
    assert codec.encode(event) == codec.encode(event)


def test_encode_rejects_invalid_event_before_encoding(codec: Codec) -> None:
    event = stamped(Simulator(seed=1).access())
    bad = PhiAccessEvent(
        **{**{f: getattr(event, f) for f in event.__slots__}, "dicom_event_id": "999"}
    )  # type: ignore[arg-type]
    with pytest.raises(EventValidationError) as info:
        codec.encode(bad)
    assert info.value.field == "dicom_event_id"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", REASON_TOO_SHORT),
        (b"\xc3\x01\x00", REASON_TOO_SHORT),
        (b"\x00\x01" + b"\x00" * 20, REASON_BAD_MAGIC),
        (b'{"json": "not avro"}', REASON_BAD_MAGIC),
        (MAGIC + b"\x01\x02\x03\x04\x05\x06\x07\x08" + b"\x00" * 10, REASON_UNKNOWN_SCHEMA),
    ],
)
def test_header_errors_have_specific_reasons(codec: Codec, data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode(data)
    assert info.value.reason == reason


def test_truncated_body_is_malformed_avro(codec: Codec) -> None:
    message = codec.encode(stamped(Simulator(seed=5).access()))
    for cut in (11, len(message) // 2, len(message) - 1):
        with pytest.raises(DecodeError) as info:
            codec.decode(message[:cut])
        assert info.value.reason == REASON_MALFORMED_AVRO, cut


def test_trailing_bytes_are_rejected(codec: Codec) -> None:
    message = codec.encode(stamped(Simulator(seed=5).access()))
    with pytest.raises(DecodeError) as info:
        codec.decode(message + b"\x00")
    assert info.value.reason == REASON_TRAILING_BYTES


def test_invalid_utf8_in_a_string_is_malformed(codec: Codec) -> None:
    event = stamped(Simulator(seed=9).access())
    message = bytearray(codec.encode(event))
    producer = b"unit"
    at = message.index(producer)
    message[at] = 0xFF  # lone continuation byte: not UTF-8
    with pytest.raises(DecodeError) as info:
        codec.decode(bytes(message))
    assert info.value.reason == "invalid_utf8"


def test_valid_avro_with_invalid_content_is_an_invalid_event(codec: Codec) -> None:
    event = stamped(Simulator(seed=11).access())
    future = event.event_time.replace(year=2999)
    record = to_record(event) | {"event_time": future}
    schema = codec.writer_schema(event)
    import io

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, dict(schema.parsed), record)
    with pytest.raises(DecodeError) as info:
        codec.decode(MAGIC + schema.fingerprint + buf.getvalue())
    assert info.value.reason == "time_out_of_range"
    assert "event_time" in str(info.value)
    # A content problem that is not a time stays a generic invalid event, naming the field.
    bad_code = to_record(event) | {"dicom_event_id": "999999"}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, dict(schema.parsed), bad_code)
    with pytest.raises(DecodeError) as info:
        codec.decode(MAGIC + schema.fingerprint + buf.getvalue())
    assert info.value.reason == REASON_INVALID_EVENT
    assert "dicom_event_id" in str(info.value)


def test_absurd_length_prefix_fails_fast(codec: Codec) -> None:
    event = stamped(Simulator(seed=13).access())
    message = codec.encode(event)
    # Replace the body with a claimed string length of about 2^62 bytes for event_id.
    hostile = message[:10] + bytes([0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])
    with pytest.raises(DecodeError) as info:
        codec.decode(hostile)
    assert info.value.reason == REASON_MALFORMED_AVRO


def test_decode_uses_callers_clock_for_skew() -> None:
    codec = Codec()
    event = stamped(Simulator(seed=2).access())
    message = codec.encode(event)
    earlier = event.event_time - timedelta(hours=1)
    with pytest.raises(DecodeError) as info:
        codec.decode(message, now=earlier)
    assert info.value.reason == "time_out_of_range"
    assert codec.decode(message, now=datetime.now(UTC)).event_id == event.event_id
    assert isinstance(event.event_id, uuid.UUID)


# --------------------------------------------------------------------------- prepare


def _every_kind() -> list[AuditEvent]:
    """Unstamped events of all four kinds: simulated accesses and relays, and what the
    DICOM audit corpus maps to (security events, Audit Log Used, foreign variants)."""
    events: list[AuditEvent] = list(Simulator(seed=11).events(200))
    for path in sorted(CORPUS.glob("*.xml")):
        with contextlib.suppress(AtnaParseError, AtnaUnmappableError):
            events.extend(events_from_dicom(path.read_bytes()))
    assert {type(e).__name__ for e in events} == {
        "PhiAccessEvent",
        "CriticalResultRelay",
        "SecurityEvent",
        "AuditLogUsed",
    }
    return events


@pytest.mark.parametrize(
    ("producer_id", "seq"),
    [("p", 0), ("orthanc-main", 63), ("orthanc-main", 64), ("x" * 200, 8191), ("atna", 2**62)],
)
def test_a_prepared_event_stamped_is_exactly_what_encode_writes(
    codec: Codec, producer_id: str, seq: int
) -> None:
    for event in _every_kind():
        prepared = codec.prepare(event)
        want = codec.encode(event.stamped(producer_id=producer_id, producer_seq=seq))
        assert prepared.encode_with(producer_id, seq) == want
        assert prepared.encoded_size(producer_id, seq) == len(want)
        assert prepared.event_id == str(event.event_id)
        assert prepared.key == event_key(event).encode()
        assert prepared.relay is isinstance(event, CriticalResultRelay)
        assert prepared.producer_id is None
        assert prepared.producer_seq is None


def test_a_stamped_event_keeps_its_stamp_when_prepared(codec: Codec) -> None:
    event = stamped(Simulator(seed=5).access())
    prepared = codec.prepare(event)
    assert (prepared.producer_id, prepared.producer_seq) == ("unit", 7)
    assert prepared.encode_with("unit", 7) == codec.encode(event)
    again = prepared.stamped_as(producer_id="other", producer_seq=9)
    assert (again.producer_id, again.producer_seq) == ("other", 9)


def test_prepare_refuses_what_encode_refuses(codec: Codec) -> None:
    event = Simulator(seed=1).access()
    bad = replace(event, actor=replace(event.actor, user_id=" "))
    with pytest.raises(EventValidationError) as caught:
        codec.prepare(bad)
    assert caught.value.field == "actor.user_id"
    with pytest.raises(EventValidationError) as caught:
        codec.prepare(replace(event, dicom_event_id="999"))
    assert caught.value.field == "dicom_event_id"


@pytest.mark.parametrize("seq", [-1, 2**63])
def test_a_stamp_out_of_range_is_refused(codec: Codec, seq: int) -> None:
    prepared = codec.prepare(Simulator(seed=2).access())
    with pytest.raises(EventValidationError):
        prepared.encode_with("p", seq)


def test_stamp_splice_uses_avro_long_encoding() -> None:
    schema = fastavro.parse_schema("long")
    for n in [0, 1, 63, 64, 127, 128, 8191, 8192, 2**31, 2**62, 2**63 - 1]:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, n)
        assert _zigzag(n) == buf.getvalue(), n
