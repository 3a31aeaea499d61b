"""``ledger investigate``: a breach investigation read through the API, as tables.

Invariant: the CLI renders exactly what ``POST /v1/investigations`` answered (the API
records the read); the counts say how many individuals are identified and, when a query's
answer was truncated, how many more it returned unlisted: never fewer than the API says.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import cast

from rich.console import Console
from rich.table import Table

from ledger.audit import wording
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
    """The verdict in one sentence, then the notification counts, one line each."""
    n = cast(Json, report.get("notification") or {})
    lines = [sentence(report)]
    lines.append(
        f"individuals identified: {n.get('individuals')} "
        f"(without a recorded state: {n.get('unknown_state')})",
    )
    if not _list(report.get("timeline")):
        return lines  # no notice verdict on a scope that matched nothing
    unlisted = n.get("unlisted_patients") or 0
    if unlisted:
        truncated = len(_list(report.get("truncated_answers")))
        lines.append(
            f"NOT LISTED: {unlisted} more patient(s) returned by {truncated} truncated "
            f"answer(s); individuals at most {n.get('individuals_at_most')}"
        )
    hhs = "yes: notify now" if n.get("hhs_contemporaneous_notice") else "no: annual log"
    if not n.get("hhs_contemporaneous_notice") and n.get("hhs_contemporaneous_notice_possible"):
        hhs = "possible (identify the unlisted patients)"
    lines.append(f"HHS contemporaneous notice (164.408(b)): {hhs}")
    media = _text(n.get("media_notice_states")) or "none"
    lines.append(f"media notice states (164.406(a)): {media}")
    lines.append(
        f"uncovered events (after the named checkpoints): {report.get('uncovered_events')}"
    )
    return lines


def sentence(report: Json) -> str:
    """The report's opening sentence (``summary``), or the same computed from its counts
    when the API predates it."""
    if isinstance(report.get("summary"), str):
        return str(report["summary"])
    n = cast(Json, report.get("notification") or {})
    return wording.breach_sentence(
        wording.BreachCounts(
            individuals=int(str(n.get("individuals") or 0)),
            states={
                str(s.get("state")): int(str(s.get("residents") or 0))
                for s in _list(report.get("states"))
            },
            unknown_state=int(str(n.get("unknown_state") or 0)),
            unlisted=int(str(n.get("unlisted_patients") or 0)),
            threshold=int(str(n.get("threshold") or 500)),
            events=len(_list(report.get("timeline"))),
        )
    )


def scope_warnings(report: Json) -> list[str]:
    """One warning per selector of the scope that no event matched ("no events for user
    rad003.brenan"), and one when the scope as a whole matched nothing."""
    scope = cast(Json, report.get("scope") or {})
    timeline = _list(report.get("timeline"))
    window = f" from {scope.get('start')} until {scope.get('end')}"
    out = [
        w + window
        for w in wording.no_match_warnings(
            users=[str(u) for u in cast(list[object], scope.get("users") or [])],
            facility=None if scope.get("facility") is None else str(scope.get("facility")),
            addresses=[str(a) for a in cast(list[object], scope.get("network_addresses") or [])],
            seen_users=[str(e.get("user_id")) for e in timeline],
            seen_facilities=[str(e.get("facility_id")) for e in timeline],
            seen_addresses=[str(e.get("network_address")) for e in timeline],
        )
    ]
    if not timeline and not out:
        out.append(f"no events match this scope{window}")
    return out


#: The timeline rows printed before pointing to the full exports.
TIMELINE_ROWS = 100


def render_investigation(console: Console, report: Json) -> None:
    for line in summary_lines(report):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if _list(report.get("timeline")):
        _render_tables(console, report)
    for line in seal_lines(report, str(report.get("digest") or "")):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def _render_tables(console: Console, report: Json) -> None:
    states = Table(title="Affected residents by state", title_justify="left")
    for column in ("state", "residents", "media notice (over the threshold)", "possible"):
        states.add_column(column)
    for s in _list(report.get("states")):
        states.add_row(
            _text(s.get("state")),
            _text(s.get("residents")),
            "yes" if s.get("media_notice") else "no",
            "yes: establish residence" if s.get("media_notice_possible") else "no",
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
    for column in ("patient", "issuer", "state", "events", "by answer", "information", "users"):
        patients.add_column(column)
    for p in _list(report.get("patients")):
        patients.add_row(
            _text(p.get("patient_id")),
            _text(p.get("issuer")),
            _text(p.get("state")) or "not recorded",
            _text(p.get("events")),
            _text(p.get("disclosed_events")),
            _text(p.get("phi_kinds")),
            _text(p.get("users")),
        )
    console.print(patients)
    _render_timeline(console, _list(report.get("timeline")))


def _render_timeline(console: Console, timeline: list[Json]) -> None:
    table = Table(
        title=f"Events in scope: {len(timeline)}, oldest first",
        caption=None
        if len(timeline) <= TIMELINE_ROWS
        else f"the first {TIMELINE_ROWS} shown: --format csv|html --out FILE for all",
        title_justify="left",
        caption_justify="left",
    )
    for column in ("time (UTC)", "user", "action", "outcome", "purpose", "patient", "position"):
        table.add_column(column, no_wrap=column in ("time (UTC)", "position"))
    for e in timeline[:TIMELINE_ROWS]:
        ledger = cast(Json, e.get("ledger") or {})
        origin = _text(ledger.get("origin"))
        table.add_row(
            _text(e.get("time"))[:19].replace("T", " "),
            _text(e.get("user_id")),
            wording.action(_text(e.get("action")) or None),
            wording.outcome(_text(e.get("outcome")) or None),
            wording.purpose(_text(e.get("purpose_of_use")) or None),
            _text(e.get("patient_id")),
            f"{origin.split('/', 1)[-1]}#{_text(ledger.get('leaf_index'))}",
        )
    console.print(table)


def verdict_of(body: bytes, fmt: str) -> str | None:
    """The opening sentence of an exported report: the JSON's ``summary``, the CSV's
    ``#verdict`` row; None for the printable page (it opens with it)."""
    if fmt == "json":
        summary = json.loads(body).get("summary")
        return None if summary is None else str(summary)
    if fmt == "csv":
        for row in csv.reader(io.StringIO(body.decode("utf-8"))):
            if row and row[0] == "#verdict":
                return row[1]
    return None
