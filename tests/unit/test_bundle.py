"""The export bundle format: exact layout, round trip, streaming and malformed input."""

from __future__ import annotations

import json
import os
import stat
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ledger.audit.records import StoredSchema
from ledger.errors import MalformedInputError
from ledger.verify.bundle import (
    BUNDLE_FORMAT,
    INDEX_COLUMNS,
    TILE_BYTES,
    BundleLog,
    BundleReader,
    BundleWriter,
    check_target,
    index_row,
)
from producers.codec import Codec

EXPORTED = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def _row(leaf_index: int, **changes: object) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(INDEX_COLUMNS)
    row.update(
        leaf_index=leaf_index,
        event_id=uuid.UUID(int=leaf_index + 1, version=4),
        kind="phi_access",
        event_time=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        producer_id="p",
        producer_seq=leaf_index,
        facility_id="f",
        patient_id="P1",
        user_id="u",
    )
    row.update(changes)
    return row


def _write(path: Path) -> None:
    with BundleWriter(path, ledger_name="ledger.example", exported_at=EXPORTED) as bundle:
        bundle.write_schemas(Codec().schemas)
        with bundle.add_log(log_id=3, origin="ledger.example/t/0", size=5) as log:
            # as stored: a gap (2), a duplicate (1) and disorder (4 before 3) are kept
            log.add_entries([(0, b"zero"), (1, b"one"), (1, b"uno"), (4, b""), (3, b"three")])
            log.add_tile(0, 0, bytes(range(256)) * 32)
            log.add_tile(1, 7, b"\xff" * TILE_BYTES)
            log.add_checkpoint(5, "ledger.example/t/0\n5\nAAAA\n\n\u2014 k sig\n")
            log.add_checkpoint(3, "older")
            log.add_index_row(_row(0))
            log.add_index_row(_row(1, patient_issuer="iss", event_time=EXPORTED))
        with bundle.add_log(log_id=1, origin="ledger.example/t/1") as other:
            other.add_entry(0, b"x" * 65535)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "bundle"
    _write(path)
    reader = BundleReader(path)
    assert reader.ledger_name == "ledger.example"
    assert reader.exported_at == EXPORTED
    assert reader.logs == (
        BundleLog(log_id=1, origin="ledger.example/t/1", size=1),  # size = entries written
        BundleLog(log_id=3, origin="ledger.example/t/0", size=5),
    )
    assert list(reader.iter_entries(3)) == [
        (0, b"zero"),
        (1, b"one"),
        (1, b"uno"),
        (4, b""),
        (3, b"three"),
    ]
    assert [len(b) for b in reader.iter_entry_batches(3)] == [5]
    assert list(reader.iter_entries(1)) == [(0, b"x" * 65535)]
    assert list(reader.iter_tiles(3)) == [
        (0, 0, bytes(range(256)) * 32),
        (1, 7, b"\xff" * TILE_BYTES),
    ]
    assert reader.checkpoints(3) == [
        (5, "ledger.example/t/0\n5\nAAAA\n\n\u2014 k sig\n"),
        (3, "older"),
    ]
    rows = list(reader.iter_index_rows(3))
    assert [list(r) for r in rows] == [list(INDEX_COLUMNS)] * 2
    assert rows[0]["event_id"] == str(uuid.UUID(int=1, version=4))
    assert rows[0]["event_time"] == "2026-01-02T03:04:05.000006Z"
    assert rows[1]["event_time"] == "2026-03-04T05:06:07.890000Z"
    assert rows[1]["patient_issuer"] == "iss"
    assert rows[1]["producer_seq"] == 1
    assert list(reader.iter_tiles(1)) == []
    assert reader.checkpoints(1) == []
    assert list(reader.iter_index_rows(1)) == []
    schemas = reader.schemas()
    assert {s.full_name for s in schemas} == {s.full_name for s in Codec().schemas}
    assert all(isinstance(s, StoredSchema) and len(s.fingerprint) == 8 for s in schemas)


