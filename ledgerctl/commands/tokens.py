"""``ledger token ...``: API bearer tokens (docs/api.md).

Invariant: a token's text is printed once, when issued, and stored only as its SHA-256.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from ledgerctl.commands.common import console, fail
from ledgerctl.settings import Settings

token_app = typer.Typer(help="API bearer tokens (stored as hashes).", no_args_is_help=True)


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="investigator, auditor or admin.")],
    subject: Annotated[str, typer.Option(help="Who holds it (recorded with every read).")],
    ttl_days: Annotated[
        float | None,
        typer.Option(help="Expire after this many days (more than 0, at most 3650)."),
    ] = None,
    note: Annotated[str | None, typer.Option(help="Free text, e.g. a ticket number.")] = None,
    quiet: Annotated[bool, typer.Option(help="Print only the token.")] = False,
) -> None:
    """Issue a token. It is printed once; only its SHA-256 is stored."""
    from ledger.audit.auth import parse_role
    from ledger.errors import LedgerError
    from ledgerctl.tokens import create_token, ttl_from_days

    settings = Settings.load()
    try:
        ttl = None if ttl_days is None else ttl_from_days(ttl_days)
        issued = asyncio.run(
            create_token(
                settings.require("database_url"),
                subject=subject,
                role=parse_role(role),
                ttl=ttl,
                note=note,
            )
        )
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    if quiet:
        print(issued.text)
    else:
        console.print(f"token {issued.token_id} for {subject} ({role}); it is shown only once:")
        print(issued.text)


@token_app.command("ensure", hidden=True)
def token_ensure(
    file: Annotated[Path, typer.Option(help="Where the token is kept (mode 600).")],
    role: Annotated[str, typer.Option()] = "admin",
    subject: Annotated[str, typer.Option()] = "local-admin",
) -> None:
    """Keep a live token in FILE, issuing one if needed (used by `make up`)."""
    from ledger.audit.auth import parse_role
    from ledgerctl.tokens import create_token, token_is_live, write_secret

    settings = Settings.load()
    dsn = settings.require("database_url")
    text = file.read_text(encoding="ascii").strip() if file.is_file() else ""
    if text and asyncio.run(token_is_live(dsn, text)):
        return
    issued = asyncio.run(
        create_token(dsn, subject=subject, role=parse_role(role), ttl=None, note="make up")
    )
    write_secret(file, issued.text)
    console.print(f"issued a new {role} token for {subject} into {file}")


@token_app.command("list")
def token_list() -> None:
    """Issued tokens (never their text)."""
    from ledgerctl.tokens import list_tokens

    settings = Settings.load()
    for t in asyncio.run(list_tokens(settings.require("database_url"))):
        expires = t.expires_at.isoformat() if t.expires_at else "never"
        console.print(
            f"{t.token_id}  {t.subject:<24} {t.role:<12} {t.state:<8} expires {expires}",
            soft_wrap=True,
        )


@token_app.command("revoke")
def token_revoke(token_id: str) -> None:
    """Revoke a token (the API honours it within 30 s)."""
    import uuid

    from ledger.errors import LedgerError
    from ledgerctl.tokens import revoke_token

    settings = Settings.load()
    try:
        asyncio.run(revoke_token(settings.require("database_url"), uuid.UUID(token_id)))
    except (LedgerError, ValueError) as exc:
        raise fail(str(exc)) from exc
    console.print(f"revoked {token_id}")
