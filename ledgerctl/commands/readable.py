"""``ledger disclosures``, ``ledger relays`` and ``ledger status``: answers a privacy
officer, a patient and a relay coordinator read without knowing the codes.

Invariant: PHI is read only through the API (which records the read); ``status`` reads no
PHI (Kafka offsets and the ledger's positions, sizes and checkpoints); what matched nothing
is said on stderr as a warning, never shown as an empty answer.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledgerctl.commands.common import console, fail, kafka_security
from ledgerctl.settings import KafkaRole, Settings

if TYPE_CHECKING:
    from rich.console import Console

AT = typer.Option(help="The time the report is made as of, RFC 3339 (default: now).")


def _warn(text: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {text}", soft_wrap=True, highlight=False)


def disclosures(
    patient: Annotated[str, typer.Argument(help="The patient id.")],
    issuer: Annotated[str | None, typer.Option(help="Assigning authority of the id.")] = None,
    years: Annotated[int, typer.Option(help="Lookback, 1 to 6 years.")] = 6,
    at: Annotated[str | None, AT] = None,
    facility_name: Annotated[
        str | None, typer.Option(help="Who sends it (default: LEDGER_FACILITY_NAME).")
    ] = None,
    contact: Annotated[
        str | None,
        typer.Option(help="How to reach the privacy office (default: LEDGER_FACILITY_CONTACT)."),
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the API's printable page here.")
    ] = None,
) -> None:
    """The accounting of disclosures (45 CFR 164.528) as a letter to the patient: readable
    dates, repeat disclosures grouped, technical references in an appendix."""
    from urllib.parse import quote

    from ledgerctl.accounting import Letterhead, letter
    from ledgerctl.reportfetch import fetch_report, seal_lines

    settings = Settings.load()
    params = [("years", str(years))]
    params += [("issuer", issuer)] if issuer is not None else []
    params += [("at", at)] if at is not None else []
    path = f"/v1/patients/{quote(patient, safe='')}/disclosures"
    try:
        answer = asyncio.run(fetch_report(settings.api(), path, params))
        page = (
            asyncio.run(fetch_report(settings.api(), path, [*params, ("format", "html")]))
            if html is not None
            else None
        )
    except ValueError as exc:
        raise fail(f"the API refused the request: {exc}") from exc
    accounting = json.loads(answer.body)
    head = Letterhead(
        name=facility_name or settings.facility_name,
        contact=contact or settings.facility_contact,
    )
    if head.name is None:
        _warn("no facility name: pass --facility-name or set LEDGER_FACILITY_NAME")
    if not accounting.get("entries") and not accounting.get("excluded"):
        _warn(f"no disclosures recorded for patient {patient} in this period")
    for line in letter(accounting, head):
        typer.echo(line)
    for line in [*seal_lines(accounting, answer.digest), *answer.unreadable_lines()]:
        typer.echo(line, err=True)
    if html is not None and page is not None:
        html.write_bytes(page.body)
        typer.echo(f"printable page: {html}", err=True)


def relays(
    month: Annotated[str, typer.Option(help="Calendar month YYYY-MM (UTC).")],
    facility: Annotated[str | None, typer.Option(help="Only this facility.")] = None,
    at: Annotated[str | None, AT] = None,
) -> None:
    """Critical-result relays of one month: deadlines met, missed, overdue and pending per
    ACR category, and every relay that missed its deadline or lacks a read-back."""
    from ledger.audit import wording
    from ledgerctl.relays import headline, month_window
    from ledgerctl.reportfetch import fetch_report, seal_lines
    from ledgerctl.tables import report_console

    try:
        start, end = month_window(month)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    params = [("since", start.isoformat()), ("until", end.isoformat())]
    params += [(k, v) for k, v in (("facility", facility), ("at", at)) if v is not None]
    try:
        answer = asyncio.run(
            fetch_report(Settings.load().api(), "/v1/reports/critical-results", params)
        )
    except ValueError as exc:
        raise fail(f"the API refused the request: {exc}") from exc
    report = json.loads(answer.body)
    label = " ".join(wording.date(start).split()[1:])
    out = report_console()
    if not report.get("relays"):
        _warn(f"no relays identified in {label}" + (f" at {facility}" if facility else ""))
    out.print(headline(report, label, facility), highlight=False, markup=False, soft_wrap=True)
    if report.get("relays"):
        _relay_tables(out, report)
    for line in [*seal_lines(report, answer.digest), *answer.unreadable_lines()]:
        typer.echo(line, err=True)


def _relay_tables(out: Console, report: dict[str, Any]) -> None:
    from rich.table import Table

    from ledgerctl.relays import CATEGORY_COLUMNS, EXCEPTION_COLUMNS, category_row, exception_row

    cats = Table(title="Per ACR category", title_justify="left")
    for column in CATEGORY_COLUMNS:
        cats.add_column(column)
    for c in report.get("categories") or []:
        cats.add_row(*category_row(c))
    out.print(cats)
    exceptions = report.get("exceptions") or []
    if exceptions:
        table = Table(title="Relays that missed a deadline or a read-back", title_justify="left")
        for column in EXCEPTION_COLUMNS:
            table.add_column(column, no_wrap=column == "position")
        for x in exceptions:
            table.add_row(*exception_row(x))
        out.print(table)


def status(
    stale: Annotated[
        float, typer.Option(help="Warn when a log's unsigned leaves wait longer (seconds).")
    ] = 60.0,
) -> None:
    """Ingestion lag per partition (Kafka's end offset, the ledger's ingested offset), each
    log's signed size, unsigned leaves and the age of its last checkpoint."""
    from datetime import timedelta

    from aiokafka.errors import KafkaError
    from rich.table import Table

    from ledger.errors import LedgerError
    from ledger.pg.status import ingestion_status
    from ledgerctl.status import COLUMNS, combine, end_offsets, row, summary
    from ledgerctl.tables import report_console

    settings = Settings.load()
    dsn = settings.reader_url or settings.database_url
    if dsn is None:
        raise fail("no database: set LEDGER_READER_URL (or DATABASE_URL)")
    try:
        logs = asyncio.run(ingestion_status(dsn.get_secret_value()))
    except (LedgerError, OSError) as exc:
        raise fail(f"the ledger's database could not be read: {type(exc).__name__}") from exc
    ends: dict[tuple[str, int], int] | None
    try:
        ends = asyncio.run(
            end_offsets(
                settings.kafka_bootstrap,
                settings.topics,
                kafka_security(settings, KafkaRole.CONSUMER),
            )
        )
    except (KafkaError, OSError, TimeoutError) as exc:
        _warn(f"Kafka could not be read ({type(exc).__name__}): the lag is unknown")
        ends = None
    rows = combine(logs, ends, settings.topics)
    out = report_console()
    table = Table(title="Ingestion and signing, per partition", title_justify="left")
    for column in COLUMNS:
        table.add_column(column)
    for r in rows:
        table.add_row(*row(r))
    out.print(table)
    for line in summary(rows, stale=timedelta(seconds=stale)):
        out.print(line, highlight=False, markup=False, soft_wrap=True)