def test_manifest_and_file_layout(tmp_path: Path) -> None:
    path = tmp_path / "bundle"
    _write(path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest == {
        "format": BUNDLE_FORMAT,
        "ledger_name": "ledger.example",
        "exported_at": "2026-03-04T05:06:07.890000Z",
        "logs": [
            {"log_id": 1, "origin": "ledger.example/t/1", "size": 1},
            {"log_id": 3, "origin": "ledger.example/t/0", "size": 5},
        ],
    }
    log = path / "logs" / "3"
    entries = (log / "entries.bin").read_bytes()
    # u64 BE leaf_index | u16 BE length | leaf bytes
    assert entries[:14] == bytes.fromhex("00000000000000000004") + b"zero"
    tiles = (log / "tiles.bin").read_bytes()
    assert len(tiles) == 2 * (1 + 8 + TILE_BYTES)
    assert tiles[:9] == bytes.fromhex("000000000000000000")
    assert tiles[9 + TILE_BYTES : 18 + TILE_BYTES] == bytes.fromhex("010000000000000007")
    lines = (log / "checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines][1] == {"size": 3, "note": "older"}
    schemas = json.loads((path / "schemas.json").read_text())
    assert all(len(s["fingerprint"]) == 16 for s in schemas)


def test_reader_streams_across_read_blocks(tmp_path: Path) -> None:
    leaves = [bytes([i % 251]) * (60_000 + i) for i in range(150)]  # ~9 MiB of entries
    with (
        BundleWriter(tmp_path / "b", ledger_name="l") as bundle,
        bundle.add_log(log_id=0, origin="l/t/0") as log,
    ):
        log.add_entries(enumerate(leaves))
    reader = BundleReader(tmp_path / "b")
    assert list(reader.iter_entries(0)) == list(enumerate(leaves))
    batches = list(reader.iter_entry_batches(0))
    assert len(batches) >= 2
    assert [e for b in batches for e in b] == list(enumerate(leaves))


def test_writer_refuses_bad_records(tmp_path: Path) -> None:
    with BundleWriter(tmp_path / "b", ledger_name="l") as bundle:
        log = bundle.add_log(log_id=0, origin="l/t/0")
        with pytest.raises(MalformedInputError):
            log.add_entry(0, b"x" * 65536)
        with pytest.raises(MalformedInputError):
            log.add_entry(-1, b"x")
        with pytest.raises(MalformedInputError):
            log.add_tile(0, 0, b"short")
        with pytest.raises(MalformedInputError):
            log.add_tile(256, 0, bytes(TILE_BYTES))
        with pytest.raises(MalformedInputError, match="missing"):
            log.add_index_row({"leaf_index": 0})
        with pytest.raises(MalformedInputError, match="extra"):
            log.add_index_row(_row(0, surprise=1))
        with pytest.raises(MalformedInputError, match="time zone"):
            log.add_index_row(_row(0, event_time=datetime(2026, 1, 1)))
        with pytest.raises(MalformedInputError):
            log.add_index_row(_row(0, producer_seq=True))
        with pytest.raises(MalformedInputError):
            log.add_checkpoint(-1, "note")
        with pytest.raises(MalformedInputError):
            bundle.add_log(log_id=0, origin="l/t/0")
        log.close()
        with pytest.raises(MalformedInputError):
            log.add_entry(0, b"late")
    with pytest.raises(MalformedInputError):
        BundleWriter(tmp_path / "b", ledger_name="l")  # not empty: never overwrite an export


def test_failed_export_has_no_manifest(tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    def export() -> None:
        with BundleWriter(tmp_path / "b", ledger_name="l") as bundle:
            with bundle.add_log(log_id=0, origin="l/t/0") as log:
                log.add_entry(0, b"x")
            raise Boom

    with pytest.raises(Boom):
        export()
    assert not (tmp_path / "b" / "manifest.json").exists()
    with pytest.raises(MalformedInputError, match="missing"):
        BundleReader(tmp_path / "b")


def test_aware_times_in_any_zone_are_written_in_utc(tmp_path: Path) -> None:
    zone = timezone(timedelta(hours=-5))
    moment = datetime(2026, 1, 1, 7, 0, tzinfo=zone)
    with (
        BundleWriter(tmp_path / "b", ledger_name="l", exported_at=moment) as bundle,
        bundle.add_log(log_id=0, origin="l/t/0", size=0) as log,
    ):
        log.add_index_row(_row(0, event_time=moment))
    reader = BundleReader(tmp_path / "b")
    assert reader.exported_at == moment
    [row] = reader.iter_index_rows(0)
    assert row["event_time"] == "2026-01-01T12:00:00Z"


def test_index_row_helper() -> None:
    full = _row(3) | {"log_id": 9, "origin": "x"}
    assert list(index_row(full)) == list(INDEX_COLUMNS)
    with pytest.raises(MalformedInputError, match="user_id"):
        index_row({k: v for k, v in _row(3).items() if k != "user_id"})


# --------------------------------------------------------------------------------------------
# Malformed bundles
# --------------------------------------------------------------------------------------------


def test_truncated_files_yield_complete_records_then_raise(tmp_path: Path) -> None:
    path = tmp_path / "bundle"
    _write(path)
    log = path / "logs" / "3"
    entries = log / "entries.bin"
    entries.write_bytes(entries.read_bytes()[:-2])
    reader = BundleReader(path)
    seen: list[tuple[int, bytes]] = []
    with pytest.raises(MalformedInputError, match="ends inside a record"):
        seen.extend(reader.iter_entries(3))
    assert seen == [(0, b"zero"), (1, b"one"), (1, b"uno"), (4, b"")]

    tiles = log / "tiles.bin"
    tiles.write_bytes(tiles.read_bytes()[:-1])
    got: list[tuple[int, int, bytes]] = []
    with pytest.raises(MalformedInputError, match="ends inside a record"):
        got.extend(reader.iter_tiles(3))
    assert len(got) == 1

    entries.write_bytes(b"\x00\x00")
    with pytest.raises(MalformedInputError):
        list(reader.iter_entries(3))


def test_bad_jsonl_lines(tmp_path: Path) -> None:
    path = tmp_path / "bundle"
    _write(path)
    log = path / "logs" / "3"
    (log / "checkpoints.jsonl").write_text('{"size": "5", "note": "x"}\n')
    (log / "index.jsonl").write_text('{"leaf_index": 0}\n[1, 2]\n')
    reader = BundleReader(path)
    with pytest.raises(MalformedInputError, match="line 1"):
        reader.checkpoints(3)
    rows = reader.iter_index_rows(3)
    assert next(rows) == {"leaf_index": 0}
    with pytest.raises(MalformedInputError, match="line 2"):
        next(rows)


def test_missing_files_and_unknown_logs(tmp_path: Path) -> None:
    path = tmp_path / "bundle"
    _write(path)
    (path / "logs" / "3" / "tiles.bin").unlink()
    reader = BundleReader(path)
    with pytest.raises(MalformedInputError, match="missing"):
        list(reader.iter_tiles(3))
    with pytest.raises(MalformedInputError, match="not in the bundle"):
        list(reader.iter_entries(42))
    (path / "schemas.json").write_text(
        '[{"fingerprint": "zz", "full_name": "a", "schema_json": "{}"}]'
    )
    with pytest.raises(MalformedInputError, match="hex"):
        reader.schemas()


@pytest.mark.parametrize(
    "manifest",
    [
        "not json",
        "[]",
        '{"format": "phi-ledger-export/v2", "ledger_name": "l", '
        '"exported_at": "2026-01-01T00:00:00Z", "logs": []}',
        '{"format": "phi-ledger-export/v1", "ledger_name": "", '
        '"exported_at": "2026-01-01T00:00:00Z", "logs": []}',
        '{"format": "phi-ledger-export/v1", "ledger_name": "l", '
        '"exported_at": "2026-01-01T00:00:00", "logs": []}',
        '{"format": "phi-ledger-export/v1", "ledger_name": "l", '
        '"exported_at": "2026-01-01T00:00:00Z", "logs": [{"log_id": 1, "origin": "o"}]}',
        '{"format": "phi-ledger-export/v1", "ledger_name": "l", '
        '"exported_at": "2026-01-01T00:00:00Z", "logs": ['
        '{"log_id": 1, "origin": "o", "size": 1}, {"log_id": 1, "origin": "p", "size": 1}]}',
    ],
)
def test_malformed_manifest(tmp_path: Path, manifest: str) -> None:
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(MalformedInputError):
        BundleReader(tmp_path)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_bundle_is_owner_only_under_any_umask(tmp_path: Path, umask: int) -> None:
    """A bundle is every patient's PHI: 0700 directories, 0600 files, whatever the umask."""
    old = os.umask(umask)
    try:
        _write(tmp_path / "b")
    finally:
        os.umask(old)
    paths = [tmp_path / "b", *(tmp_path / "b").rglob("*")]
    assert {stat.S_IMODE(p.stat().st_mode) for p in paths if p.is_dir()} == {0o700}
    assert {stat.S_IMODE(p.stat().st_mode) for p in paths if p.is_file()} == {0o600}
    assert BundleReader(tmp_path / "b").logs, "and it still reads back"


def test_a_target_others_can_open_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o700)
    shared.chmod(0o750)
    with pytest.raises(MalformedInputError, match="mode 750"):
        check_target(shared)
    with pytest.raises(MalformedInputError, match="mode 750"):
        BundleWriter(shared, ledger_name="l")
    assert list(shared.iterdir()) == []
    shared.chmod(0o700)
    check_target(shared)  # an empty owner-only directory is fine
    link = tmp_path / "link"
    link.symlink_to(shared)
    with pytest.raises(MalformedInputError, match="not a directory"):
        check_target(link)  # never follow a symlink someone else may re-point
