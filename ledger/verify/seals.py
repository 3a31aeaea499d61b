"""Seal checks: a sealed log stopped exactly where its signed seal says, and nowhere else.

Invariant: for a log with a seal, the seal must open with a trusted key and name this
log; its row (size, next log, next offset) must say what its signed note says; the log's
leaves must be exactly the seal's size; a trusted checkpoint at the seal's size must
exist and carry the seal's root (that checkpoint's root is recomputed from the leaves by
``verify_log``, so the seal's root is the leaves' root); no checkpoint may be larger than
the seal (a fork); and the successor the bundle lists for the log must be the one the
seal names, starting at the offset it names. A log with a successor and no seal is a
warning (``log_not_sealed``: the sealer has not run yet), unless a seal is required (an
archive), then ``seal_missing``. Pure: reads only what it is given. docs/archive.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from ledger.errors import LedgerError
from ledger.log.note import Verifier
from ledger.log.periods import split_origin
from ledger.log.seal import Seal, open_seal
from ledger.verify.bundle import BundleLog
from ledger.verify.bundle.layout import StoredSeal
from ledger.verify.checkpoints import unverified_body
from ledger.verify.findings import Finding, LogReport

__all__ = ["check_seal", "successors", "with_seal_checks"]


def successors(logs: Iterable[BundleLog]) -> dict[int, BundleLog]:
    """log_id -> the next log of its partition in the bundle (by period), for the logs
    whose manifest entry places them in a partition's chain."""
    chains: dict[tuple[str, int], list[BundleLog]] = {}
    for log in logs:
        if log.topic is not None and log.partition is not None and log.period is not None:
            chains.setdefault((log.topic, log.partition), []).append(log)
    out: dict[int, BundleLog] = {}
    for chain in chains.values():
        chain.sort(key=lambda g: str(g.period))
        for before, after in itertools.pairwise(chain):
            out[before.log_id] = after
    return out


def _finding(kind: str, log: str, detail: str, size: int | None = None) -> Finding:
    return Finding(kind=kind, log=log, leaf_index=None, checkpoint_size=size, detail=detail)


def _opened_checkpoint_root(
    checkpoints: Sequence[tuple[int, str]], verifiers: Sequence[Verifier], origin: str, size: int
) -> bytes | None:
    """The root of a trusted checkpoint of ``origin`` at ``size`` among ``checkpoints``."""
    from ledger.log.checkpoint import open_checkpoint

    for _, note in checkpoints:
        body = unverified_body(note)
        if body is None or body.size != size or body.origin != origin:
            continue
        try:
            return open_checkpoint(note, verifiers).root_hash
        except LedgerError:
            continue
    return None


def _row_findings(log: BundleLog, stored: StoredSeal, seal: Seal) -> list[Finding]:
    out: list[Finding] = []
    cp = seal.checkpoint
    if cp.origin != log.origin:
        out.append(_finding("seal_origin", log.origin, f"the seal names log {cp.origin}"))
    row = (stored.size, stored.next_origin, stored.next_first_offset)
    signed = (cp.size, seal.next_origin, seal.next_first_offset)
    if row != signed:
        out.append(
            _finding(
                "seal_row_mismatch",
                log.origin,
                f"the seal row says size {row[0]}, next {row[1]} at offset {row[2]}; its signed "
                f"note says size {signed[0]}, next {signed[1]} at offset {signed[2]}",
                cp.size,
            )
        )
    return out


def _successor_findings(log: BundleLog, seal: Seal, successor: BundleLog) -> list[Finding]:
    if successor.origin == seal.next_origin and successor.first_offset in (
        None,
        seal.next_first_offset,
    ):
        return []
    return [
        _finding(
            "chain_next_mismatch",
            log.origin,
            f"the seal names {seal.next_origin} from offset {seal.next_first_offset}; the "
            f"partition's next log is {successor.origin} from offset {successor.first_offset}",
        )
    ]


def check_seal(
    log: BundleLog,
    stored: StoredSeal | None,
    report: LogReport,
    checkpoints: Sequence[tuple[int, str]],
    verifiers: Sequence[Verifier],
    *,
    successor: BundleLog | None = None,
    required: bool = False,
) -> tuple[list[Finding], list[Finding]]:
    """``(findings, warnings)`` of one log's seal (module docstring)."""
    origin = log.origin
    if stored is None:
        if required:
            return [_finding("seal_missing", origin, "the log carries no seal")], []
        if successor is not None:
            detail = f"the log has a successor ({successor.origin}) but no seal yet"
            return [], [_finding("log_not_sealed", origin, detail)]
        return [], []
    try:
        seal = open_seal(stored.note, verifiers)
    except LedgerError as exc:
        return [_finding("seal_invalid", origin, f"the seal does not open: {exc}")], []
    size = seal.checkpoint.size
    out = _row_findings(log, stored, seal)
    warnings: list[Finding] = []
    if successor is not None and _held_elsewhere(seal, successor):
        detail = (
            f"the seal hands over to {seal.next_origin}, which this source does not hold (its "
            "month was archived and detached): the chain is checked in that archive"
        )
        warnings.append(_finding("chain_unchecked", origin, detail))
    elif successor is not None:
        out += _successor_findings(log, seal, successor)
    if report.leaves_checked != size or log.size != size:
        detail = (
            f"the seal says {size} leaves; {report.leaves_checked} are present and the "
            f"source claims {log.size}"
        )
        out.append(_finding("seal_size_mismatch", origin, detail, size))
    for row_size, note in checkpoints:
        body = unverified_body(note)
        past = max(row_size, -1 if body is None else body.size)
        if past > size:
            detail = f"a checkpoint of size {past} goes past the seal at {size}: a fork"
            out.append(_finding("checkpoint_beyond_seal", origin, detail, past))
    root = _opened_checkpoint_root(checkpoints, verifiers, origin, size)
    if root is None:
        detail = f"no trusted checkpoint of size {size} backs the seal"
        out.append(_finding("seal_unverified", origin, detail, size))
    elif root != seal.checkpoint.root_hash:
        detail = "the seal's root differs from the signed checkpoint's at its size"
        out.append(_finding("seal_root_mismatch", origin, detail, size))
    return out, warnings


def _held_elsewhere(seal: Seal, successor: BundleLog) -> bool:
    """The seal names a log of an earlier period than the next one this source holds, of
    the same partition: that log is absent here (a detached month), not forged."""
    named_base, named = split_origin(seal.next_origin)
    held_base, held = split_origin(successor.origin)
    return named_base == held_base and named is not None and held is not None and named < held


def with_seal_checks(
    report: LogReport,
    log: BundleLog,
    stored: StoredSeal | None,
    checkpoints: Sequence[tuple[int, str]],
    verifiers: Sequence[Verifier],
    *,
    successors_by_id: Mapping[int, BundleLog],
    required: bool = False,
) -> LogReport:
    """``report`` with the seal's findings and warnings added."""
    findings, warnings = check_seal(
        log,
        stored,
        report,
        checkpoints,
        verifiers,
        successor=successors_by_id.get(log.log_id),
        required=required,
    )
    if not findings and not warnings:
        return report
    return replace(
        report,
        findings=report.findings + tuple(findings),
        warnings=report.warnings + tuple(warnings),
    )
