"""``ledger registry validate``: counts per kind, or every bad line and exit 1."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from ledgerctl.cli import app
from tests.unit.test_registry_files import LICENSE_HEADER, MEMBERS, ORGS


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["registry", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_valid_files_print_the_changes_they_would_make(tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text(ORGS)
    (tmp_path / "m.csv").write_text(MEMBERS)
    code, out, _ = run("validate", str(tmp_path / "o.csv"), str(tmp_path / "m.csv"))
    assert code == 0
    assert out.splitlines() == [
        "4 change(s) in 2 file(s) would be applied:",
        "  organization  upsert  2",
        "  member        upsert  2",
    ]


def test_bad_lines_are_all_printed_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "l.csv"
    bad.write_text(LICENSE_HEADER + "license,lic-1,dr.lee,ZZ,1,2024-01-01,\n" + "license,x\n")
    code, out, err = run("validate", str(bad))
    assert code == 1
    assert out.splitlines() == [
        f"{bad}:2: state: 'ZZ' is not a two-letter US state, district or territory",
        f"{bad}:3: <file>: has 2 fields; the header has 7",
    ]
    assert "2 problem(s) in 1 file(s); nothing would be applied" in err


def test_known_ids_satisfy_references(tmp_path: Path) -> None:
    licenses = tmp_path / "l.csv"
    licenses.write_text(LICENSE_HEADER + "license,lic-1,dr.kim,NY,1,2024-01-01,\n")
    assert run("validate", str(licenses))[0] == 1
    code, out, _ = run("validate", str(licenses), "--known-user", "dr.kim")
    assert (code, out.splitlines()[1]) == (0, "  license       upsert  1")


def test_a_missing_file_is_a_bad_line_not_a_crash(tmp_path: Path) -> None:
    code, out, _ = run("validate", str(tmp_path / "absent.json"))
    assert code == 1
    assert "absent.json:0: <file>: cannot be read" in out


def test_the_help_names_the_subcommands() -> None:
    code, out, _ = run("--help")
    assert code == 0
    assert "validate" in out
    assert "show" in out
    flat = " ".join(out.split())
    assert "GET /v1/registry" in flat
    assert "`import` checks them against the stored registry" in flat
