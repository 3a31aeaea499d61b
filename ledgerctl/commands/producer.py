"""`ledger producer ...`: the producer key registry (docs/producer-auth.md).

Invariant: a private key is written only to the file named by ``--out`` (mode 600,
never overwritten) and never printed or stored; the database holds the public key.
Rotation is ``add`` of a second key, re-configuring the producer, then ``revoke``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from ledger.errors import LedgerError
from ledger.pg.producerkeys import add_producer_key, list_producer_keys, revoke_producer_key
from ledgerctl.commands.common import console
from ledgerctl.settings import Settings
from producers.signing import (
    ProducerKeyError,
    generate_producer_key,
    load_producer_key,
    write_producer_key,
)

producer_app = typer.Typer(
    help="Producer keys: who may write events (Ed25519, registered in the ledger).",
    no_args_is_help=True,
)


def _fail(message: str) -> typer.Exit:
    # Unlike commands.common.fail, long messages wrap at the terminal width (as always here).
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)


@producer_app.command("add")
def producer_add(
    producer_id: Annotated[str, typer.Argument(help="The producer id its events carry.")],
    out: Annotated[Path, typer.Option(help="Where to write the private key (mode 600).")],
    note: Annotated[str | None, typer.Option(help="Free text, e.g. a ticket number.")] = None,
) -> None:
    """Generate a key pair, write the private key to OUT, register the public key."""
    dsn = Settings.load().require("database_url")
    key = generate_producer_key(producer_id)
    try:
        write_producer_key(out, key)
        key_id = asyncio.run(
            add_producer_key(dsn, producer_id=producer_id, public_key=key.public_key, note=note)
        )
    except (LedgerError, ProducerKeyError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"producer key {key_id} for {producer_id!r} written to {out}")
    print(key_id)


@producer_app.command("ensure", hidden=True)
def producer_ensure(
    producer_id: Annotated[str, typer.Argument()],
    out: Annotated[Path, typer.Option()],
) -> None:
    """Keep a registered key for PRODUCER_ID in OUT, issuing one if needed (`make up`)."""
    dsn = Settings.load().require("database_url")
    try:
        if not out.exists():
            write_producer_key(out, generate_producer_key(producer_id))
        key = load_producer_key(out)
        if key.producer_id != producer_id:
            raise _fail(f"{out} holds a key of {key.producer_id!r}, not {producer_id!r}")
        known = {str(k.key_id): k for k in asyncio.run(list_producer_keys(dsn))}
        kid = str(key.key_id)
        if kid in known and known[kid].revoked_at is not None:
            raise _fail(f"the key in {out} ({key.key_id}) is revoked; remove the file")
        if kid not in known:
            asyncio.run(
                add_producer_key(
                    dsn, producer_id=producer_id, public_key=key.public_key, note="make up"
                )
            )
            console.print(f"registered producer key {key.key_id} for {producer_id!r} ({out})")
    except (LedgerError, ProducerKeyError) as exc:
        raise _fail(str(exc)) from exc


@producer_app.command("list")
def producer_list() -> None:
    """Registered producer keys, active and revoked."""
    dsn = Settings.load().require("database_url")
    for k in asyncio.run(list_producer_keys(dsn)):
        state = "active"
        if k.revoked_at is not None:
            state = f"revoked {k.revoked_at.isoformat()} ({k.revoked_reason})"
        print(f"{k.key_id}  {k.producer_id:<32} created {k.created_at.isoformat()}  {state}")


@producer_app.command("revoke")
def producer_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (`ledger producer list`).")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "revoked by operator",
) -> None:
    """Revoke a key: the consumer refuses its records within 30 s, whenever signed."""
    dsn = Settings.load().require("database_url")
    try:
        fresh = asyncio.run(revoke_producer_key(dsn, key_id=key_id, reason=reason))
    except LedgerError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"revoked {key_id}" if fresh else f"{key_id} was revoked already")
