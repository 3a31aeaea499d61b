"""The console's operational pages: the compliance alerts triage queue, and the ledger's
integrity (each log's signed size, checkpoint age and unsigned leaves; the quarantine).

Invariant: both read through the JSON API's ports and listing code (``ledger.http.alerts``
for alerts and their transitions, the reader for logs and the quarantine), so the queue
shows what ``GET /v1/compliance/alerts`` answers and a triage is the transition the API
would append, by the signed-in person; what a role may not read is neither read nor
shown.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final
from urllib.parse import urlencode

from aiohttp import web

from ledger.audit.auth import Permission
from ledger.audit.rules import AlertState
from ledger.audit.rules.triage import Disposition
from ledger.errors import MalformedInputError
from ledger.http.alerts import ALERT_TRIAGE, alert_listing, alert_query, triage_alert
from ledger.http.common import READER, integer, principal
from ledger.http.console.guard import CONSOLE, SESSION, see_other
from ledger.http.console.render import page
from ledger.http.console.sessions import Session

ALERT_ROWS: Final = 50
#: The quarantine is counted up to this many records ("1,000 or more").
QUARANTINE_COUNT: Final = 1000
DISPOSITIONS: Final = {
    Disposition.FALSE_POSITIVE.value: "False positive",
    Disposition.POLICY_VIOLATION.value: "Policy violation",
    Disposition.BREACH_INVESTIGATION.value: "Open a breach investigation",
}


def _csrf(request: web.Request) -> str:
    session: Session | None = request.get(SESSION)
    return "" if session is None else session.csrf


async def alerts(request: web.Request) -> web.Response:
    query = alert_query(request)
    rows, next_cursor = await alert_listing(
        request, query, limit=ALERT_ROWS, token=request.query.get("cursor")
    )
    kept = {k: v for k, v in request.query.items() if k != "cursor"}
    who = principal(request)
    return page(
        "alerts.html", who=who, csrf=_csrf(request), alerts=rows, filters=kept,
        states=[s.value for s in AlertState], dispositions=DISPOSITIONS,
        may_triage=who.may(Permission.TRIAGE) and ALERT_TRIAGE in request.app,
        next_url=None if next_cursor is None
        else f"{request.path}?{urlencode({**kept, 'cursor': next_cursor})}",
        done=request.query.get("done"),
    )  # fmt: skip


async def transition(request: web.Request) -> web.Response:
    alert_id = integer(request.match_info["alert_id"], "alert id", minimum=1, maximum=2**63 - 1)
    triage = request.app.get(ALERT_TRIAGE)
    if triage is None:
        return page("error.html", who=principal(request), status=503, title="Triage is off",
                    message="Alert triage is not configured on this server.")  # fmt: skip
    form = await request.post()
    state, note, disposition = form.get("state"), form.get("note", ""), form.get("disposition")
    if state not in (AlertState.ACKNOWLEDGED.value, AlertState.CLOSED.value):
        raise MalformedInputError("state must be acknowledged or closed")
    if not isinstance(note, str) or not (disposition is None or isinstance(disposition, str)):
        raise MalformedInputError("note and disposition are text")
    done = await triage_alert(
        request, triage, alert_id, str(state), disposition or None, note.strip()
    )
    if isinstance(done, web.Response):
        return done
    return see_other(f"/console/alerts?{urlencode({'done': f'{alert_id} {done.state.value}'})}")


def _age(age: timedelta | None) -> str:
    if age is None:
        return "never signed"
    seconds = max(0, int(age.total_seconds()))
    if seconds < 120:
        return "1 second ago" if seconds == 1 else f"{seconds} seconds ago"
    if seconds < 7200:
        return f"{seconds // 60} minutes ago"
    return f"{seconds // 3600} hours ago"


async def integrity(request: web.Request) -> web.Response:
    reader = request.app[READER]
    who = principal(request)
    logs = await reader.logs()
    quarantined = None
    if who.may(Permission.OPERATIONS):
        rows = await reader.quarantine(after=0, limit=QUARANTINE_COUNT, reason=None)
        quarantined = len(rows)
    return page(
        "integrity.html", who=who, csrf=_csrf(request), logs=logs, age=_age,
        quarantined=quarantined, quarantine_cap=QUARANTINE_COUNT,
        keys=request.app[CONSOLE].config.verifier_keys,
    )  # fmt: skip
