"""The end of `ledger verify`: one verdict line, the tree heads an auditor keeps, and the
checkpoints an auditor kept earlier.

Invariant: the verdict is OK only when there is no finding at all; the tree heads printed
are signed checkpoints whose roots were recomputed from the leaves, and head files are
written only after an OK verdict, so a failing run never overwrites a kept checkpoint.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from rich.console import Console

from ledger.errors import MalformedInputError
from ledger.verify import Finding, LogReport
from ledger.verify.archives import ARCHIVE_FILES

HEAD_SUFFIX: Final = ".checkpoint"
_MAX_NOTE: Final = 64 * 1024


def head_file_name(origin: str) -> str:
    """``<origin with / as _>.checkpoint``: one file per log, stable across runs."""
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in origin)
    return safe + HEAD_SUFFIX


def load_trusted(paths: Iterable[Path]) -> list[str]:
    """Checkpoint notes from files, or from every ``*.checkpoint`` file of a directory."""
    notes: list[str] = []
    for path in paths:
        files = sorted(path.glob(f"*{HEAD_SUFFIX}")) if path.is_dir() else [path]
        if path.is_dir() and not files:
            raise MalformedInputError(f"{path} holds no *{HEAD_SUFFIX} file")
        for file in files:
            try:
                data = file.read_bytes()
            except OSError as exc:
                raise MalformedInputError(f"cannot read {file}: {exc.strerror}") from exc
            if len(data) > _MAX_NOTE:
                raise MalformedInputError(f"{file} is too large to be a checkpoint")
            try:
                notes.append(data.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise MalformedInputError(f"{file} is not UTF-8 text") from exc
    return notes


def verdict_line(reports: Sequence[LogReport]) -> str:
    findings = sum(len(r.findings) for r in reports)
    failing = sum(1 for r in reports if not r.ok)
    leaves = sum(r.leaves_checked for r in reports)
    if not findings:
        logs = sum(1 for r in reports if r.origin != ARCHIVE_FILES)
        return (
            f"VERDICT OK: {logs} log(s), {leaves:,} leaves verified up to their signed "
            "tree heads, 0 findings"
        )
    return f"VERDICT FAILED: {findings} finding(s) in {failing} of {len(reports)} log(s)"


def _root(report: LogReport) -> str | None:
    return None if report.head_root is None else base64.b64encode(report.head_root).decode()


_NOT_A_LOG = frozenset(
    {"verifier_key_unknown", "trusted_checkpoint_unknown_log", "trusted_checkpoint_invalid"}
)


def _is_log(report: LogReport) -> bool:
    """False for the reports that stand for no log of the ledger (a wrong key, a kept
    checkpoint naming no log, an archive's files): they have no tree head to show."""
    if report.origin == ARCHIVE_FILES:
        return False
    kinds = {f.kind for f in report.findings}
    return report.leaves_checked > 0 or not kinds or not kinds <= _NOT_A_LOG


def render_heads(console: Console, reports: Sequence[LogReport]) -> None:
    for r in filter(_is_log, reports):
        root = _root(r)
        if root is None:
            text = f"tree head {r.origin}: none verified"
        else:
            text = f"tree head {r.origin}: size {r.head_size} root {root}"
            if not r.ok:
                text += " (the largest checkpoint that verified)"
        console.print(text, highlight=False, soft_wrap=True)


def as_json(reports: Sequence[LogReport]) -> str:
    """The whole outcome, machine-readable (no PHI: findings never carry event values)."""
    return json.dumps(
        {
            "verdict": "ok" if all(r.ok for r in reports) else "failed",
            "logs": [
                {
                    "origin": r.origin,
                    "ok": r.ok,
                    "leaves_checked": r.leaves_checked,
                    "checkpoints_checked": r.checkpoints_checked,
                    "checkpoints_verified": r.checkpoints_verified,
                    "events_checked": r.events_checked,
                    "head": None
                    if r.head_note is None
                    else {"size": r.head_size, "root": _root(r), "checkpoint": r.head_note},
                }
                for r in reports
            ],
            "findings": [_finding(f) for r in reports for f in r.findings],
            "warnings": [_finding(f) for r in reports for f in r.warnings],
        },
        indent=2,
    )


def _finding(f: Finding) -> dict[str, object]:
    return {
        "kind": f.kind,
        "log": f.log,
        "leaf_index": f.leaf_index,
        "checkpoint_size": f.checkpoint_size,
        "tile": None if f.tile is None else list(f.tile),
        "detail": f.detail,
    }


def write_heads(directory: Path, reports: Sequence[LogReport]) -> list[Path]:
    """One checkpoint note file per verified log head (for ``--trusted-checkpoint`` later).

    Refuses (``MalformedInputError``) when any report has a finding."""
    if not all(r.ok for r in reports):
        raise MalformedInputError("verification failed: tree heads are not written")
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for r in reports:
        if r.head_note is None:
            continue
        target = directory / head_file_name(r.origin)
        temp = target.with_suffix(".tmp")
        temp.write_text(r.head_note, encoding="utf-8")
        os.replace(temp, target)
        written.append(target)
    return written
