"""The asyncpg pool lifecycle shared by the PostgreSQL adapters.

Invariant: no I/O in ``__init__``; ``start()`` opens the pool once, ``stop()`` is
idempotent, ``async with`` does both; using the pool before ``start()`` raises
``UnavailableError``, and connection failures surface as ``UnavailableError``
naming only the exception type (never the DSN, which holds a password).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType
from typing import Final, Self

import asyncpg
from asyncpg.exceptions import InternalClientError

from ledger.errors import UnavailableError

#: SQLSTATE classes that mean "try again later": connection exception (08), insufficient
#: resources (53), operator intervention such as a shutdown (57), and transaction
#: rollbacks (40: serialization failure, deadlock).
_TRANSIENT_CLASSES: Final = ("08", "40", "53", "57")


def is_transient(exc: BaseException) -> bool:
    """True for database failures that a retry can outlive (restarts, lost connections)."""
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError | InternalClientError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _TRANSIENT_CLASSES
    return False


@contextlib.contextmanager
def transient_as_unavailable() -> Iterator[None]:
    """Re-raise transient database failures as ``UnavailableError`` (callers retry)."""
    try:
        yield
    except Exception as exc:
        if is_transient(exc):
            raise UnavailableError(f"PostgreSQL unavailable: {type(exc).__name__}") from exc
        raise


class PooledAdapter:
    def __init__(
        self,
        *,
        dsn: str,
        pool_size: int,
        command_timeout: float,
        server_settings: dict[str, str] | None = None,
    ) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._command_timeout = command_timeout
        self._server_settings = server_settings
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                command_timeout=self._command_timeout,
                server_settings=self._server_settings,
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise UnavailableError(f"cannot connect to PostgreSQL: {type(exc).__name__}") from exc

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise UnavailableError(f"{type(self).__name__} is not started")
        return self._pool
