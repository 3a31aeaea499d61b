"""``ledger registry ...``: the compliance registry (docs/design/compliance-registry.md).

Invariant: ``validate`` reads the named files only (no Kafka, no database, no API) and
changes nothing; it exits 1 when any line is bad, after printing every bad line.
"""

from __future__ import annotations

import getpass
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ledgerctl.commands.common import fail

if TYPE_CHECKING:
    from producers import Author

registry_app = typer.Typer(
    help=(
        "The compliance registry: organizations, BAAs, workforce members, state licenses "
        "and credentials, loaded from CSV or JSON files. Only `validate` exists yet; "
        "`import`, `show` and the /v1/registry API come with the registry's Kafka and "
        "database slice."
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


def _operator() -> Author:
    """The author of changes made from the command line: the OS user."""
    from producers import Author

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "operator"
    return Author(user_id=user or "operator", role="operator")
