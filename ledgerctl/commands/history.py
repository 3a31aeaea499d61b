"""``ledger history``: a patient's, a user's, a study's or an accession's history, every page,
read through the API.

Invariant: the CLI reads PHI here only through the API, which records the read; a
history that shows nothing says so on stderr, never as a silent empty table, and one that
could not read a detached period names it on stderr (``--require-complete``: exit 3).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from ledgerctl.commands.common import console, fail
from ledgerctl.settings import Settings
from ledgerctl.unreadable import REQUIRE_COMPLETE, period_lines, say


def history(
    patient_id: Annotated[
        str | None, typer.Argument(help="Patient id (MRN); or use --user or --study.")
    ] = None,
    issuer: Annotated[str | None, typer.Option(help="Assigning authority.")] = None,
    user: Annotated[str | None, typer.Option(help="A user's history instead.")] = None,
    study: Annotated[str | None, typer.Option(help="A study's history (its UID).")] = None,
    accession: Annotated[
        str | None,
        typer.Option(
            help="The history of an accession number; with --study, only events of the "
            "study naming it."
        ),
    ] = None,
    since: Annotated[str | None, typer.Option(help="From, RFC 3339 (inclusive).")] = None,
    until: Annotated[str | None, typer.Option(help="Until, RFC 3339 (exclusive).")] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="At most this many entries (default: every page).")
    ] = None,
    page_size: Annotated[
        int, typer.Option(min=1, max=1000, help="Entries per request to the API.")
    ] = 1000,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV on stdout instead of a table.")
    ] = False,
    hide_self_audit: Annotated[
        bool,
        typer.Option(
            "--hide-self-audit",
            help="Leave out the ledger's records of its own reads (shown by default).",
        ),
    ] = False,
    require_complete: Annotated[bool, REQUIRE_COMPLETE] = False,
) -> None:
    """Print a patient's (or --user's, --study's or --accession's) history, newest first,
    every page, read through the API; codes spelled out."""
    from ledgerctl.histories import (
        HistoryRequest,
        Subject,
        caption,
        csv_text,
        empty_warning,
        fetch_pages,
        get,
    )
    from ledgerctl.histories import hide_self_audit as hide
    from ledgerctl.tables import render_history, report_console

    subjects: tuple[tuple[Subject, str | None], ...] = (
        ("patient", patient_id),
        ("user", user),
        ("study", study),
        ("accession", None if study else accession),
    )
    named = [(k, v) for k, v in subjects if v]
    if len(named) != 1:
        raise fail("name exactly one of: a patient id, --user, --study or --accession")
    (subject, ident), qualifier = named[0], issuer if patient_id else (study and accession)
    if issuer and not patient_id:
        raise fail("--issuer goes with a patient id")
    req = HistoryRequest(
        subject=subject,
        id=ident,
        qualifier=qualifier,
        since=since,
        until=until,
        limit=limit,
        page_size=page_size,
    )
    try:
        found = asyncio.run(fetch_pages(Settings.load().api(), req))
    except ValueError as exc:
        raise fail(f"the API refused the request: {exc}") from exc
    shown = hide(found) if hide_self_audit else found
    warning = empty_warning(req, shown)
    if warning:
        console.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True, highlight=False)
    missing = period_lines(shown.unreadable)
    if as_csv:
        sys.stdout.write(csv_text(shown.entries))
        sys.stdout.flush()
        say(missing, require_complete=require_complete)
        return
    if not shown.entries:
        say(missing, require_complete=require_complete)
        return
    origins = sorted({get(e, "ledger", "origin").split("/", 1)[0] for e in shown.entries})
    render_history(
        report_console(),
        ident,
        shown.entries,
        title=f"History of {req.describe()}{req.window()}: {len(shown.entries)} entries, "
        "newest first",
        caption=caption(shown, origins),
        with_patient=subject != "patient",
    )
    say(missing, require_complete=require_complete)
