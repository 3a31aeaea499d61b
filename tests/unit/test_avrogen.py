"""The generated Avro code against fastavro, its reference: same bytes, same records, and
never an answer of its own where fastavro would answer differently (producers/avrogen.py)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.avrogen import compile_schema
from producers.codec import HEADER_LEN, Codec
from producers.errors import DecodeError, EventValidationError
from producers.writerschemas import WriterSchema, load_shipped_schemas

SCHEMAS: tuple[WriterSchema, ...] = load_shipped_schemas()
IDS = [f"{s.full_name}@{s.fingerprint.hex()[:6]}" for s in SCHEMAS]
PRIMITIVES = {"null", "boolean", "int", "long", "string"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def parsed(schema: WriterSchema) -> dict[str, Any]:
    return dict(schema.parsed)


def compiled(schema: WriterSchema) -> Any:
    result = compile_schema(parsed(schema))
    assert result is not None, f"{schema.full_name} should compile"
    return result


def reference_bytes(schema: WriterSchema, record: Mapping[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed(schema), dict(record))
    return buf.getvalue()


def reference_record(schema: WriterSchema, body: bytes) -> tuple[Any, int]:
    buf = io.BytesIO(body)
    record = fastavro.schemaless_reader(buf, parsed(schema), None)
    return record, buf.tell()


def values(node: Any, named: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values a valid record of this schema may hold, edges included."""
    if isinstance(node, str) and node not in PRIMITIVES:
        node = named[node]
    if isinstance(node, list):
        return st.one_of(*(values(branch, named) for branch in node))
    if isinstance(node, str):
        return {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "string": st.text(max_size=80),
        }[node]
    logical, kind = node.get("logicalType"), node["type"]
    if logical == "uuid":
        return st.uuids()
    if logical == "timestamp-micros":
        return st.datetimes(
            min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
        )
    if logical == "date":
        return st.dates()
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: values(f["type"], named) for f in node["fields"]})
    if kind == "enum":
        return st.sampled_from(node["symbols"])
    if kind == "array":
        return st.lists(values(node["items"], named), max_size=3)
    if kind == "map":
        return st.dictionaries(st.text(max_size=10), values(node["values"], named), max_size=3)
    return values(kind, named)


def records(schema: WriterSchema) -> st.SearchStrategy[dict[str, Any]]:
    p = parsed(schema)
    return values(p, p["__named_schemas"])


@pytest.mark.parametrize("schema", SCHEMAS, ids=IDS)
def test_every_shipped_schema_compiles(schema: WriterSchema) -> None:
    assert compile_schema(parsed(schema)) is not None


@pytest.mark.parametrize("schema", SCHEMAS, ids=IDS)
def test_same_bytes_and_records_as_fastavro(schema: WriterSchema) -> None:
    encode, decode = compiled(schema)

    @FAST
    @given(records(schema))
    def check(record: dict[str, Any]) -> None:
        body = encode(record)
        assert body == reference_bytes(schema, record)
        mine, end = decode(body, 0)
        theirs, their_end = reference_record(schema, body)
        assert (mine, end) == (theirs, their_end)
        assert repr(mine) == repr(theirs)  # key order, types (UUID, aware datetime, bool)

    check()


@pytest.mark.parametrize("schema", SCHEMAS, ids=IDS)
def test_a_hostile_body_is_decoded_as_fastavro_would_or_not_at_all(schema: WriterSchema) -> None:
    """Flipped, cut and grown bodies: where the generated decoder answers, fastavro
    answers the same, having read exactly as far; where it refuses, fastavro decides."""
    encode, decode = compiled(schema)

    @FAST
    @given(records(schema), st.data())
    def check(record: dict[str, Any], data: st.DataObject) -> None:
        body = bytearray(encode(record))
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, max(0, len(body) - 1)))
            how = data.draw(st.sampled_from(["flip", "cut", "grow", "byte"]))
            if how == "flip" and body:
                body[at] ^= 1 << data.draw(st.integers(0, 7))
            elif how == "cut":
                del body[at:]
            elif how == "grow":
                body[at:at] = data.draw(st.binary(min_size=1, max_size=12))
            elif body:
                body[at] = data.draw(st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x7F, 0x80, 0xFF]))
        hostile = bytes(body)
        try:
            mine = decode(hostile, 0)
        except Exception:
            return  # refused: the codec asks fastavro
        theirs = reference_record(schema, hostile)
        assert mine == theirs
        assert repr(mine[0]) == repr(theirs[0])

    check()


