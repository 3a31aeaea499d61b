"""Access histories (by patient, user, study, accession) and single events.

Invariant: a listing is computed within one snapshot of the logs' signed sizes,
carried in its cursor (MAC'd by ``ledger.audit.cursors`` for this listing, so it cannot be
forged or moved past the signed sizes): pages never repeat or skip an entry while
appends continue, and every entry returned is covered by a signed checkpoint (named in
``as_of``), so each can be proven with ``/v1/events/{id}/proof``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from ledger.audit.disclosure import of_positions
from ledger.audit.query import (
    ROW_EVENT_ID,
    ROW_LEAF_INDEX,
    ROW_ORIGIN,
    ROW_TIME,
    AccessEntry,
    AccessRow,
    Cursor,
    HistoryKey,
    HistoryQuery,
    Snapshot,
    entry_row,
)
from ledger.audit.unreadable import UnreadablePeriod, periods_json
from ledger.errors import MalformedInputError
from ledger.http.accesses import access_object, entry_json, json_answer
from ledger.http.common import (
    PATIENT,
    READER,
    RESULTS,
    ROW_READER,
    add_disclosure,
    disclose,
    error,
    event_id,
    identifier,
    open_pinned,
    optional_identifier,
    page_limit,
    schema_set,
    seal_cursor,
    time_window,
)
from ledger.http.unreadable import mark, unreadable_periods
from ledger.log.leaf import decode_leaf

ACTIONS: Final = frozenset({"C", "R", "U", "D", "E"})
OUTCOMES: Final = frozenset({"SUCCESS", "MINOR_FAILURE", "SERIOUS_FAILURE", "MAJOR_FAILURE"})
_STUDY_UID = re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*")


def _choice(request: web.Request, name: str, allowed: frozenset[str]) -> str | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw not in allowed:
        raise MalformedInputError(f"{name} must be one of {', '.join(sorted(allowed))}")
    return raw


def history_query(
    request: web.Request, key: HistoryKey, value: str, qualifier: str | None
) -> HistoryQuery:
    """The listing the request's filters ask for (the API's and the console's)."""
    since, until = time_window(request)
    return HistoryQuery(
        key=key,
        value=value,
        qualifier=qualifier,
        since=since,
        until=until,
        action=_choice(request, "action", ACTIONS),
        facility=optional_identifier(request, "facility"),
        outcome=_choice(request, "outcome", OUTCOMES),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """One page of a history, the sealed cursor of the next (None: last page), the
    snapshot every entry of it is covered by, and the detached periods it could not read."""

    entries: tuple[AccessEntry, ...]
    next_cursor: str | None
    snapshot: Snapshot
    unreadable: tuple[UnreadablePeriod, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Page:
    """A listing's page as rows (``AccessRow``), for the API's JSON."""

    rows: Sequence[AccessRow]
    next_cursor: str | None
    snapshot: Snapshot
    unreadable: tuple[UnreadablePeriod, ...]


async def _position(
    request: web.Request, query: HistoryQuery, token: str | None
) -> tuple[str, Snapshot, Cursor | None]:
    """The listing's cursor context, the snapshot its pages are pinned to, and the
    position the page ``token`` names (None: the first page)."""
    # The cursor is bound to this listing: its filters, not its page size.
    context = f"history|{query!r}"
    if not token:
        return context, await request.app[READER].snapshot(), None
    after, _ = await open_pinned(request, token, context)
    return context, after.snapshot, after


async def _rows(
    request: web.Request, query: HistoryQuery, *, limit: int, token: str | None
) -> _Page:
    """Up to ``limit`` rows after the page ``token`` names (sealed for this listing);
    ``AccessRow``s from a reader that returns them, else made from its entries."""
    context, snapshot, after = await _position(request, query, token)
    rows: Sequence[AccessRow]
    fast = request.app.get(ROW_READER)
    if fast is not None:
        rows = await fast.history_rows(query, snapshot=snapshot, limit=limit + 1, after=after)
    else:
        found = await request.app[READER].history(
            query, snapshot=snapshot, limit=limit + 1, after=after
        )
        rows = [entry_row(e) for e in found]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = seal_cursor(
            request,
            Cursor(event_time=last[ROW_TIME], event_id=last[ROW_EVENT_ID], snapshot=snapshot),
            context,
        )
    unreadable = await unreadable_periods(request, query.since, query.until)
    return _Page(rows=rows, next_cursor=next_cursor, snapshot=snapshot, unreadable=unreadable)


async def listing(
    request: web.Request, query: HistoryQuery, *, limit: int, token: str | None
) -> Listing:
    """Up to ``limit`` entries after the page ``token`` names (sealed for this listing)."""
    reader = request.app[READER]
    context, snapshot, after = await _position(request, query, token)
    entries = await reader.history(query, snapshot=snapshot, limit=limit + 1, after=after)
    page = tuple(entries[:limit])
    next_cursor = None
    if len(entries) > limit:
        last = page[-1]
        next_cursor = seal_cursor(
            request,
            Cursor(event_time=last.event_time, event_id=last.event_id, snapshot=snapshot),
            context,
        )
    unreadable = await unreadable_periods(request, query.since, query.until)
    return Listing(entries=page, next_cursor=next_cursor, snapshot=snapshot, unreadable=unreadable)


async def _history(
    request: web.Request, key: HistoryKey, value: str, qualifier: str | None
) -> web.Response:
    query = history_query(request, key, value, qualifier)
    found = await _rows(
        request, query, limit=page_limit(request), token=request.query.get("cursor")
    )
    rows, snapshot = found.rows, found.snapshot
    request[RESULTS] = len(rows)
    add_disclosure(request, of_positions((r[ROW_ORIGIN], r[ROW_LEAF_INDEX]) for r in rows))
    origins = await request.app[READER].origins()
    response = json_answer(
        {
            key.value: {"id": value, "qualifier": qualifier},
            "accesses": [access_object(r) for r in rows],
            "next_cursor": found.next_cursor,
            "as_of": {
                origins[log_id]: size
                for log_id, size in enumerate(snapshot.sizes, start=1)
                if size > 0 and log_id in origins
            },
            "unreadable_periods": periods_json(found.unreadable),
        }
    )
    mark(response, found.unreadable)
    return response


async def patient_accesses(request: web.Request) -> web.Response:
    patient_id = identifier(request.match_info["patient_id"], "patient id")
    issuer = optional_identifier(request, "issuer")
    request[PATIENT] = (patient_id, issuer)
    return await _history(request, HistoryKey.PATIENT, patient_id, issuer)


async def user_accesses(request: web.Request) -> web.Response:
    user_id = identifier(request.match_info["user_id"], "user id")
    return await _history(request, HistoryKey.USER, user_id, None)


async def study_accesses(request: web.Request) -> web.Response:
    uid = request.match_info["study_uid"]
    if len(uid) > 64 or not _STUDY_UID.fullmatch(uid):
        raise MalformedInputError("study uid must be a DICOM UID (digits and dots, at most 64)")
    accession = optional_identifier(request, "accession")
    return await _history(request, HistoryKey.STUDY, uid, accession)


async def accession_accesses(request: web.Request) -> web.Response:
    accession = identifier(request.match_info["accession"], "accession")
    return await _history(request, HistoryKey.ACCESSION, accession, None)


async def event_detail(request: web.Request) -> web.Response:
    ident = event_id(request.match_info["event_id"])
    stored = await request.app[READER].event(ident)
    if stored is None:
        request[RESULTS] = 0
        return error(404, "not_found", "no event with that id is in the ledger")
    request[RESULTS] = 1
    disclose(request, (stored.entry.position,))
    if stored.entry.patient_id is not None:
        request[PATIENT] = (stored.entry.patient_id, stored.entry.patient_issuer)
    record = decode_leaf(stored.leaf)
    schemas = await schema_set(request.app, record.value[2:10])
    schema_name, body = schemas.decode(record.value)
    return web.json_response(
        {
            "event_id": str(ident),
            "schema": schema_name,
            "event": body,
            "summary": entry_json(stored.entry),
            "ledger": {
                "log_id": stored.entry.position.log_id,
                "origin": stored.entry.position.origin,
                "leaf_index": stored.entry.position.leaf_index,
                "leaf_hash": stored.leaf_hash.hex(),
                "kafka": {
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "timestamp_ms": record.timestamp_ms,
                },
            },
        }
    )
