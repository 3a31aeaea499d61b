"""``ledger simulate``, ``demo`` and ``spool drain``: the commands that emit events
through the producer library (synthetic ones, or a dead host's leftover spool).

Invariant: events go through the same emitter and spool as an integration's; the demo
checks what it printed against the signed checkpoints.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ledgerctl.commands.common import console, fail, load_verifiers
from ledgerctl.settings import Settings

spool_app = typer.Typer(help="A producer's local spool (events Kafka has not taken yet).")


def simulate(
    events: Annotated[int, typer.Option("--events", "-n", min=1, help="How many events.")] = 1000,
    rate: Annotated[float, typer.Option(help="Events per second; 0 = as fast as possible.")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: new each run).")] = None,
    ids_out: Annotated[
        Path | None, typer.Option("--ids-out", help="Write the emitted event ids here.")
    ] = None,
    producer_id: Annotated[
        str | None,
        typer.Option(help="Producer id stamped on events (default: LEDGER_PRODUCER_KEY_FILE's)."),
    ] = None,
    accepted_out: Annotated[
        Path | None,
        typer.Option(help="Append each event id here as soon as emit() accepted it."),
    ] = None,
    registry: Annotated[
        bool,
        typer.Option(
            "--registry",
            help="Simulate ten days of a registry-covered world: write its registry files, "
            "watch list and rules TOML next to --answers, emit the registry, then the events.",
        ),
    ] = False,
    plant: Annotated[
        bool,
        typer.Option(
            "--plant/--clean",
            help="With --registry: plant one violation of every rule (the answer file names "
            "each), or emit the clean twin (no plant, an empty answer file).",
        ),
    ] = True,
    answers: Annotated[
        Path,
        typer.Option(help="With --registry: the answer file (JSON); the other files go beside."),
    ] = Path("simulation/answers.json"),
    emit_registry: Annotated[
        bool,
        typer.Option(help="With --registry: emit the registry's changes (else write files only)."),
    ] = True,
) -> None:
    """Emit realistic synthetic events through the producer library."""
    from ledgerctl.simulate import key_producer_id, run_simulation

    settings = Settings.load()
    if producer_id is None:
        producer_id = key_producer_id(settings.producer_key_file, "simulator")
    if registry:
        _simulate_registry(
            settings, events=events, rate=rate, seed=seed, plant=plant, answers=answers,
            producer_id=producer_id, emit_registry=emit_registry,
        )  # fmt: skip
        return
    summary = asyncio.run(
        run_simulation(
            settings,
            events=events,
            rate=rate,
            seed=seed,
            ids_out=ids_out,
            producer_id=producer_id,
            accepted_out=accepted_out,
        )
    )
    console.print(
        f"emitted {summary.emitted} events ({summary.relays} critical-result relays) "
        f"in {summary.seconds:.2f}s ({summary.emitted / max(summary.seconds, 1e-9):,.0f}/s); "
        f"busiest patient: {summary.busiest_patient}"
    )


def _simulate_registry(
    settings: Settings,
    *,
    events: int,
    rate: float,
    seed: int | None,
    plant: bool,
    answers: Path,
    producer_id: str,
    emit_registry: bool,
) -> None:
    import time

    from ledger.errors import LedgerError
    from ledgerctl.simregistry import run_registry_simulation

    try:
        done = asyncio.run(
            run_registry_simulation(
                settings, events=events, rate=rate,
                seed=seed if seed is not None else time.time_ns() % 2**32, plant=plant,
                answers=answers, producer_id=producer_id, emit_registry_changes=emit_registry,
            )
        )  # fmt: skip
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    registry = "emitted" if emit_registry else "written, not emitted"
    console.print(
        f"emitted {done.emitted} events with {done.planted} planted violation(s) in "
        f"{done.seconds:.1f}s; registry of {done.registry_changes} change(s) {registry}; "
        f"files in {done.directory}, answers in {done.answers}"
    )


def demo(
    events: Annotated[int, typer.Option("--events", "-n", min=10)] = 300,
    seed: Annotated[int | None, typer.Option()] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for ingestion.")] = 90.0,
) -> None:
    """Emit a burst of demo events, wait for the ledger, print one patient's history."""
    from ledger.errors import LedgerError
    from ledgerctl.simulate import run_demo
    from ledgerctl.tables import prove_entries, render_history, render_proofs, report_console

    settings = Settings.load()
    try:
        result = asyncio.run(run_demo(settings, events=events, seed=seed, timeout=timeout))
    except TimeoutError as exc:
        raise fail(str(exc)) from exc
    out = report_console()
    out.print(
        f"Emitted {result.emitted} audit events ({result.facilities} facilities, "
        f"{result.users} users, {result.patients} patients, 1 critical-result relay) through "
        f"Kafka; all of patient {result.patient_id}'s events were in the ledger after "
        f"{result.seconds:.1f}s."
    )
    render_history(out, result.patient_id, result.history)
    verifiers = load_verifiers(settings)
    try:
        proven = asyncio.run(prove_entries(settings.api(), result.history, verifiers))
    except LedgerError as exc:
        raise fail(f"VERIFICATION FAILED: {exc}") from exc
    render_proofs(out, proven, verifiers)
    print_console_sign_in(out, settings, result.patient_id)


def print_console_sign_in(out: Console, settings: Settings, patient_id: str) -> None:
    """The console's address, this patient's page and a token to sign in with (the local
    admin token of .local/env: a demo on one's own machine, docs/console.md)."""
    from urllib.parse import quote

    base = settings.api_url.rstrip("/")
    out.print(
        f"Console: {base}/console/  (this patient: {base}/console/patients/"
        f"{quote(patient_id, safe='')})",
        soft_wrap=True,
        highlight=False,
    )
    if settings.api_token is not None:
        out.print(
            f"Sign in with the API token: {settings.api_token.get_secret_value()}",
            soft_wrap=True,
            highlight=False,
        )


@spool_app.command("drain")
def spool_drain(
    producer_id: Annotated[str, typer.Option(help="Whose spool (LEDGER_SPOOL_DIR/<id>).")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Kafka.")] = 300.0,
) -> None:
    """Send a producer's leftover spool to Kafka (e.g. after its host died), in order."""
    from ledgerctl.simulate import drain_spool

    settings = Settings.load()
    try:
        health = asyncio.run(drain_spool(settings, producer_id, timeout))
    except TimeoutError as exc:
        raise fail(str(exc)) from exc
    console.print(f"spool of {producer_id} drained: {health.sent} event(s) sent, 0 left")
