"""Which database failures the ledger waits out, and which it lets surface."""

from __future__ import annotations

import asyncpg
import pytest
from asyncpg.exceptions import InternalClientError

from ledger.errors import UnavailableError
from ledger.pg.pool import is_transient, transient_as_unavailable


def pg_error(cls: type[asyncpg.PostgresError]) -> asyncpg.PostgresError:
    return cls.new({"C": cls.sqlstate, "M": "test"})  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionResetError(),
        TimeoutError(),
        asyncpg.InterfaceError("connection is closed"),
        InternalClientError("cannot switch to state 15; another operation is in progress"),
        pg_error(asyncpg.CannotConnectNowError),  # 57P03 starting up / shutting down
        pg_error(asyncpg.AdminShutdownError),  # 57P01
        pg_error(asyncpg.ConnectionDoesNotExistError),  # 08003
        pg_error(asyncpg.SerializationError),  # 40001
        pg_error(asyncpg.DeadlockDetectedError),  # 40P01
        pg_error(asyncpg.TooManyConnectionsError),  # 53300
    ],
)
def test_transient_failures_become_unavailable(exc: BaseException) -> None:
    assert is_transient(exc)
    with pytest.raises(UnavailableError) as info, transient_as_unavailable():
        raise exc
    assert info.value.__cause__ is exc


@pytest.mark.parametrize(
    "exc",
    [
        pg_error(asyncpg.UniqueViolationError),
        pg_error(asyncpg.InsufficientPrivilegeError),
        pg_error(asyncpg.UndefinedTableError),
        ValueError("a bug"),
    ],
)
def test_other_failures_surface_unchanged(exc: BaseException) -> None:
    assert not is_transient(exc)
    with pytest.raises(type(exc)), transient_as_unavailable():
        raise exc
