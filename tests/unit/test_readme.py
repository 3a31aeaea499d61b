"""The README's commands are the real ones."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from ledgerctl.cli import app
from tests.support import ROOT

README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_quick_start_is_exactly_two_commands() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [b.strip() for b in re.findall(r"```sh\n(.*?)```", quick_start, flags=re.S)]
    assert commands == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert [line for line in ci.splitlines() if line and not line.startswith("#")][-1] == (
        "exec make test"
    )


def test_makefile_has_every_target_the_readme_names() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test", "up", "down", "check"):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target


def test_every_subcommand_the_readme_lists_exists() -> None:
    listed = re.search(r"lists every subcommand: (.*?)\.\n", README, flags=re.S)
    assert listed is not None
    names = re.findall(r"`(\w+)`", listed.group(1))
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in names:
        assert name in result.output, name
    usage = [
        line for b in blocks("sh") for line in b.splitlines() if line.startswith(".venv/bin/ledger")
    ]
    assert len(usage) >= 5, "README shows ledger usage"
    for line in usage:
        sub, *args = line.split("#")[0].split()[1:]
        command = [sub]
        group_help = CliRunner().invoke(app, [sub, "--help"], terminal_width=200)
        if "Commands" in group_help.output and args and not args[0].startswith("-"):
            command.append(args.pop(0))  # a command group: `ledger token create ...`
        help_text = CliRunner().invoke(
            app, [*command, "--help"], terminal_width=200, env={"COLUMNS": "200"}
        )  # rich takes its width from COLUMNS: long option names are not cut short
        assert help_text.exit_code == 0, sub
        for option in (a for a in args if a.startswith("--")):
            assert option in help_text.output, f"{sub} has no {option}"
