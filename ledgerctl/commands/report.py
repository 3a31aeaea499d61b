"""``ledger report disclosures|critical-results|compliance``: the reports through the API.

Invariant: the report is written exactly as the API answered it (the API records the
read), so the same request as of the same checkpoints writes the same bytes; the
checkpoints it was computed against and its digest go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ledgerctl.commands.common import fail
from ledgerctl.settings import Settings
from ledgerctl.unreadable import REQUIRE_COMPLETE

report_app = typer.Typer(
    help="HIPAA reports as of signed checkpoints (JSON, CSV or HTML), with their digest.",
    no_args_is_help=True,
)

AS_OF = typer.Option(
    "--as-of",
    help="A signed checkpoint <origin>:<size> to compute against (repeatable; default: "
    "the latest of each log).",
)
AS_OF_REPORT = typer.Option(
    "--as-of-report",
    help="A saved JSON report: compute as of the checkpoints it names, with their signed "
    "notes (works on a replayed copy of the ledger).",
)
AT = typer.Option(help="The time the report is made as of, RFC 3339 (default: now).")
OUT = typer.Option("--out", help="Write the report here instead of stdout.")


def _run(
    path: str,
    params: list[tuple[str, str]],
    as_of: list[str] | None,
    as_of_report: Path | None,
    out: Path | None,
    require_complete: bool,
) -> None:
    from ledgerctl.reportfetch import as_of_params, fetch_report, seal_lines

    try:
        params = params + as_of_params(as_of, as_of_report)
        answer = asyncio.run(fetch_report(Settings.load().api(), path, params))
    except ValueError as exc:
        raise fail(f"the API refused the request: {exc}") from exc
    if out is None:
        sys.stdout.buffer.write(answer.body)
        sys.stdout.buffer.flush()
    else:
        out.write_bytes(answer.body)
    try:
        report = json.loads(answer.body)
    except ValueError:  # CSV or HTML: the checkpoints are in the file itself
        report = {}
    lines = seal_lines(report, answer.digest) if isinstance(report, dict) else []
    for line in lines or [f"digest: {answer.digest}"]:
        typer.echo(line, err=True)
    from ledgerctl.unreadable import say

    say(answer.unreadable_lines(), require_complete=require_complete)


@report_app.command()
def disclosures(
    patient: Annotated[str, typer.Argument(help="The patient id.")],
    issuer: Annotated[str | None, typer.Option(help="Assigning authority of the id.")] = None,
    years: Annotated[int, typer.Option(help="Lookback, 1 to 6 years.")] = 6,
    at: Annotated[str | None, AT] = None,
    as_of: Annotated[list[str] | None, AS_OF] = None,
    as_of_report: Annotated[Path | None, AS_OF_REPORT] = None,
    fmt: Annotated[str, typer.Option("--format", help="json, csv or html.")] = "json",
    out: Annotated[Path | None, OUT] = None,
    require_complete: Annotated[bool, REQUIRE_COMPLETE] = False,
) -> None:
    """The accounting of disclosures of one patient's PHI (45 CFR 164.528)."""
    from urllib.parse import quote

    params = [("years", str(years)), ("format", fmt)]
    params += [("issuer", issuer)] if issuer is not None else []
    params += [("at", at)] if at is not None else []
    _run(
        f"/v1/patients/{quote(patient, safe='')}/disclosures",
        params,
        as_of,
        as_of_report,
        out,
        require_complete,
    )


@report_app.command("critical-results")
def critical_results(
    since: Annotated[str | None, typer.Option(help="Identified at or after, RFC 3339.")] = None,
    until: Annotated[str | None, typer.Option(help="Identified before, RFC 3339.")] = None,
    facility: Annotated[str | None, typer.Option(help="Only this facility.")] = None,
    at: Annotated[str | None, AT] = None,
    as_of: Annotated[list[str] | None, AS_OF] = None,
    as_of_report: Annotated[Path | None, AS_OF_REPORT] = None,
    fmt: Annotated[str, typer.Option("--format", help="json or csv.")] = "json",
    out: Annotated[Path | None, OUT] = None,
    require_complete: Annotated[bool, REQUIRE_COMPLETE] = False,
) -> None:
    """Critical-result relays: timeliness per ACR category, late or read-back-less relays."""
    params = [("format", fmt)]
    for name, value in (("since", since), ("until", until), ("facility", facility), ("at", at)):
        if value is not None:
            params.append((name, value))
    _run("/v1/reports/critical-results", params, as_of, as_of_report, out, require_complete)


@report_app.command()
def compliance(
    facility: Annotated[str, typer.Option(help="The facility id.")],
    month: Annotated[str, typer.Option(help="Calendar month YYYY-MM (rules' time zone).")],
    at: Annotated[
        str | None,
        typer.Option(
            help="Cut-off for alerts and triage, and the relays' now, RFC 3339 (default: "
            "now); a re-run passes the one the report printed."
        ),
    ] = None,
    as_of: Annotated[list[str] | None, AS_OF] = None,
    as_of_report: Annotated[Path | None, AS_OF_REPORT] = None,
    fmt: Annotated[str, typer.Option("--format", help="json, csv or html.")] = "json",
    out: Annotated[Path | None, OUT] = None,
    require_complete: Annotated[bool, REQUIRE_COMPLETE] = False,
) -> None:
    """The compliance report: one facility's month, item by item of the checklist."""
    params = [("facility", facility), ("month", month), ("format", fmt)]
    params += [("at", at)] if at is not None else []
    _run("/v1/reports/compliance", params, as_of, as_of_report, out, require_complete)
