"""The compliance registry over HTTP: its state as known at a time, its change history,
and changes sent as a registry file.

Invariant: reads answer from the registry log(s) below their latest signed checkpoints
and name them, each record with the position of the change that set it; every read
discloses the registry logs up to those sizes (they name the workforce, no patient). A
write is a whole registry file (CSV or JSON, the formats of
docs/design/compliance-registry.md) authored by the token's subject and role: parsed
through the ``RegistryParser`` port, refused whole with every bad line named
(problem+json) or emitted whole through the ``RegistrySink`` port; nothing is emitted
from a refused body. A server without a sink checks the body, then answers 503 (a bad
file still learns every bad line); one without a parser answers 503 first.
"""

from __future__ import annotations

import asyncio
import bisect
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from ledger.audit.disclosure import whole_logs
from ledger.audit.query import Cursor, Snapshot
from ledger.audit.registry import RegistryChangeRecord
from ledger.audit.registrybook import (
    BodyProblem,
    RegistryBodyError,
    RegistryBook,
    RegistryParser,
    RegistryRead,
    RegistrySink,
    known_ids,
)
from ledger.audit.registryview import (
    change_json,
    checkpoints_json,
    count,
    narrowed,
    parse_kind,
    state_json,
)
from ledger.errors import MalformedInputError
from ledger.http.body import read_bounded
from ledger.http.common import (
    AUDIT_PARAMS,
    RESULTS,
    add_disclosure,
    error,
    instant,
    open_pinned,
    optional_identifier,
    page_limit,
    principal,
    seal_cursor,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryWrites:
    """How this server takes registry files: a parser, and a sink (None: writes 503)."""

    parser: RegistryParser[Any]
    sink: RegistrySink[Any] | None


REGISTRY_BOOK: Final = web.AppKey("registry_book", RegistryBook)
REGISTRY_WRITES: Final = web.AppKey("registry_writes", RegistryWrites)

#: Largest registry body: a registry file's own cap (producers.registry.MAX_FILE_BYTES).
MAX_BODY: Final = 8 * 1024 * 1024
#: Content types of a registry body and the format each is.
MEDIA: Final = {"text/csv": "csv", "application/json": "json"}
PROBLEM_JSON: Final = "application/problem+json"
_NOT_CONFIGURED: Final = "registry writes are not configured on this server"


def _as_of(request: web.Request) -> datetime:
    raw = request.query.get("as_of")
    if raw is None or raw == "now":
        return datetime.now(UTC)
    return instant(raw, "as_of")


async def show(request: web.Request) -> web.Response:
    """The registry as known at ``as_of`` (default now), narrowed by kind, user and
    facility, each record with the change that set it, and the checkpoints read under."""
    as_of = _as_of(request)
    kind = parse_kind(request.query.get("kind"))
    user = optional_identifier(request, "user")
    facility = optional_identifier(request, "facility")
    read = await request.app[REGISTRY_BOOK].read(signed=True)
    snapshot = narrowed(
        read.timeline.known_at(as_of).snapshot(), kind=kind, user=user, facility=facility
    )
    _disclose(request, read)
    request[RESULTS] = count(snapshot)
    return web.json_response(state_json(read, snapshot, kind=kind))


async def changes(request: web.Request) -> web.Response:
    """The change history in the order the registry applies it (event time, then ledger
    position), from ``since``, one page and the next page's cursor; the cursor pins the
    registry logs' signed sizes, so pages never shift while changes arrive."""
    since_raw = request.query.get("since")
    since = None if since_raw is None else instant(since_raw, "since")
    limit = page_limit(request)
    read = await request.app[REGISTRY_BOOK].read(signed=True)
    context = f"registry-changes|{since!r}"
    token = request.query.get("cursor")
    current = _snapshot(read)
    after = None
    if token:
        after, _ = await open_pinned(request, token, context)
    pinned = current if after is None else after.snapshot
    ordered = read.changes()
    if after is not None:
        start = bisect.bisect_right(ordered, _after_key(after), key=_key)
    elif since is not None:
        start = bisect.bisect_left(ordered, since, key=lambda c: c.event_time)
    else:
        start = 0
    chosen: list[RegistryChangeRecord] = []
    for i in range(start, len(ordered)):
        c = ordered[i]
        if c.position.leaf_index < pinned.size_of(c.position.log_id):
            chosen.append(c)
            if len(chosen) > limit:
                break
    page = chosen[:limit]
    next_cursor = None
    if len(chosen) > limit:
        last = page[-1]
        packed = (last.position.log_id << 64) | last.position.leaf_index
        next_cursor = seal_cursor(
            request,
            Cursor(event_time=last.event_time, event_id=uuid.UUID(int=packed), snapshot=pinned),
            context,
        )
    _disclose(request, read)
    request[RESULTS] = len(page)
    origins = {g.log_id: g.origin for g in read.logs}
    return web.json_response(
        {
            "checkpoints": checkpoints_json(read),
            "changes": [change_json(c, origins) for c in page],
            "next_cursor": next_cursor,
        }
    )


def _key(c: RegistryChangeRecord) -> tuple[datetime, int, int]:
    return (c.event_time, c.position.log_id, c.position.leaf_index)


def _after_key(cursor: Cursor) -> tuple[datetime, int, int]:
    packed = cursor.event_id.int
    return (cursor.event_time, packed >> 64, packed & ((1 << 64) - 1))


def _snapshot(read: RegistryRead) -> Snapshot:
    top = max((g.log_id for g in read.logs), default=0)
    sizes = [0] * top
    for g in read.logs:
        sizes[g.log_id - 1] = g.size
    return Snapshot(sizes=tuple(sizes))


async def submit(request: web.Request) -> web.Response:
    """A registry file as the body (``text/csv`` or ``application/json``): every change
    emitted, authored by the token's subject and role, or none (400 problem+json naming
    every bad line; 503 when this server cannot emit)."""
    writes = request.app.get(REGISTRY_WRITES)
    if writes is None:
        return error(503, "unavailable", _NOT_CONFIGURED)
    media = MEDIA.get(request.content_type)
    if media is None:
        return error(
            415, "unsupported_media_type", "a registry body is text/csv or application/json"
        )
    if request.charset is not None and request.charset.lower() not in ("utf-8", "utf8"):
        raise MalformedInputError("a registry body is UTF-8", code="unsupported_charset")
    data = await read_bounded(request, MAX_BODY)
    who = principal(request)
    request[AUDIT_PARAMS] = {"format": media, "bytes": str(len(data))}
    known = known_ids(await request.app[REGISTRY_BOOK].read(signed=False))
    try:
        parsed = await asyncio.to_thread(
            writes.parser.parse,
            data,
            media=media,
            author_user_id=who.subject,
            author_role=who.role.value,
            known=known,
        )
        if not parsed.changes:  # a header alone, []: a request that changes nothing
            raise RegistryBodyError(
                [BodyProblem(line=0, field="<file>", reason="holds no change: nothing to apply")]
            )
    except RegistryBodyError as exc:
        request[RESULTS] = 0
        return _problems(request, exc)
    if writes.sink is None:
        return error(503, "unavailable", _NOT_CONFIGURED)
    try:  # the sink checks the changes against the stored registry before emitting
        taken = await writes.sink.submit(parsed.changes)
    except RegistryBodyError as exc:
        request[RESULTS] = 0
        return _problems(request, exc)
    request[RESULTS] = taken
    return web.json_response(
        {
            "submitted": taken,
            "author": {"user_id": who.subject, "role": who.role.value},
            "changes": [
                {"kind": kind, "operation": operation, "count": n}
                for kind, operation, n in parsed.counts
            ],
        },
        status=202,
    )


def _problems(request: web.Request, exc: RegistryBodyError) -> web.Response:
    body = {
        "type": "about:blank",
        "title": "The registry file was refused; nothing was applied",
        "status": 400,
        "detail": str(exc),
        "code": exc.code,
        "problems": [{"line": p.line, "field": p.field, "reason": p.reason} for p in exc.problems],
    }
    return web.json_response(body, status=400, content_type=PROBLEM_JSON)


def _disclose(request: web.Request, read: RegistryRead) -> None:
    add_disclosure(request, whole_logs({g.origin: g.size for g in read.logs if g.size}))
