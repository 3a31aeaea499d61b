"""`ledger verify`: drive the offline verifier and report every finding.

Invariant: a run prints every finding (log, leaf index, checkpoint, what) and
returns False if there is any; nothing the ledger says is trusted without
checking it against the verifier keys given here.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ledger.errors import LedgerError, MalformedInputError
from ledger.log.checkpoint import parse_tlog_proof, verify_tlog_proof
from ledger.log.cosignature import WitnessPolicy, check_cosignatures
from ledger.log.leaf import decode_leaf
from ledger.log.note import Verifier
from ledger.verify import (
    Finding,
    LogReport,
    key_report,
    signing_key_finding,
    trusted_by_origin,
    verify_bundle,
)
from ledger.verify.archives import ArchiveContents, archive_contents, archive_reports
from ledger.verify.bundle import BundleReader
from ledger.verify.bundle.layout import ARCHIVE_FORMAT
from ledger.verify.checks import EventCheckFactory
from ledger.verify.disclosures import disclosure_check
from ledger.verify.patients import patients_check
from ledger.verify.producers import producer_check
from ledger.verify.sealbounds import seal_bounds_check
from ledgerctl.client import Api
from ledgerctl.fetch import download_bundle
from ledgerctl.verdict import as_json, render_heads, verdict_line, write_heads

ProgressFn = Callable[[str, int, int], None]


@contextlib.contextmanager
def progress_bar(console: Console) -> Iterator[ProgressFn]:
    """A rich progress bar per log, fed by ``(origin, done, total)`` callbacks."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def report(origin: str, done: int, total: int) -> None:
            if origin not in tasks:
                tasks[origin] = bar.add_task(origin, total=max(total, 1))
            bar.update(tasks[origin], completed=done, total=max(total, 1))

        yield report


def _verify_proof(
    console: Console,
    path: Path,
    verifiers: Sequence[Verifier],
    witnesses: WitnessPolicy | None = None,
) -> bool:
    text = path.read_text(encoding="utf-8")
    try:
        parsed = parse_tlog_proof(text)
        if parsed.extra is None:
            console.print("[red]FAIL[/red] the proof does not carry its entry (no extra line)")
            return False
        checkpoint = verify_tlog_proof(text, parsed.extra, verifiers)
        record = decode_leaf(parsed.extra)
        cosigned = (
            None if witnesses is None else check_cosignatures(parsed.checkpoint_note, witnesses)
        )
    except LedgerError as exc:
        console.print(f"[red]FAIL[/red] {path}: {exc}")
        return False
    if cosigned is not None and not cosigned.satisfied:
        console.print(
            f"[red]FAIL[/red] {path}: its checkpoint has valid cosignatures by "
            f"{len(cosigned.witnessed_by)} of the {cosigned.threshold} witnesses required"
            + (f"; {len(cosigned.invalid)} do not verify" if cosigned.invalid else "")
        )
        return False
    console.print(
        f"[green]OK[/green] {path}: leaf {parsed.index} of {checkpoint.origin} is included in "
        f"the signed checkpoint of size {checkpoint.size} "
        f"(Kafka {record.topic}/{record.partition}@{record.offset})"
    )
    return True


def render_reports(console: Console, reports: Sequence[LogReport]) -> bool:
    findings = [f for r in reports for f in r.findings]
    for r in reports:
        mark = "[green]OK  [/green]" if r.ok else "[red]FAIL[/red]"
        console.print(
            f"{mark} {r.origin}: {r.leaves_checked:,} leaves, "
            f"{r.checkpoints_checked:,} checkpoints, {len(r.findings)} finding(s)"
        )
    for w in (w for r in reports for w in r.warnings):
        console.print(f"[yellow]warning[/yellow] {w.kind} {w.log}: {w.detail}", highlight=False)
    if findings:
        table = Table(title=f"{len(findings)} inconsistencies", title_justify="left")
        for column in ("kind", "log", "leaf index", "checkpoint", "detail"):
            table.add_column(column, overflow="fold")
        for f in findings:
            table.add_row(
                f.kind,
                f.log,
                "" if f.leaf_index is None else str(f.leaf_index),
                "" if f.checkpoint_size is None else str(f.checkpoint_size),
                f.detail,
            )
        console.print(table)
    return not findings


def event_checks(*, check_index: bool) -> tuple[EventCheckFactory, ...]:
    """The composed per-leaf and per-row checks (``ledger.verify.checks``): every
    leaf's producer seal (a bundle's, when it has the key registry), its Kafka offset
    within its log's chain of periods (``sealbounds``), and, when the
    index is checked, the disclosed ranges of its rows."""
    if not check_index:
        return (producer_check, seal_bounds_check)
    return (producer_check, seal_bounds_check, disclosure_check, patients_check)


def _one_log(
    path: Path,
    verifiers: Sequence[Verifier],
    check_index: bool,
    log_id: int,
    trusted: Sequence[str],
    witnesses: WitnessPolicy | None = None,
) -> list[LogReport]:
    return verify_bundle(
        path, verifiers, check_index=check_index, log_ids={log_id}, trusted=trusted,
        checks=event_checks(check_index=check_index), witnesses=witnesses,
    )  # fmt: skip


