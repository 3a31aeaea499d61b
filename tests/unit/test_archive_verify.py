"""Archive bundles (phi-ledger-archive/v1) verify offline, and every tamper is named:
a flipped leaf byte, a removed or an extra file, a forged seal, a seal with another root,
a checkpoint past the seal, a missing cosignature under k of n, a broken chain offset."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ledger.errors import MalformedInputError
from ledger.log import merkle
from ledger.log.checkpoint import Checkpoint, sign_checkpoint
from ledger.log.cosignature import (
    WitnessKey,
    WitnessPolicy,
    append_cosignatures,
    sign_cosignature,
    split_note,
)
from ledger.log.note import Signer, generate_signer, parse_signer_key, parse_verifier_key
from ledger.log.seal import Seal, sign_seal
from ledger.verify import FINDING_KINDS, LogReport, verify_bundle
from ledger.verify.archives import ARCHIVE_FILES, archive_contents, archive_reports
from ledger.verify.bundle import BundleLog, BundleReader, BundleWriter
from ledger.verify.bundle.archive import (
    ArchiveWriter,
    PreviousSeal,
    file_digests,
    listed_files,
    manifest_digest,
)
from ledger.verify.bundle.layout import ARCHIVE_FORMAT, MANIFEST, StoredSeal
from ledgerctl.verifying import event_checks, verify_archive
from producers.codec import Codec
from tests.unit.test_verify import Log, make_log

LEDGER = "test.ledger"
BASE = f"{LEDGER}/phi-access/0"
OCT, NOV, DEC = f"{BASE}/2026-10", f"{BASE}/2026-11", f"{BASE}/2026-12"
PERIOD = {"label": "2026-11", "start": "2026-11-01", "end": "2026-12-01"}
FIRST_OFFSET = 7  # test_verify's leaves carry Kafka offsets 3i + 7
NEXT_OFFSET = 3 * 300 + 7
_SKEY, VKEY = generate_signer(LEDGER)
SIGNER = parse_signer_key(_SKEY)
VERIFIER = parse_verifier_key(VKEY)
OTHER = parse_signer_key(generate_signer(LEDGER)[0])
W1, W2 = os.urandom(32), os.urandom(32)


def _wkey(seed: bytes, name: str) -> WitnessKey:
    return WitnessKey.from_public_key(name, Signer.from_seed("x", seed).public_key)


POLICY = WitnessPolicy(witnesses=(_wkey(W1, "w1.example"), _wkey(W2, "w2.example")), threshold=2)


def note(leaves: Sequence[bytes], size: int, origin: str = NOV) -> str:
    root = merkle.root_from_leaves(leaves[:size])
    return sign_checkpoint(Checkpoint(origin=origin, size=size, root_hash=root), [SIGNER])


def seal_note(
    leaves: Sequence[bytes],
    size: int,
    *,
    origin: str = NOV,
    next_origin: str = DEC,
    next_offset: int = NEXT_OFFSET,
    signer: Signer = SIGNER,
    root: bytes | None = None,
) -> str:
    head = Checkpoint(
        origin=origin, size=size, root_hash=root or merkle.root_from_leaves(leaves[:size])
    )
    seal = Seal(checkpoint=head, next_origin=next_origin, next_first_offset=next_offset)
    return sign_seal(seal, [signer])


def cosigned(text: str, *witnesses: tuple[bytes, str]) -> str:
    lines = [
        sign_cosignature(split_note(text)[0], name=name, seed=seed, timestamp=1_760_000_000)
        for seed, name in witnesses
    ]
    return append_cosignatures(text, lines)


@dataclass
class Archive:
    """One period's archive as it will be written; tests change it first."""

    log: Log
    checkpoints: list[tuple[int, str]]
    seal: str | None
    seal_size: int = 300
    previous: list[PreviousSeal] = field(default_factory=list)
    first_offset: int = FIRST_OFFSET
    next_offset: int = NEXT_OFFSET


def previous_seal(next_offset: int = FIRST_OFFSET) -> PreviousSeal:
    leaves = [b"\x01october leaf %d" % i for i in range(5)]
    text = seal_note(leaves, 5, origin=OCT, next_origin=NOV, next_offset=next_offset)
    stored = StoredSeal(
        size=5, note=text, next_log_id=7, next_origin=NOV, next_first_offset=next_offset
    )
    return PreviousSeal(log_id=6, origin=OCT, seal=stored)


def good() -> Archive:
    log = make_log(300, (256, 300))
    cps = [(256, note(log.leaves, 256)), (300, note(log.leaves, 300))]
    return Archive(
        log=log, checkpoints=cps, seal=seal_note(log.leaves, 300), previous=[previous_seal()]
    )


