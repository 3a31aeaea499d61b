"""benchmarks/peerfmt.py, the pure part of the peers benchmark: the entries file the Go
drivers read, their results (refused unless complete) and the side-by-side table. No peer
binary, server or timing is involved."""

from __future__ import annotations

import json
import struct

import pytest

from benchmarks.peerfmt import (
    PeerError,
    Row,
    format_table,
    frame_entries,
    parse_result,
    unframe_entries,
)


def test_entries_are_big_endian_length_prefixed_and_round_trip() -> None:
    entries = [b"", b"a", bytes(range(256)) * 3]
    data = frame_entries(entries)
    assert data[:4] == b"\x00\x00\x00\x00"
    assert data[4:9] == b"\x00\x00\x00\x01a"
    assert struct.unpack_from(">I", data, 9) == (768,)
    assert len(data) == 3 * 4 + 1 + 768
    assert unframe_entries(data) == entries


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"\x00\x00\x00", "truncated length"), (b"\x00\x00\x00\x05abc", "runs past the end")],
)
def test_a_truncated_entries_file_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(PeerError, match=message):
        unframe_entries(data)


def test_the_result_is_the_last_line_and_keeps_the_details() -> None:
    line = json.dumps({"entries": 1000, "seconds": 0.5, "per_tx": 1000, "last_tx": 1})
    result = parse_result(f"warming up\n{line}\n\n", expected=1000)
    assert result.rate == 2000
    assert result.details == {"per_tx": 1000, "last_tx": 1}


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        ("", "no result"),
        ("not json", "unreadable"),
        ('{"seconds": 1}', "unreadable"),
        ('{"entries": 999, "seconds": 1}', "wrote 999 entries, not 1,000"),
        ('{"entries": 1000, "seconds": 0}', "reported 0.0 s"),
    ],
)
def test_an_incomplete_or_unreadable_result_is_refused(stdout: str, message: str) -> None:
    with pytest.raises(PeerError, match=message):
        parse_result(stdout, expected=1000)


def test_the_table_gives_the_median_the_range_and_both_ratios() -> None:
    rows = [
        Row(system="peer", measured="m", rates=(90_000.0, 100_000.0, 95_000.0)),
        Row(system="ledger", measured="e2e", rates=(20_000.0,)),
    ]
    lines = format_table(rows, end_to_end=20_000.0, copy=40_000.0).splitlines()
    assert lines[0].split(" | ")[2:] == ["entries/s", "/ ledger end to end", "/ raw COPY |"]
    assert lines[2] == "| peer | m | 95,000 (90,000-100,000) | 4.75 | 2.38 |"
    assert lines[3] == "| ledger | e2e | 20,000 | 1.00 | 0.50 |"


def test_the_ratios_are_dashes_without_the_ledger() -> None:
    table = format_table([Row(system="p", measured="m", rates=(1.0,))], end_to_end=None, copy=None)
    assert table.splitlines()[-1] == "| p | m | 1 | - | - |"
