"""The console's pages: home, search, and the access histories (patient, user, study).

Invariant: a page reads the ledger only through the JSON API's ports and listing code
(``ledger.http.history``), so it shows exactly what the API would answer, paged with the
same sealed cursors; it names the entries it shows (``disclose``) and the patient it is
about, so its view is recorded as the API records a read. The self-audit filter hides
rows after the listing is read: the cursor still moves past them.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Final
from urllib.parse import quote, urlencode

from aiohttp import web

from ledger.audit import wording
from ledger.audit.query import AccessEntry, Cursor, HistoryKey, HistoryQuery
from ledger.audit.unreadable import banner, period_cells
from ledger.errors import MalformedInputError
from ledger.http.accesses import entry_json
from ledger.http.common import (
    PATIENT,
    READER,
    RESULTS,
    disclose,
    identifier,
    optional_identifier,
    principal,
    time_window,
)
from ledger.http.console import verifierkeys
from ledger.http.console.guard import CONSOLE, SESSION, see_other
from ledger.http.console.render import page, svg
from ledger.http.console.sessions import Session
from ledger.http.console.timeline import ACTION_NAMES, chart
from ledger.http.history import history_query, listing
from ledger.http.unreadable import mark, unreadable_periods

#: Rows of one history page.
PAGE_ROWS: Final = 100
#: Most rows a CSV export or a timeline covers (the newest).
EXPORT_ROWS: Final = 10_000
#: The kind of a ledger self-audit row (a read of the ledger: AuditLogUsed).
SELF_AUDIT: Final = "audit_log_used"
OUTCOME_NAMES: Final = {
    "SUCCESS": "Success",
    "MINOR_FAILURE": "Minor failure",
    "SERIOUS_FAILURE": "Serious failure",
    "MAJOR_FAILURE": "Major failure",
}
_STUDY_UID: Final = re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*")
_KINDS: Final = {
    "patient": "patients",
    "user": "users",
    "study": "studies",
    "accession": "accessions",
}


def _csrf(request: web.Request) -> str:
    session: Session | None = request.get(SESSION)
    return "" if session is None else session.csrf


async def home(request: web.Request) -> web.Response:
    return page(
        "home.html",
        who=principal(request),
        csrf=_csrf(request),
        keys=request.app[CONSOLE].config.verifier_keys,
    )


async def search(request: web.Request) -> web.Response:
    kind, text = request.query.get("kind", "patient"), request.query.get("q")
    accession = request.query.get("accession")
    if text is None:
        return page(
            "search.html",
            who=principal(request),
            csrf=_csrf(request),
            kind=kind,
            q="",
            accession=accession or "",
        )
    if kind not in _KINDS:
        raise MalformedInputError("kind must be patient, user, study or accession")
    value = identifier(text.strip(), kind)
    target = f"/console/{_KINDS[kind]}/{quote(value, safe='')}"
    if kind == "study" and accession:
        target += "?" + urlencode({"accession": accession})
    return see_other(target)


def _subject(request: web.Request, key: HistoryKey) -> tuple[str, str | None]:
    if key is HistoryKey.PATIENT:
        value = identifier(request.match_info["patient_id"], "patient id")
        issuer = optional_identifier(request, "issuer")
        request[PATIENT] = (value, issuer)
        return value, issuer
    if key is HistoryKey.USER:
        return identifier(request.match_info["user_id"], "user id"), None
    if key is HistoryKey.ACCESSION:
        return identifier(request.match_info["accession"], "accession"), None
    uid = request.match_info["study_uid"]
    if len(uid) > 64 or not _STUDY_UID.fullmatch(uid):
        raise MalformedInputError("study uid must be a DICOM UID (digits and dots, at most 64)")
    return uid, optional_identifier(request, "accession")


def _hide_self(request: web.Request) -> bool:
    raw = request.query.get("self_audit", "show")
    if raw not in ("show", "hide"):
        raise MalformedInputError("self_audit must be show or hide")
    return raw == "hide"


def _shown(entries: Sequence[AccessEntry], hide_self: bool) -> list[AccessEntry]:
    return [e for e in entries if not (hide_self and e.kind == SELF_AUDIT)]


def _row(e: AccessEntry) -> dict[str, object]:
    row = entry_json(e)
    row["action_name"] = ACTION_NAMES.get(e.action or "", e.action or "")
    row["outcome_name"] = OUTCOME_NAMES.get(e.outcome or "", e.outcome or "")
    row["when"] = e.event_time
    return row


def _filters(request: web.Request) -> dict[str, str]:
    names = (
        "since",
        "until",
        "action",
        "outcome",
        "facility",
        "self_audit",
        "issuer",
        "accession",
        "colour",
    )
    return {n: request.query[n] for n in names if n in request.query}


async def _view(request: web.Request, key: HistoryKey) -> web.Response:
    value, qualifier = _subject(request, key)
    hide_self = _hide_self(request)
    _colour(request)
    query = history_query(request, key, value, qualifier)
    found = await listing(request, query, limit=PAGE_ROWS, token=request.query.get("cursor"))
    rows = _shown(found.entries, hide_self)
    request[RESULTS] = len(rows)
    disclose(request, (e.position for e in rows))
    filters = _filters(request)
    base = request.path
    next_url = None
    if found.next_cursor is not None:
        next_url = f"{base}?{urlencode({**filters, 'cursor': found.next_cursor})}"
    query_text = urlencode(filters)
    return page(
        "history.html",
        who=principal(request),
        csrf=_csrf(request),
        key=key.value,
        value=value,
        qualifier=qualifier,
        rows=[_row(e) for e in rows],
        filters=filters,
        next_url=next_url,
        first_url=f"{base}?{query_text}" if "cursor" in request.query else None,
        csv_url=f"{base}/accesses.csv?{query_text}",
        chart_url=f"{base}/timeline.svg?{query_text}",
        hidden=len(found.entries) - len(rows),
        actions=ACTION_NAMES,
        outcomes=OUTCOME_NAMES,
        unreadable=banner(found.unreadable),
    )


async def _everything(request: web.Request, query: HistoryQuery) -> list[AccessEntry]:
    """The newest ``EXPORT_ROWS`` entries of a listing, within one snapshot."""
    reader = request.app[READER]
    snapshot = await reader.snapshot()
    out: list[AccessEntry] = []
    after: Cursor | None = None
    while len(out) < EXPORT_ROWS:
        batch = await reader.history(query, snapshot=snapshot, limit=1000, after=after)
        out.extend(batch)
        if len(batch) < 1000:
            break
        last = batch[-1]
        after = Cursor(event_time=last.event_time, event_id=last.event_id, snapshot=snapshot)
    return out[:EXPORT_ROWS]


async def _rows_for_export(request: web.Request, key: HistoryKey) -> list[AccessEntry]:
    value, qualifier = _subject(request, key)
    hide_self = _hide_self(request)
    rows = _shown(
        await _everything(request, history_query(request, key, value, qualifier)), hide_self
    )
    request[RESULTS] = len(rows)
    disclose(request, (e.position for e in rows))
    return rows


CSV_COLUMNS: Final = (
    "time",
    "user_id",
    "user_name",
    "user_role",
    "action",
    "outcome",
    "event",
    "patient_id",
    "patient_issuer",
    "study_uid",
    "accession",
    "facility",
    "network_address",
    "purpose",
    "purpose_code",
    "attribution",
    "event_id",
    "log_origin",
    "leaf_index",
)


async def _csv(request: web.Request, key: HistoryKey) -> web.Response:
    rows = await _rows_for_export(request, key)
    since, until = time_window(request)
    missing = await unreadable_periods(request, since, until)
    out = io.StringIO()
    writer = csv.writer(out)
    for p in missing:  # leading rows, as a report's CSV: what this export does not include
        lead = ("#unreadable_period", *period_cells(p))
        writer.writerow([*lead, *[""] * (len(CSV_COLUMNS) - len(lead))])
    writer.writerow(CSV_COLUMNS)
    for e in rows:
        j = entry_json(e)
        event = j["event"]
        name = event.get("name") if isinstance(event, dict) else None
        cells = (
            e.event_time.isoformat(),
            e.user_id,
            e.user_name,
            e.user_role,
            ACTION_NAMES.get(e.action or "", e.action),
            OUTCOME_NAMES.get(e.outcome or "", e.outcome),
            name,
            e.patient_id,
            e.patient_issuer,
            e.study_uid,
            e.accession,
            e.facility_id,
            e.network_address,
            wording.purpose(e.purpose_of_use) if e.purpose_of_use else None,
            e.purpose_of_use,
            j["attribution"],
            e.event_id,
            e.position.origin,
            e.position.leaf_index,
        )
        writer.writerow([_cell(v) for v in cells])
    response = web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{key.value}-accesses.csv"'},
    )
    mark(response, missing)
    return response


def _cell(value: object) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _colour(request: web.Request) -> str:
    by = request.query.get("colour", "action")
    if by not in ("action", "user"):
        raise MalformedInputError("colour must be action or user")
    return by


async def _timeline(request: web.Request, key: HistoryKey) -> web.Response:
    by = _colour(request)
    rows = await _rows_for_export(request, key)
    return svg("timeline.svg", {"chart": chart(rows, by=by), "by": by})


def _for(
    key: HistoryKey, fn: Callable[[web.Request, HistoryKey], Awaitable[web.Response]]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return await fn(request, key)

    return handler


patient_page, user_page, study_page, accession_page = (_for(k, _view) for k in HistoryKey)
patient_csv, user_csv, study_csv, accession_csv = (_for(k, _csv) for k in HistoryKey)
patient_chart, user_chart, study_chart, accession_chart = (_for(k, _timeline) for k in HistoryKey)


async def witness_policy(request: web.Request) -> web.Response:
    """The witness policy verify.js enforces (docs/design/witnesses.md)."""
    config = request.app[CONSOLE].config
    return verifierkeys.witness_policy_answer(config.witness_keys, config.witness_threshold)


async def verifier_keys(request: web.Request) -> web.Response:
    """The route's handler: the served keys, answered as the tested ``verifierkeys``
    answers them (each once, not cached)."""
    return verifierkeys.answer(request.app[CONSOLE].config.verifier_keys)