def write(archive: Archive, path: Path) -> Path:
    log = archive.log
    chain = BundleLog(
        log_id=7, origin=NOV, size=log.size, topic="phi-access", partition=0,
        period="2026-11-01", first_offset=archive.first_offset,
    )  # fmt: skip
    with ArchiveWriter(path, ledger_name=LEDGER, period=PERIOD) as bundle:
        bundle.write_schemas(Codec().schemas)
        with bundle.add_log(log_id=7, origin=NOV, size=log.size, chain=chain) as out:
            out.add_entries(log.entries)
            out.add_tiles(log.tiles)
            out.add_checkpoints(archive.checkpoints)
            out.add_index_rows(log.rows)
            if archive.seal is not None:
                out.add_seal(
                    size=archive.seal_size, note=archive.seal, next_log_id=8, next_origin=DEC,
                    next_first_offset=archive.next_offset,
                )  # fmt: skip
        bundle.write_previous_seals(archive.previous)
        bundle.write_keys(verifier_keys=[VKEY], witness_keys=[])
    return path


def verify(path: Path, policy: WitnessPolicy | None = None) -> list[LogReport]:
    reports = verify_bundle(
        path, [VERIFIER], check_index=True, checks=event_checks(check_index=True),
        witnesses=policy,
    )  # fmt: skip
    return archive_reports(str(path), reports, [VERIFIER])


def kinds(reports: Sequence[LogReport]) -> set[str]:
    found = {f.kind for r in reports for f in r.findings}
    assert found <= FINDING_KINDS.keys()
    return found


def redigest(path: Path) -> None:
    """What a forger with write access does: recompute the manifest's file list."""
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["files"] = file_digests(path)
    (path / MANIFEST).write_text(json.dumps(manifest))


def test_a_clean_archive_verifies_with_its_digest_and_no_warning(tmp_path: Path) -> None:
    path = write(good(), tmp_path / "a")
    reader = BundleReader(path)
    assert reader.format == ARCHIVE_FORMAT
    files = listed_files(reader)
    assert "logs/7/seal.json" in files
    assert "previous-seals.jsonl" in files
    assert "keys.json" in files
    assert MANIFEST not in files
    assert len(manifest_digest(path)) == 64
    reports = verify(path)
    assert [r.origin for r in reports] == [ARCHIVE_FILES, NOV]
    assert all(r.ok for r in reports), [r.findings for r in reports]
    assert not any(r.warnings for r in reports)
    assert reports[1].head_size == 300
    assert reports[1].events_checked == 300


def test_the_archive_writer_reports_its_digest_only_when_closed(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path / "a", ledger_name=LEDGER, period=PERIOD)
    with pytest.raises(MalformedInputError):
        _ = writer.digest
    writer.close()
    assert writer.digest == manifest_digest(tmp_path / "a")
    with pytest.raises(MalformedInputError, match="period"):
        ArchiveWriter(tmp_path / "b", ledger_name=LEDGER, period={"label": "2026-11"})


def test_a_flipped_leaf_byte_breaks_the_digest_and_the_root(tmp_path: Path) -> None:
    path = write(good(), tmp_path / "a")
    entries = path / "logs/7/entries.bin"
    data = bytearray(entries.read_bytes())
    data[200] ^= 0x01
    entries.write_bytes(bytes(data))
    found = kinds(verify(path))
    assert "archive_file_digest" in found
    assert found & {"checkpoint_root_mismatch", "leaf_hash_mismatch", "leaf_malformed"}
    # A forger who also rewrites the manifest's digests is still caught by the signed roots.
    redigest(path)
    found = kinds(verify(path))
    assert "archive_file_digest" not in found
    assert found & {"checkpoint_root_mismatch", "leaf_hash_mismatch", "leaf_malformed"}


def test_a_removed_file_is_named(tmp_path: Path) -> None:
    path = write(good(), tmp_path / "a")
    (path / "keys.json").unlink()
    reports = verify(path)
    assert kinds(reports) == {"archive_file_missing"}
    assert "keys.json" in reports[0].findings[0].detail


def test_an_extra_file_is_named(tmp_path: Path) -> None:
    path = write(good(), tmp_path / "a")
    (path / "logs/7/notes.txt").write_text("added later")
    reports = verify(path)
    assert kinds(reports) == {"archive_file_extra"}
    assert "logs/7/notes.txt" in reports[0].findings[0].detail


def test_a_symlink_in_the_archive_is_named(tmp_path: Path) -> None:
    path = write(good(), tmp_path / "a")
    (path / "elsewhere").symlink_to(tmp_path)
    reports = verify(path)
    assert kinds(reports) == {"archive_manifest"}
    assert "elsewhere" in reports[0].findings[0].detail


