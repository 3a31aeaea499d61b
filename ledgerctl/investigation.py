"""``ledger investigate``: a breach investigation read through the API, as tables.

Invariant: the CLI renders exactly what ``POST /v1/investigations`` answered (the API
records the read); the counts say how many individuals are identified and, when a query's
answer was truncated, how many more it returned unlisted: never fewer than the API says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

from rich.console import Console
from rich.table import Table

from ledgerctl.client import Api
from ledgerctl.reportfetch import as_of_params, fetch_report, seal_lines

Json = dict[str, object]


async def fetch_investigation(
    api: Api, scope: Json, as_of: list[str] | None = None, as_of_report: Path | None = None
) -> Json:
    """The investigation of ``scope`` (users, facility, network_addresses, since, until),
    as of the checkpoints ``as_of`` (``<origin>:<size>``) and those a saved report names
    (``as_of_report``); default the latest of each log."""
    params = as_of_params(as_of, as_of_report)
    answer = await fetch_report(api, "/v1/investigations", params, scope=scope)
    return cast(Json, json.loads(answer.body))


def _list(value: object) -> list[Json]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def summary_lines(report: Json) -> list[str]:
    """The notification counts, one line each."""
    n = cast(Json, report.get("notification") or {})
    lines = [
        f"individuals identified: {n.get('individuals')} "
        f"(without a recorded state: {n.get('unknown_state')})",
    ]
    unlisted = n.get("unlisted_patients") or 0
    if unlisted:
        truncated = len(_list(report.get("truncated_answers")))
        lines.append(
            f"NOT LISTED: {unlisted} more patient(s) returned by {truncated} truncated "
            f"answer(s); individuals at most {n.get('individuals_at_most')}"
        )
    hhs = "yes" if n.get("hhs_contemporaneous_notice") else "no"
    if not n.get("hhs_contemporaneous_notice") and n.get("hhs_contemporaneous_notice_possible"):
        hhs = "possible (identify the unlisted patients)"
    lines.append(f"HHS contemporaneous notice (164.408(b)): {hhs}")
    media = _text(n.get("media_notice_states")) or "none"
    lines.append(f"media notice states (164.406(a)): {media}")
    lines.append(
        f"uncovered events (after the named checkpoints): {report.get('uncovered_events')}"
    )
    return lines + seal_lines(report, str(report.get("digest") or ""))


def render_investigation(console: Console, report: Json) -> None:
    for line in summary_lines(report):
        console.print(line, highlight=False, markup=False)
    states = Table(title="Affected residents by state", title_justify="left")
    for column in ("state", "residents", "media notice", "possible"):
        states.add_column(column)
    for s in _list(report.get("states")):
        states.add_row(
            _text(s.get("state")),
            _text(s.get("residents")),
            "yes" if s.get("media_notice") else "no",
            "yes" if s.get("media_notice_possible") else "no",
        )
    console.print(states)
    truncated = _list(report.get("truncated_answers"))
    if truncated:
        table = Table(title="Truncated answers (patients not all listed)", title_justify="left")
        for column in ("event", "time (UTC)", "listed", "returned"):
            table.add_column(column)
        for t in truncated:
            table.add_row(
                _text(t.get("event_id")),
                _text(t.get("time"))[:19].replace("T", " "),
                _text(t.get("listed")),
                _text(t.get("total")),
            )
        console.print(table)
    patients = Table(title="Affected patients", title_justify="left")
    for column in ("patient", "issuer", "state", "events", "by answer", "phi", "users"):
        patients.add_column(column)
    for p in _list(report.get("patients")):
        patients.add_row(
            _text(p.get("patient_id")),
            _text(p.get("issuer")),
            _text(p.get("state")),
            _text(p.get("events")),
            _text(p.get("disclosed_events")),
            _text(p.get("phi_kinds")),
            _text(p.get("users")),
        )
    console.print(patients)