def verify_bundle_jobs(
    path: Path,
    verifiers: Sequence[Verifier],
    *,
    check_index: bool,
    jobs: int,
    progress: ProgressFn | None = None,
    trusted: Sequence[str] = (),
    witnesses: WitnessPolicy | None = None,
) -> list[LogReport]:
    """Verify a bundle, one process per log when ``jobs > 1`` (logs are independent)."""
    if jobs <= 1:
        return verify_bundle(
            path, verifiers, check_index=check_index, progress=progress, trusted=trusted,
            checks=event_checks(check_index=check_index), witnesses=witnesses,
        )  # fmt: skip
    reader = BundleReader(path)
    logs = reader.logs
    notes = (note for log in logs for _, note in reader.checkpoints(log.log_id))
    wrong_key = signing_key_finding(notes, verifiers, log=reader.ledger_name)
    if wrong_key is not None:
        return [key_report(wrong_key)]
    kept, strays = trusted_by_origin(trusted, {log.origin for log in logs})
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [
            pool.submit(
                _one_log,
                path,
                tuple(verifiers),
                check_index,
                log.log_id,
                tuple(kept.get(log.origin, ())),
                witnesses,
            )
            for log in logs
        ]
        reports = []
        for log, future in zip(logs, futures, strict=True):
            reports += future.result()
            if progress is not None:
                progress(log.origin, log.size, log.size)
    return reports + strays


def verify_archive(
    path: Path,
    verifiers: Sequence[Verifier],
    *,
    witnesses: WitnessPolicy | None = None,
    jobs: int = 1,
) -> tuple[list[LogReport], ArchiveContents]:
    """Verify an archive as ``ledger verify --bundle`` does (index included), and say what
    it holds (its manifest digest, logs with their seals, index rows): what ``ledger
    archive detach`` compares with the database. The contents mean something only when
    every report is ok; raises ``MalformedInputError`` for a bundle that is not an archive."""
    if BundleReader(path).format != ARCHIVE_FORMAT:
        raise MalformedInputError(f"{path} is not an archive (phi-ledger-archive/v1)")
    reports = verify_bundle_jobs(path, verifiers, check_index=True, jobs=jobs, witnesses=witnesses)
    reports = archive_reports(str(path), reports, verifiers)
    return reports, archive_contents(str(path), reports)


def run_verify(
    *,
    console: Console,
    verifiers: Sequence[Verifier],
    bundle: Path | None,
    api: Api | None,
    proof: Path | None,
    check_index: bool,
    ledger_name: str,
    jobs: int = 1,
    trusted: Sequence[str] = (),
    json_out: bool = False,
    heads_out: Path | None = None,
    witnesses: WitnessPolicy | None = None,
) -> bool:
    """Verify, print every finding, the tree heads and ONE verdict line (last); or, with
    ``json_out``, only a JSON document.  With ``heads_out``, an OK run writes each log's
    verified head as a checkpoint file there (what ``trusted`` takes next time)."""
    if proof is not None:
        return _verify_proof(console, proof, verifiers, witnesses)
    with contextlib.ExitStack() as stack:
        report = None if json_out else stack.enter_context(progress_bar(console))
        if bundle is not None:
            reports = verify_bundle_jobs(
                bundle, verifiers, check_index=check_index, jobs=jobs, progress=report,
                trusted=trusted, witnesses=witnesses,
            )  # fmt: skip
            if BundleReader(bundle).format == ARCHIVE_FORMAT:
                reports = archive_reports(str(bundle), reports, verifiers)
        elif api is not None:
            reports = _verify_api(
                api, verifiers, check_index=check_index, jobs=jobs, progress=report,
                trusted=trusted, ledger_name=ledger_name, witnesses=witnesses,
            )  # fmt: skip
        else:
            raise ValueError("one of bundle, api or proof is required")
    return _conclude(console, reports, json_out=json_out, heads_out=heads_out)


def _verify_api(
    api: Api,
    verifiers: Sequence[Verifier],
    *,
    check_index: bool,
    jobs: int,
    progress: ProgressFn | None,
    trusted: Sequence[str],
    ledger_name: str,
    witnesses: WitnessPolicy | None = None,
) -> list[LogReport]:
    """Download what each log's pinned checkpoint covers, then verify it offline; a wrong
    key stops right after the pins are fetched."""
    with tempfile.TemporaryDirectory(prefix="ledger-verify-") as tmp:
        target = Path(tmp) / "bundle"
        archived: list[tuple[str, str]] = []
        wrong_key = asyncio.run(
            download_bundle(
                api,
                target,
                ledger_name=ledger_name,
                progress=progress,
                verifiers=verifiers,
                archived=archived,
            )
        )
        if wrong_key is not None:
            return [key_report(wrong_key)]
        reports = verify_bundle_jobs(
            target, verifiers, check_index=check_index, jobs=jobs, progress=progress,
            trusted=trusted, witnesses=witnesses,
        )  # fmt: skip
        return reports + [archived_report(origin, digest) for origin, digest in archived]


def archived_report(origin: str, digest: str) -> LogReport:
    """A log whose entries left the database: a warning naming its archive, no failure."""
    note = Finding(
        kind="log_archived", log=origin, leaf_index=None, checkpoint_size=None,
        detail=f"its month was detached; verify archive sha256 {digest} "
        "(`ledger verify --bundle ARCHIVE`)",
    )  # fmt: skip
    return LogReport(origin=origin, leaves_checked=0, checkpoints_checked=0, findings=(),
                     warnings=(note,))  # fmt: skip


def _conclude(
    console: Console, reports: Sequence[LogReport], *, json_out: bool, heads_out: Path | None
) -> bool:
    ok = all(r.ok for r in reports)
    if json_out:
        print(as_json(reports))
    else:
        render_reports(console, reports)
        render_heads(console, reports)
    if heads_out is not None and ok:
        for path in write_heads(heads_out, reports):
            if not json_out:
                console.print(f"kept tree head in {path}", highlight=False, soft_wrap=True)
    elif heads_out is not None and not json_out:
        console.print(f"tree heads NOT written to {heads_out}: verification failed")
    if not json_out:
        console.print(verdict_line(reports), highlight=False, soft_wrap=True)
    return ok