def test_a_changed_file_with_the_same_size_is_named(tmp_path: Path) -> None:
    path = write(good(), tmp_path / "a")
    keys = path / "keys.json"
    keys.write_text(keys.read_text().replace(VKEY[-4:], "AAAA"))
    assert kinds(verify(path)) == {"archive_file_digest"}


def test_a_seal_signed_by_another_key_is_invalid(tmp_path: Path) -> None:
    archive = good()
    archive.seal = seal_note(archive.log.leaves, 300, signer=OTHER)
    assert kinds(verify(write(archive, tmp_path / "a"))) == {"seal_invalid"}


def test_a_seal_with_another_root_is_named(tmp_path: Path) -> None:
    archive = good()
    archive.seal = seal_note(archive.log.leaves, 300, root=bytes(32))
    assert kinds(verify(write(archive, tmp_path / "a"))) == {"seal_root_mismatch"}


def test_a_checkpoint_past_the_seal_is_a_fork(tmp_path: Path) -> None:
    archive = good()
    archive.seal, archive.seal_size = seal_note(archive.log.leaves, 256), 256
    reports = verify(write(archive, tmp_path / "a"))
    found = kinds(reports)
    assert {"checkpoint_beyond_seal", "seal_size_mismatch"} <= found
    [beyond] = [f for f in reports[1].findings if f.kind == "checkpoint_beyond_seal"]
    assert beyond.checkpoint_size == 300


def test_a_seal_row_that_disagrees_with_its_note_is_named(tmp_path: Path) -> None:
    archive = good()
    archive.seal_size = 256  # the row says 256, the signed note 300
    assert "seal_row_mismatch" in kinds(verify(write(archive, tmp_path / "a")))


def test_a_seal_without_a_checkpoint_at_its_size_is_unverified(tmp_path: Path) -> None:
    archive = good()
    archive.checkpoints = archive.checkpoints[:1]
    assert "seal_unverified" in kinds(verify(write(archive, tmp_path / "a")))


def test_an_archived_log_without_a_seal_fails(tmp_path: Path) -> None:
    archive = good()
    archive.seal = None
    assert kinds(verify(write(archive, tmp_path / "a"))) == {"seal_missing"}


def test_k_of_n_cosignatures_on_the_final_checkpoint(tmp_path: Path) -> None:
    archive = good()
    size, text = archive.checkpoints[-1]
    archive.checkpoints[-1] = (size, cosigned(text, (W1, "w1.example"), (W2, "w2.example")))
    assert not kinds(verify(write(archive, tmp_path / "a"), POLICY))
    archive.checkpoints[-1] = (size, cosigned(text, (W1, "w1.example")))
    assert kinds(verify(write(archive, tmp_path / "b"), POLICY)) == {"checkpoint_unwitnessed"}


def test_a_broken_chain_offset_is_named(tmp_path: Path) -> None:
    archive = good()
    archive.previous = [previous_seal(next_offset=4)]
    reports = verify(write(archive, tmp_path / "a"))
    assert kinds(reports) == {"chain_offset_mismatch"}
    assert "starts at offset 4" in reports[1].findings[0].detail


def test_a_log_starting_after_its_first_leaf_is_named(tmp_path: Path) -> None:
    archive = good()
    archive.first_offset = 10  # its first leaf is offset 7: before where it claims to start
    archive.previous = [previous_seal(next_offset=10)]
    assert kinds(verify(write(archive, tmp_path / "a"))) == {"chain_offset_mismatch"}


def test_a_leaf_at_or_past_the_next_logs_first_offset_is_named(tmp_path: Path) -> None:
    archive = good()
    archive.next_offset = 500  # leaves 165.. carry offsets 502..: they belong to December
    archive.seal = seal_note(archive.log.leaves, 300, next_offset=500)
    reports = verify(write(archive, tmp_path / "a"))
    assert kinds(reports) == {"chain_offset_mismatch"}
    [late] = reports[1].findings
    assert late.leaf_index == 165


def test_a_forged_previous_seal_is_invalid(tmp_path: Path) -> None:
    archive = good()
    forged = seal_note([b"x"], 1, origin=OCT, next_origin=NOV, next_offset=7, signer=OTHER)
    archive.previous = [PreviousSeal(log_id=6, origin=OCT, seal=StoredSeal(
        size=1, note=forged, next_log_id=7, next_origin=NOV, next_first_offset=7))]  # fmt: skip
    reports = verify(write(archive, tmp_path / "a"))
    assert "seal_invalid" in kinds(reports)
    assert [w.kind for w in reports[1].warnings] == ["chain_unchecked"]


