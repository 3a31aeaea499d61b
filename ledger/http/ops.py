"""Ingestion health: quarantined records and security alerts.

Invariant: read-only views of append-only tables, paged by id.
"""

from __future__ import annotations

import re

from aiohttp import web

from ledger.errors import MalformedInputError
from ledger.http.common import READER, RESULTS, integer, row_json

_REASON = re.compile(r"[a-z0-9_]{1,64}")


async def quarantine(request: web.Request) -> web.Response:
    """Records that could not be appended, with their raw bytes (base64) and reason."""
    after = integer(request.query.get("after", "0"), "after")
    limit = integer(request.query.get("limit", "100"), "limit", minimum=1, maximum=1000)
    reason = request.query.get("reason")
    if reason is not None and not _REASON.fullmatch(reason):
        raise MalformedInputError("reason must be a reason code like malformed_avro")
    rows = await request.app[READER].quarantine(after=after, limit=limit, reason=reason)
    items = [row_json(r) for r in rows]
    request[RESULTS] = len(items)
    return web.json_response(
        {
            "records": items,
            "next_after": items[-1]["quarantine_id"] if len(items) == limit else None,
        }
    )


async def alerts(request: web.Request) -> web.Response:
    after = integer(request.query.get("after", "0"), "after")
    limit = integer(request.query.get("limit", "100"), "limit", minimum=1, maximum=1000)
    rows = await request.app[READER].alerts(after=after, limit=limit)
    request[RESULTS] = len(rows)
    return web.json_response({"alerts": [row_json(r) for r in rows]})
