"""``ledger history``: one patient's access history, read through the API.

Invariant: the CLI reads PHI here only through the API, which records the read.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from ledgerctl.settings import Settings


def history(
    patient_id: Annotated[str, typer.Argument(help="Patient id (MRN).")],
    issuer: Annotated[str | None, typer.Option(help="Assigning authority.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """Print one patient's access history, newest first, read through the API."""
    from ledgerctl.tables import fetch_history, render_history, report_console

    settings = Settings.load()
    entries = asyncio.run(fetch_history(settings.api(), patient_id, issuer, limit))
    render_history(report_console(), patient_id, entries)
