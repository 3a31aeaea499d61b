"""Schema migrations: numbered SQL files in ``ledger/pg/migrations``, applied with yoyo.

Invariant: migrations run only as the schema-owning role, in order, each once,
each in its own transaction; the application roles never run DDL.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from urllib.parse import urlsplit, urlunsplit

from yoyo import get_backend, read_migrations

from ledger.errors import MalformedInputError, UnavailableError


def _yoyo_url(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise MalformedInputError("DATABASE_URL must be a postgresql:// URL")
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


def apply_migrations(dsn: str) -> list[str]:
    """Apply every pending migration; return the ids applied (empty when current)."""
    try:
        backend = get_backend(_yoyo_url(dsn))
    except Exception as exc:  # psycopg raises its own OperationalError family
        raise UnavailableError(
            f"cannot connect to PostgreSQL to migrate: {type(exc).__name__}"
        ) from exc
    with as_file(files("ledger.pg").joinpath("migrations")) as path:
        migrations = read_migrations(str(path))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
    return [m.id for m in pending]
