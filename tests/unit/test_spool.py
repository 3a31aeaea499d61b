"""The local spool on its own: round trips, order, cursor, bound, damage recovery."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers.errors import EmitterPushbackError, SpoolError, SpoolFullError
from producers.spool import (
    FRAME_LEN,
    HEADER_LEN,
    Spool,
    SpoolEntry,
    encode_record,
    record_size,
)


def entry(
    i: int, *, size: int = 40, key: bytes | None = b"", topic: str = "t-access"
) -> SpoolEntry:
    return SpoolEntry(
        topic=topic,
        key=f"issuer|patient-{i % 7}".encode() if key == b"" else key,
        value=f"event-{i:06d}|".encode() + bytes([i % 251]) * size,
        created_ms=1_700_000_000_000 + i,
    )


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def drain(spool: Spool, *, batch: int = 7) -> list[SpoolEntry]:
    out: list[SpoolEntry] = []
    while records := spool.read(max_records=batch):
        out.extend(r.entry for r in records)
        spool.ack(records)
    return out


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    entries = [
        entry(1),
        entry(2, key=None),
        entry(3, size=0, topic="t-relé-ünïcode"),
        SpoolEntry(topic="t", key=b"", value=b"", created_ms=0),
    ]
    with Spool(tmp_path / "spool") as spool:
        positions = spool.append(entries)
        assert positions == sorted(positions)
        assert spool.pending_records == 4
        assert spool.pending_bytes == sum(record_size(e) for e in entries)
        records = spool.read()
    assert [r.entry for r in records] == entries
    assert [r.position for r in records] == positions
    assert all(record_size(e) == len(encode_record(e)) for e in entries)
    assert all(r.size == record_size(r.entry) for r in records)


def test_order_is_preserved_across_batches_segments_and_reopen(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    entries = [entry(i, size=i % 97) for i in range(300)]
    with Spool(directory, segment_bytes=2_000) as spool:
        at = 0
        for size in (1, 5, 50, 3, 120, 1, 80, 40):
            spool.append(entries[at : at + size])
            at += size
        assert at == 300
        assert len(segments(directory)) > 5
        first = spool.read(max_records=25)
        spool.ack(first)
    with Spool(directory, segment_bytes=2_000) as spool:
        assert spool.pending_records == 275
        spool.append([entry(1000)])  # after a reopen, appends go behind what was there
        rest = drain(spool)
    assert [r.entry for r in first] + rest == [*entries, entry(1000)]


def test_cursor_survives_reopen(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    entries = [entry(i) for i in range(10)]
    with Spool(directory) as spool:
        spool.append(entries)
        spool.ack(spool.read(max_records=4))
        assert spool.pending_records == 6
        assert spool.oldest_created_ms == entries[4].created_ms
    assert (directory / "cursor").is_file()
    with Spool(directory) as spool:
        assert spool.pending_records == 6
        assert spool.oldest_created_ms == entries[4].created_ms
        assert [r.entry for r in spool.read()] == entries[4:]


def test_acknowledged_segments_are_deleted(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with Spool(directory, segment_bytes=1_000) as spool:
        spool.append([entry(i) for i in range(60)])
        before = segments(directory)
        assert len(before) >= 4
        spool.ack(spool.read(max_records=30))
        after = segments(directory)
        assert 0 < len(after) < len(before)
        assert after == before[-len(after) :]
        assert len(drain(spool)) == 30
        assert segments(directory) == []
        assert spool.pending_records == 0
        assert spool.pending_bytes == 0
        assert spool.oldest_created_ms is None
        spool.append([entry(99)])
        (fresh,) = segments(directory)
        assert fresh.name > before[-1].name  # segment ids are never reused
    with Spool(directory, segment_bytes=1_000) as spool:
        assert [r.entry for r in spool.read()] == [entry(99)]


def test_torn_tail_is_truncated_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "spool"
    entries = [entry(i) for i in range(5)]
    with Spool(directory) as spool:
        spool.append(entries)
    (last,) = segments(directory)
    good_size = last.stat().st_size
    with last.open("ab") as f:  # a crash in the middle of writing a sixth record
        f.write(encode_record(entry(5))[:-7])
    with caplog.at_level(logging.WARNING, logger="producers.spool"), Spool(directory) as spool:
        report = spool.open()  # idempotent: reports nothing new
        assert report.truncated_bytes == 0
        assert spool.pending_records == 5
        assert [r.entry for r in spool.read()] == entries
        spool.append([entry(6)])
    assert "torn last record" in caplog.text
    assert last.stat().st_size == good_size
    with Spool(directory) as spool:
        assert [r.entry for r in spool.read()] == [*entries, entry(6)]


def test_torn_frame_header_is_truncated(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with Spool(directory) as spool:
        spool.append([entry(0)])
    (last,) = segments(directory)
    with last.open("ab") as f:
        f.write(b"\x00\x00\x01")  # less than a frame header
    spool = Spool(directory)
    report = spool.open()
    try:
        assert report.truncated_bytes == 3
        assert report.quarantined == ()
        assert [r.entry for r in spool.read()] == [entry(0)]
    finally:
        spool.close()


def test_torn_segment_header_is_removed(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with Spool(directory) as spool:
        spool.append([entry(0)])
    stray = directory / f"{999:016d}.seg"
    stray.write_bytes(b"PHISP")  # a new segment whose header never fully reached the disk
    spool = Spool(directory)
    report = spool.open()
    try:
        assert report.truncated_bytes == 5
        assert not stray.exists()
        spool.append([entry(1)])
        assert [r.entry for r in spool.read()] == [entry(0), entry(1)]
    finally:
        spool.close()


def test_crc_corruption_in_the_middle_is_detected_and_quarantined(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "spool"
    entries = [entry(i) for i in range(5)]
    with Spool(directory) as spool:
        positions = spool.append(entries)
    (seg,) = segments(directory)
    data = bytearray(seg.read_bytes())
    data[positions[2].offset + FRAME_LEN + 20] ^= 0x40  # one flipped bit in record 3's body
    seg.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="producers.spool"):
        spool = Spool(directory)
        report = spool.open()
    try:
        assert report.pending_records == 2
        (quarantined,) = report.quarantined
        assert (directory / quarantined).read_bytes() == bytes(data[positions[2].offset :])
        assert "CRC32 mismatch" in caplog.text
        assert [r.entry for r in spool.read()] == entries[:2]
    finally:
        spool.close()


def test_corruption_found_while_reading_is_quarantined(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    entries = [entry(i) for i in range(4)]
    with Spool(directory) as spool:
        positions = spool.append(entries)
        (seg,) = segments(directory)
        with seg.open("r+b") as f:  # damage after open (bit rot, a stray writer)
            f.seek(positions[1].offset + FRAME_LEN + 12)
            f.write(b"\xff")
        assert [r.entry for r in spool.read()] == entries[:1]
        assert spool.pending_records == 1
        assert len(list(directory.glob("*.corrupt-*"))) == 1
        spool.append([entry(9)])  # the damaged segment keeps working after the cut
        assert [r.entry for r in spool.read()] == [entries[0], entry(9)]


def test_bad_segment_header_is_quarantined(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with Spool(directory, segment_bytes=300) as spool:
        spool.append([entry(i) for i in range(6)])
    first, *rest = segments(directory)
    assert rest
    first.write_bytes(b"NOTASPOOL" + first.read_bytes()[9:])
    spool = Spool(directory, segment_bytes=300)
    report = spool.open()
    try:
        assert report.quarantined == (f"{first.name}.corrupt-0",)
        got = [r.entry for r in spool.read()]
        assert got
        assert got[-1] == entry(5)
    finally:
        spool.close()


def test_bound_is_enforced_and_refusal_writes_nothing(tmp_path: Path) -> None:
    one = record_size(entry(0))
    directory = tmp_path / "spool"
    with Spool(directory, max_bytes=3 * one) as spool:
        spool.append([entry(0), entry(1), entry(2)])
        size = sum(p.stat().st_size for p in segments(directory))
        with pytest.raises(SpoolFullError, match="full") as caught:
            spool.append([entry(3)])
        assert isinstance(caught.value, EmitterPushbackError)
        with pytest.raises(SpoolFullError):
            spool.reserve(1)
        assert spool.pending_records == 3
        assert spool.reserved_bytes == 0
        assert sum(p.stat().st_size for p in segments(directory)) == size
        spool.ack(spool.read(max_records=1))
        spool.append([entry(3)])  # room again once Kafka acknowledged one
        spool.reserve(one, force=True)  # owed records may exceed the bound
        spool.append([entry(4)], reserved=True)
        assert spool.pending_bytes == 4 * one
        assert [r.entry for r in spool.read()] == [entry(i) for i in range(1, 5)]


def test_a_spool_directory_has_one_owner(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool"), pytest.raises(SpoolError, match="in use"):
        Spool(tmp_path / "spool").open()
    with Spool(tmp_path / "spool") as spool:  # released on close (and by the kernel on a kill)
        assert spool.is_open


def test_files_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with Spool(directory) as spool:
        spool.append([entry(0)])
        spool.ack(spool.read())
        spool.append([entry(1)])
    assert directory.stat().st_mode & 0o077 == 0
    for path in directory.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path


def test_ack_must_follow_the_cursor(tmp_path: Path) -> None:
    with Spool(tmp_path / "spool") as spool:
        spool.append([entry(i) for i in range(3)])
        records = spool.read()
        with pytest.raises(ValueError, match="cursor"):
            spool.ack(records[1:])
        with pytest.raises(ValueError, match="order"):
            spool.ack([records[0], records[2], records[1]])
        assert spool.pending_records == 3


def test_records_larger_than_a_read_chunk(tmp_path: Path) -> None:
    big = SpoolEntry(topic="t", key=b"k", value=os.urandom(3 * 1024 * 1024), created_ms=1)
    with Spool(tmp_path / "spool") as spool:
        spool.append([entry(0), big, entry(1)])
        assert [r.entry for r in spool.read(max_bytes=1)] == [entry(0)]
        assert [r.entry for r in spool.read(max_bytes=8 << 20)] == [entry(0), big, entry(1)]
        spool.ack(spool.read(max_records=1))
        assert [r.entry for r in spool.read(max_bytes=1)] == [big]  # always at least one


def test_sequence_floor_persists_per_producer(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with Spool(directory) as spool:
        assert spool.load_sequence_floor("host-a") == 0
        spool.store_sequence_floor("host-a", 2048)
        spool.store_sequence_floor("host-b", 7)
    with Spool(directory) as spool:
        assert spool.load_sequence_floor("host-a") == 2048
        assert spool.load_sequence_floor("host-b") == 7
    (damaged,) = [p for p in directory.glob("sequence-*.json") if b"host-a" in p.read_bytes()]
    damaged.write_bytes(b"{not json")
    with Spool(directory) as spool, pytest.raises(SpoolError, match="unreadable"):
        spool.load_sequence_floor("host-a")


def test_unreadable_cursor_replays_everything(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    with Spool(directory) as spool:
        spool.append([entry(i) for i in range(3)])
        spool.ack(spool.read(max_records=1))
    (directory / "cursor").write_bytes(b"garbage")
    with Spool(directory) as spool:
        # At least once: the acknowledged record comes again rather than anything being lost.
        assert [r.entry for r in spool.read()] == [entry(i) for i in range(3)]


def test_header_and_frame_sizes_are_stable() -> None:
    # The on-disk format is documented in the module docstring; changing it needs a new version.
    assert HEADER_LEN == 20
    assert FRAME_LEN == 8
    assert (
        record_size(SpoolEntry(topic="t", key=None, value=b"v", created_ms=0)) == 8 + 11 + 1 + 4 + 1
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(1, 12)),
            st.tuples(st.just("ack"), st.integers(1, 15)),
            st.tuples(st.just("reopen"), st.just(0)),
        ),
        max_size=25,
    )
)
def test_spool_behaves_like_a_queue(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]]
) -> None:
    directory = tmp_path_factory.mktemp("model")
    model: list[SpoolEntry] = []
    counter = 0
    spool = Spool(directory, segment_bytes=400)
    spool.open()
    try:
        for op, n in ops:
            if op == "append":
                batch = [entry(counter + i, size=(counter + i) % 50) for i in range(n)]
                counter += n
                spool.append(batch)
                model.extend(batch)
            elif op == "ack":
                records = spool.read(max_records=n)
                assert [r.entry for r in records] == model[: len(records)]
                spool.ack(records)
                del model[: len(records)]
            else:
                spool.close()
                spool = Spool(directory, segment_bytes=400)
                spool.open()
            assert spool.pending_records == len(model)
            assert spool.pending_bytes == sum(record_size(e) for e in model)
            assert spool.oldest_created_ms == (model[0].created_ms if model else None)
        assert drain(spool) == model
        assert segments(directory) == []
    finally:
        spool.close()
