"""The ``ledger`` command line (typer): the single composition root for operators.

Invariant: each subcommand reads ``Settings`` once, wires the components it needs,
and never prints a secret; failures exit non-zero with a one-line reason.

This module is the command table: the commands live in ``ledgerctl.commands``, one
module per group, and are registered here in the order ``ledger --help`` lists them.
"""

from __future__ import annotations

import typer

from ledgerctl.commands import (
    archive,
    atna,
    compliance,
    dicomproxy,
    emit,
    export_replay,
    history,
    investigate,
    monitor,
    producer,
    quarantine,
    readable,
    registry,
    report,
    services,
    setup,
    tokens,
    verify,
)
from ledgerctl.commands.common import console

app = typer.Typer(
    help="PHI audit ledger: ingest, serve, simulate and inspect a verifiable audit log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.command()(setup.migrate)
app.command()(setup.topics)
app.command()(services.consume)
app.command()(setup.keygen)
app.command("verifier-key")(setup.verifier_key)
app.command()(services.serve)
app.command()(emit.simulate)
app.command()(history.history)
app.command()(investigate.investigate)
app.command()(readable.disclosures)
app.command()(readable.relays)
app.command()(readable.status)
app.command()(emit.demo)
app.command()(export_replay.export)
app.command()(verify.verify)
app.command()(monitor.monitor)
app.command()(export_replay.replay)
app.command()(services.version)

app.add_typer(services.wait_app, name="wait")
app.add_typer(report.report_app, name="report")
app.add_typer(quarantine.quarantine_app, name="quarantine")
app.add_typer(compliance.alerts_app, name="alerts")
app.add_typer(compliance.rules_app, name="rules")
app.add_typer(tokens.token_app, name="token")
app.add_typer(producer.producer_app, name="producer")
app.add_typer(atna.atna_app, name="atna")
app.add_typer(dicomproxy.dicomproxy_app, name="dicom-proxy")
app.add_typer(emit.spool_app, name="spool")
app.add_typer(registry.registry_app, name="registry")
app.add_typer(archive.archive_app, name="archive")


def main() -> None:
    """Run the command; a named error of ours that no command caught (a bad setting or
    file, a spool another process holds, an unreadable key, Kafka refusing) is one
    ``error:`` line and exit 1, not a traceback. Anything else is a bug and keeps its
    traceback."""
    from ledger.errors import LedgerError
    from ledgerctl.configfile import ConfigFileError
    from producers.errors import ProducerError

    try:
        app()
    except (ProducerError, LedgerError, ConfigFileError) as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False)
        raise SystemExit(1) from exc
