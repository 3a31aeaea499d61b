"""What an archive (``phi-ledger-archive/v1``) must show beyond its logs' own checks.

Invariant: an archive's files are exactly those its manifest lists, each with the listed
SHA-256 (``archive_file_*``, in one report of their own); every log belongs to the
archive's period; each log starts where the previous period's seal of its partition says
(``chain_offset_mismatch``; its leaves lie at or past that offset and before its own
seal's next offset: ``ledger.verify.sealbounds``; a log no carried seal leads into gets a
``chain_unchecked`` warning) and its own seal hands over to a later period's log of the
same partition (``chain_next_mismatch``). Each log's leaves, checkpoints, witnesses, index
and seal are checked by ``verify_bundle`` (``ledger.verify.seals``). Pure apart from
reading the bundle. docs/archive.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ledger.errors import LedgerError, MalformedInputError
from ledger.log.note import Verifier
from ledger.log.periods import Period, parse_label
from ledger.log.seal import Seal, open_seal
from ledger.verify.bundle import BundleLog, BundleReader
from ledger.verify.bundle.archive import (
    PreviousSeal,
    archive_period,
    file_digests,
    listed_files,
    manifest_digest,
    previous_seals,
)
from ledger.verify.bundle.layout import ARCHIVE_FORMAT
from ledger.verify.findings import Finding, LogReport

__all__ = [
    "ARCHIVE_FILES",
    "ArchiveContents",
    "ArchivedLog",
    "archive_contents",
    "archive_reports",
]

#: The origin of the report on the archive's files (it stands for no log).
ARCHIVE_FILES = "archive files"


def _finding(kind: str, log: str, detail: str) -> Finding:
    return Finding(kind=kind, log=log, leaf_index=None, checkpoint_size=None, detail=detail)


def files_report(reader: BundleReader) -> LogReport:
    """Every file against the manifest: present, listed, same SHA-256."""
    findings: list[Finding] = []
    try:
        listed = listed_files(reader)
        present = file_digests(reader.path)
    except LedgerError as exc:
        findings.append(_finding("archive_manifest", ARCHIVE_FILES, str(exc)))
        return LogReport(origin=ARCHIVE_FILES, leaves_checked=0, checkpoints_checked=0,
                         findings=tuple(findings))  # fmt: skip
    for name in sorted(listed.keys() - present.keys()):
        findings.append(_finding("archive_file_missing", ARCHIVE_FILES, f"{name} is missing"))
    for name in sorted(present.keys() - listed.keys()):
        findings.append(_finding("archive_file_extra", ARCHIVE_FILES, f"{name} is not listed"))
    for name in sorted(listed.keys() & present.keys()):
        if listed[name] != present[name]:
            detail = f"{name}: SHA-256 {present[name]}, the manifest says {listed[name]}"
            findings.append(_finding("archive_file_digest", ARCHIVE_FILES, detail))
    return LogReport(origin=ARCHIVE_FILES, leaves_checked=0, checkpoints_checked=0,
                     findings=tuple(findings))  # fmt: skip


def _partition_base(origin: str, period: Period) -> str:
    """``<ledger>/<topic>/<partition>`` of a period's log origin (its label stripped)."""
    suffix = "/" + period.label
    return origin[: -len(suffix)] if origin.endswith(suffix) else origin


def _next_findings(log: BundleLog, seal: Seal, period: Period) -> list[Finding]:
    """The seal hands over to a log of the same partition, of a period after this one."""
    base = _partition_base(log.origin, period)
    head, _, label = seal.next_origin.rpartition("/")
    try:
        later = head == base and parse_label(label).start >= period.end
    except LedgerError:
        later = False
    if later:
        return []
    detail = f"the seal hands over to {seal.next_origin}, not a later period's log of {base}"
    return [_finding("chain_next_mismatch", log.origin, detail)]


