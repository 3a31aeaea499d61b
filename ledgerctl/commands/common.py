"""What every ``ledger`` subcommand shares: the stderr console, failing with one line,
logging, the Kafka and verifier settings, and the ``--reason`` every PHI read asks for.

Invariant: a failure is printed as one ``error:`` line on stderr and exits 1; secrets are
never printed.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from ledger.log.note import Verifier
from ledgerctl.settings import KafkaRole, Settings
from producers.kafka_security import KafkaSecurity

if TYPE_CHECKING:
    from producers.ops import OpsConfig

console = Console(stderr=True)

#: Every command that reads PHI straight from the database, Kafka or a kept store asks why.
REASON = typer.Option(
    "--reason",
    help="Why you read this PHI (e.g. a ticket number); recorded in the ledger with your OS user.",
)


def configure_logging(
    verbose: bool = False, *, service: str = "ledger", fmt: str | None = None
) -> None:
    """Log lines to stderr (DEBUG with --verbose), as text or JSON (LEDGER_LOG_FORMAT,
    docs/observability.md); aiokafka's chatter from WARNING up."""
    from producers.logformat import configure

    try:
        configure(
            level=logging.DEBUG if verbose else logging.INFO,
            fmt=fmt,
            service=service,
            stream=sys.stderr,
        )
    except ValueError as exc:
        raise fail(str(exc)) from exc
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def ops_config(settings: Settings, service: str) -> OpsConfig | None:
    """The ops listener of ``service`` (LEDGER_OPS_HOST / LEDGER_OPS_PORT); None: off."""
    from producers.ops import OpsConfig

    if settings.ops_port is None:
        return None
    return OpsConfig(host=settings.ops_host, port=settings.ops_port, service=service)


def load_verifiers(settings: Settings, keys: list[str] | None = None) -> tuple[Verifier, ...]:
    """The checkpoint verifier keys: ``keys`` (--key), else LEDGER_VERIFIER_KEY."""
    from ledger.errors import LedgerError
    from ledger.log.keys import parse_verifiers

    configured = keys or settings.verifier_key_strings()
    if not configured:
        raise fail("no verifier key: pass --key or set LEDGER_VERIFIER_KEY")
    try:
        return parse_verifiers(configured)
    except LedgerError as exc:
        raise fail(f"bad verifier key: {exc}") from exc


def kafka_security(settings: Settings, role: KafkaRole) -> KafkaSecurity:
    """This command's Kafka client settings, or a one-line error naming what is wrong."""
    from producers.errors import KafkaSettingsError

    try:
        return settings.kafka(role)
    except KafkaSettingsError as exc:
        raise fail(str(exc)) from exc


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; the caller raises the returned exit (code 1)."""
    console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(code=1)


def progress() -> Any:
    """A progress bar per log on the stderr console (a context manager)."""
    from ledgerctl.verifying import progress_bar

    return progress_bar(console)


def report_console_stdout() -> Console:
    """The stdout console for reports (200 columns wide when not a terminal)."""
    from ledgerctl.tables import report_console

    return report_console()
