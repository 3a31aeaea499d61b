"""The container image definition, deploy/container/Containerfile, checked without a
container engine (none here): BuildKit's own lint (the checks of `docker build --check`,
through deploy/local/containerlint), then what the file must do: a build stage and a
runtime stage, a non-root user, no secret in it, nothing copied that the build context
leaves out, and a package that carries every file the processes read."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"
IGNORE = ROOT / ".containerignore"
TOOLS = Path(os.environ.get("LEDGER_GOTOOLS_DIR") or ROOT / ".local")
LINT = TOOLS / "bin" / "containerlint"
PACKAGES = ("ledger", "producers", "integrations", "consumers", "ledgerctl", "schemas")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", CONTAINERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for word, rest in instructions():
        if word == "FROM":
            out.append([])
        if out:
            out[-1].append((word, rest))
    return out


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    if not LINT.is_file():
        if os.environ.get("CI"):
            raise RuntimeError(f"{LINT} is missing: run deploy/local/gotools.sh")
        pytest.skip(f"{LINT} is missing: run deploy/local/gotools.sh")
    return subprocess.run([LINT, path], capture_output=True, text=True, check=False)


def test_buildkit_lint_passes() -> None:
    done = lint(CONTAINERFILE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.strip() == "0 warning(s)"


def test_the_lint_would_catch_a_bad_containerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Containerfile"
    text = CONTAINERFILE.read_text(encoding="utf-8")
    bad.write_text(
        text.replace("WORKDIR /var/lib/philedger", "WORKDIR var/lib/philedger").replace(
            'CMD ["--help"]', "ENV DB_PASSWORD=x\nCMD ledger --help"
        ),
        encoding="utf-8",
    )
    done = lint(bad)
    assert done.returncode == 1
    for rule in ("WorkdirRelativePath", "SecretsUsedInArgOrEnv", "JSONArgsRecommended"):
        assert rule in done.stdout


def test_two_stages_and_only_the_virtualenv_crosses() -> None:
    build, runtime = stages()
    assert build[0][1].endswith(" AS build")
    assert runtime[0][1] == build[0][1].removesuffix(" AS build")  # the same base
    cross = [rest for word, rest in runtime if word == "COPY" and "--from=" in rest]
    assert cross == ["--from=build /opt/philedger /opt/philedger"]


def test_the_runtime_runs_as_a_non_root_user() -> None:
    runtime = stages()[-1]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users == ["10001:10001"]
    words = [word for word, _ in runtime]
    assert words.index("USER") > max(i for i, w in enumerate(words) if w in {"RUN", "COPY"})
    assert ("ENTRYPOINT", '["/opt/philedger/bin/ledger"]') in runtime


def test_no_secret_is_baked_in() -> None:
    for word, rest in instructions():
        if word in {"ENV", "ARG", "LABEL"}:
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|_KEY|_URL)\b", rest.upper()), rest
        if word == "COPY":
            assert ".local" not in rest
            assert "secrets" not in rest


def test_copied_sources_exist_and_are_in_the_build_context() -> None:
    ignored = [
        line.strip()
        for line in IGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (".git", ".local", ".venv"):
        assert needed in ignored
    for word, rest in instructions():
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, _target = rest.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source


def test_the_ports_are_the_charts() -> None:
    exposed = next(rest for word, rest in instructions() if word == "EXPOSE").split()
    assert exposed == ["18080", "6514", "9464"]


def test_the_package_carries_every_data_file() -> None:
    """A non-editable install (the image's) gets only the package data pyproject names:
    every tracked non-Python file of the packages must be in it (the console's pages,
    the migrations, the Avro schemas)."""
    tracked = subprocess.run(
        ["git", "ls-files", *PACKAGES], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    data = [f for f in tracked if not f.endswith((".py", ".pyi", "README.md"))]
    assert data
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["package-data"]
    patterns = [f"{pkg.replace('.', '/')}/{g}" for pkg, gs in globs.items() for g in gs]
    missing = [f for f in data if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert missing == []
