"""API tokens in the real database: only hashes stored, expiry and revocation honoured."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from ledger.auth import Role, token_hash
from ledger.pg.reader import PostgresReader
from ledgerctl.tokens import create_token, list_tokens, revoke_token
from tests.support import Stack

pytestmark = pytest.mark.integration


async def test_tokens_are_stored_as_hashes_and_revocation_is_honoured(stack: Stack) -> None:
    issued = await create_token(
        stack.owner_url, subject="case-7-investigator", role=Role.INVESTIGATOR, ttl=None, note=None
    )
    conn = await asyncpg.connect(stack.owner_url)
    try:
        stored = await conn.fetchrow(
            "SELECT * FROM api_tokens WHERE token_id = $1", issued.token_id
        )
        assert stored is not None
        assert bytes(stored["token_hash"]) == token_hash(issued.text)
        assert issued.text.encode() not in b"".join(str(v).encode() for v in stored.values()), (
            "the token text itself is never stored"
        )
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute("UPDATE api_tokens SET role = 'admin'")  # append-only
    finally:
        await conn.close()

    async with PostgresReader(dsn=stack.reader_url) as reader:
        who = await reader.principal(token_hash(issued.text))
        assert who is not None
        assert (who.subject, who.role) == ("case-7-investigator", Role.INVESTIGATOR)
        assert await reader.principal(token_hash(issued.text + "x")) is None
    await revoke_token(stack.owner_url, issued.token_id)
    async with PostgresReader(dsn=stack.reader_url) as fresh:  # no cached lookup
        assert await fresh.principal(token_hash(issued.text)) is None
    listed = {t.token_id: t for t in await list_tokens(stack.owner_url)}
    assert listed[issued.token_id].revoked_at is not None


async def test_expired_tokens_are_refused(stack: Stack) -> None:
    issued = await create_token(
        stack.owner_url, subject="short-lived", role=Role.AUDITOR,
        ttl=timedelta(seconds=-1), note="already expired",
    )  # fmt: skip
    async with PostgresReader(dsn=stack.reader_url) as reader:
        assert await reader.principal(token_hash(issued.text)) is None


async def test_the_reader_role_cannot_issue_tokens(stack: Stack) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await create_token(stack.reader_url, subject="x", role=Role.ADMIN, ttl=None, note=None)
