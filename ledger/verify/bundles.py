"""Verifying an export bundle (``ledger.verify.bundle``): every log, with the bundle's schemas.

Invariant: one report per log in manifest order, then one per kept checkpoint that names no
log of the bundle; only an unusable manifest raises, everything else is a finding.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from ledger.audit.records import SchemaSet, StoredSchema
from ledger.errors import LedgerError, MalformedInputError
from ledger.log.cosignature import WitnessPolicy
from ledger.log.note import Verifier
from ledger.verify.bundle import BundleLog, BundleReader
from ledger.verify.bundle.layout import ARCHIVE_FORMAT
from ledger.verify.checks import EventCheckFactory
from ledger.verify.findings import Finding, LogReport, ProgressCallback
from ledger.verify.log import verify_log
from ledger.verify.seals import successors, with_seal_checks
from ledger.verify.trust import key_report, signing_key_finding, trusted_by_origin

__all__ = ["BundleLogSource", "verify_bundle"]


class BundleLogSource:
    """``LogSource`` for one log of an export bundle (``ledger.verify.bundle``)."""

    __slots__ = ("_log", "_reader")

    def __init__(self, reader: BundleReader, log: BundleLog) -> None:
        self._reader = reader
        self._log = log

    @property
    def origin(self) -> str:
        return self._log.origin

    @property
    def size(self) -> int:
        return self._log.size

    @property
    def log_id(self) -> int:
        return self._log.log_id

    @property
    def reader(self) -> BundleReader:
        """The whole bundle (for a composed check that reads another of its files)."""
        return self._reader

    def iter_entries(self) -> Iterator[tuple[int, bytes]]:
        return self._reader.iter_entries(self._log.log_id)

    def iter_entry_batches(self) -> Iterator[list[tuple[int, bytes]]]:
        return self._reader.iter_entry_batches(self._log.log_id)

    def iter_tiles(self) -> Iterator[tuple[int, int, bytes]]:
        return self._reader.iter_tiles(self._log.log_id)

    def checkpoints(self) -> Sequence[tuple[int, str]]:
        return self._reader.checkpoints(self._log.log_id)

    def iter_index_rows(self) -> Iterator[Mapping[str, object]]:
        return self._reader.iter_index_rows(self._log.log_id)


def _bundle_schemas(reader: BundleReader) -> tuple[SchemaSet, list[str]]:
    """The bundle's schemas that match their fingerprints, and why the others were dropped."""
    problems: list[str] = []
    good: list[StoredSchema] = []
    try:
        stored = reader.schemas()
    except LedgerError as exc:
        return SchemaSet(()), [f"schemas.json is unusable: {exc}"]
    for schema in stored:
        try:
            SchemaSet((schema,))
        except LedgerError as exc:
            problems.append(f"schema {schema.full_name} ({schema.fingerprint.hex()}): {exc}")
            continue
        good.append(schema)
    return SchemaSet(good), problems


def _sealed(
    report: LogReport,
    reader: BundleReader,
    log: BundleLog,
    verifiers: Sequence[Verifier],
    next_logs: Mapping[int, BundleLog],
    *,
    required: bool,
) -> LogReport:
    """The report with the log's seal checks (an unreadable seal file is ``seal_invalid``)."""
    try:
        stored = reader.seal(log.log_id)
        checkpoints = reader.checkpoints(log.log_id)
    except LedgerError as exc:
        bad = Finding(
            kind="seal_invalid", log=log.origin, leaf_index=None, checkpoint_size=None,
            detail=f"the seal or checkpoints cannot be read: {exc}",
        )  # fmt: skip
        return replace(report, findings=(*report.findings, bad))
    return with_seal_checks(
        report, log, stored, checkpoints, verifiers, successors_by_id=next_logs, required=required
    )


def verify_bundle(
    path: str | Path,
    verifiers: Sequence[Verifier],
    *,
    check_index: bool = True,
    progress: ProgressCallback | None = None,
    log_ids: Collection[int] | None = None,
    trusted: Sequence[str] = (),
    checks: Sequence[EventCheckFactory] = (),
    witnesses: WitnessPolicy | None = None,
) -> list[LogReport]:
    """Verify every log of an export bundle (or those in ``log_ids``); one report per log, in
    manifest order, then one per trusted checkpoint that names no log of the bundle.

    Raises ``MalformedInputError`` if the manifest itself is unusable; everything else is
    reported.  With ``check_index`` (or ``checks``), a schema that does not match its
    fingerprint becomes a ``schema_invalid`` finding in every log's report (its events are
    then undecodable).  ``checks`` are composed per-leaf and per-row checks
    (``ledger.verify.checks``); ``witnesses`` the k-of-n cosignature policy (``verify_log``).
    When no checkpoint of any log verifies with ``verifiers`` because all are signed by other
    keys, the result is one report with one ``verifier_key_unknown`` finding.  Each log's
    seal, when the bundle holds one, is checked too (``ledger.verify.seals``); in an archive
    (``phi-ledger-archive/v1``) a log without one is a ``seal_missing`` finding.
    """
    if not verifiers:
        raise MalformedInputError("at least one trusted verifier key is required")
    reader = BundleReader(path)
    if log_ids is None:
        notes = (note for log in reader.logs for _, note in reader.checkpoints(log.log_id))
        wrong_key = signing_key_finding(notes, verifiers, log=reader.ledger_name)
        if wrong_key is not None:
            return [key_report(wrong_key)]
    kept, strays = trusted_by_origin(trusted, {log.origin for log in reader.logs})
    schemas, problems = _bundle_schemas(reader) if check_index or checks else (SchemaSet(()), [])
    reports: list[LogReport] = []
    next_logs = successors(reader.logs)
    archive = reader.format == ARCHIVE_FORMAT
    for log in reader.logs:
        if log_ids is not None and log.log_id not in log_ids:
            continue
        report = verify_log(
            BundleLogSource(reader, log),
            schemas,
            verifiers,
            check_index=check_index,
            progress=progress,
            trusted=kept.get(log.origin, ()),
            checks=checks,
            witnesses=witnesses,
        )
        report = _sealed(report, reader, log, verifiers, next_logs, required=archive)
        if problems:
            extra = tuple(
                Finding(
                    kind="schema_invalid",
                    log=log.origin,
                    leaf_index=None,
                    checkpoint_size=None,
                    detail=problem,
                )
                for problem in problems
            )
            report = replace(report, findings=extra + report.findings)
        reports.append(report)
    return reports + (strays if log_ids is None else [])
