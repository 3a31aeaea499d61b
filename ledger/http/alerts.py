"""Compliance alerts over HTTP: list and filter, read one with its evidence, triage.

Invariant: every answer says which ledger entries it returned (the alert's trigger for a
listing, every evidence position for one alert), so the read is attributed to the
patients those entries name, like any other read; a transition is built and checked by
the same code as ``ledger alerts ack/close`` and its actor is the token's subject,
never a name in the body. Listings page newest first with sealed cursors bound to their
filters.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from ledger.audit.alertbook import AlertBook, AlertQuery, AlertTriage
from ledger.audit.disclosure import of_positions
from ledger.audit.query import Cursor, Snapshot
from ledger.audit.rules import AlertState, parse_disposition, transition
from ledger.audit.rules.alerts import AlertDetail, StoredAlert, StoredTransition
from ledger.errors import ConflictError, MalformedInputError
from ledger.http.body import json_body
from ledger.http.common import (
    AUDIT_PARAMS,
    READER,
    RESULTS,
    add_disclosure,
    error,
    integer,
    open_cursor,
    optional_identifier,
    page_limit,
    principal,
    public_url,
    seal_cursor,
    time_window,
)

ALERT_BOOK: Final = web.AppKey("alert_book", AlertBook)
ALERT_TRIAGE: Final = web.AppKey("alert_triage", AlertTriage)

#: Largest transition body (a note is at most 2,000 characters).
MAX_BODY: Final = 16 * 1024
_NO_SNAPSHOT: Final = Snapshot(sizes=())
_MAX_ID: Final = (1 << 63) - 1


def _state(request: web.Request) -> AlertState | None:
    raw = request.query.get("state")
    if raw is None:
        return None
    try:
        return AlertState(raw)
    except ValueError as exc:
        choices = ", ".join(s.value for s in AlertState)
        raise MalformedInputError(f"state must be one of {choices}") from exc


def _alert_id(request: web.Request) -> int:
    return integer(request.match_info["alert_id"], "alert id", minimum=1, maximum=_MAX_ID)


def alert_query(request: web.Request) -> AlertQuery:
    """The listing the request's filters ask for (the API's and the console's)."""
    since, until = time_window(request)
    return AlertQuery(
        state=_state(request),
        rule_id=optional_identifier(request, "rule"),
        facility_id=optional_identifier(request, "facility"),
        user_id=optional_identifier(request, "user"),
        since=since,
        until=until,
    )


async def alert_listing(
    request: web.Request, query: AlertQuery, *, limit: int, token: str | None
) -> tuple[list[StoredAlert], str | None]:
    """One page of alerts, newest first, and the next page's sealed cursor; the page's
    triggers are disclosed with the read."""
    # The cursor is bound to this listing's filters (not its page size). It carries the
    # last alert's raise time and id (as a UUID's integer); alerts pin no log sizes.
    context = f"alerts|{query!r}"
    after = open_cursor(request, token, context, _NO_SNAPSHOT) if token else None
    before = None if after is None else after.event_id.int
    found = await request.app[ALERT_BOOK].page(replace(query, before=before, limit=limit + 1))
    page = list(found[:limit])
    next_cursor = None
    if len(found) > limit:
        last = page[-1]
        next_cursor = seal_cursor(
            request,
            Cursor(
                event_time=last.raised_at,
                event_id=uuid.UUID(int=last.alert_id),
                snapshot=_NO_SNAPSHOT,
            ),
            context,
        )
    request[RESULTS] = len(page)
    add_disclosure(request, of_positions((a.origin, a.leaf_index) for a in page))
    return page, next_cursor


async def list_alerts(request: web.Request) -> web.Response:
    """Alerts matching the filters, newest first, one page and the next page's cursor."""
    page, next_cursor = await alert_listing(
        request, alert_query(request), limit=page_limit(request), token=request.query.get("cursor")
    )
    return web.json_response({"alerts": [_alert_json(a) for a in page], "next_cursor": next_cursor})


async def show_alert(request: web.Request) -> web.Response:
    """One alert, its evidence (each with the URL of its inclusion proof) and its
    transitions; 404 when there is no such alert."""
    alert_id = _alert_id(request)
    found = await request.app[ALERT_BOOK].alert(alert_id)
    if found is None:
        request[RESULTS] = 0
        return error(404, "not_found", "there is no such alert")
    request[RESULTS] = 1
    add_disclosure(request, of_positions((e.origin, e.leaf_index) for e in found.evidence))
    return web.json_response(await _detail_json(request, found))


