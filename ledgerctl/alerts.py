"""Compliance alert triage for operators: list, show, acknowledge, close.

Invariant: alerts name patients, so a listing or a look at one is recorded in the ledger
(``record_now``) before anything is printed; a transition is recorded before it is made,
and is made by the operator's OS user (``cliaudit.operator``), never a name they type.
"""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.table import Table

from ledger.audit.rules import (
    AlertState,
    Disposition,
    transition,
)
from ledger.audit.rules.alerts import AlertDetail, AlertFilter, StoredAlert, StoredTransition
from ledger.errors import MalformedInputError
from ledger.pg.compliance import PostgresRulesStore
from ledgerctl.cliaudit import cli_read, operator, record_now
from ledgerctl.settings import Settings


def _state(text: str | None) -> AlertState | None:
    if text is None:
        return None
    try:
        return AlertState(text)
    except ValueError as exc:
        choices = ", ".join(s.value for s in AlertState)
        raise MalformedInputError(f"unknown state {text!r}: use one of {choices}") from exc


def list_alerts(
    settings: Settings,
    *,
    reason: str,
    state: str | None,
    rule: str | None,
    user: str | None,
    limit: int,
) -> list[StoredAlert]:
    where = AlertFilter(state=_state(state), rule_id=rule, user_id=user, limit=limit)
    params = {k: v for k, v in (("state", state), ("rule", rule), ("user", user)) if v}
    record_now(settings, cli_read(command="alerts/list", reason=reason, parameters=params))

    async def fetch() -> list[StoredAlert]:
        async with PostgresRulesStore(dsn=settings.require("appender_url")) as store:
            return await store.alerts(where)

    return asyncio.run(fetch())


def show_alert(settings: Settings, *, alert_id: int, reason: str) -> AlertDetail:
    record_now(
        settings,
        cli_read(command="alerts/show", reason=reason, parameters={"alert_id": str(alert_id)}),
    )

    async def fetch() -> AlertDetail | None:
        async with PostgresRulesStore(dsn=settings.require("appender_url")) as store:
            return await store.alert(alert_id)

    found = asyncio.run(fetch())
    if found is None:
        raise MalformedInputError(f"no alert {alert_id}")
    return found


def triage(
    settings: Settings,
    *,
    alert_id: int,
    state: AlertState,
    note: str,
    disposition: Disposition | None = None,
) -> StoredTransition:
    wanted = transition(state=state, note=note, by=operator(), disposition=disposition)
    params = {"alert_id": str(alert_id), "state": state.value}
    if disposition is not None:
        params["disposition"] = disposition.value
    record_now(
        settings,
        cli_read(command=f"alerts/{state.value}", reason=f"triage of alert {alert_id}",
                 parameters=params),
    )  # fmt: skip

    async def apply() -> StoredTransition:
        async with PostgresRulesStore(dsn=settings.require("appender_url")) as store:
            return await store.transition(alert_id, wanted)

    return asyncio.run(apply())


def print_alerts(out: Console, alerts: list[StoredAlert]) -> None:
    table = Table(title=f"{len(alerts)} compliance alert(s)", title_justify="left")
    for column in ("id", "raised", "rule", "severity", "state", "facility", "user", "patient",
                   "trigger", "summary"):  # fmt: skip
        table.add_column(column, overflow="fold")
    for a in alerts:
        table.add_row(
            str(a.alert_id),
            a.raised_at.isoformat()[:19],
            f"{a.rule_id} v{a.rule_version}",
            a.severity,
            a.state.value if a.disposition is None else f"closed ({a.disposition.value})",
            a.facility_id or "",
            a.user_id or "",
            a.patient_id or "",
            f"{a.origin} #{a.leaf_index}",
            a.summary,
        )
    out.print(table)


def print_alert(out: Console, d: AlertDetail) -> None:
    a = d.alert
    out.print(f"alert {a.alert_id}: {a.rule_id} v{a.rule_version} ({a.severity}), {a.state.value}")
    out.print(f"  {a.summary}")
    for note in d.notes():
        out.print(f"  {note}")
    issuer = "" if a.patient_issuer is None else f" (issuer {a.patient_issuer})"
    out.print(
        f"  facility {a.facility_id or '-'}  user {a.user_id or '-'}  "
        f"patient {a.patient_id or '-'}{issuer}"
    )
    out.print(f"  raised {a.raised_at.isoformat()} by leaf {a.leaf_index} of log {a.origin}")
    out.print(f"  thresholds {dict(sorted(a.thresholds.items()))}")
    evidence = Table(title="Evidence (prove each with `ledger verify` / the proof API)",
                     title_justify="left")  # fmt: skip
    for column in ("log", "leaf index", "role"):
        evidence.add_column(column)
    for e in d.evidence:
        evidence.add_row(e.origin, str(e.leaf_index), e.role)
    out.print(evidence)
    history = Table(title="Transitions", title_justify="left")
    for column in ("#", "at", "state", "disposition", "by", "note"):
        history.add_column(column, overflow="fold")
    for t in d.transitions:
        history.add_row(
            str(t.seq), t.at.isoformat()[:19], t.state.value,
            "" if t.disposition is None else t.disposition.value, t.by, t.note,
        )  # fmt: skip
    out.print(history)