def _chain_findings(
    reader: BundleReader,
    log: BundleLog,
    leading: Sequence[tuple[PreviousSeal, Seal]],
    period: Period,
    verifiers: Sequence[Verifier],
) -> tuple[list[Finding], list[Finding]]:
    findings: list[Finding] = []
    if log.period != period.start.isoformat():
        detail = f"the log's period is {log.period}, the archive's {period.start.isoformat()}"
        findings.append(_finding("archive_period_mismatch", log.origin, detail))
    stored = reader.seal(log.log_id)
    if stored is not None:
        with contextlib.suppress(LedgerError):  # seal_invalid is verify_bundle's finding
            findings += _next_findings(log, open_seal(stored.note, verifiers), period)
    into = [seal for _, seal in leading if seal.next_origin == log.origin]
    if not into:
        detail = "no seal of the previous period in the archive leads into this log"
        return findings, [_finding("chain_unchecked", log.origin, detail)]
    for seal in into:  # its leaves lie at or past first_offset: ledger.verify.sealbounds
        start = seal.next_first_offset
        if log.first_offset != start:
            detail = (
                f"{seal.checkpoint.origin}'s seal says this log starts at offset {start}; it "
                f"starts at {log.first_offset}"
            )
            findings.append(_finding("chain_offset_mismatch", log.origin, detail))
    return findings, []


def _opened_previous(
    reader: BundleReader, verifiers: Sequence[Verifier]
) -> tuple[list[tuple[PreviousSeal, Seal]], list[Finding]]:
    opened: list[tuple[PreviousSeal, Seal]] = []
    bad: list[Finding] = []
    for previous in previous_seals(reader):
        try:
            seal = open_seal(previous.seal.note, verifiers)
        except LedgerError as exc:
            bad.append(_finding("seal_invalid", previous.origin, f"previous seal: {exc}"))
            continue
        if seal.checkpoint.origin != previous.origin:
            detail = f"a previous seal filed under {previous.origin} names {seal.checkpoint.origin}"
            bad.append(_finding("seal_origin", previous.origin, detail))
            continue
        opened.append((previous, seal))
    return opened, bad


def archive_reports(
    path: str, reports: Sequence[LogReport], verifiers: Sequence[Verifier]
) -> list[LogReport]:
    """``reports`` (``verify_bundle``'s, one per log) with the chain findings added, and a
    first report on the archive's files."""
    reader = BundleReader(path)
    files = files_report(reader)
    try:
        period = parse_label(archive_period(reader)["label"])
        leading, bad = _opened_previous(reader, verifiers)
    except LedgerError as exc:
        broken = _finding("archive_manifest", ARCHIVE_FILES, str(exc))
        return [replace(files, findings=(*files.findings, broken)), *reports]
    files = replace(files, findings=files.findings + tuple(bad))
    by_origin = {log.origin: log for log in reader.logs}
    out = [files]
    for report in reports:
        log = by_origin.get(report.origin)
        if log is None:
            out.append(report)
            continue
        findings, warnings = _chain_findings(reader, log, leading, period, verifiers)
        out.append(
            replace(
                report,
                findings=report.findings + tuple(findings),
                warnings=report.warnings + tuple(warnings),
            )
        )
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchivedLog:
    """One log as an archive holds it: what the detach procedure compares with the database."""

    origin: str
    size: int
    seal_note: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchiveContents:
    """What a verified archive holds: its manifest's SHA-256, its logs, its index rows."""

    manifest_digest: bytes
    period: str
    logs: tuple[ArchivedLog, ...]
    events: int


def archive_contents(path: str, reports: Sequence[LogReport]) -> ArchiveContents:
    """The contents of the archive at ``path`` whose ``reports`` (``archive_reports``) are
    given; ``events`` counts the index rows the verifier compared with their leaves.
    Raises ``MalformedInputError`` for a bundle that is not an archive."""
    reader = BundleReader(path)
    if reader.format != ARCHIVE_FORMAT:
        raise MalformedInputError(f"{path} is a {reader.format} bundle, not an archive")
    logs = []
    for log in reader.logs:
        stored = reader.seal(log.log_id)
        logs.append(
            ArchivedLog(
                origin=log.origin,
                size=log.size,
                seal_note=None if stored is None else stored.note,
            )
        )
    return ArchiveContents(
        manifest_digest=bytes.fromhex(manifest_digest(Path(path))),
        period=archive_period(reader)["label"],
        logs=tuple(logs),
        events=sum(r.events_checked for r in reports),
    )
