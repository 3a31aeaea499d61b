"""``ledger replay`` creates its target database by name: only a plain identifier
reaches ``CREATE DATABASE``, which takes no parameters."""

from __future__ import annotations

import pytest

from ledger.errors import MalformedInputError
from ledger.pg import sql


def test_a_plain_name_is_quoted_into_the_statement() -> None:
    assert sql.create_database("ledger_replay_1") == 'CREATE DATABASE "ledger_replay_1"'


@pytest.mark.parametrize(
    "name",
    [
        'x"; DROP DATABASE ledger; --',
        "ledger/other",
        "a b",
        "",
        "1ledger",
        "l" * 64,
        "ledger?sslmode=disable",
    ],
)
def test_anything_else_is_refused_before_any_sql(name: str) -> None:
    with pytest.raises(MalformedInputError, match="database name"):
        sql.create_database(name)