def filled(node: Any, named: Mapping[str, Any], depth: int = 0) -> Any:
    """One value with every optional part present: two array items, two map entries."""
    if isinstance(node, str) and node not in PRIMITIVES:
        node = named[node]
    if isinstance(node, list):
        return filled(next(b for b in node if b != "null"), named, depth)
    if isinstance(node, str):
        samples = {"null": None, "boolean": True, "int": -300, "long": 2**40, "string": "aé"}
        return samples[node]
    logical, kind = node.get("logicalType"), node["type"]
    if logical == "uuid":
        return uuid.UUID(int=depth + 99)
    if logical == "timestamp-micros":
        return datetime(2026, 1, 2, 3, 4, 5, 600_007, tzinfo=UTC)
    if logical == "date":
        return date(2026, 1, 2)
    if kind == "record":
        return {f["name"]: filled(f["type"], named, depth + 1) for f in node["fields"]}
    if kind == "enum":
        return node["symbols"][-1]
    if kind == "array":
        return [filled(node["items"], named, depth + 1) for _ in range(2)]
    if kind == "map":
        return {f"k{i}": filled(node["values"], named, depth + 1) for i in range(2)}
    return filled(kind, named, depth)


#: Bytes that mean something to a decoder: null/false, true, branch 1, -1 (a negative
#: count), 127, a continuation byte, the largest.
SPECIAL = (0x00, 0x01, 0x02, 0x03, 0x7F, 0x80, 0xFF)


@pytest.mark.parametrize("schema", SCHEMAS, ids=IDS)
def test_every_single_byte_change_and_cut_is_decoded_as_fastavro_would_or_refused(
    schema: WriterSchema,
) -> None:
    """Exhaustive over one fully filled body: each byte set to each special value, each
    cut, each insertion of a special byte."""
    p = parsed(schema)
    encode, decode = compiled(schema)
    body = encode(filled(p, p["__named_schemas"]))
    variants = [body[:at] for at in range(len(body))]
    for at in range(len(body)):
        for value in SPECIAL:
            variants.append(body[:at] + bytes([value]) + body[at + 1 :])
            variants.append(body[:at] + bytes([value]) + body[at:])
    answered = 0
    for hostile in variants:
        try:
            mine = decode(hostile, 0)
        except Exception:
            continue
        answered += 1
        assert mine == reference_record(schema, hostile), hostile.hex()
        assert repr(mine[0]) == repr(reference_record(schema, hostile)[0])
    assert answered > len(body)  # many changes still decode: the comparison ran


def phi_schema() -> WriterSchema:
    return next(s for s in reversed(SCHEMAS) if s.full_name.endswith("PhiAccessEvent"))


def a_record() -> dict[str, Any]:
    return {
        "event_id": uuid.UUID(int=7),
        "event_time": datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
        "producer_id": "pacs-1",
        "producer_seq": 300,
        "facility": {"id": "f", "name": None},
        "actor": {
            "user_id": "u",
            "name": "Ann",
            "role": "radiologist",
            "organization": None,
            "npi": None,
        },
        "dicom_event_id": "110103",
        "event_type_code": None,
        "action": "R",
        "outcome": "SUCCESS",
        "patient": {"id": "MRN1", "issuer": None, "state": "CO"},
        "study": None,
        "network_address": None,
        "purpose_of_use": None,
        "recipient": None,
        "details": {"k": "v"},
        "disclosed": [],
        "disclosed_truncated": False,
        "disclosed_total": 0,
        "transport": None,
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_time", datetime(2026, 3, 1, 12, 30)),  # naive: fastavro reads local time
        ("event_time", datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=-5)))),
        ("event_time", 1_700_000_000_000_000),  # micros given as an int
        ("event_id", "00000000-0000-0000-0000-000000000007"),  # a string, not a UUID
        ("producer_seq", True),  # a bool where a long goes
        ("disclosed_total", 2**31),  # beyond an Avro int
        ("producer_seq", 2**63),  # beyond a long
        ("producer_seq", 3.0),
        ("details", {"k": 1}),
        ("action", "X"),  # not a symbol
        ("disclosed", ()),  # a tuple where a list goes
        ("disclosed_truncated", 1),
        ("patient", {"id": "MRN1"}),  # fields missing: fastavro fills defaults
    ],
)
def test_an_unusual_value_is_encoded_as_fastavro_would_or_refused(field: str, value: Any) -> None:
    schema = phi_schema()
    encode, _ = compiled(schema)
    record = {**a_record(), field: value}
    try:
        theirs: bytes | None = reference_bytes(schema, record)
    except Exception:
        theirs = None
    try:
        mine = encode(record)
    except Exception:
        mine = None
    if mine is not None:
        assert mine == theirs
    codec = Codec()
    if theirs is None:
        with pytest.raises(EventValidationError):
            codec._write(schema, record)
    else:
        assert codec._write(schema, record)[HEADER_LEN:] == theirs


