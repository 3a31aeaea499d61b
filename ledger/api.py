"""The ledger's HTTP query API (aiohttp).

Invariant: handlers only read, through the ``LedgerReader`` port; every
parameter is validated before it reaches a query, and every failure is a JSON
error with a 4xx/5xx status and a stable code; no stack trace and no PHI reach
the service's own log.
"""

from __future__ import annotations

import base64
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Final

from aiohttp import web

from ledger import tiles
from ledger.avro import SchemaSet, StoredSchema
from ledger.checkpoint import format_tlog_proof
from ledger.errors import LedgerError, MalformedInputError, PushbackError, UnavailableError
from ledger.leaf import decode_leaf
from ledger.query import AccessEntry, Cursor, LedgerReader, LogInfo
from schemas import dicom

logger = logging.getLogger(__name__)

READER: Final = web.AppKey("reader", LedgerReader)
SCHEMAS: Final = web.AppKey("schemas", dict)

DEFAULT_PAGE: Final = 100
MAX_PAGE: Final = 1000
MAX_REQUEST_BYTES: Final = 64 * 1024
_ID = re.compile(r"[^\x00-\x1f\x7f]{1,256}")


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        raise
    except MalformedInputError as exc:
        return _error(400, "bad_request", str(exc))
    except PushbackError as exc:
        resp = _error(503, "overloaded", str(exc))
        resp.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return resp
    except UnavailableError:
        logger.warning("dependency unavailable for %s %s", request.method, request.path)
        return _error(503, "unavailable", "the ledger store is unavailable; retry later")
    except LedgerError as exc:
        logger.error("ledger error on %s: %s", request.rel_url.path, type(exc).__name__)
        return _error(500, "internal", "internal error")
    except (OSError, TimeoutError) as exc:
        logger.warning("I/O failure for %s: %s", request.method, type(exc).__name__)
        return _error(503, "unavailable", "the ledger store is unavailable; retry later")
    except Exception:
        # Deliberately no exception text: it may contain query parameters (PHI).
        logger.error("unhandled error on %s %s", request.method, request.rel_url.path.split("/")[1])
        return _error(500, "internal", "internal error")


def _identifier(value: str, name: str) -> str:
    if not _ID.fullmatch(value):
        raise MalformedInputError(f"{name} must be 1-256 printable characters")
    return value


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise MalformedInputError(f"limit must be an integer from 1 to {MAX_PAGE}")
    return int(raw)


def entry_json(e: AccessEntry) -> dict[str, object]:
    return {
        "event_id": str(e.event_id),
        "kind": e.kind,
        "time": e.event_time.isoformat(),
        "facility": e.facility_id,
        "patient": {"id": e.patient_id, "issuer": e.patient_issuer, "state": e.patient_state},
        "user": {
            "id": e.user_id,
            "name": e.user_name,
            "role": e.user_role,
            "organization": e.user_org,
        },
        "event": {
            "dicom_event_id": e.dicom_event_id,
            "name": dicom.EVENT_IDS.get(e.dicom_event_id or "", dicom.CRITICAL_RESULT_RELAY[1]),
        },
        "action": e.action,
        "outcome": e.outcome,
        "study": {"uid": e.study_uid, "accession": e.accession},
        "network_address": e.network_address,
        "purpose_of_use": e.purpose_of_use,
        "ledger": {
            "log_id": e.position.log_id,
            "origin": e.position.origin,
            "leaf_index": e.position.leaf_index,
        },
    }


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def patient_accesses(request: web.Request) -> web.Response:
    patient_id = _identifier(request.match_info["patient_id"], "patient id")
    issuer = request.query.get("issuer")
    if issuer is not None:
        _identifier(issuer, "issuer")
    limit = _limit(request)
    cursor_token = request.query.get("cursor")
    after = Cursor.decode(cursor_token) if cursor_token else None
    reader = request.app[READER]
    entries = await reader.patient_accesses(
        patient_id=patient_id, issuer=issuer, limit=limit + 1, after=after
    )
    page = list(entries[:limit])
    next_cursor = None
    if len(entries) > limit:
        last = page[-1]
        next_cursor = Cursor(event_time=last.event_time, event_id=last.event_id).encode()
    return web.json_response(
        {
            "patient_id": patient_id,
            "issuer": issuer,
            "accesses": [entry_json(e) for e in page],
            "next_cursor": next_cursor,
        }
    )


async def _schemas(app: web.Application, fingerprint: bytes) -> SchemaSet:
    cache: dict[str, SchemaSet] = app[SCHEMAS]
    current = cache.get("set")
    if current is None or current.name_of(fingerprint) is None:
        rows = await app[READER].writer_schemas()
        current = SchemaSet(
            StoredSchema(fingerprint=fp, full_name=name, schema_json=js) for fp, name, js in rows
        )
        cache["set"] = current
    return current


