"""API tokens in the real database: only hashes stored, expiry and revocation honoured."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from ledger.audit.auth import IssuedToken, Role, issue_token, token_hash
from ledger.errors import MalformedInputError
from ledger.pg.reader import PostgresReader
from ledgerctl.tokens import create_token, list_tokens, revoke_token
from tests.support import ROOT, Stack

pytestmark = pytest.mark.integration

LEDGER = str(Path(sys.executable).with_name("ledger"))


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


async def expired_token(stack: Stack, subject: str) -> IssuedToken:
    """A token whose lifetime has run out (issued as if a day ago, for an hour)."""
    issued = issue_token()
    conn = await asyncpg.connect(stack.owner_url)
    try:
        await conn.execute(
            "INSERT INTO api_tokens (token_id, subject, role, token_hash, created_at, expires_at)"
            " VALUES ($1, $2, 'auditor', $3, now() - interval '1 day',"
            " now() - interval '23 hours')",
            issued.token_id, subject, issued.token_hash,
        )  # fmt: skip
    finally:
        await conn.close()
    return issued


async def test_expired_tokens_are_refused(stack: Stack) -> None:
    issued = await expired_token(stack, "short-lived")
    async with PostgresReader(dsn=stack.reader_url) as reader:
        assert await reader.principal(token_hash(issued.text)) is None


@pytest.mark.parametrize("ttl", [timedelta(seconds=-1), timedelta(0), timedelta(days=3651)])
async def test_create_token_refuses_a_lifetime_out_of_range(stack: Stack, ttl: timedelta) -> None:
    before = await list_tokens(stack.owner_url)
    with pytest.raises(MalformedInputError, match="lifetime"):
        await create_token(
            stack.owner_url, subject="bad-ttl", role=Role.AUDITOR, ttl=ttl, note=None
        )
    assert len(await list_tokens(stack.owner_url)) == len(before), "nothing was issued"


@pytest.mark.parametrize("days", ["-1", "0", "-0.5", "3651", "1e300", "nan", "inf"])
def test_token_create_cli_refuses_bad_ttl_days(stack: Stack, days: str) -> None:
    before = asyncio.run(list_tokens(stack.owner_url))
    done = subprocess.run(
        [LEDGER, "token", "create", "--role", "auditor", "--subject", "ttl-probe",
         f"--ttl-days={days}"],
        env=stack.env(), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "--ttl-days must be more than 0 and at most 3650" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == "", "no token text was printed"
    assert len(asyncio.run(list_tokens(stack.owner_url))) == len(before), "nothing was issued"


def test_token_list_shows_expired_tokens_as_expired(stack: Stack) -> None:
    expired = asyncio.run(expired_token(stack, "expired-listing"))
    live = asyncio.run(
        create_token(
            stack.owner_url, subject="live-listing", role=Role.AUDITOR,
            ttl=timedelta(days=1), note=None,
        )
    )  # fmt: skip
    listed = {t.token_id: t for t in asyncio.run(list_tokens(stack.owner_url))}
    assert listed[expired.token_id].state == "expired"
    assert listed[live.token_id].state == "active"

    done = subprocess.run(
        [LEDGER, "token", "list"], env=stack.env(), cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line.split() for line in done.stderr.splitlines() if line.strip()}
    assert lines[str(expired.token_id)][3] == "expired"
    assert lines[str(live.token_id)][3] == "active"


async def test_the_reader_role_cannot_issue_tokens(stack: Stack) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await create_token(stack.reader_url, subject="x", role=Role.ADMIN, ttl=None, note=None)
