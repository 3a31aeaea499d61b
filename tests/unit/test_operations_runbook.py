"""The operator runbook (docs/operations.md, before "Reading PHI"): every `ledger ...`
command it gives parses with the CLI's own parser, every file it names exists, every
setting it names is one, and every unit it starts is shipped."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ledgerctl.configfile import CONFIG_FILE_VAR, secret_fields
from ledgerctl.settings import KAFKA_SECURITY_VARS, Settings
from tests.unit.cli_commands import parse_error

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
RUNBOOK = DOC.split("\n# Reading PHI from the command line", 1)[0]

SECTIONS = (
    "## Install on a host (systemd)",
    "## Configuration",
    "## Upgrade, with migrations",
    "## Rotate the signing key",
    "## Back up and restore",
    "## Drain a dead host's spool",
    "## Scale consumers",
    "## Kubernetes (Helm chart)",
    "## Container image",
)


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", RUNBOOK, flags=re.DOTALL)


def ledger_commands() -> list[list[str]]:
    """Each `ledger` invocation in the shell blocks and in inline code, as words after
    `ledger` (leading VAR=value assignments and trailing comments dropped)."""
    lines = []
    for block in shell_blocks():
        lines += re.sub(r"\\\n\s*", " ", block).splitlines()
    lines += re.findall(r"`(ledger [^`]+)`", RUNBOOK)
    commands = []
    for line in lines:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)  # comments dropped
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token not in {"&&", "||", ";", "|", "(", ")", "&"}:
                words.append(token)
                continue
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]
            if words and (words[0] == "ledger" or words[0].endswith("/bin/ledger")):
                commands.append(words[1:])
            words = []
    return commands


COMMANDS = ledger_commands()


def test_the_runbook_has_its_sections() -> None:
    for heading in SECTIONS:
        assert f"\n{heading}\n" in RUNBOOK, heading
    backup = RUNBOOK.split("## Back up and restore\n", 1)[1].split("\n## ", 1)[0]
    assert "postgres.md" in backup


def test_the_runbook_gives_the_commands_it_should() -> None:
    named = {" ".join(c[:2]) for c in COMMANDS}
    for expected in (
        "migrate",
        "topics",
        "keygen --out",
        "producer add",
        "spool drain",
        "status",
        "token create",
        "verifier-key /etc/philedger/secrets/signer.key",
    ):
        assert any(n.startswith(expected) for n in named), expected
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_every_ledger_command_parses(words: list[str]) -> None:
    assert parse_error(words) is None


def test_the_command_check_can_fail() -> None:
    assert parse_error(["spool", "drain", "--producer", "x"]) is not None
    assert parse_error(["keygen", "--output", "x"]) is not None


def test_every_repository_file_it_names_exists() -> None:
    paths = set(re.findall(r"\b(deploy/[\w./@-]+[\w])", RUNBOOK))
    paths |= {f"docs/{p}" for p in re.findall(r"\]\(([\w-]+\.md)", RUNBOOK)}
    assert "deploy/config/ledger.toml" in paths
    missing = sorted(p for p in paths if "*" not in p and not (ROOT / p).exists())
    assert missing in ([], ["docs/postgres.md"])  # postgres.md: the backup part's own doc


def test_every_unit_it_starts_is_shipped() -> None:
    units = {p.name for p in (ROOT / "deploy" / "systemd").glob("*.service")}
    started = set()
    for line in RUNBOOK.splitlines():
        if "systemctl " in line:
            started |= set(re.findall(r"\b(philedger-[a-z]+)(@[\d*]+)?", line))
    assert ("philedger-consumer", "@9471") in started
    for name, instance in started:
        assert (f"{name}@.service" if instance else f"{name}.service") in units, name


def test_every_setting_it_names_is_one() -> None:
    names = {f.alias for f in Settings.model_fields.values() if f.alias}
    names |= {env + "_FILE" for env in secret_fields(Settings).values()}
    names |= {CONFIG_FILE_VAR, "LEDGER_ENV_FILE", *KAFKA_SECURITY_VARS}
    named = set(re.findall(r"\b((?:LEDGER|KAFKA|DATABASE)_[A-Z_]*[A-Z])\b", RUNBOOK))
    assert named
    assert named - names == set()
