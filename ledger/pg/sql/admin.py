"""What ``ledger replay`` runs as the schema owner to prepare its target database.

``CREATE DATABASE`` takes no parameters, so its one identifier is checked against a
strict pattern before it is quoted into the statement (``create_database``).
"""

from __future__ import annotations

import re
from typing import Final

from ledger.errors import MalformedInputError

DATABASE_EXISTS: Final = "SELECT 1 FROM pg_database WHERE datname = $1"

COUNT_LOGS: Final = "SELECT count(*) FROM logs"

#: A database name this tool creates: a plain identifier that needs no escaping in SQL
#: and none in a connection URL.
_DATABASE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def create_database(name: str) -> str:
    """``CREATE DATABASE`` for ``name``, refused unless it is a plain identifier."""
    if not _DATABASE_NAME.fullmatch(name):
        raise MalformedInputError(
            f"database name {name!r}: use letters, digits and _ only "
            "(at most 63 characters, not starting with a digit)"
        )
    return f'CREATE DATABASE "{name}"'
