"""The leaf format: exact layout, round trip, limits and malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import MalformedInputError
from ledger.log.leaf import MAX_LEAF_BYTES, KafkaRecord, decode_leaf, encode_leaf, leaf_overhead

records = st.builds(
    KafkaRecord,
    topic=st.text(min_size=1, max_size=40),
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
    timestamp_ms=st.integers(-(2**63), 2**63 - 1),
    timestamp_type=st.sampled_from([0, 1]),
    key=st.none() | st.binary(max_size=300),
    value=st.binary(max_size=2000),
)


@given(records)
def test_round_trip(record: KafkaRecord) -> None:
    leaf = encode_leaf(record)
    assert decode_leaf(leaf) == record
    assert len(leaf) == leaf_overhead(record.topic, record.key) + len(record.value)


def test_exact_layout_known_answer() -> None:
    record = KafkaRecord(
        topic="t",
        partition=2,
        offset=5,
        timestamp_ms=1000,
        timestamp_type=0,
        key=b"k",
        value=b"\xc3\x01v",
    )
    expected = bytes.fromhex(
        "01"
        "0001"
        "74"  # version, topic length, "t"
        "00000002"
        "0000000000000005"
        "00000000000003e8"
        "00"
        "01"  # partition..key flag
        "0001"
        "6b"  # key length, "k"
        "c30176"  # value verbatim
    )
    assert encode_leaf(record) == expected


def test_null_key_and_empty_key_are_distinct() -> None:
    base = dict(topic="t", partition=0, offset=0, timestamp_ms=0, timestamp_type=0, value=b"v")
    assert encode_leaf(KafkaRecord(key=None, **base)) != encode_leaf(KafkaRecord(key=b"", **base))  # type: ignore[arg-type]


def test_oversize_leaf_is_refused() -> None:
    record = KafkaRecord(
        topic="t",
        partition=0,
        offset=0,
        timestamp_ms=0,
        timestamp_type=0,
        key=None,
        value=b"x" * MAX_LEAF_BYTES,
    )
    with pytest.raises(MalformedInputError, match="at most 65535"):
        encode_leaf(record)


@pytest.mark.parametrize(
    "leaf",
    [
        b"",
        b"\x02\x00\x01t",
        b"\x01\x00\x05ab",
        b"\x01\x00\x01t\x00\x00",
        bytes.fromhex("0100017400000002000000000000000500000000000003e80007"),
    ],
)
def test_malformed_leaves_are_rejected(leaf: bytes) -> None:
    with pytest.raises(MalformedInputError):
        decode_leaf(leaf)