async def event_detail(request: web.Request) -> web.Response:
    raw = request.match_info["event_id"]
    try:
        event_id = uuid.UUID(raw)
    except ValueError as exc:
        raise MalformedInputError("event id must be a UUID") from exc
    stored = await request.app[READER].event(event_id)
    if stored is None:
        return _error(404, "not_found", "no event with that id is in the ledger")
    record = decode_leaf(stored.leaf)
    schemas = await _schemas(request.app, record.value[2:10])
    schema_name, body = schemas.decode(record.value)
    return web.json_response(
        {
            "event_id": str(event_id),
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


async def list_logs(request: web.Request) -> web.Response:
    logs = await request.app[READER].logs()
    return web.json_response(
        {
            "logs": [
                {
                    "id": log.log_id,
                    "origin": log.origin,
                    "topic": log.topic,
                    "partition": log.partition,
                    "size": log.size,
                    "checkpoint_size": log.checkpoint_size,
                    "unsigned_leaves": log.size - log.checkpoint_size,
                }
                for log in logs
            ]
        }
    )


_MAX_INT = (1 << 63) - 1


def _int(raw: str | None, name: str, *, minimum: int = 0, maximum: int = _MAX_INT) -> int:
    if raw is None:
        raise MalformedInputError(f"{name} is required")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or (len(raw) > 1 and raw[0] == "0"):
        raise MalformedInputError(f"{name} must be a non-negative decimal integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise MalformedInputError(f"{name} must be between {minimum} and {maximum}")
    return value


async def _log_or_404(request: web.Request) -> LogInfo:
    log_id = _int(request.match_info["log"], "log id", maximum=2**31 - 1)
    info = await request.app[READER].log(log_id)
    if info is None:
        raise web.HTTPNotFound(
            text='{"error": {"code": "not_found", "message": "no such log"}}',
            content_type="application/json",
        )
    return info


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


async def checkpoint(request: web.Request) -> web.Response:
    info = await _log_or_404(request)
    cp = await request.app[READER].latest_checkpoint(info.log_id)
    if cp is None:
        return _error(404, "not_found", "no checkpoint has been signed for this log yet")
    return web.Response(
        text=cp.note, content_type="text/plain", headers={"Cache-Control": "no-cache"}
    )


async def checkpoints(request: web.Request) -> web.Response:
    info = await _log_or_404(request)
    after = _int(request.query.get("after", "0"), "after")
    limit = _int(request.query.get("limit", "1000"), "limit", minimum=1, maximum=10_000)
    cps = await request.app[READER].checkpoints(info.log_id, after=after, limit=limit)
    return web.json_response(
        {"origin": info.origin, "checkpoints": [{"size": c.size, "note": c.note} for c in cps]}
    )


async def index_rows(request: web.Request) -> web.Response:
    """The event index of one log, by leaf index: what `ledger verify --api` checks."""
    info = await _log_or_404(request)
    start = _int(request.query.get("start", "0"), "start")
    limit = _int(request.query.get("limit", "1000"), "limit", minimum=1, maximum=10_000)
    rows = await request.app[READER].index_rows(info.log_id, start=start, limit=limit)
    return web.json_response(
        {"origin": info.origin, "rows": [{k: _cell(v) for k, v in r.items()} for r in rows]}
    )


def _cell(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return _b64(value)
    return value


_REASON = re.compile(r"[a-z0-9_]{1,64}")


async def quarantine(request: web.Request) -> web.Response:
    """Records that could not be appended, with their raw bytes (base64) and reason."""
    after = _int(request.query.get("after", "0"), "after")
    limit = _int(request.query.get("limit", "100"), "limit", minimum=1, maximum=1000)
    reason = request.query.get("reason")
    if reason is not None and not _REASON.fullmatch(reason):
        raise MalformedInputError("reason must be a reason code like malformed_avro")
    rows = await request.app[READER].quarantine(after=after, limit=limit, reason=reason)
    items = [{k: _cell(v) for k, v in r.items()} for r in rows]
    return web.json_response(
        {
            "records": items,
            "next_after": items[-1]["quarantine_id"] if len(items) == limit else None,
        }
    )


async def alerts(request: web.Request) -> web.Response:
    after = _int(request.query.get("after", "0"), "after")
    limit = _int(request.query.get("limit", "100"), "limit", minimum=1, maximum=1000)
    rows = await request.app[READER].alerts(after=after, limit=limit)
    return web.json_response({"alerts": [{k: _cell(v) for k, v in r.items()} for r in rows]})


async def leaves(request: web.Request) -> web.Response:
    """Stored leaves with their indexes (base64). Unlike entry bundles this shows gaps, so
    a verifier can locate a deleted row in a tampered database."""
    info = await _log_or_404(request)
    start = _int(request.query.get("start", "0"), "start")
    limit = _int(request.query.get("limit", "256"), "limit", minimum=1, maximum=4096)
    rows = await request.app[READER].leaves(info.log_id, start=start, end=start + limit)
    return web.json_response(
        {"origin": info.origin, "leaves": [{"index": i, "leaf": _b64(leaf)} for i, leaf in rows]}
    )


async def writer_schemas(request: web.Request) -> web.Response:
    rows = await request.app[READER].writer_schemas()
    return web.json_response(
        {
            "schemas": [
                {"fingerprint": fp.hex(), "full_name": name, "schema_json": js}
                for fp, name, js in rows
            ]
        }
    )


async def tile(request: web.Request) -> web.Response:
    info = await _log_or_404(request)
    level_text, path = request.match_info["level"], request.match_info["path"]
    index, width = tiles.parse_partial(path)
    reader = request.app[READER]
    if level_text == "entries":
        body = await reader.entries(info.log_id, index, width)
    else:
        level = _int(level_text, "tile level", maximum=63)
        body = await reader.tile(info.log_id, level, index, width)
    if body is None:
        return _error(404, "not_found", "that tile does not exist (yet)")
    cache = "public, max-age=31536000, immutable" if width == tiles.TILE_WIDTH else "no-cache"
    return web.Response(
        body=body, content_type="application/octet-stream", headers={"Cache-Control": cache}
    )


async def inclusion_proof(request: web.Request) -> web.Response:
    info = await _log_or_404(request)
    index = _int(request.query.get("index"), "index")
    tree_size = _int(request.query.get("tree_size"), "tree_size", minimum=1)
    hashes = await request.app[READER].inclusion(info.log_id, index, tree_size, info.size)
    return web.json_response(
        {
            "log_id": info.log_id,
            "origin": info.origin,
            "index": index,
            "tree_size": tree_size,
            "hashes": [_b64(h) for h in hashes],
        }
    )


async def consistency_proof(request: web.Request) -> web.Response:
    info = await _log_or_404(request)
    first = _int(request.query.get("first"), "first", minimum=1)
    second = _int(request.query.get("second"), "second", minimum=1)
    hashes = await request.app[READER].consistency(info.log_id, first, second, info.size)
    return web.json_response(
        {
            "log_id": info.log_id,
            "origin": info.origin,
            "first": first,
            "second": second,
            "hashes": [_b64(h) for h in hashes],
        }
    )


async def event_proof(request: web.Request) -> web.Response:
    try:
        event_id = uuid.UUID(request.match_info["event_id"])
    except ValueError as exc:
        raise MalformedInputError("event id must be a UUID") from exc
    proof = await request.app[READER].event_proof(event_id)
    if proof is None:
        return _error(404, "not_found", "no event with that id is in the ledger")
    # The entry itself travels in `extra`, so the file alone proves the event.
    text = format_tlog_proof(proof.leaf_index, proof.hashes, proof.checkpoint.note, proof.leaf)
    return web.Response(
        text=text,
        content_type="text/plain",
        headers={"Content-Disposition": f'attachment; filename="{event_id}.tlog-proof"'},
    )


def create_app(reader: LedgerReader) -> web.Application:
    """The API application; the caller owns the reader's lifecycle."""
    app = web.Application(middlewares=[errors_middleware], client_max_size=MAX_REQUEST_BYTES)
    app[READER] = reader
    app[SCHEMAS] = {}
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/patients/{patient_id}/accesses", patient_accesses)
    app.router.add_get("/v1/events/{event_id}", event_detail)
    app.router.add_get("/v1/logs", list_logs)
    app.router.add_get("/v1/logs/{log}/checkpoints", checkpoints)
    app.router.add_get("/v1/logs/{log}/index", index_rows)
    app.router.add_get("/v1/logs/{log}/leaves", leaves)
    app.router.add_get("/v1/schemas", writer_schemas)
    app.router.add_get("/v1/quarantine", quarantine)
    app.router.add_get("/v1/alerts", alerts)
    app.router.add_get("/v1/logs/{log}/proof/inclusion", inclusion_proof)
    app.router.add_get("/v1/logs/{log}/proof/consistency", consistency_proof)
    app.router.add_get("/v1/events/{event_id}/proof", event_proof)
    app.router.add_get("/logs/{log}/checkpoint", checkpoint)
    app.router.add_get("/logs/{log}/tile/{level}/{path:.+}", tile)
    return app
