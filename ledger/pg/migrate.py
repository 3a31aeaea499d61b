"""Schema migrations: numbered SQL files in ``ledger/pg/migrations``, applied with yoyo.

Invariant: migrations run only as the schema-owning role, in order, each once,
each in its own transaction; the application roles never run DDL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from yoyo import get_backend, read_migrations

from ledger.errors import MalformedInputError, UnavailableError


def _yoyo_url(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise MalformedInputError("DATABASE_URL must be a postgresql:// URL")
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


@contextmanager
def shipped_migrations(folder: Path | None = None) -> Iterator[Any]:
    """The migrations shipped in ``ledger/pg/migrations`` (or ``folder``), in order.

    An empty or missing folder is an incomplete install, never "nothing to apply":
    yoyo reads a missing folder as no migrations, which would leave a database
    silently unmigrated."""
    with as_file(files("ledger.pg").joinpath("migrations")) as shipped:
        path = Path(shipped) if folder is None else folder
        migrations = read_migrations(str(path)) if path.is_dir() else []
        if not migrations:
            raise UnavailableError(f"no migrations found in {path}: the install is incomplete")
        yield migrations


def apply_migrations(dsn: str, *, target: str | None = None) -> list[str]:
    """Apply every pending migration (or those up to and including ``target``, a
    migration id such as ``0017.time-sharded-logs``); return the ids applied."""
    try:
        backend = get_backend(_yoyo_url(dsn))
    except Exception as exc:  # psycopg raises its own OperationalError family
        raise UnavailableError(
            f"cannot connect to PostgreSQL to migrate: {type(exc).__name__}"
        ) from exc
    with shipped_migrations() as migrations, backend.lock():
        if target is not None:
            ids = [m.id for m in migrations]
            if target not in ids:
                raise MalformedInputError(f"no migration {target!r} is shipped")
            migrations = migrations.filter(lambda m: ids.index(m.id) <= ids.index(target))
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]
