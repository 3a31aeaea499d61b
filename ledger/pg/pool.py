"""The asyncpg pool lifecycle shared by the PostgreSQL adapters.

Invariant: no I/O in ``__init__``; ``start()`` opens the pool once, ``stop()`` is
idempotent, ``async with`` does both; using the pool before ``start()`` raises
``UnavailableError``, and connection failures surface as ``UnavailableError``
naming only the exception type (never the DSN, which holds a password). A pool's
sizes and timeouts are one ``PoolSettings`` (docs/postgres.md).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, ParamSpec, Self, TypeVar

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


P = ParamSpec("P")
R = TypeVar("R")


def unavailable_when_transient(
    method: Callable[P, Awaitable[R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """``method`` with transient database failures raised as ``UnavailableError``: a lost
    connection (a failover, a restart) or a query cancelled by a standby's replay is a
    503 to retry, not an internal error."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with transient_as_unavailable():
            return await method(*args, **kwargs)

    return wrapper


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSettings:
    """One pool's sizes and timeouts: ``min_size`` connections opened at start and kept,
    at most ``max_size``; ``connect_timeout`` seconds to open one connection (TLS
    included), ``command_timeout`` seconds for one statement before it is cancelled."""

    max_size: int
    command_timeout: float
    min_size: int = 1
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_size <= self.max_size or self.max_size < 1:
            raise ValueError("pool sizes need 0 <= min_size <= max_size and max_size >= 1")
        if self.connect_timeout <= 0 or self.command_timeout <= 0:
            raise ValueError("pool timeouts must be positive")


async def _only_the_rollback(conn: asyncpg.Connection) -> None:
    """A pool ``reset`` that adds nothing to asyncpg's own: it has already rolled back a
    transaction left open and dropped the listeners before calling this."""


class PooledAdapter:
    def __init__(
        self,
        *,
        dsn: str,
        pool_size: int,
        command_timeout: float,
        server_settings: dict[str, str] | None = None,
        pool: PoolSettings | None = None,
        stateless_sessions: bool = False,
    ) -> None:
        """``pool`` (the operator's settings) wins over the adapter's own defaults,
        ``pool_size`` and ``command_timeout``.

        ``stateless_sessions``: the adapter never changes a session's state outside a
        transaction (no SET, LISTEN, session advisory lock or cursor held past a
        transaction), so a connection going back to the pool needs only the rollback of
        a transaction left open (which asyncpg always does), not asyncpg's default reset
        statement: one round trip less per use of the pool."""
        self._dsn = dsn
        self._settings = pool or PoolSettings(max_size=pool_size, command_timeout=command_timeout)
        self._server_settings = server_settings
        self._stateless = stateless_sessions
        self._pool: asyncpg.Pool | None = None

    @property
    def pool_settings(self) -> PoolSettings:
        return self._settings

    async def start(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._settings.min_size,
                max_size=self._settings.max_size,
                timeout=self._settings.connect_timeout,
                command_timeout=self._settings.command_timeout,
                server_settings=self._server_settings,
                reset=_only_the_rollback if self._stateless else None,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
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
