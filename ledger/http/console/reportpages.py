"""The console's report pages: breach investigation, accounting of disclosures, and
critical-result relays over time.

Invariant: each page computes its report exactly as the matching API route does, through
the same code (``ledger.http.reports``: scope, accounting and relay window, sealed by the
report port) and records its read the same way (scope, patient, entries disclosed); its
downloads are that route's sealed exports. A scope that matches nothing says so, selector
by selector, never a silent zero.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final
from urllib.parse import quote, urlencode

from aiohttp import web

from ledger.audit import wording
from ledger.audit.auth import Permission
from ledger.audit.reports import (
    CheckpointRef,
    DisclosureAccounting,
    InvestigationReport,
    RelayReport,
    Sealed,
)
from ledger.audit.reports.disclosures import group_repeats
from ledger.audit.reports.formats import investigation_summary
from ledger.audit.unreadable import banner
from ledger.errors import MalformedInputError
from ledger.http.common import RESULTS, disclose, identifier, principal
from ledger.http.console.guard import CONSOLE, SESSION, see_other
from ledger.http.console.relaychart import chart, default_start, periods
from ledger.http.console.render import page
from ledger.http.console.sessions import Session
from ledger.http.reports import (
    REPORTS,
    export,
    investigation_scope,
    relay_window,
    sealed_accounting,
    sealed_relays,
)
from ledger.http.unreadable import sealed_unreadable

#: Timeline rows shown on the page (the downloads hold every one).
TIMELINE_ROWS: Final = 500
_SPLIT: Final = re.compile(r"[\s,;]+")
_DOWNLOADS: Final = {"csv", "json", "html"}
_NAMES: Final = {"csv": "investigation.csv", "json": "investigation.json",
                 "html": "investigation.html"}  # fmt: skip


def _csrf(request: web.Request) -> str:
    session: Session | None = request.get(SESSION)
    return "" if session is None else session.csrf


def _reports_on(request: web.Request) -> web.Response | None:
    if REPORTS in request.app:
        return None
    return page("error.html", who=principal(request), status=503, title="Reports are off",
                message="This server has no report source configured.")  # fmt: skip


def _attachment(response: web.Response, name: str) -> web.Response:
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


# Breach investigation ---------------------------------------------------------------

_SCOPE_FIELDS: Final = ("users", "facility", "network_addresses", "since", "until")


async def investigation_form(request: web.Request) -> web.Response:
    return page("investigation.html", who=principal(request), csrf=_csrf(request),
                form={k: "" for k in _SCOPE_FIELDS}, report=None, error=None)  # fmt: skip


def _scope_body(form: dict[str, str]) -> dict[str, object]:
    body: dict[str, object] = {
        "since": form["since"],
        "until": form["until"],
        "users": [u for u in _SPLIT.split(form["users"]) if u],
        "network_addresses": [a for a in _SPLIT.split(form["network_addresses"]) if a],
    }
    if form["facility"]:
        body["facility"] = form["facility"]
    return body


async def investigation_run(request: web.Request) -> web.Response:
    """POST /console/investigations: the form's scope, as ``POST /v1/investigations``."""
    off = _reports_on(request)
    if off is not None:
        return off
    posted = await request.post()
    form = {k: str(posted.get(k, "")).strip()[:4000] for k in _SCOPE_FIELDS}
    fmt = str(posted.get("format", "page"))
    if fmt != "page" and fmt not in _DOWNLOADS:
        raise MalformedInputError("format must be page, csv, json or html")
    who, csrf = principal(request), _csrf(request)
    try:
        scope = investigation_scope(request, _scope_body(form))
    except MalformedInputError as exc:
        return page("investigation.html", who=who, csrf=csrf, form=form, report=None,
                    error=str(exc), status=400)  # fmt: skip
    sealed = await sealed_unreadable(
        request, await request.app[REPORTS].sealed_investigation(scope)
    )
    report = sealed.report
    request[RESULTS] = len(report.patients)
    disclose(request, (e.position for e in report.timeline))
    if fmt in _DOWNLOADS:
        return _attachment(export(sealed, fmt, "investigation"), _NAMES[fmt])
    return page("investigation.html", who=who, csrf=csrf, form=form, error=None,
                report=report, summary=investigation_summary(report),
                warnings=scope_warnings(report), checkpoints=sealed.as_of,
                timeline=report.timeline[:TIMELINE_ROWS], w=wording,
                may_history=who.may(Permission.HISTORY),
                unreadable=banner(sealed.unreadable))  # fmt: skip


