"""Issuing and revoking API tokens (as the owner role; the API only reads them).

Invariant: a token's text is returned once, to the caller of ``create_token``, and
never stored or logged; the database keeps SHA-256 of it.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

import asyncpg

from ledger.audit.auth import IssuedToken, Role, issue_token, token_hash
from ledger.errors import ConflictError, MalformedInputError
from ledger.pg import sql

#: Longest lifetime a token may be issued with (omit the TTL for one that never expires).
MAX_TTL: Final = timedelta(days=3650)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInfo:
    token_id: uuid.UUID
    subject: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    note: str | None
    #: The database's clock says ``expires_at`` has passed (the API refuses it).
    expired: bool = False

    @property
    def state(self) -> str:
        """``revoked``, ``expired`` or ``active`` (what the API would do with it now)."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expired else "active"


def ttl_from_days(days: float) -> timedelta:
    """``--ttl-days`` as a lifetime: a finite number of days, above 0, at most ``MAX_TTL``."""
    if not math.isfinite(days) or days <= 0 or days > MAX_TTL.days:
        raise MalformedInputError(
            f"--ttl-days must be more than 0 and at most {MAX_TTL.days} (got {days!r}); "
            "omit it for a token that never expires"
        )
    return timedelta(days=days)


def check_ttl(ttl: timedelta | None) -> None:
    """Refuse a lifetime that is not positive (already expired) or beyond ``MAX_TTL``."""
    if ttl is not None and not timedelta(0) < ttl <= MAX_TTL:
        raise MalformedInputError(
            f"a token's lifetime must be more than 0 and at most {MAX_TTL.days} days"
        )


async def create_token(
    dsn: str, *, subject: str, role: Role, ttl: timedelta | None, note: str | None
) -> IssuedToken:
    check_ttl(ttl)
    issued = issue_token()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            sql.ISSUE_TOKEN,
            issued.token_id,
            subject,
            role.value,
            issued.token_hash,
            None if ttl is None else ttl.total_seconds(),
            note,
        )
    except asyncpg.CheckViolationError as exc:
        raise MalformedInputError(
            "subject must be 1-64 characters of letters, digits and _ . @ -"
        ) from exc
    finally:
        await conn.close()
    return issued


async def list_tokens(dsn: str) -> list[TokenInfo]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(sql.LIST_TOKENS)
    finally:
        await conn.close()
    return [
        TokenInfo(
            token_id=r["token_id"],
            subject=r["subject"],
            role=r["role"],
            created_at=r["created_at"],
            expires_at=r["expires_at"],
            revoked_at=r["revoked_at"],
            note=r["note"],
            expired=r["expired"],
        )
        for r in rows
    ]


async def revoke_token(dsn: str, token_id: uuid.UUID) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql.REVOKE_TOKEN, token_id)
    except asyncpg.ForeignKeyViolationError as exc:
        raise ConflictError(f"no token {token_id}") from exc
    finally:
        await conn.close()


async def token_is_live(dsn: str, text: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval(sql.LIVE_TOKEN_HASH, token_hash(text)))
    finally:
        await conn.close()


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 600, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text + "\n")
    tmp.replace(path)
