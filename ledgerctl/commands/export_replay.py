"""``ledger export`` and ``ledger replay``: whole-ledger copies (an offline bundle, a
database rebuilt from the Kafka topics).

Invariant: both read every patient's PHI, so each records the read in the ledger (OS user
and ``--reason``) before the first byte is written or read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ledgerctl.commands.common import (
    REASON,
    console,
    fail,
    kafka_security,
    progress,
    report_console_stdout,
)
from ledgerctl.settings import KafkaRole, Settings

if TYPE_CHECKING:
    from ledgerctl.replay import ReplayedLog


def export(
    out: Annotated[Path, typer.Option("--out", help="New (or empty) directory for the bundle.")],
    reason: Annotated[str, REASON],
) -> None:
    """Write an offline bundle for auditors: entries, tiles, checkpoints, index, schemas.

    The bundle holds every patient's PHI: the read is recorded in the ledger (your OS
    user and --reason) before anything is written, and the files are owner-only.
    """
    from ledger.errors import LedgerError
    from ledgerctl.clireads import run_export

    settings = Settings.load()
    with progress() as report:
        try:
            summary = run_export(settings, out=out, reason=reason, progress=report)
        except LedgerError as exc:
            raise fail(str(exc)) from exc
    console.print(
        f"exported {summary.logs} logs, {summary.leaves:,} leaves and "
        f"{summary.checkpoints:,} checkpoints to {out} (owner-only; this read is in the ledger)"
    )


def replay(
    database: Annotated[
        str, typer.Option(help="Target database (same server); created if missing, must be empty.")
    ],
    reason: Annotated[str, REASON],
    timeout: Annotated[float, typer.Option(help="Seconds to reach the end offsets.")] = 3600.0,
) -> None:
    """Rebuild the ledger from the Kafka topics into an empty database; compare the roots.

    It reads every event's PHI from Kafka: the read is recorded in the ledger (your OS
    user and --reason) before the first record is read.
    """
    from ledger.errors import LedgerError
    from ledger.log.keys import load_signers
    from ledgerctl.clireads import replay_recorder
    from ledgerctl.replay import replay as run_replay
    from ledgerctl.replay import source_roots

    settings = Settings.load()
    if not settings.signer_key_file:
        raise fail("LEDGER_SIGNER_KEY_FILE is not set")
    try:
        record = replay_recorder(settings, database=database, reason=reason)
        logs = asyncio.run(
            run_replay(
                owner_url=settings.require("database_url"),
                appender_url=settings.require("appender_url"),
                database=database,
                bootstrap=settings.kafka_bootstrap,
                topics=settings.topics,
                relay_topics=frozenset({settings.relay_topic}),
                registry_topics=frozenset({settings.registry_topic}),
                ledger_name=settings.ledger_name,
                signers=load_signers(settings.signer_key_file),
                timeout=timeout,
                before_reading=record,
                security=kafka_security(settings, KafkaRole.REPLAY),
            )
        )
        source = asyncio.run(source_roots(settings.require("reader_url"), logs))
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    if _print_roots(logs, source):
        raise typer.Exit(code=1)


def _print_roots(logs: Sequence[ReplayedLog], source: Mapping[str, bytes | None]) -> int:
    """Print each replayed log's size and root with how it compares; count those that differ."""
    import base64

    out = report_console_stdout()
    differ = 0
    for log in logs:
        theirs = source.get(log.origin)
        if log.size == 0:
            verdict = "empty (no entries yet)"
        elif theirs is None:
            verdict = "no source log to compare"
        else:
            verdict = "identical to the source" if theirs == log.root else "DIFFERS from the source"
        differ += theirs is not None and theirs != log.root
        root = base64.b64encode(log.root).decode()
        out.print(f"{log.origin}  size {log.size}  root {root}  {verdict}")
    return differ
