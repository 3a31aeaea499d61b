"""``ledger atna serve`` and ``ledger atna kept``: the IHE ATNA receiver and the
messages it kept instead of mapping (docs/atna.md).

Invariant: the receiver refuses to start without a senders policy, or TLS without a
client CA; kept messages (PHI) are printed only after the read is recorded.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from ledgerctl.commands.common import REASON, configure_logging, fail
from ledgerctl.settings import Settings

atna_app = typer.Typer(
    help="IHE ATNA audit record repository: syslog over TLS/UDP in, events out.",
    no_args_is_help=True,
)


@atna_app.command("serve")
def atna_serve(
    cert: Annotated[Path | None, typer.Option(help="PEM certificate chain (TLS).")] = None,
    key: Annotated[Path | None, typer.Option(help="PEM private key for --cert.")] = None,
    client_ca: Annotated[
        Path | None,
        typer.Option(help="CA that signs the senders' client certificates (required for TLS)."),
    ] = None,
    senders: Annotated[
        Path | None,
        typer.Option(help="TOML policy: the AuditSourceIDs each certificate CN may claim."),
    ] = None,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    tls_port: Annotated[int, typer.Option(help="RFC 5425 (syslog over TLS) port.")] = 16514,
    udp_port: Annotated[
        int | None,
        typer.Option(
            help="RFC 5426 (syslog over UDP) port. Off unless given: UDP is not "
            "authenticated and spoofable; datagrams may claim only [udp] sources."
        ),
    ] = None,
    no_tls: Annotated[bool, typer.Option(help="Do not listen on TLS.")] = False,
    kept_dir: Annotated[Path, typer.Option(help="Where unparseable messages are kept.")] = Path(
        ".local/atna/kept"
    ),
    producer_id: Annotated[
        str | None,
        typer.Option(help="Producer id (default: LEDGER_PRODUCER_KEY_FILE's, else atna-receiver)."),
    ] = None,
    default_facility: Annotated[
        str | None, typer.Option(help="Facility when a message names no site.")
    ] = None,
    max_message_bytes: Annotated[int, typer.Option(min=2048)] = 65536,
    max_connections: Annotated[int, typer.Option(min=1)] = 256,
    idle_timeout: Annotated[float, typer.Option(help="Seconds.")] = 300.0,
    parse_workers: Annotated[
        int | None,
        typer.Option(min=0, show_default="2", help="Processes that parse messages; 0: none."),
    ] = None,
    stats_every: Annotated[float, typer.Option(help="Log counters every N seconds.")] = 60.0,
    verbose: bool = False,
) -> None:
    """Run the ATNA receiver until SIGTERM."""
    from integrations.errors import AtnaPolicyError
    from ledgerctl.atna import DEFAULT_PRODUCER_ID, run_atna, stats_json
    from ledgerctl.simulate import key_producer_id
    from producers.signing import ProducerKeyError

    configure_logging(verbose)
    if senders is None:
        raise fail(
            "--senders is required: the FILE saying which AuditSourceIDs each sender may claim"
        )
    if not no_tls and client_ca is None:
        raise fail("--client-ca is required: TLS senders must present a client certificate")
    settings = Settings.load()
    if producer_id is None:
        producer_id = key_producer_id(settings.producer_key_file, DEFAULT_PRODUCER_ID)
    try:
        stats = asyncio.run(
            run_atna(
                settings,
                host=host,
                tls_port=None if no_tls else tls_port,
                udp_port=udp_port,
                cert=cert,
                key=key,
                client_ca=client_ca,
                senders=senders,
                kept_dir=kept_dir,
                producer_id=producer_id,
                default_facility=default_facility,
                max_message_bytes=max_message_bytes,
                max_connections=max_connections,
                idle_timeout=idle_timeout,
                parse_workers=parse_workers,
                stats_every=stats_every,
            )
        )
    except (AtnaPolicyError, ProducerKeyError, ValueError) as exc:
        raise fail(str(exc)) from exc
    print(f"ATNA receiver exited: {stats_json(stats)}", file=sys.stderr, flush=True)


@atna_app.command("kept")
def atna_kept(
    reason: Annotated[str, REASON],
    kept_dir: Annotated[Path, typer.Option()] = Path(".local/atna/kept"),
    only: Annotated[str | None, typer.Option("--only-reason", help="Only this reason.")] = None,
    after_id: int = 0,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    raw: Annotated[bool, typer.Option(help="Include the raw bytes (base64).")] = False,
) -> None:
    """List the messages the receiver kept instead of mapping (JSON lines).

    Kept messages are audit records as sent (PHI): the read is recorded in the ledger
    (your OS user and --reason) before any is printed.
    """
    from ledger.errors import LedgerError
    from ledgerctl.atna import kept_json
    from ledgerctl.clireads import kept_recorded

    try:
        messages = kept_recorded(
            Settings.load(), reason=reason, kept_dir=kept_dir, only=only,
            after_id=after_id, limit=limit, raw=raw,
        )  # fmt: skip
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    for message in messages:
        print(kept_json(message, with_raw=raw))