def test_a_seal_handing_over_to_another_partition_is_named(tmp_path: Path) -> None:
    archive = good()
    archive.seal = seal_note(archive.log.leaves, 300, next_origin=f"{LEDGER}/phi-access/1/2026-12")
    assert "chain_next_mismatch" in kinds(verify(write(archive, tmp_path / "a")))


def test_without_a_previous_seal_the_chain_is_a_warning(tmp_path: Path) -> None:
    archive = good()
    archive.previous = []
    reports = verify(write(archive, tmp_path / "a"))
    assert all(r.ok for r in reports)
    assert [w.kind for w in reports[1].warnings] == ["chain_unchecked"]


# --- seals in an export bundle (what ledger verify checks of a live ledger) ---------------


def export(path: Path, *, sealed: bool, log: Log | None = None) -> Path:
    """Two logs of one partition: October (closed: November follows) and November."""
    log = log or make_log(300, (256, 300))
    with BundleWriter(path, ledger_name=LEDGER) as bundle:
        bundle.write_schemas(Codec().schemas)
        for log_id, origin, period, first in (
            (6, OCT, "2026-10-01", 7),
            (7, NOV, "2026-11-01", 907),
        ):
            chain = BundleLog(log_id=log_id, origin=origin, size=log.size, topic="phi-access",
                              partition=0, period=period, first_offset=first)  # fmt: skip
            with bundle.add_log(log_id=log_id, origin=origin, size=log.size, chain=chain) as out:
                out.add_entries(log.entries)
                out.add_tiles(log.tiles)
                out.add_checkpoints([(s, note(log.leaves, s, origin)) for s in (256, 300)])
                out.add_index_rows(log.rows)
                if sealed and origin == OCT:
                    text = seal_note(log.leaves, 300, origin=OCT, next_origin=NOV, next_offset=907)
                    out.add_seal(size=300, note=text, next_log_id=7, next_origin=NOV,
                                 next_first_offset=907)  # fmt: skip
    return path


def test_a_closed_log_without_a_seal_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    reports = verify_bundle(export(tmp_path / "a", sealed=False), [VERIFIER], check_index=False)
    assert all(r.ok for r in reports)
    assert [(w.kind, w.log) for r in reports for w in r.warnings] == [("log_not_sealed", OCT)]


def test_a_sealed_log_of_an_export_verifies_its_seal(tmp_path: Path) -> None:
    reports = verify_bundle(export(tmp_path / "a", sealed=True), [VERIFIER], check_index=False)
    assert all(r.ok for r in reports)
    assert not any(r.warnings for r in reports)
    assert BundleReader(tmp_path / "a").seal(6) is not None


def test_leaves_appended_after_the_seal_are_named(tmp_path: Path) -> None:
    """The live check: the sealed log's size must be the seal's size."""
    path = export(tmp_path / "a", sealed=True)
    seal = json.loads((path / "logs/6/seal.json").read_text())
    short = seal_note(make_log(300).leaves, 256, origin=OCT, next_origin=NOV, next_offset=907)
    seal.update(size=256, note=short)
    (path / "logs/6/seal.json").write_text(json.dumps(seal))
    found = kinds(verify_bundle(path, [VERIFIER], check_index=False))
    assert {"seal_size_mismatch", "checkpoint_beyond_seal"} <= found


def test_a_seal_naming_another_successor_is_named(tmp_path: Path) -> None:
    path = export(tmp_path / "a", sealed=True)
    seal = json.loads((path / "logs/6/seal.json").read_text())
    moved = seal_note(make_log(300).leaves, 300, origin=OCT, next_origin=NOV, next_offset=5)
    seal.update(next_first_offset=5, note=moved)
    (path / "logs/6/seal.json").write_text(json.dumps(seal))
    assert kinds(verify_bundle(path, [VERIFIER], check_index=False)) == {"chain_next_mismatch"}


def test_what_a_verified_archive_holds(tmp_path: Path) -> None:
    """What the detach procedure compares with the database (ledgerctl.verifying)."""
    path = write(good(), tmp_path / "a")
    reports, contents = verify_archive(path, [VERIFIER])
    assert all(r.ok for r in reports)
    assert contents.manifest_digest.hex() == manifest_digest(path)
    assert contents.period == "2026-11"
    assert [(g.origin, g.size) for g in contents.logs] == [(NOV, 300)]
    assert contents.logs[0].seal_note == good().seal
    assert contents.events == 300


def test_an_export_is_not_an_archive(tmp_path: Path) -> None:
    path = export(tmp_path / "a", sealed=True)
    with pytest.raises(MalformedInputError, match="not an archive"):
        verify_archive(path, [VERIFIER])
    with pytest.raises(MalformedInputError, match="not an archive"):
        archive_contents(str(path), [])