async def transition_alert(request: web.Request) -> web.Response:
    """Acknowledge or close an alert, as the token's subject: 503 when this server has no
    triage store, 404 for an unknown alert, 409 when its current state does not allow
    the transition."""
    alert_id = _alert_id(request)
    triage = request.app.get(ALERT_TRIAGE)
    if triage is None:
        return error(503, "unavailable", "alert triage is not configured on this server")
    body = await json_body(request, MAX_BODY)
    if not isinstance(body, dict) or set(body) - {"state", "disposition", "note"}:
        raise MalformedInputError(
            "the body is a JSON object with state, note and (when closing) disposition"
        )
    state, disposition, note = body.get("state"), body.get("disposition"), body.get("note")
    if state not in (AlertState.ACKNOWLEDGED.value, AlertState.CLOSED.value):
        raise MalformedInputError("state must be acknowledged or closed")
    if not isinstance(note, str) or not (disposition is None or isinstance(disposition, str)):
        raise MalformedInputError("note is a string, and disposition a string when given")
    done = await triage_alert(request, triage, alert_id, state, disposition, note)
    if isinstance(done, web.Response):
        return done
    return web.json_response({"alert_id": alert_id, "transition": _transition_json(done)})


async def triage_alert(
    request: web.Request,
    triage: AlertTriage,
    alert_id: int,
    state: str,
    disposition: str | None,
    note: str,
) -> StoredTransition | web.Response:
    """Append the transition as the request's person (the API's and the console's); a
    refusal (404, 409) is the answer to send."""
    params = {"alert_id": str(alert_id), "state": state}
    if disposition is not None:
        params["disposition"] = disposition[:64]
    request[AUDIT_PARAMS] = params
    wanted = transition(
        state=AlertState(state),
        note=note,
        by=principal(request).subject,
        disposition=None if disposition is None else parse_disposition(disposition),
    )
    found = await request.app[ALERT_BOOK].alert(alert_id)
    if found is None:
        return error(404, "not_found", "there is no such alert")
    try:
        done = await triage.transition(alert_id, wanted)
    except ConflictError as exc:  # the message names the alert id and states only
        return error(409, "conflict", str(exc))
    request[RESULTS] = 1
    add_disclosure(request, of_positions(((found.alert.origin, found.alert.leaf_index),)))
    return done


def _alert_json(a: StoredAlert) -> dict[str, object]:
    return {
        "alert_id": a.alert_id,
        "rule": {"id": a.rule_id, "version": a.rule_version},
        "severity": a.severity,
        "state": a.state.value,
        "disposition": None if a.disposition is None else a.disposition.value,
        "facility": a.facility_id,
        "user": a.user_id,
        "patient": None
        if a.patient_id is None
        else {"id": a.patient_id, "issuer": a.patient_issuer},
        "summary": a.summary,
        "trigger": {"log_id": a.log_id, "origin": a.origin, "leaf_index": a.leaf_index},
        "thresholds": dict(a.thresholds),
        "raised_at": _iso(a.raised_at),
    }


async def _detail_json(request: web.Request, d: AlertDetail) -> dict[str, object]:
    snapshot = await request.app[READER].snapshot()
    evidence = []
    for e in d.evidence:
        size = snapshot.size_of(e.log_id)
        # Provable once a signed checkpoint covers the leaf; until then no proof URL.
        proof = (
            public_url(
                request,
                f"/v1/logs/{e.log_id}/proof/inclusion?index={e.leaf_index}&tree_size={size}",
            )
            if e.leaf_index < size
            else None
        )
        evidence.append(
            {
                "log_id": e.log_id,
                "origin": e.origin,
                "leaf_index": e.leaf_index,
                "role": e.role,
                "inclusion_proof": proof,
            }
        )
    return {
        "alert": _alert_json(d.alert),
        "notes": list(d.notes()),
        "evidence": evidence,
        "transitions": [_transition_json(t) for t in d.transitions],
    }


def _transition_json(t: StoredTransition) -> dict[str, object]:
    return {
        "seq": t.seq,
        "state": t.state.value,
        "disposition": None if t.disposition is None else t.disposition.value,
        "note": t.note,
        "by": t.by,
        "at": _iso(t.at),
    }


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()
