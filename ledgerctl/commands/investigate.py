"""``ledger investigate``: a breach investigation (45 CFR 164.404-164.410) through the API.

Invariant: the CLI reads PHI here only through the API, which records the read.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from ledgerctl.commands.common import console, fail
from ledgerctl.settings import Settings
from ledgerctl.unreadable import REQUIRE_COMPLETE, period_lines, say


def investigate(
    since: Annotated[str, typer.Option(help="Window start, RFC 3339 (inclusive).")],
    until: Annotated[str, typer.Option(help="Window end, RFC 3339 (exclusive).")],
    user: Annotated[list[str] | None, typer.Option(help="A user in scope (repeatable).")] = None,
    facility: Annotated[str | None, typer.Option(help="The facility in scope.")] = None,
    address: Annotated[
        list[str] | None, typer.Option(help="A network address in scope (repeatable).")
    ] = None,
    as_of: Annotated[
        list[str] | None,
        typer.Option(
            "--as-of",
            help="A signed checkpoint <origin>:<size> to compute against (repeatable; "
            "default: the latest of each log).",
        ),
    ] = None,
    as_of_report: Annotated[
        Path | None,
        typer.Option(
            "--as-of-report",
            help="A saved JSON report: compute as of the checkpoints it names, with their "
            "signed notes (works on a replayed copy of the ledger).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="With --out: json, csv (the patients, the verdict and the per-state counts) "
            "or html (printable, for counsel).",
        ),
    ] = "html",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the report here, as the API answered it.")
    ] = None,
    require_complete: Annotated[bool, REQUIRE_COMPLETE] = False,
) -> None:
    """Who and what a breach touched: affected patients (named, or returned by a query's
    answer), per-state counts, notices, and answers too large to list every patient; the
    checkpoints it was computed against and its digest (re-run with --as-of)."""
    from ledgerctl.investigation import fetch_investigation, render_investigation, scope_warnings
    from ledgerctl.tables import report_console

    scope: dict[str, object] = {"since": since, "until": until}
    if user:
        scope["users"] = list(user)
    if facility is not None:
        scope["facility"] = facility
    if address:
        scope["network_addresses"] = list(address)
    settings = Settings.load()
    if out is not None:
        _export(settings, scope, as_of, as_of_report, fmt, out, require_complete)
        return
    try:
        report = asyncio.run(fetch_investigation(settings.api(), scope, as_of, as_of_report))
    except ValueError as exc:
        raise fail(f"the API refused the request: {exc}") from exc
    for warning in scope_warnings(report):
        console.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True, highlight=False)
    if as_json:
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        render_investigation(report_console(), report)
    say(period_lines(report.get("unreadable_periods")), require_complete=require_complete)


def _export(
    settings: Settings,
    scope: dict[str, object],
    as_of: list[str] | None,
    as_of_report: Path | None,
    fmt: str,
    out: Path,
    require_complete: bool,
) -> None:
    """Write the API's answer in ``fmt`` to ``out``; print its verdict (CSV and JSON) and
    its seal on stderr."""
    from ledgerctl.investigation import verdict_of
    from ledgerctl.reportfetch import as_of_params, fetch_report, seal_lines

    if fmt not in ("json", "csv", "html"):
        raise fail("--format must be json, csv or html")
    try:
        params = [("format", fmt), *as_of_params(as_of, as_of_report)]
        answer = asyncio.run(
            fetch_report(settings.api(), "/v1/investigations", params, scope=scope)
        )
    except ValueError as exc:
        raise fail(f"the API refused the request: {exc}") from exc
    out.write_bytes(answer.body)
    verdict = verdict_of(answer.body, fmt)
    if verdict:
        typer.echo(verdict, err=True)
    report = json.loads(answer.body) if fmt == "json" else {}
    for line in [*seal_lines(report, answer.digest), f"written: {out}"]:
        typer.echo(line, err=True)
    say(answer.unreadable_lines(), require_complete=require_complete)
