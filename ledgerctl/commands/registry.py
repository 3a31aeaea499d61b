"""``ledger registry ...``: the compliance registry (docs/design/compliance-registry.md).

Invariant: ``validate`` reads the named files only (no Kafka, no database, no API) and
changes nothing; ``import`` emits nothing unless every line passed the file checks and
the checks against the stored registry (``ledgerctl.registryimport``). Both exit 1 when
any line is bad, after printing every bad line. ``show`` reads the registry log(s) from
the database and records that read in the ledger (OS user, --reason) before it prints
anything.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from ledgerctl.commands.common import REASON, fail, report_console_stdout

if TYPE_CHECKING:
    from producers import Author, RegistryProblem

registry_app = typer.Typer(
    help=(
        "The compliance registry: organizations, BAAs, workforce members, state licenses "
        "and credentials, loaded from CSV or JSON files: `validate` checks files, `import` "
        "checks them against the stored registry and emits their changes, `show` prints the "
        "state as known at any time (also GET /v1/registry)."
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


@registry_app.command("show")
def show(
    reason: Annotated[str, REASON],
    as_of: Annotated[
        str,
        typer.Option(
            "--as-of",
            help="'now' or an ISO 8601 time (2026-03-01T12:00:00Z; a date is 00:00 UTC): "
            "the changes the registry held then.",
        ),
    ] = "now",
    kind: Annotated[
        str | None,
        typer.Option(help="Only organization, baa, member, license or credential."),
    ] = None,
    user: Annotated[str | None, typer.Option(help="Only records naming this user.")] = None,
    facility: Annotated[str | None, typer.Option(help="Only records naming this facility.")] = None,
    output: Annotated[
        str, typer.Option("--format", help="table (default), json or csv.")
    ] = "table",
) -> None:
    """The registry as known at a time: every record with the ledger position (log, leaf)
    of the change that set it, read under the registry's latest signed checkpoint.

    Recorded in the ledger as a read (your OS user and --reason) before it prints.
    """
    from ledger.errors import LedgerError
    from ledgerctl.registryshow import (
        FORMATS,
        parse_as_of,
        print_table,
        render_csv,
        render_json,
        show_registry,
    )
    from ledgerctl.settings import Settings

    if output not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}")
    try:
        when = parse_as_of(as_of)
        read, snapshot = show_registry(
            Settings.load(), reason=reason, as_of=when, kind=kind, user=user, facility=facility
        )
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    shown_kind = None if kind is None else kind.strip().lower()
    if output == "json":
        typer.echo(render_json(read, snapshot, shown_kind))
    elif output == "csv":
        typer.echo(render_csv(read, snapshot, shown_kind), nl=False)
    else:
        print_table(report_console_stdout(), read, snapshot, shown_kind)
