"""The offline verifier enforces the k-of-n witness policy: the newest verified checkpoint
needs k valid cosignatures by the policy's witnesses; a forged cosignature by a policy key
is a finding; one by an unknown key does not count (docs/design/witnesses.md)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ledger.log.cosignature import (
    WitnessKey,
    WitnessPolicy,
    append_cosignatures,
    parse_cosignature_line,
    sign_cosignature,
    split_note,
)
from ledger.log.note import Signer
from ledger.verify import LogReport, verify_bundle
from tests.unit.test_verify import KEY, Log, export, make_log

W1, W2, W3, STRANGER = (os.urandom(32) for _ in range(4))


def key(seed: bytes, name: str) -> WitnessKey:
    return WitnessKey.from_public_key(name, Signer.from_seed("x", seed).public_key)


POLICY = WitnessPolicy(
    witnesses=(key(W1, "w1.example"), key(W2, "w2.example"), key(W3, "w3.example")),
    threshold=2,
)


def cosign(note: str, seed: bytes, name: str) -> str:
    return sign_cosignature(split_note(note)[0], name=name, seed=seed, timestamp=1_760_000_000)


def with_cosignatures(log: Log, size: int, *signers: tuple[bytes, str]) -> Log:
    notes = []
    for s, note in log.checkpoints:
        if s == size:
            note = append_cosignatures(note, [cosign(note, seed, name) for seed, name in signers])
        notes.append((s, note))
    log.checkpoints = notes
    return log


def verify(log: Log, path: Path, policy: WitnessPolicy | None = POLICY) -> LogReport:
    [report] = verify_bundle(export(log, path), [KEY.verifier], check_index=False, witnesses=policy)
    return report


def kinds(report: LogReport) -> list[tuple[str, int | None]]:
    return [(f.kind, f.checkpoint_size) for f in report.findings]


def test_two_of_three_on_the_head_verifies(tmp_path: Path) -> None:
    log = with_cosignatures(make_log(), 1000, (W1, "w1.example"), (W3, "w3.example"))
    report = verify(log, tmp_path / "b")
    assert report.ok, report.findings
    assert report.head_size == 1000


def test_one_of_three_is_a_finding_naming_the_last_witnessed_size(tmp_path: Path) -> None:
    log = with_cosignatures(make_log(), 700, (W1, "w1.example"), (W2, "w2.example"))
    log = with_cosignatures(log, 1000, (W1, "w1.example"))
    report = verify(log, tmp_path / "b")
    assert kinds(report) == [("checkpoint_unwitnessed", 1000)]
    assert "largest witnessed checkpoint has size 700" in report.findings[0].detail
    # Without a policy the same bundle verifies: cosignatures are only extra lines.
    assert verify(log, tmp_path / "c", policy=None).ok


def test_a_forged_cosignature_is_a_finding_and_does_not_count(tmp_path: Path) -> None:
    log = make_log()
    size, note = log.checkpoints[-1]
    good = cosign(note, W1, "w1.example")
    # w2's name and key ID, but the signature made with another key.
    w2 = key(W2, "w2.example")
    stolen = parse_cosignature_line(cosign(note, STRANGER, "w2.example"))
    assert stolen is not None
    forged = replace(stolen, key_id=w2.key_id).line
    log.checkpoints[-1] = (size, append_cosignatures(note, [good, forged]))
    report = verify(log, tmp_path / "b")
    assert kinds(report) == [("cosignature_invalid", 1000), ("checkpoint_unwitnessed", 1000)]
    assert f"w2.example+{w2.key_id.hex()}" in report.findings[0].detail


def test_a_cosignature_by_an_unknown_key_does_not_count(tmp_path: Path) -> None:
    log = with_cosignatures(make_log(), 1000, (W1, "w1.example"), (STRANGER, "w2.example"))
    report = verify(log, tmp_path / "b")
    assert kinds(report) == [("checkpoint_unwitnessed", 1000)]
    assert "cosigned by: w1.example" in report.findings[0].detail


def test_a_cosignature_copied_from_another_checkpoint_is_invalid(tmp_path: Path) -> None:
    log = make_log()
    size, note = log.checkpoints[-1]
    _, earlier = log.checkpoints[-2]
    copied = [cosign(earlier, W1, "w1.example"), cosign(earlier, W2, "w2.example")]
    log.checkpoints[-1] = (size, append_cosignatures(note, copied))
    report = verify(log, tmp_path / "b")
    assert [k for k, _ in kinds(report)] == [
        "cosignature_invalid",
        "cosignature_invalid",
        "checkpoint_unwitnessed",
    ]


def test_the_head_listed_twice_counts_the_cosignatures_of_either(tmp_path: Path) -> None:
    """`ledger verify --api` pins the newest note, then lists it again with the lines the
    witnesses added meanwhile: the same checkpoint, cosigned."""
    log = with_cosignatures(make_log(), 1000, (W1, "w1.example"), (W2, "w2.example"))
    size, cosigned = log.checkpoints[-1]
    pinned = cosigned[: cosigned.index("\u2014 w1.example")]
    log.checkpoints.append((size, pinned))
    report = verify(log, tmp_path / "b")
    assert report.ok, report.findings
