"""What an auditor who does not trust the operator relies on: checkpoints kept from an
earlier run (``--trusted-checkpoint``), one finding for a wrong key, the verdict line and
the tree heads written only after an OK verdict."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from ledger.audit.records import JsonValue, SchemaSet
from ledger.errors import MalformedInputError
from ledger.log import merkle
from ledger.log.checkpoint import Checkpoint, sign_checkpoint
from ledger.log.leaf import KafkaRecord
from ledger.verify import (
    BundleLogSource,
    CheckContext,
    LogReport,
    build_full_tiles,
    verify_bundle,
    verify_log,
)
from ledger.verify.bundle import BundleReader
from ledgerctl.cli import app
from ledgerctl.verdict import as_json, head_file_name, load_trusted, verdict_line, write_heads
from ledgerctl.verifying import run_verify, verify_bundle_jobs
from tests.unit.test_verify import (
    KEY,
    LEDGER,
    ORIGIN,
    OTHER_KEY,
    TOPIC,
    Log,
    _hash,
    _note,
    _signer,
    export,
    flip,
    make_log,
)


def verify(log: Log, path: Path, trusted: list[str]) -> list[LogReport]:
    return verify_bundle(export(log, path), [KEY.verifier], check_index=False, trusted=trusted)


def kinds(reports: list[LogReport]) -> list[tuple[str, str, int | None]]:
    return [(f.kind, f.log, f.checkpoint_size) for r in reports for f in r.findings]


def truncated(log: Log, size: int) -> Log:
    """The log cut back to ``size`` leaves, every trace of the rest removed."""
    return Log(
        leaves=log.leaves[:size],
        entries=log.entries[:size],
        tiles=list(build_full_tiles(map(_hash, log.leaves[:size]))),
        checkpoints=[(s, n) for s, n in log.checkpoints if s <= size],
        rows=log.rows[:size],
        size=size,
    )


def test_a_kept_checkpoint_that_the_log_still_reproduces_verifies(tmp_path: Path) -> None:
    log = make_log()
    kept = _note(log.leaves, 600)  # a size the ledger never listed itself: still proven
    [report] = verify(log, tmp_path / "b", [kept, _note(log.leaves, 1000)])
    assert report.ok, report.findings
    # A kept checkpoint never becomes the head: the head is the ledger's own.
    assert (report.head_size, report.head_note) == (1000, log.checkpoints[-1][1])


def test_a_truncated_log_is_caught_by_a_kept_checkpoint(tmp_path: Path) -> None:
    log = make_log()
    kept = log.checkpoints[-1][1]  # size 1000, from an earlier run
    short = truncated(log, 700)
    assert verify(short, tmp_path / "plain", [])[0].ok  # self-consistent without it
    reports = verify(short, tmp_path / "b", [kept])
    assert kinds(reports) == [("trusted_checkpoint_beyond_log", ORIGIN, 1000)]
    assert "truncated or rolled back" in reports[0].findings[0].detail


def test_a_trusted_checkpoint_larger_than_the_pinned_one(tmp_path: Path) -> None:
    """The ledger shows an older head (as `verify --api` pins it) than the auditor kept."""
    log = make_log()
    kept = log.checkpoints[-1][1]
    stale = truncated(log, 512)
    reports = verify(stale, tmp_path / "b", [kept])
    assert kinds(reports) == [("trusted_checkpoint_beyond_log", ORIGIN, 1000)]


def test_a_replaced_history_is_caught_by_a_kept_checkpoint(tmp_path: Path) -> None:
    log = make_log()
    kept = _note(log.leaves, 700)
    # The operator rewrites leaves 600.. and re-signs every checkpoint with the real key.
    leaves = log.leaves[:600] + [flip(leaf, 40) for leaf in log.leaves[600:]]
    replaced = Log(
        leaves=leaves,
        entries=list(enumerate(leaves)),
        tiles=list(build_full_tiles(map(_hash, leaves))),
        checkpoints=[(s, _note(leaves, s)) for s, _ in log.checkpoints],
        rows=log.rows,
        size=len(leaves),
    )
    assert verify(replaced, tmp_path / "plain", [])[0].ok  # self-consistent without it
    reports = verify(replaced, tmp_path / "b", [kept])
    assert kinds(reports) == [("trusted_checkpoint_mismatch", ORIGIN, 700)]


def test_a_kept_checkpoint_of_another_log_is_named(tmp_path: Path) -> None:
    log = make_log()
    elsewhere = f"{LEDGER}/{TOPIC}/9"
    other = sign_checkpoint(
        Checkpoint(origin=elsewhere, size=5, root_hash=merkle.root_from_leaves(log.leaves[:5])),
        [KEY],
    )
    reports = verify(log, tmp_path / "b", [other])
    assert [r.ok for r in reports] == [True, False]
    assert kinds(reports) == [("trusted_checkpoint_unknown_log", elsewhere, None)]


def test_a_kept_checkpoint_not_signed_by_a_given_key_is_refused(tmp_path: Path) -> None:
    log = make_log()
    unsigned = _note(log.leaves, 300, [OTHER_KEY])
    reports = verify(log, tmp_path / "b", [unsigned, "garbage"])
    assert sorted(kinds(reports)) == [
        ("trusted_checkpoint_invalid", "(unparsed trusted checkpoint)", None),
        ("trusted_checkpoint_invalid", ORIGIN, None),
    ]


def test_a_wrong_key_is_one_finding_not_one_per_checkpoint(tmp_path: Path) -> None:
    log = make_log()  # six checkpoints, all signed by KEY
    wrong = _signer()
    reports = verify_bundle(export(log, tmp_path / "b"), [wrong.verifier])
    [finding] = [f for r in reports for f in r.findings]
    assert finding.kind == "verifier_key_unknown"
    assert f"signed by key {LEDGER}+{KEY.key_id.hex()}" in finding.detail
    assert f"you gave {LEDGER}+{wrong.key_id.hex()}" in finding.detail
    console = Console(record=True, width=200)
    ok = run_verify(
        console=console, verifiers=[wrong.verifier], bundle=tmp_path / "b", api=None,
        proof=None, check_index=True, ledger_name=LEDGER,
    )  # fmt: skip
    text = console.export_text()
    assert not ok
    assert text.count("verifier_key_unknown") == 1
    assert "tree head" not in text  # no log was verified: no head to show
    assert text.strip().splitlines()[-1] == "VERDICT FAILED: 1 finding(s) in 1 of 1 log(s)"


def test_a_key_that_signs_some_checkpoints_gives_per_checkpoint_findings(tmp_path: Path) -> None:
    """Not a wrong key: the log itself has checkpoints the key does not sign."""
    log = make_log()
    log.checkpoints[2] = (300, _note(log.leaves, 300, [OTHER_KEY]))
    [report] = verify_bundle(export(log, tmp_path / "b"), [KEY.verifier])
    assert [(f.kind, f.checkpoint_size) for f in report.findings] == [("checkpoint_signature", 300)]


def test_verdict_heads_and_kept_heads_round_trip(tmp_path: Path) -> None:
    log = make_log()
    bundle = export(log, tmp_path / "b")
    console = Console(record=True, width=80)
    heads = tmp_path / "heads"
    ok = run_verify(
        console=console, verifiers=[KEY.verifier], bundle=bundle, api=None, proof=None,
        check_index=True, ledger_name=LEDGER, heads_out=heads,
    )  # fmt: skip
    text = console.export_text()
    assert ok
    root = base64.b64encode(merkle.root_from_leaves(log.leaves)).decode()
    assert f"tree head {ORIGIN}: size 1000 root {root}" in text
    assert text.strip().splitlines()[-1].startswith("VERDICT OK: 1 log(s)")
    kept = heads / head_file_name(ORIGIN)
    assert kept.read_text() == log.checkpoints[-1][1]
    # Next time, the kept head is a trusted checkpoint.
    assert load_trusted([heads]) == [log.checkpoints[-1][1]]
    [report] = verify_bundle(bundle, [KEY.verifier], trusted=load_trusted([heads]))
    assert report.ok


def test_a_failing_run_keeps_no_head_and_says_failed(tmp_path: Path) -> None:
    log = make_log()
    log.entries[260] = (260, flip(log.leaves[260], 40))
    console = Console(record=True, width=200)
    heads = tmp_path / "heads"
    ok = run_verify(
        console=console, verifiers=[KEY.verifier], bundle=export(log, tmp_path / "b"),
        api=None, proof=None, check_index=False, ledger_name=LEDGER, heads_out=heads,
    )  # fmt: skip
    assert not ok
    assert not heads.exists()
    text = console.export_text()
    assert text.strip().splitlines()[-1] == "VERDICT FAILED: 2 finding(s) in 1 of 1 log(s)"
    # The head shown is the largest checkpoint that verified (and says so).
    assert f"tree head {ORIGIN}: size 256 root " in text
    assert "(the largest checkpoint that verified)" in text


def test_json_carries_verdict_heads_and_findings(tmp_path: Path) -> None:
    log = make_log()
    reports = verify_bundle(export(log, tmp_path / "b"), [KEY.verifier])
    document = json.loads(as_json(reports))
    assert document["verdict"] == "ok"
    assert document["findings"] == []
    [head] = [entry["head"] for entry in document["logs"]]
    assert head["size"] == 1000
    assert head["checkpoint"] == log.checkpoints[-1][1]
    assert verdict_line(reports).startswith("VERDICT OK")
    with pytest.raises(MalformedInputError):
        write_heads(tmp_path / "h", [*reports, *verify(truncated(log, 5), tmp_path / "t", ["x"])])


def test_load_trusted_refuses_an_empty_directory_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MalformedInputError):
        load_trusted([tmp_path])
    with pytest.raises(MalformedInputError):
        load_trusted([tmp_path / "nope.checkpoint"])


class _Counting:
    """A composed check: sees every decoded leaf and every index row once, in order."""

    def __init__(self, context: CheckContext) -> None:
        self.context = context
        self.leaves: list[int] = []
        self.rows: list[int] = []
        self.finished = 0
        made.append(self)

    def leaf(
        self, index: int, record: KafkaRecord, full_name: str, event: Mapping[str, JsonValue]
    ) -> None:
        self.leaves.append(index)
        if index == 7:
            self.context.findings.add("source_error", "flagged by the composed check", leaf_index=7)

    def row(self, index: int, row: Mapping[str, object], expected: Mapping[str, JsonValue]) -> None:
        assert row["leaf_index"] == index
        self.rows.append(index)

    def finish(self) -> None:
        self.finished += 1


made: list[_Counting] = []


@pytest.mark.parametrize("check_index", [True, False])
def test_composed_checks_see_every_leaf_and_row_and_report(
    tmp_path: Path, check_index: bool
) -> None:
    made.clear()
    log = make_log(300, (300,))
    [report] = verify_bundle(
        export(log, tmp_path / "b"), [KEY.verifier], check_index=check_index, checks=[_Counting]
    )
    [check] = made
    assert check.context.origin == ORIGIN
    assert check.leaves == list(range(300))
    assert check.rows == (list(range(300)) if check_index else [])
    assert check.finished == 1
    assert [(f.kind, f.leaf_index) for f in report.findings] == [("source_error", 7)]


@pytest.mark.parametrize(
    "where", [["--bundle", "{tmp}"], ["--api", "http://127.0.0.1:1"]], ids=["bundle", "api"]
)
def test_a_ledger_that_cannot_be_read_is_exit_2_not_a_traceback(
    tmp_path: Path, where: list[str]
) -> None:
    """ "Could not verify" (2) is not "verified and found inconsistencies" (1)."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in where]
    result = CliRunner().invoke(
        app,
        ["verify", *args, "--key", KEY.verifier.key],
        env={"LEDGER_ENV_FILE": os.devnull, "COLUMNS": "200"},
    )
    assert result.exit_code == 2, result.output
    assert "cannot verify:" in result.output
    assert "Traceback" not in result.output


