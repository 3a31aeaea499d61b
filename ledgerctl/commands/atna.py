"""``ledger atna serve`` and ``ledger atna kept``: the IHE ATNA receiver and the
messages it kept instead of mapping (docs/atna.md).

Invariant: the receiver refuses to start without a senders policy, or TLS without a
client CA; kept messages (PHI) are printed only after the read is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, TypeAlias

import typer

from ledgerctl.commands.common import REASON, configure_logging, fail, ops_config
from ledgerctl.settings import Settings

atna_app = typer.Typer(
    help="IHE ATNA audit record repository: syslog over TLS/TCP/UDP in, events out.",
    no_args_is_help=True,
)


# The options of ``ledger atna serve``, named so that its signature reads as their list.
_Cert: TypeAlias = Annotated[Path | None, typer.Option(help="PEM certificate chain (TLS).")]
_Key: TypeAlias = Annotated[Path | None, typer.Option(help="PEM private key for --cert.")]
_ClientCa: TypeAlias = Annotated[
    Path | None,
    typer.Option(help="CA that signs the senders' client certificates (required for TLS)."),
]
_Senders: TypeAlias = Annotated[
    Path | None,
    typer.Option(help="TOML policy: the AuditSourceIDs each certificate CN may claim."),
]
_Host: TypeAlias = Annotated[str, typer.Option(help="Bind address.")]
_TlsPort: TypeAlias = Annotated[int, typer.Option(help="RFC 5425 (syslog over TLS) port.")]
_UdpPort: TypeAlias = Annotated[
    int | None,
    typer.Option(
        help="RFC 5426 (syslog over UDP) port. Off unless given: UDP is not "
        "authenticated and spoofable; datagrams may claim only [udp] sources."
    ),
]
_TcpPort: TypeAlias = Annotated[
    int | None,
    typer.Option(
        help="Plain TCP (RFC 6587, octet counting or LF framing) port. Off unless given: "
        "no certificate; served only to source addresses listed under [tcp] of --senders."
    ),
]
_TcpHost: TypeAlias = Annotated[
    str, typer.Option(help="Bind address of --tcp-port (loopback unless given, whatever --host).")
]
_FrameTimeout: TypeAlias = Annotated[
    float, typer.Option(min=0.001, help="Seconds a frame may take to arrive (slow senders).")
]
_NoTls: TypeAlias = Annotated[bool, typer.Option(help="Do not listen on TLS.")]
_KeptDir: TypeAlias = Annotated[Path, typer.Option(help="Where unparseable messages are kept.")]
_ProducerId: TypeAlias = Annotated[
    str | None,
    typer.Option(help="Producer id (default: LEDGER_PRODUCER_KEY_FILE's, else atna-receiver)."),
]
_DefaultFacility: TypeAlias = Annotated[
    str | None, typer.Option(help="Facility when a message names no site.")
]
_MaxMessageBytes: TypeAlias = Annotated[int, typer.Option(min=2048)]
_MaxConnections: TypeAlias = Annotated[int, typer.Option(min=1)]
_IdleTimeout: TypeAlias = Annotated[float, typer.Option(help="Seconds.")]
_ParseWorkers: TypeAlias = Annotated[
    int | None,
    typer.Option(min=0, show_default="2", help="Processes that parse messages; 0: none."),
]
_StatsEvery: TypeAlias = Annotated[float, typer.Option(help="Log counters every N seconds.")]


@atna_app.command("serve")
def atna_serve(
    cert: _Cert = None,
    key: _Key = None,
    client_ca: _ClientCa = None,
    senders: _Senders = None,
    host: _Host = "127.0.0.1",
    tls_port: _TlsPort = 16514,
    udp_port: _UdpPort = None,
    tcp_port: _TcpPort = None,
    tcp_host: _TcpHost = "127.0.0.1",
    no_tls: _NoTls = False,
    kept_dir: _KeptDir = Path(".local/atna/kept"),
    producer_id: _ProducerId = None,
    default_facility: _DefaultFacility = None,
    max_message_bytes: _MaxMessageBytes = 65536,
    max_connections: _MaxConnections = 256,
    idle_timeout: _IdleTimeout = 300.0,
    frame_timeout: _FrameTimeout = 60.0,
    parse_workers: _ParseWorkers = None,
    stats_every: _StatsEvery = 60.0,
    verbose: bool = False,
) -> None:
    """Run the ATNA receiver until SIGTERM."""
    from integrations.errors import AtnaPolicyError
    from ledgerctl.atna import DEFAULT_PRODUCER_ID, run_atna, stats_json
    from ledgerctl.simulate import key_producer_id
    from producers.signing import ProducerKeyError

    settings = Settings.load()
    configure_logging(verbose, service="atna", fmt=settings.log_format)
    senders = _required_policy(senders, tls=not no_tls, client_ca=client_ca)
    if producer_id is None:
        producer_id = key_producer_id(settings.producer_key_file, DEFAULT_PRODUCER_ID)
    try:
        stats = asyncio.run(
            run_atna(
                settings,
                host=host,
                tls_port=None if no_tls else tls_port,
                udp_port=udp_port,
                tcp_port=tcp_port,
                tcp_host=tcp_host,
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
                frame_timeout=frame_timeout,
                parse_workers=parse_workers,
                stats_every=stats_every,
                ops=ops_config(settings, "atna"),
            )
        )
    except (AtnaPolicyError, ProducerKeyError, ValueError) as exc:
        raise fail(str(exc)) from exc
    if settings.log_format == "json":  # one JSON object per line on stderr
        logging.getLogger("ledgerctl.atna").info("ATNA receiver exited: %s", stats_json(stats))
    else:
        print(f"ATNA receiver exited: {stats_json(stats)}", file=sys.stderr, flush=True)


def _required_policy(senders: Path | None, *, tls: bool, client_ca: Path | None) -> Path:
    """The senders policy file; refuse to start without one, or TLS without a client CA."""
    if senders is None:
        raise fail(
            "--senders is required: the FILE saying which AuditSourceIDs each sender may claim"
        )
    if tls and client_ca is None:
        raise fail("--client-ca is required: TLS senders must present a client certificate")
    return senders


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
