"""``ledger registry ...``: the compliance registry (docs/design/compliance-registry.md).

Invariant: ``validate`` reads the named files only (no Kafka, no database, no API) and
changes nothing; ``import`` emits nothing unless every line passed the file checks and
the checks against the stored registry (``ledgerctl.registryimport``). Both exit 1 when
any line is bad, after printing every bad line.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ledgerctl.commands.common import fail

if TYPE_CHECKING:
    from producers import Author, RegistryProblem

registry_app = typer.Typer(
    help=(
        "The compliance registry: organizations, BAAs, workforce members, state licenses "
        "and credentials, loaded from CSV or JSON files: `validate` checks files, `import` "
        "checks them against the stored registry and emits their changes."
    ),
    no_args_is_help=True,
)

FILES = typer.Argument(
    help="Registry files: .csv (one kind per file, a `kind` column) or .json (an array of "
    "objects, each with its `kind`).",
)


@registry_app.command("validate")
def validate(
    files: Annotated[list[Path], FILES],
    known_organization: Annotated[
        list[str] | None,
        typer.Option(
            "--known-organization",
            help="An organization id the registry already holds (repeat the option).",
        ),
    ] = None,
    known_user: Annotated[
        list[str] | None,
        typer.Option("--known-user", help="A user id the registry already holds (repeatable)."),
    ] = None,
) -> None:
    """Check registry files: print what they would change, or every bad line.

    Prints the number of changes per kind and operation, or every bad line as
    `file:line: field: reason` and exits 1. Nothing is applied either way.
    """
    from producers import KnownRegistryIds, RegistryFileError, load_registry_files

    known = KnownRegistryIds(
        organizations=frozenset(known_organization or ()), users=frozenset(known_user or ())
    )
    try:
        changes = load_registry_files(files, author=_operator(), known=known)
    except RegistryFileError as exc:
        for problem in exc.problems:
            typer.echo(str(problem))
        raise fail(
            f"{len(exc.problems)} problem(s) in {len(files)} file(s); nothing would be applied"
        ) from exc
    counts = Counter((c.kind, c.operation) for c in changes)  # in the order applied
    typer.echo(f"{len(changes)} change(s) in {len(files)} file(s) would be applied:")
    for (kind, operation), count in counts.items():
        typer.echo(f"  {kind.value.lower():<13} {operation.value.lower():<7} {count}")


@registry_app.command("import")
def import_(files: Annotated[list[Path], FILES]) -> None:
    """Load registry files into the ledger: every change, or nothing.

    The files are checked as `validate` does, with the organizations and users the
    stored registry holds as known ids, and then against the stored registry (a retire
    of a record it does not hold, a period overlapping a stored one). Any problem: every
    bad line is printed as `file:line: field: reason`, nothing is emitted, exit 1.
    Otherwise every change is emitted to the registry topic (LEDGER_REGISTRY_TOPIC),
    signed with LEDGER_REGISTRY_PRODUCER_KEY_FILE, authored by your OS user.
    """
    from ledger.errors import LedgerError
    from ledgerctl.registryimport import (
        lines_of,
        load_stored_registry,
        stored_problems,
        submit_registry_changes,
    )
    from ledgerctl.settings import Settings
    from producers import ProducerError, RegistryFileError, load_registry_files

    settings = Settings.load()
    try:
        stored = asyncio.run(load_stored_registry(settings))
    except LedgerError as exc:
        raise fail(f"cannot read the stored registry: {exc}") from exc
    try:
        changes = load_registry_files(files, author=_operator(), known=stored.known())
    except RegistryFileError as exc:
        _refuse(exc.problems, len(files))
    problems = stored_problems(changes, lines_of(files), stored)
    if problems:
        _refuse(problems, len(files))
    try:
        sent = asyncio.run(submit_registry_changes(settings, changes))
    except (LedgerError, ProducerError) as exc:
        raise fail(f"{exc}") from exc
    for change in changes:
        typer.echo(
            f"  {change.operation.value.lower():<7} {change.kind.value.lower():<13} "
            f"{change.record.record_id}  event {change.event_id}"
        )
    typer.echo(f"{sent} change(s) emitted to {settings.registry_topic}")


def _refuse(problems: Sequence[RegistryProblem], files: int) -> NoReturn:
    for problem in problems:
        typer.echo(str(problem))
    raise fail(f"{len(problems)} problem(s) in {files} file(s); nothing was emitted")


def _operator() -> Author:
    """The author of changes made from the command line: the effective OS user (from the
    uid, not the environment), as every command records its operator."""
    from ledgerctl.cliaudit import OPERATOR_ROLE, operator
    from producers import Author

    return Author(user_id=operator(), role=OPERATOR_ROLE)
