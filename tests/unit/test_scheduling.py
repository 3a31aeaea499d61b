"""The suite's own scheduling rules (tests/scheduling.py)."""

from __future__ import annotations

from tests.scheduling import HEAVY, unit_of
from tests.support import ROOT


def test_every_heavy_file_exists() -> None:
    # A renamed heavy file would silently become a unit of its own beside the others.
    assert HEAVY
    assert all((ROOT / path).is_file() for path in HEAVY)


def test_a_file_is_a_unit_and_the_heavy_files_are_one() -> None:
    assert unit_of("tests/unit/test_scheduling.py::test_x") == "tests/unit/test_scheduling.py"
    assert unit_of("tests/e2e/test_atna.py::test_y[a::b]") == "tests/e2e/test_atna.py"
    assert {unit_of(f"{path}::test_z") for path in HEAVY} == {"heavy"}
