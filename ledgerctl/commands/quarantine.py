"""``ledger quarantine ...``: what ingestion refused (``ledger alerts`` is in ``compliance``).

Invariant: listing reads through the API; re-submitting reads a record's raw bytes (PHI)
from the database, so the read is recorded in the ledger first.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from ledgerctl.commands.common import REASON, console, fail, kafka_security, report_console_stdout
from ledgerctl.settings import KafkaRole, Settings

quarantine_app = typer.Typer(
    help="Records that could not be appended: list them, re-submit after a fix.",
    no_args_is_help=True,
)


@quarantine_app.command("list")
def quarantine_list(
    reason: Annotated[str | None, typer.Option(help="Only this reason code.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """List quarantined records (through the API), oldest first."""
    from rich.table import Table

    from ledgerctl.quarantine import fetch_quarantine

    settings = Settings.load()
    records = asyncio.run(fetch_quarantine(settings.api(), reason=reason, limit=limit))
    table = Table(title=f"{len(records)} quarantined record(s)", title_justify="left")
    for column in ("id", "when", "topic/partition@offset", "reason", "bytes", "resent", "detail"):
        table.add_column(column, overflow="fold")
    for r in records:
        value = r.get("record_value") or ""
        table.add_row(
            str(r["quarantine_id"]),
            str(r["quarantined_at"])[:19],
            f"{r['topic']}/{r['kafka_partition']}@{r['kafka_offset']}",
            str(r["reason"]),
            str(len(value) * 3 // 4),
            str(r["resubmissions"]),
            str(r["detail"]),
        )
    report_console_stdout().print(table)


@quarantine_app.command("resubmit")
def quarantine_resubmit(
    quarantine_id: Annotated[int, typer.Argument(help="Quarantine id (from `list`).")],
    reason: Annotated[str, REASON],
    force: Annotated[bool, typer.Option(help="Send even conflicts and oversize records.")] = False,
) -> None:
    """Send a quarantined record's bytes back to its topic (after the cause was fixed).

    It reads the record's raw bytes (PHI) from the database: the read is recorded in
    the ledger (your OS user and --reason) first.
    """
    from ledger.errors import LedgerError
    from ledgerctl.clireads import record_resubmit
    from ledgerctl.quarantine import resubmit

    settings = Settings.load()
    try:
        record_resubmit(settings, quarantine_id=quarantine_id, force=force, reason=reason)
        done = asyncio.run(
            resubmit(
                dsn=settings.require("appender_url"),
                bootstrap=settings.kafka_bootstrap,
                quarantine_id=quarantine_id,
                force=force,
                security=kafka_security(settings, KafkaRole.OPERATOR),
            )
        )
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    console.print(
        f"re-submitted record {done.quarantine_id} to {done.topic}/{done.partition}@{done.offset}"
    )