def scope_warnings(report: InvestigationReport) -> list[str]:
    """One warning per selector no event matched, and one if nothing matched at all."""
    s, timeline = report.scope, report.timeline
    window = f" from {wording.when(s.start)} until {wording.when(s.end)}"
    out = [
        w + window
        for w in wording.no_match_warnings(
            users=s.users, facility=s.facility, addresses=s.network_addresses,
            seen_users=[e.user_id for e in timeline],
            seen_facilities=[e.facility_id for e in timeline],
            seen_addresses=[e.network_address or "" for e in timeline],
        )
    ]  # fmt: skip
    if not timeline and not out:
        out.append(f"no events match this scope{window}")
    return out


# Accounting of disclosures ----------------------------------------------------------


async def disclosures_form(request: web.Request) -> web.Response:
    """GET /console/disclosures: pick the patient (``patient``, ``issuer``)."""
    raw = request.query.get("patient")
    if raw is None:
        return page("disclosures_form.html", who=principal(request), csrf=_csrf(request))
    target = f"/console/patients/{quote(identifier(raw.strip(), 'patient id'), safe='')}"
    issuer = request.query.get("issuer")
    query = urlencode({"issuer": identifier(issuer, "issuer")}) if issuer else ""
    return see_other(f"{target}/disclosures" + (f"?{query}" if query else ""))


async def disclosures_page(request: web.Request) -> web.Response:
    """The accounting as a letter the patient can read, as ``GET
    /v1/patients/{id}/disclosures`` computes it; ``format`` downloads that route's export."""
    off = _reports_on(request)
    if off is not None:
        return off
    sealed: Sealed[DisclosureAccounting]
    fmt, sealed = await sealed_accounting(request, frozenset({"page", *_DOWNLOADS}), "page")
    if fmt in _DOWNLOADS:
        return _attachment(export(sealed, fmt, "disclosures"), f"disclosures.{fmt}")
    a = sealed.report
    config = request.app[CONSOLE].config
    kept = {k: v for k, v in request.query.items() if k != "format"}
    entries = group_repeats(list(a.entries))
    return page("disclosures.html", who=principal(request), csrf=_csrf(request),
                a=a, entries=entries, total=sum(e.count for e in entries), w=wording,
                facility_name=config.facility_name, facility_contact=config.facility_contact,
                download=f"{request.path}?{urlencode({**kept, 'format': ''})}",
                unreadable=banner(sealed.unreadable))  # fmt: skip


# Critical-result relays -------------------------------------------------------------


async def relays_page(request: web.Request) -> web.Response:
    """Relays per ACR category and per week or month: one relay report per period (as
    ``GET /v1/reports/critical-results`` computes it, as of the window's checkpoints)."""
    off = _reports_on(request)
    if off is not None:
        return off
    per = request.query.get("per", "week")
    fmt = request.query.get("format", "page")
    if fmt not in ("page", "csv", "json"):
        raise MalformedInputError("format must be page, csv or json")
    window = relay_window(request)
    if "since" not in request.query:
        window = replace(window, start=default_start(window.end, per))
    spans = periods(window.start, window.end, per)
    whole: Sealed[RelayReport] = await sealed_relays(request, window)
    request[RESULTS] = whole.report.relays
    if fmt != "page":
        return _attachment(export(whole, fmt, "critical-results"), f"critical-results.{fmt}")
    pinned = tuple(CheckpointRef(origin=c.origin, size=c.size) for c in whole.as_of) or None
    rows = []
    for span in spans:
        part = await sealed_relays(request, window, start=span.start, end=span.end, as_of=pinned)
        rows.append(part.report.categories)
    labels = [p.label for p in spans]
    names = {c.category: wording.category(c.category) for c in whole.report.categories}
    kept = {k: v for k, v in request.query.items() if k != "format"}
    return page("relays.html", who=principal(request), csrf=_csrf(request), per=per,
                report=whole.report, periods=list(zip(labels, rows, strict=True)),
                chart=chart(labels, rows, names), names=names, w=wording,
                since=window.start, until=window.end, filters=kept,
                download=f"{request.path}?{urlencode({**kept, 'format': ''})}",
                unreadable=banner(whole.unreadable))  # fmt: skip
