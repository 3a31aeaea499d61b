"""The systemd units in deploy/systemd: valid for this machine's systemd, hardened, and
running commands the CLI has, with every secret handed over as a credential.

``systemd-analyze verify`` refuses a unit whose ExecStart binary does not exist, and the
units name the production path /opt/philedger/bin/ledger. The test verifies copies with
that one path replaced by this checkout's ``ledger`` (the same program), so everything
else in the files is checked as shipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.cli_commands import parse_error

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
PROD_LEDGER = "/opt/philedger/bin/ledger"
LEDGER = Path(sys.executable).parent / "ledger"
SERVICES = sorted(p.name for p in UNITS.glob("*.service"))
#: What each unit file is verified as (a template through one of its instances).
AS_LOADED = {name: name.replace("@.service", "@1.service") for name in SERVICES}

HARDENING = {
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictNamespaces": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
    "User": "philedger",
}

analyze = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed")


def settings(unit: Path) -> list[tuple[str, str]]:
    """The unit's key=value lines, continuation lines joined, in order."""
    text = re.sub(r"\\\n\s*", " ", unit.read_text(encoding="utf-8"))
    pairs = []
    for line in text.splitlines():
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def local_copies(tmp_path: Path, *, replace: tuple[str, str] | None = None) -> Path:
    for name in SERVICES:
        text = (UNITS / name).read_text(encoding="utf-8").replace(PROD_LEDGER, str(LEDGER))
        if replace is not None:
            text = text.replace(*replace)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def verify(directory: Path) -> subprocess.CompletedProcess[str]:
    assert analyze is not None
    return subprocess.run(
        [analyze, "verify", "--man=no", "--recursive-errors=no", *AS_LOADED.values()],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_units_are_the_services_of_the_issue() -> None:
    assert SERVICES == [
        "philedger-api.service",
        "philedger-atna.service",
        "philedger-consumer@.service",
        "philedger-rules.service",
    ]
    assert LEDGER.is_file()


@needs_systemd
def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    done = verify(local_copies(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


@needs_systemd
@pytest.mark.parametrize(
    ("replace", "says"),
    [
        (("NoNewPrivileges=yes", "NoNewPrivilegez=yes"), "Unknown key 'NoNewPrivilegez'"),
        ((str(LEDGER), "/opt/philedger/bin/ledgr"), "is not executable"),
    ],
)
def test_verify_would_catch_a_broken_unit(
    tmp_path: Path, replace: tuple[str, str], says: str
) -> None:
    """The check can fail: a misspelt key, a missing program."""
    done = verify(local_copies(tmp_path, replace=replace))
    assert done.returncode != 0
    assert says in done.stderr


@needs_systemd
@pytest.mark.parametrize("name", SERVICES)
def test_the_exposure_score_is_low(tmp_path: Path, name: str) -> None:
    """systemd's own rating of the sandbox (0 best, 10 worst): at most 2.0 ("OK")."""
    assert analyze is not None
    local_copies(tmp_path)
    done = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20", AS_LOADED[name]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert score is not None, done.stdout
    assert float(score.group(1)) <= 2.0


@pytest.mark.parametrize("name", SERVICES)
def test_each_unit_is_hardened(name: str) -> None:
    pairs = settings(UNITS / name)
    values = dict(pairs)
    for key, value in HARDENING.items():
        assert values.get(key) == value, key
    assert ("SystemCallFilter", "@system-service") in pairs
    assert values["Environment"]  # at least the config file
    assert ("Environment", "LEDGER_CONFIG_FILE=/etc/philedger/ledger.toml") in pairs


def test_every_unit_serves_health_and_metrics_on_a_port_of_its_own() -> None:
    """Each unit's ops listener (docs/observability.md) on its own loopback port; a
    consumer instance's port is its instance name, so instances on one host differ."""
    ports = {}
    for name in SERVICES:
        values = [v for k, v in settings(UNITS / name) if k == "Environment"]
        found = [v.split("=", 1)[1] for v in values if v.startswith("LEDGER_OPS_PORT=")]
        assert len(found) == 1, name
        ports[name] = found[0]
    assert ports["philedger-consumer@.service"] == "%i"
    fixed = [p for n, p in ports.items() if n != "philedger-consumer@.service"]
    assert len(set(fixed)) == len(fixed)
    assert all(p.isdigit() for p in fixed)


@pytest.mark.parametrize("name", SERVICES)
def test_every_secret_is_a_credential_the_service_uses(name: str) -> None:
    """Secrets come from /etc/philedger/secrets through LoadCredential, each one named
    by a *_FILE setting, the Kafka credentials directory or an argument; none is an
    Environment value."""
    pairs = settings(UNITS / name)
    credentials = [v.split(":", 1) for k, v in pairs if k == "LoadCredential"]
    assert credentials
    used = " ".join(v for k, v in pairs if k in {"Environment", "ExecStart"})
    for credential, source in credentials:
        assert source.startswith("/etc/philedger/secrets/")
        kafka_principal = credential.startswith("ledger-")
        assert f"%d/{credential}" in used or (
            kafka_principal and "LEDGER_KAFKA_CREDENTIALS_DIR=%d" in used
        ), credential
    for key, value in pairs:
        if key == "Environment":
            assert not re.search(r"(URL|TOKEN)=(?!.*%d)", value), value


@pytest.mark.parametrize("name", SERVICES)
def test_exec_start_is_a_ledger_command(name: str) -> None:
    exec_start = dict(settings(UNITS / name))["ExecStart"].split()
    assert exec_start[0] == PROD_LEDGER
    assert parse_error(exec_start[1:]) is None


def test_the_command_check_can_fail() -> None:
    assert parse_error(["consume", "--nope"]) is not None
    assert parse_error(["atna", "serv"]) is not None
