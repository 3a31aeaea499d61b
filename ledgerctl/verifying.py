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

from ledger.bundle import BundleReader
from ledger.checkpoint import parse_tlog_proof, verify_tlog_proof
from ledger.errors import LedgerError
from ledger.leaf import decode_leaf
from ledger.note import Verifier
from ledger.producerbundle import check_bundle_producers
from ledger.verify import LogReport, verify_bundle
from ledgerctl.client import Api
from ledgerctl.fetch import download_bundle

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


def _verify_proof(console: Console, path: Path, verifiers: Sequence[Verifier]) -> bool:
    text = path.read_text(encoding="utf-8")
    try:
        parsed = parse_tlog_proof(text)
        if parsed.extra is None:
            console.print("[red]FAIL[/red] the proof does not carry its entry (no extra line)")
            return False
        checkpoint = verify_tlog_proof(text, parsed.extra, verifiers)
        record = decode_leaf(parsed.extra)
    except LedgerError as exc:
        console.print(f"[red]FAIL[/red] {path}: {exc}")
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


def _one_log(
    path: Path, verifiers: Sequence[Verifier], check_index: bool, log_id: int
) -> list[LogReport]:
    return verify_bundle(path, verifiers, check_index=check_index, log_ids={log_id})


def verify_bundle_jobs(
    path: Path,
    verifiers: Sequence[Verifier],
    *,
    check_index: bool,
    jobs: int,
    progress: ProgressFn | None = None,
) -> list[LogReport]:
    """Verify a bundle, one process per log when ``jobs > 1`` (logs are independent);
    then every leaf's producer envelope (``ledger.producerbundle``)."""
    reports = _verify_bundle_jobs(path, verifiers, check_index=check_index, jobs=jobs,
                                  progress=progress)  # fmt: skip
    return check_bundle_producers(path, reports)


def _verify_bundle_jobs(
    path: Path,
    verifiers: Sequence[Verifier],
    *,
    check_index: bool,
    jobs: int,
    progress: ProgressFn | None = None,
) -> list[LogReport]:
    if jobs <= 1:
        return verify_bundle(path, verifiers, check_index=check_index, progress=progress)
    logs = BundleReader(path).logs
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [
            pool.submit(_one_log, path, tuple(verifiers), check_index, log.log_id) for log in logs
        ]
        reports = []
        for log, future in zip(logs, futures, strict=True):
            reports += future.result()
            if progress is not None:
                progress(log.origin, log.size, log.size)
    return reports


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
) -> bool:
    if proof is not None:
        return _verify_proof(console, proof, verifiers)
    with progress_bar(console) as report:
        if bundle is not None:
            reports = verify_bundle_jobs(
                bundle, verifiers, check_index=check_index, jobs=jobs, progress=report
            )
        else:
            if api is None:
                raise ValueError("one of bundle, api or proof is required")
            with tempfile.TemporaryDirectory(prefix="ledger-verify-") as tmp:
                target = Path(tmp) / "bundle"
                asyncio.run(download_bundle(api, target, ledger_name=ledger_name, progress=report))
                reports = verify_bundle_jobs(
                    target, verifiers, check_index=check_index, jobs=jobs, progress=report
                )
    return render_reports(console, reports)
