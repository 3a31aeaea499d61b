"""Does a ``ledger ...`` command line name a real command with options it accepts? (for
the tests of the deployment files and the runbook)."""

from __future__ import annotations

from typing import Any

import typer.main

from ledgerctl.cli import app


def parse_error(words: list[str]) -> str | None:
    """None when ``ledger WORDS`` parses (command, subcommand, options and arguments),
    else the parser's reason. Nothing runs: only the parser sees the words. (Typer ships
    its own copy of click, so its classes are met by what they have, not imported.)"""
    command: Any = typer.main.get_command(app)
    name = "ledger"
    rest = list(words)
    while hasattr(command, "commands"):
        if not rest:
            return f"{name}: no subcommand"
        if rest[0].startswith("-") and getattr(command, "invoke_without_command", False):
            break  # a group that is also a command (`ledger archive --period ...`)
        sub = command.commands.get(rest[0])
        if sub is None:
            return f"{name}: no command {rest[0]!r}"
        name, command, rest = f"{name} {rest[0]}", sub, rest[1:]
    try:
        command.make_context(name, rest)
    except Exception as exc:
        if type(exc).__name__ == "Exit":  # --help
            return None
        if hasattr(exc, "format_message"):
            return f"{name}: {exc.format_message()}"
        raise
    return None
