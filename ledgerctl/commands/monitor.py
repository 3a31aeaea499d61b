"""``ledger monitor``: verify every log continuously, remembering what was verified.

Invariant: one line per finding on stdout (``FINDING <kind> log <origin> ...``); with
``--once`` the exit status is 0 when nothing was found, 1 on any finding, 2 when an
endpoint or log could not be read (and nothing was found); the state file is written
after every round, so what was verified is never verified against a weaker memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeAlias

import typer

from ledgerctl.commands.common import fail, load_verifiers
from ledgerctl.settings import Settings

if TYPE_CHECKING:
    from ledger.audit.delivery import AnyDestination
    from ledgerctl.monitoring import Round, RoundResult
    from ledgerctl.monitorstate import MonitorState

_Endpoints: TypeAlias = Annotated[
    list[str] | None,
    typer.Option(
        "--endpoint",
        help="An API to read (repeat: two endpoints must serve one history); default "
        "LEDGER_MONITOR_ENDPOINTS, else LEDGER_API_URL.",
    ),
]
_Keys: TypeAlias = Annotated[
    list[str] | None,
    typer.Option("--key", help="Verifier key (repeat for rotation); default LEDGER_VERIFIER_KEY."),
]
_State: TypeAlias = Annotated[
    Path | None, typer.Option(help="State file; default LEDGER_MONITOR_STATE_FILE.")
]
_Interval: TypeAlias = Annotated[
    float | None,
    typer.Option(help="Seconds between rounds; default LEDGER_MONITOR_INTERVAL_SECONDS."),
]
_StallAfter: TypeAlias = Annotated[
    float | None,
    typer.Option(help="Seconds a checkpoint may stay put with unsigned leaves pending."),
]
_Destinations: TypeAlias = Annotated[
    str | None,
    typer.Option(
        "--destinations",
        envvar="LEDGER_ALERT_DELIVERY_FILE",
        help="Where alerts go: the alert deliverer's destinations file (webhooks, syslog).",
    ),
]


def monitor(
    endpoint: _Endpoints = None,
    key: _Keys = None,
    state: _State = None,
    once: Annotated[bool, typer.Option(help="One round, then exit (1 on any finding).")] = False,
    interval: _Interval = None,
    stall_after: _StallAfter = None,
    destinations: _Destinations = None,
) -> None:
    """Watch the ledger's logs: forks, rollbacks, stalls, split views, altered entries.

    Each round reads every log's newest signed checkpoint from every endpoint, checks it
    against the one verified last time (kept in the state file), checks consistency and
    appends the new leaves to the remembered tree, which must give the signed root.
    """
    from ledger.audit.delivery import load_destinations
    from ledger.errors import LedgerError
    from ledgerctl.monitoring import Round

    settings = Settings.load()
    verifiers = load_verifiers(settings, key)
    listed = endpoint or (settings.monitor_endpoints or "").split(",")
    urls = [u.strip().rstrip("/") for u in listed if u.strip()]
    apis = [settings.api(u) for u in urls] if urls else [settings.api()]
    if len({a.url for a in apis}) != len(apis):
        raise fail("an endpoint is given twice")
    try:
        loaded = load_destinations(destinations) if destinations else ()
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    ctx = Round(
        endpoints=apis,
        verifiers=verifiers,
        stall_after=timedelta(seconds=settings.monitor_stall_after_seconds),
        now=datetime.now(UTC),
    )
    if stall_after is not None:
        ctx = replace(ctx, stall_after=timedelta(seconds=stall_after))
    path = state or Path(settings.monitor_state_file)
    every = interval if interval is not None else settings.monitor_interval_seconds
    try:
        code = asyncio.run(_run(ctx, path, loaded, once=once, interval=every))
    except LedgerError as exc:
        raise fail(str(exc)) from exc
    raise typer.Exit(code=code)


async def _run(
    ctx: Round, path: Path, destinations: tuple[AnyDestination, ...], *, once: bool, interval: float
) -> int:
    from ledgerctl.monitorstate import load_state

    state = load_state(path, ctx.verifiers)
    stop = asyncio.Event()
    if not once:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    while True:
        result = await _round(replace(ctx, now=datetime.now(UTC)), path, state, destinations)
        state = result.state
        if once:
            return 1 if result.findings else 2 if result.errors else 0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            return 0


async def _round(
    ctx: Round, path: Path, state: MonitorState, destinations: tuple[AnyDestination, ...]
) -> RoundResult:
    from ledgerctl.monitoralerts import send_alerts
    from ledgerctl.monitoring import run_round
    from ledgerctl.monitorstate import save_state

    result = await run_round(ctx, state)
    for finding in result.findings:
        print(finding.line(), flush=True)
    for line in result.errors:
        print(line, flush=True)
    for origin, (before, after) in sorted(result.advanced.items()):
        print(f"OK {origin}: verified {before} -> {after}", flush=True)
    new = [f for f in result.findings if f.key not in state.alerted]
    taken: set[str] = set()
    if new and destinations:
        taken, failures = await send_alerts(new, destinations, found_at=ctx.now)
        for line in failures:
            print(line, flush=True)
    still = {f.key for f in result.findings}
    alerted = (state.alerted & still) | taken if destinations else state.alerted & still
    kept = replace(result.state, alerted=frozenset(alerted))
    save_state(path, kept)
    total = len(result.findings)
    print(f"ROUND {'OK' if not total and not result.errors else 'FAIL'}: {total} finding(s), "
          f"{len(result.errors)} error(s), {len(kept.logs)} log(s)", flush=True)  # fmt: skip
    return replace(result, state=kept)
