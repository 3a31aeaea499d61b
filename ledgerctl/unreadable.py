"""What an answer of the API could not read, said on stderr.

Invariant: every command that prints an answer over time names on stderr each detached
period the API said it could not read (``unreadable_periods`` in a JSON answer, the
``Unreadable-Periods`` header otherwise), and with ``--require-complete`` exits with
``INCOMPLETE`` after printing the answer when there is one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import typer

#: The header naming, by label, the periods an answer could not read.
HEADER: Final = "Unreadable-Periods"
#: The exit code of a command given ``--require-complete`` whose answer lacks a period.
INCOMPLETE: Final = 3

REQUIRE_COMPLETE = typer.Option(
    "--require-complete",
    help="Exit 3 when the answer could not read some period (archived and detached).",
)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def period_lines(periods: object) -> list[str]:
    """One line per period of an answer's ``unreadable_periods``."""
    named = [p for p in periods if isinstance(p, dict)] if isinstance(periods, list) else []
    out = []
    for p in named:
        span = ""
        if p.get("events_from"):
            span = f"; its events {_text(p.get('events_from'))} to {_text(p.get('events_until'))}"
        out.append(
            f"incomplete: this answer does not include {_text(p.get('period'))} "
            f"({_text(p.get('state'))}; archive bundle sha256 {_text(p.get('archive'))}{span})"
        )
    return out


def header_lines(value: str) -> list[str]:
    """One line per period the ``Unreadable-Periods`` header names."""
    labels = [v.strip() for v in value.split(",") if v.strip()]
    return [f"incomplete: this answer does not include {label} (detached)" for label in labels]


def merge(known: list[dict[str, object]], more: object) -> None:
    """Add the periods of one page's ``unreadable_periods`` to ``known`` (once each)."""
    seen = {p.get("period") for p in known}
    for p in more if isinstance(more, list) else []:
        if isinstance(p, dict) and p.get("period") not in seen:
            seen.add(p.get("period"))
            known.append(p)


def say(lines: Iterable[str], *, require_complete: bool) -> None:
    """Print ``lines`` on stderr; exit ``INCOMPLETE`` if any and ``require_complete``."""
    said = list(lines)
    for line in said:
        typer.echo(line, err=True)
    if said and require_complete:
        raise typer.Exit(code=INCOMPLETE)
