"""The shipped migrations are found, numbered without gaps, and an incomplete install
is an error rather than "nothing to apply"."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.errors import UnavailableError
from ledger.pg.migrate import shipped_migrations


def test_the_shipped_migrations_are_numbered_in_order_without_gaps() -> None:
    with shipped_migrations() as migrations:
        ids = [m.id for m in migrations]
    numbers = [int(i.split(".", 1)[0]) for i in ids]
    assert numbers == list(range(1, len(ids) + 1)), ids
    assert len(ids) >= 9


@pytest.mark.parametrize("make", [lambda p: p, lambda p: p / "missing"])
def test_an_empty_or_missing_migrations_folder_is_an_incomplete_install(
    tmp_path: Path, make: object
) -> None:
    folder = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(UnavailableError, match="no migrations found"), shipped_migrations(folder):
        pass
