"""A FHIR search's walk over its history: pages, resource-side matching, counting.

Invariant: every entry examined lies within the listing's snapshot and is examined once
across pages (the next page starts after the last row examined, matched or not); a page
is at most ``count`` matches, a request examines at most ``MAX_SCAN`` rows when a
parameter is matched on the built resources, and a count at most ``MAX_TOTAL``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aiohttp import web

from ledger.audit.fhir import AuditEventSearch, Resource, audit_event, matches
from ledger.audit.query import (
    AccessEntry,
    Cursor,
    HistoryKey,
    HistoryQuery,
    LedgerPosition,
    Snapshot,
)
from ledger.http.common import READER, schema_set
from ledger.log.leaf import decode_leaf

__all__ = ["MAX_SCAN", "MAX_TOTAL", "count_matches", "cursor_after", "history_of", "page_of"]

#: Most index rows one search request examines when a parameter is matched on the built
#: resources (subtype, entity-type, entity-role): a page may then be short, with a next link.
MAX_SCAN: Final = 2000
#: Most rows ``_summary=count`` examines before refusing (narrow the search instead).
MAX_TOTAL: Final = 10_000
_CHUNK: Final = 500


async def _resources(
    request: web.Request, entries: Sequence[AccessEntry]
) -> dict[LedgerPosition, Resource]:
    """The AuditEvent of each entry whose leaf is stored, by position."""
    leaves = await request.app[READER].leaves_at([e.position for e in entries])
    out: dict[LedgerPosition, Resource] = {}
    for entry in entries:
        leaf = leaves.get((entry.position.log_id, entry.position.leaf_index))
        if leaf is None:
            continue
        record = decode_leaf(leaf)
        schemas = await schema_set(request.app, record.value[2:10])
        name, body = schemas.decode(record.value)
        out[entry.position] = audit_event(
            name, body, event_id=entry.event_id, position=entry.position
        )
    return out


def history_of(query: AuditEventSearch) -> HistoryQuery | None:
    if query.patient is not None:
        key, value = HistoryKey.PATIENT, query.patient
    elif query.agent is not None:
        key, value = HistoryKey.USER, query.agent
    elif query.entity is not None:
        key, value = HistoryKey.STUDY, query.entity
    else:
        return None
    n = query.narrowing
    return HistoryQuery(
        key=key,
        value=value,
        since=query.since,
        until=query.until,
        user=query.agent if key is not HistoryKey.USER else None,
        study=query.entity if key is not HistoryKey.STUDY else None,
        event_types=tuple(t.code for t in query.types),
        actions=query.actions,
        outcomes=n.outcomes,
        facilities=n.sites,
        producers=n.sources,
        address_prefix=n.address,
        user_name_prefix=n.agent_name,
    )


async def page_of(
    request: web.Request,
    query: AuditEventSearch,
    history: HistoryQuery,
    after: Cursor | None,
    snapshot: Snapshot,
) -> tuple[list[tuple[AccessEntry, Resource]], AccessEntry | None]:
    """One page of matches, and the entry after which the next page starts (None: last)."""
    reader = request.app[READER]
    if query.empty_range:
        return [], None
    if not query.narrowing.on_resources:  # every filter ran in SQL
        entries = await reader.history(
            history, snapshot=snapshot, limit=query.count + 1, after=after
        )
        page = list(entries[: query.count])
        built = await _resources(request, page)
        served = [(e, built[e.position]) for e in page if e.position in built]
        return served, (page[-1] if len(entries) > query.count else None)
    found: list[tuple[AccessEntry, Resource]] = []
    scanned = 0
    position = after
    last: AccessEntry | None = None
    while True:
        entries = await reader.history(history, snapshot=snapshot, limit=_CHUNK, after=position)
        built = await _resources(request, entries)
        for entry in entries:
            resource = built.get(entry.position)
            if resource is not None and matches(resource, query.narrowing):
                if len(found) == query.count:
                    return found, last
                found.append((entry, resource))
            last, scanned = entry, scanned + 1
            if scanned >= MAX_SCAN:
                return found, last
        if len(entries) < _CHUNK or last is None:
            return found, None
        position = cursor_after(last, snapshot)


def cursor_after(entry: AccessEntry, snapshot: Snapshot) -> Cursor:
    return Cursor(event_time=entry.event_time, event_id=entry.event_id, snapshot=snapshot)


async def count_matches(
    request: web.Request,
    query: AuditEventSearch,
    history: HistoryQuery,
    after: Cursor | None,
    snapshot: Snapshot,
) -> int | None:
    """How many entries match (``_summary=count``); None past ``MAX_TOTAL`` examined."""
    if query.empty_range:
        return 0
    reader = request.app[READER]
    total = scanned = 0
    position = after
    while True:
        entries = await reader.history(history, snapshot=snapshot, limit=_CHUNK, after=position)
        if query.narrowing.on_resources:
            built = await _resources(request, entries)
            total += sum(1 for r in built.values() if matches(r, query.narrowing))
        else:
            total += len(entries)
        scanned += len(entries)
        if len(entries) < _CHUNK:
            return total
        if scanned >= MAX_TOTAL:
            return None
        position = cursor_after(entries[-1], snapshot)
