"""The CLI commands that read PHI without the API, each recorded before it reads out.

Invariant: every function here calls ``record_cli_read`` (``ledgerctl.cliaudit``) before
the first byte of PHI leaves its source, and lets its ``UnavailableError`` stop the
command; a refusal that reads nothing (bad reason, unsafe target) records nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from integrations.atna.kept import KeptMessage
from ledger.log.periods import parse_label
from ledger.pg.archive import ArchiveSummary, archive_period
from ledger.pg.export import ExportHead, ExportSummary, export_bundle
from ledgerctl.atna import list_kept
from ledgerctl.cliaudit import LogHead, check_reason, cli_read, record_cli_read, record_now
from ledgerctl.settings import Settings


def run_export(
    settings: Settings,
    *,
    out: Path,
    reason: str,
    progress: Callable[[str, int, int], None] | None = None,
) -> ExportSummary:
    """``ledger export``: owner-only files; recorded inside the snapshot, with its heads."""
    why = check_reason(reason)
    os.umask(0o077)
    target = str(out.absolute())

    async def record(heads: Sequence[ExportHead]) -> None:
        read = cli_read(
            command="export",
            reason=why,
            parameters={"out": target},
            heads=[LogHead(origin=h.origin, size=h.size) for h in heads],
        )
        await record_cli_read(settings, read)

    return asyncio.run(
        export_bundle(
            dsn=settings.require("reader_url"),
            path=out,
            ledger_name=settings.ledger_name,
            progress=progress,
            before_writing=record,
        )
    )


def replay_recorder(
    settings: Settings, *, database: str, reason: str
) -> Callable[[], Awaitable[None]]:
    """``ledger replay``'s record, sent before the end offsets are taken: the replay
    reads it back like any other event, so it is in the replayed ledger too."""
    why = check_reason(reason)

    async def record() -> None:
        read = cli_read(
            command="replay",
            reason=why,
            parameters={"database": database, "topics": ",".join(settings.topics)},
        )
        await record_cli_read(settings, read)

    return record


def kept_recorded(
    settings: Settings,
    *,
    reason: str,
    kept_dir: Path,
    only: str | None,
    after_id: int,
    limit: int,
    raw: bool,
) -> list[KeptMessage]:
    """``ledger atna kept``: the messages, once their listing is recorded."""
    why = check_reason(reason)
    messages = list(list_kept(kept_dir, reason=only, after_id=after_id, limit=limit))
    parameters = {
        "kept_dir": str(kept_dir.absolute()),
        "raw": "yes" if raw else "no",
        "after_id": str(after_id),
    }
    if only is not None:
        parameters["only_reason"] = only
    record_now(
        settings,
        cli_read(command="atna/kept", reason=why, parameters=parameters, results=len(messages)),
    )
    return messages


def record_resubmit(settings: Settings, *, quarantine_id: int, force: bool, reason: str) -> None:
    """``ledger quarantine resubmit`` reads a record's raw bytes: recorded first."""
    record_now(
        settings,
        cli_read(
            command="quarantine/resubmit",
            reason=reason,
            parameters={"quarantine_id": str(quarantine_id), "force": str(force).lower()},
        ),
    )


def run_archive(
    settings: Settings,
    *,
    period: str,
    out: Path,
    reason: str,
    progress: Callable[[str, int, int], None] | None = None,
) -> ArchiveSummary:
    """``ledger archive``: one sealed period, owner-only files; recorded inside the
    snapshot, with the period's heads, once the period is known to be archivable."""
    import re

    why = check_reason(reason)
    cut = parse_label(period)
    os.umask(0o077)
    target = str(out.absolute())

    async def record(heads: Sequence[ExportHead]) -> None:
        read = cli_read(
            command="archive",
            reason=why,
            parameters={"out": target, "period": cut.label},
            heads=[LogHead(origin=h.origin, size=h.size) for h in heads],
        )
        await record_cli_read(settings, read)

    witnesses = [e.split()[-1] for e in re.split(r"[,\n]", settings.witnesses) if e.strip()]
    return asyncio.run(
        archive_period(
            dsn=settings.require("reader_url"),
            path=out,
            ledger_name=settings.ledger_name,
            period=cut,
            verifier_keys=settings.verifier_key_strings(),
            witness_keys=witnesses,
            progress=progress,
            before_writing=record,
        )
    )