def test_times_and_dates_at_their_edges_match_fastavro() -> None:
    schema = phi_schema()
    encode, decode = compiled(schema)
    for moment in (
        EPOCH,
        EPOCH - timedelta(microseconds=1),
        datetime(1, 1, 1, 0, 0, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ):
        record = {**a_record(), "event_time": moment}
        body = encode(record)
        assert body == reference_bytes(schema, record)
        assert decode(body, 0) == reference_record(schema, body)


def test_a_schema_it_does_not_know_is_left_to_fastavro() -> None:
    for field_type in (
        "float",
        ["null", "string", "long"],
        {"type": "fixed", "name": "F", "size": 2},
    ):
        schema = fastavro.parse_schema(
            {"type": "record", "name": "t.R", "fields": [{"name": "x", "type": field_type}]}
        )
        assert compile_schema(schema) is None


def test_the_codec_answers_the_same_with_and_without_generated_code() -> None:
    from integrations.simulator import Simulator

    fast, reference = Codec(), Codec(generated=False)
    for event in Simulator(seed=3).events(400):
        stamped = event.stamped(producer_id="p", producer_seq=1)
        message = fast.encode(stamped)
        assert message == reference.encode(stamped)
        assert fast.decode(message) == reference.decode(message) == stamped
        prepared = fast.prepare(event)
        assert prepared == reference.prepare(event)


@pytest.mark.parametrize(
    "tail",
    [b"\x00", b"\xff" * 12],
    ids=["trailing byte", "varint past 64 bits"],
)
def test_refused_bodies_keep_fastavros_reason(tail: bytes) -> None:
    from integrations.simulator import Simulator

    event = next(iter(Simulator(seed=1).events(1))).stamped(producer_id="p", producer_seq=1)
    fast, reference = Codec(), Codec(generated=False)
    message = fast.encode(event)
    bad = message + tail if tail == b"\x00" else message[:HEADER_LEN] + tail
    reasons = []
    for codec in (fast, reference):
        with pytest.raises(DecodeError) as caught:
            codec.decode(bad)
        reasons.append((caught.value.reason, str(caught.value)))
    assert reasons[0] == reasons[1]


def test_a_date_field_round_trips() -> None:
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "t.D",
            "fields": [{"name": "d", "type": {"type": "int", "logicalType": "date"}}],
        }
    )
    result = compile_schema(schema)
    assert result is not None
    encode, decode = result
    for day in (date(1970, 1, 1), date(1, 1, 1), date(9999, 12, 31), date(1969, 12, 31)):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, {"d": day})
        assert encode({"d": day}) == buf.getvalue()
        assert decode(buf.getvalue(), 0) == ({"d": day}, len(buf.getvalue()))


def test_a_pickled_codec_rebuilds_its_generated_code() -> None:
    """A parse worker gets the codec pickled (functions made by exec cannot be)."""
    import pickle
    from multiprocessing.reduction import ForkingPickler

    from integrations.atna.parsing import register_pickling

    register_pickling()
    for generated in (True, False):
        codec = Codec(generated=generated)
        copy = pickle.loads(ForkingPickler.dumps(codec))
        assert copy.schemas == codec.schemas
        assert bool(copy._encoders) is generated
        assert bool(copy._decoders) is generated


def test_names_from_a_schema_never_become_code() -> None:
    """fastavro accepts any record and field name; the generated code numbers its
    functions and quotes field names, so such a schema works as fastavro does."""
    hostile = "x'); import os; os.system('false'); ('"
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": f"t.{hostile}",
            "fields": [
                {"name": hostile, "type": "string"},
                {
                    "name": "__import__",
                    "type": [
                        "null",
                        {
                            "type": "record",
                            "name": "t.In",
                            "fields": [{"name": "a b", "type": "long"}],
                        },
                    ],
                },
            ],
        }
    )
    result = compile_schema(schema)
    assert result is not None
    encode, decode = result
    record = {hostile: "v", "__import__": {"a b": 300}}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    assert encode(record) == buf.getvalue()
    assert decode(buf.getvalue(), 0) == (record, len(buf.getvalue()))


@pytest.mark.parametrize(
    "value",
    [0, -1, 63, -64, 64, -65, 2**31, -(2**31) - 1, 2**62, 2**63 - 1, -(2**63)],
)
def test_longs_of_every_width_read_and_write_as_fastavro(value: int) -> None:
    schema = fastavro.parse_schema(
        {"type": "record", "name": "t.L", "fields": [{"name": "n", "type": "long"}]}
    )
    result = compile_schema(schema)
    assert result is not None
    encode, decode = result
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, {"n": value})
    assert encode({"n": value}) == buf.getvalue()
    assert decode(buf.getvalue(), 0) == ({"n": value}, len(buf.getvalue()))


@pytest.mark.parametrize(
    "body",
    [
        b"\x80" * 10 + b"\x00",  # eleven bytes
        b"\xff" * 9 + b"\x02",  # ten bytes, past 64 bits
        b"\xff" * 3,  # cut inside the varint
    ],
    ids=["eleven bytes", "past 64 bits", "cut"],
)
def test_a_varint_it_cannot_read_is_left_to_fastavro(body: bytes) -> None:
    schema = fastavro.parse_schema(
        {"type": "record", "name": "t.L", "fields": [{"name": "n", "type": "long"}]}
    )
    result = compile_schema(schema)
    assert result is not None
    with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal: the codec asks fastavro
        result[1](body, 0)