def test_kept_checkpoints_and_a_wrong_key_with_one_process_per_log(tmp_path: Path) -> None:
    """--jobs 2 takes the same kept checkpoints and gives the same one wrong-key finding."""
    log = make_log()
    bundle = export(truncated(log, 700), tmp_path / "b")
    elsewhere = sign_checkpoint(
        Checkpoint(origin=f"{LEDGER}/{TOPIC}/9", size=1, root_hash=merkle.root_from_leaves([b""])),
        [KEY],
    )
    reports = verify_bundle_jobs(
        bundle, [KEY.verifier], check_index=True, jobs=2,
        trusted=[log.checkpoints[-1][1], elsewhere],
    )  # fmt: skip
    assert kinds(reports) == [
        ("trusted_checkpoint_beyond_log", ORIGIN, 1000),
        ("trusted_checkpoint_unknown_log", f"{LEDGER}/{TOPIC}/9", None),
    ]
    wrong = verify_bundle_jobs(bundle, [_signer().verifier], check_index=True, jobs=2)
    assert [f.kind for r in wrong for f in r.findings] == ["verifier_key_unknown"]


def test_verify_log_refuses_a_kept_checkpoint_of_another_log(tmp_path: Path) -> None:
    log = make_log(300, (300,))
    other = sign_checkpoint(
        Checkpoint(origin=f"{LEDGER}/{TOPIC}/9", size=300, root_hash=merkle.root_from_leaves([])),
        [KEY],
    )
    reader = BundleReader(export(log, tmp_path / "b"))
    report = verify_log(
        BundleLogSource(reader, reader.logs[0]), SchemaSet(()), [KEY.verifier],
        check_index=False, trusted=[other],
    )  # fmt: skip
    assert [(f.kind, f.log) for f in report.findings] == [
        ("trusted_checkpoint_unknown_log", ORIGIN)
    ]
