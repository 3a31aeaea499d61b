"""``ledger rules run`` and ``ledger alerts ...``: the compliance rules and their alerts.

Invariant: ``ledger alerts`` alone still lists the ingestion's security alerts (through
the API); its subcommands triage compliance alerts straight from the database, so a
listing or a look at one (they name patients) is recorded in the ledger first, with the
operator's OS user and --reason, and so is every transition.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ledgerctl.commands.common import (
    REASON,
    configure_logging,
    console,
    fail,
    ops_config,
    report_console_stdout,
)
from ledgerctl.settings import Settings

if TYPE_CHECKING:
    from producers.ops import OpsConfig

rules_app = typer.Typer(
    help="Compliance rules: evaluate the appended ledger.", no_args_is_help=True
)
alerts_app = typer.Typer(
    help="Alerts: security alerts raised while ingesting (no subcommand), and compliance "
    "alerts raised by `ledger rules run` (list, show, ack, close, deliver).",
    invoke_without_command=True,
)

CONFIG = typer.Option(
    "--config",
    envvar="LEDGER_RULES_FILE",
    help="The rules' thresholds (TOML, e.g. deploy/compliance-rules.toml); default: built in.",
)


@rules_app.command("run")
def rules_run(
    once: Annotated[bool, typer.Option(help="One pass over every log, then exit.")] = False,
    interval: Annotated[
        float, typer.Option(min=0.05, max=3600.0, help="Seconds between passes.")
    ] = 1.0,
    config: Annotated[str | None, CONFIG] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,
            help="Evaluator processes sharing the audit logs (each log stays in one).",
        ),
    ] = 1,
    shard: Annotated[
        str | None, typer.Option(hidden=True, help="I/N: this process's share (--workers).")
    ] = None,
    verbose: bool = False,
) -> None:
    """Evaluate every appended event with the compliance rules and raise alerts."""
    from ledger.audit.rules import PassSummary
    from ledger.errors import LedgerError
    from ledgerctl.rules import load_rules_config, parse_shard, run_rules, spawn_shards

    settings = Settings.load()
    configure_logging(verbose, service="rules", fmt=settings.log_format)
    part = (0, workers) if shard is None else parse_shard(shard)

    def report(s: PassSummary) -> None:
        if once or s.leaves or s.raised or s.registry_changes or s.annotated:
            line = (
                f"rules: {s.logs} log(s), {s.leaves} leaves evaluated, {s.raised} alert(s) "
                f"raised, {s.undecodable} undecodable; registry: {s.registry_changes} "
                f"change(s) read, {s.annotated} alert(s) annotated by a later change, "
                f"{s.held} log(s) waiting for it to settle"
            )
            if settings.log_format == "json":  # one JSON object per line on stderr
                logging.getLogger("ledgerctl.rules").info("%s", line)
            else:
                console.print(line)

    rules = load_rules_config(config)  # a bad file stops every process before it starts
    extra = ["--interval", str(interval), *(["--once"] if once else [])]
    extra += [] if config is None else ["--config", config]
    with spawn_shards(workers if shard is None else 1, extra) as children:
        try:
            asyncio.run(
                run_rules(
                    dsn=settings.require("appender_url"),
                    config=rules,
                    registry_topic=settings.registry_topic,
                    once=once,
                    interval=interval,
                    report=report,
                    shard=part,
                    ops=_shard_ops(ops_config(settings, "rules"), part[0]),
                )
            )
        except LedgerError as exc:
            raise fail(str(exc)) from exc
        if children.wait_all() != 0:
            raise fail("an evaluator process of --workers failed (see its output above)")


def _shard_ops(ops: OpsConfig | None, index: int) -> OpsConfig | None:
    """Share ``index`` of --workers listens on the configured port + index (0: any free)."""
    if ops is None or ops.port == 0 or index == 0:
        return ops
    return replace(ops, port=ops.port + index)


@rules_app.command("demo")
def rules_demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo's registry and watch list live.")
    ] = Path(".local/compliance-demo"),
    prepare: Annotated[
        bool,
        typer.Option(
            "--prepare",
            help="Only write the demo's files and the rules configuration naming its watch "
            "list (what `make up` gives `ledger rules run`), and print its path.",
        ),
    ] = False,
    template: Annotated[
        Path, typer.Option(help="The rules configuration the demo's is made from.")
    ] = Path("deploy/compliance-rules.toml"),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the ledger.")] = 180.0,
) -> None:
    """Show the compliance watch on the running stack: a registry, ten days of accesses
    with one planted violation of every rule, and the alerts they raised."""
    from rich.table import Table

    from ledger.errors import LedgerError
    from ledgerctl.alerts import list_alerts
    from ledgerctl.answers import render
    from ledgerctl.compliancedemo import prepare as prepare_files
    from ledgerctl.compliancedemo import run

    try:
        if prepare:
            typer.echo(prepare_files(directory, template))
            return
        settings = Settings.load()
        outcome = asyncio.run(run(settings, directory, timeout=timeout))
        shown = [
            a
            for a in list_alerts(
                settings, reason="make demo: the compliance watch", state=None, rule=None,
                user=None, limit=1000,
            )
            if a.alert_id in outcome.alert_ids
        ]  # fmt: skip
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    sim = outcome.simulation
    out = report_console_stdout()
    out.print(
        f"Compliance watch: a registry of {sim.registry_changes} changes (facilities, a "
        f"teleradiology group, BAAs, workforce, licenses, credentials), then "
        f"{sim.emitted} accesses and relays over ten days with {sim.planted} planted "
        f"violations, one of every rule (files in {sim.directory})."
    )
    table = Table(title=f"{len(shown)} alert(s) on the demo's accesses", title_justify="left")
    for column in ("id", "rule", "severity", "user", "patient", "what happened"):
        table.add_column(column, overflow="fold")
    for a in sorted(shown, key=lambda a: (a.rule_id, a.alert_id)):
        table.add_row(str(a.alert_id), a.rule_id, a.severity, a.user_id or "",
                      a.patient_id or "", a.summary)  # fmt: skip
    out.print(table)
    out.print("Triage them with `ledger alerts show ID --reason ...`, or in the console.")
    for line in render(outcome.check):
        typer.echo(line)
    if not outcome.check.passed:
        raise typer.Exit(1)


@rules_app.command("check-answers")
def rules_check_answers(
    answers: Annotated[Path, typer.Option(help="The answer file of `ledger simulate --registry`.")],
    rule: Annotated[
        list[str] | None,
        typer.Option("--rule", help="Check only this rule id (repeatable); default: every rule."),
    ] = None,
    every_producer: Annotated[
        bool,
        typer.Option(help="Count alerts on every producer's events, not only the simulation's."),
    ] = False,
) -> None:
    """Compare the compliance alerts with a simulation's planted violations: found,
    missed and false alerts per rule; exits 1 on any miss or false alert."""
    from ledger.errors import LedgerError
    from ledgerctl.answers import check_answers, render

    settings = Settings.load()
    try:
        result = asyncio.run(
            check_answers(
                settings.require("reader_url"), answers, rules=rule or None,
                every_producer=every_producer,
            )
        )  # fmt: skip
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    out = report_console_stdout()
    for line in render(result):
        out.print(line, markup=False, highlight=False)
    if not result.passed:
        raise typer.Exit(1)


@alerts_app.callback()
def alerts(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """List security alerts raised while ingesting (e.g. an event id re-sent with other content)."""
    if ctx.invoked_subcommand is not None:
        return
    from ledgerctl.quarantine import fetch_alerts

    settings = Settings.load()
    rows = asyncio.run(fetch_alerts(settings.api(), limit=limit))
    out = report_console_stdout()
    if not rows:
        out.print("no security alerts")
    for a in rows:
        out.print(f"[red]{a['raised_at'][:19]} {a['kind']}[/red] {a['detail']}")


@alerts_app.command("list")
def alerts_list(
    reason: Annotated[str, REASON],
    state: Annotated[str | None, typer.Option(help="open, acknowledged or closed.")] = None,
    rule: Annotated[str | None, typer.Option(help="Only this rule id.")] = None,
    user: Annotated[str | None, typer.Option(help="Only alerts about this user.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """List compliance alerts, newest first (recorded in the ledger as a read first)."""
    from ledger.errors import LedgerError
    from ledgerctl.alerts import list_alerts, print_alerts

    try:
        found = list_alerts(
            Settings.load(), reason=reason, state=state, rule=rule, user=user, limit=limit
        )
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    print_alerts(report_console_stdout(), found)


@alerts_app.command("show")
def alerts_show(
    alert_id: Annotated[int, typer.Argument(help="Alert id (from `list`).")],
    reason: Annotated[str, REASON],
) -> None:
    """One alert with its evidence (log origin and leaf index of each event) and history."""
    from ledger.errors import LedgerError
    from ledgerctl.alerts import print_alert, show_alert

    try:
        detail = show_alert(Settings.load(), alert_id=alert_id, reason=reason)
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    print_alert(report_console_stdout(), detail)


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[int, typer.Argument(help="Alert id.")],
    note: Annotated[str, typer.Option("--note", help="What you found or did.")],
) -> None:
    """Acknowledge an open alert (a new transition row, by your OS user)."""
    from ledger.audit.rules import AlertState
    from ledger.errors import LedgerError
    from ledgerctl.alerts import triage

    try:
        done = triage(Settings.load(), alert_id=alert_id, state=AlertState.ACKNOWLEDGED, note=note)
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    console.print(f"alert {alert_id}: {done.state.value} by {done.by}")


@alerts_app.command("close")
def alerts_close(
    alert_id: Annotated[int, typer.Argument(help="Alert id.")],
    disposition: Annotated[
        str,
        typer.Option(help="false_positive, policy_violation or breach_investigation."),
    ],
    note: Annotated[str, typer.Option("--note", help="Why it is closed this way.")],
) -> None:
    """Close an open or acknowledged alert with a disposition (a new transition row)."""
    from ledger.audit.rules import AlertState, parse_disposition
    from ledger.errors import LedgerError
    from ledgerctl.alerts import triage

    try:
        done = triage(
            Settings.load(), alert_id=alert_id, state=AlertState.CLOSED, note=note,
            disposition=parse_disposition(disposition),
        )  # fmt: skip
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    console.print(f"alert {alert_id}: {done.state.value} ({disposition}) by {done.by}")


DELIVERY = typer.Option(
    "--destinations",
    envvar="LEDGER_ALERT_DELIVERY_FILE",
    help="The webhook destinations (TOML, e.g. deploy/alert-delivery.toml).",
)


@alerts_app.command("deliver")
def alerts_deliver(
    destinations: Annotated[str, DELIVERY],
    once: Annotated[bool, typer.Option(help="One pass over pending alerts, then exit.")] = False,
    interval: Annotated[
        float, typer.Option(min=0.05, max=3600.0, help="Seconds between passes.")
    ] = 5.0,
    verbose: bool = False,
) -> None:
    """Deliver compliance alerts to signed webhooks and syslog over TLS, at least once."""
    from ledger.audit.delivery import DeliverySummary, load_destinations
    from ledger.errors import LedgerError
    from ledgerctl.delivery import run_delivery

    configure_logging(verbose)

    def report(s: DeliverySummary) -> None:
        if once or s.delivered or s.failed_attempts:
            left = ", some still pending" if s.pending_left else ""
            console.print(
                f"delivery: {s.delivered} alert(s) delivered, {s.failed_attempts} failed "
                f"attempt(s){left}"
            )

    try:
        loaded = load_destinations(destinations)
        asyncio.run(
            run_delivery(
                dsn=Settings.load().require("appender_url"),
                destinations=loaded,
                once=once,
                interval=interval,
                report=report,
            )
        )
    except LedgerError as exc:
        raise fail(str(exc)) from exc
