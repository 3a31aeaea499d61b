"""Proof material: logs, checkpoints, tiles, leaves, index rows, proofs, schemas.

Invariant: everything here is derived from the stored leaves and signed
checkpoints; a client can check every answer offline against a checkpoint it
trusts (the C2SP tlog-tiles and tlog-proof formats, or ``ledger verify``).
"""

from __future__ import annotations

from typing import cast

from aiohttp import web

from ledger.audit.disclosure import LeafRange, coalesce, of_positions
from ledger.audit.query import LogInfo
from ledger.http.common import (
    READER,
    RESULTS,
    add_disclosure,
    b64,
    error,
    event_id,
    integer,
    row_json,
)
from ledger.log import tiles
from ledger.log.checkpoint import format_tlog_proof


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
                    **_chain(log),
                }
                for log in logs
            ]
        }
    )


def _chain(log: LogInfo) -> dict[str, object]:
    """The log's period, first offset and seal (a closed log's final size and signed note,
    and the next log): what ``ledger verify --api`` checks seals with (docs/archive.md)."""
    seal = log.seal
    return {
        "period": None if log.period is None else log.period.isoformat(),
        "first_offset": log.first_offset,
        "archive": log.archive,
        "seal": None
        if seal is None
        else {
            "size": seal.size,
            "note": seal.note,
            "next_log_id": seal.next_log_id,
            "next_origin": seal.next_origin,
            "next_first_offset": seal.next_first_offset,
        },
    }


async def _log_or_404(request: web.Request) -> LogInfo:
    log_id = integer(request.match_info["log"], "log id", maximum=2**31 - 1)
    info = await request.app[READER].log(log_id)
    if info is None:
        raise web.HTTPNotFound(
            text='{"error": {"code": "not_found", "message": "no such log"}}',
            content_type="application/json",
        )
    return info


async def checkpoint(request: web.Request) -> web.Response:
    info = await _log_or_404(request)
    cp = await request.app[READER].latest_checkpoint(info.log_id)
    if cp is None:
        return error(404, "not_found", "no checkpoint has been signed for this log yet")
    return web.Response(
        text=cp.note, content_type="text/plain", headers={"Cache-Control": "no-cache"}
    )


async def checkpoints(request: web.Request) -> web.Response:
    info = await _log_or_404(request)
    after = integer(request.query.get("after", "0"), "after")
    limit = integer(request.query.get("limit", "1000"), "limit", minimum=1, maximum=10_000)
    cps = await request.app[READER].checkpoints(info.log_id, after=after, limit=limit)
    return web.json_response(
        {"origin": info.origin, "checkpoints": [{"size": c.size, "note": c.note} for c in cps]}
    )


async def index_rows(request: web.Request) -> web.Response:
    """The event index of one log, by leaf index: what `ledger verify --api` checks."""
    info = await _log_or_404(request)
    start = integer(request.query.get("start", "0"), "start", maximum=2**62)
    limit = integer(request.query.get("limit", "1000"), "limit", minimum=1, maximum=10_000)
    rows = await request.app[READER].index_rows(info.log_id, start=start, limit=limit)
    request[RESULTS] = len(rows)
    add_disclosure(request, of_positions((info.origin, cast(int, r["leaf_index"])) for r in rows))
    return web.json_response({"origin": info.origin, "rows": [row_json(r) for r in rows]})


async def leaves(request: web.Request) -> web.Response:
    """Stored leaves with their indexes (base64). Unlike entry bundles this shows gaps, so
    a verifier can locate a deleted row in a tampered database."""
    info = await _log_or_404(request)
    start = integer(request.query.get("start", "0"), "start", maximum=2**62)
    limit = integer(request.query.get("limit", "256"), "limit", minimum=1, maximum=4096)
    rows = await request.app[READER].leaves(info.log_id, start=start, end=start + limit)
    request[RESULTS] = len(rows)
    add_disclosure(request, of_positions((info.origin, i) for i, _ in rows))
    return web.json_response(
        {"origin": info.origin, "leaves": [{"index": i, "leaf": b64(leaf)} for i, leaf in rows]}
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


async def hash_tile(request: web.Request) -> web.Response:
    """A C2SP hash tile: 32-byte node hashes only, no PHI (served with no token)."""
    info = await _log_or_404(request)
    level = integer(request.match_info["level"], "tile level", maximum=63)
    index, width = tiles.parse_partial(request.match_info["path"])
    body = await request.app[READER].tile(info.log_id, level, index, width)
    return _tile(body, width)


async def entry_bundle(request: web.Request) -> web.Response:
    """A C2SP entry bundle: the leaves themselves (PHI; authenticated and recorded)."""
    info = await _log_or_404(request)
    index, width = tiles.parse_partial(request.match_info["path"])
    body = await request.app[READER].entries(info.log_id, index, width)
    request[RESULTS] = 0 if body is None else width
    if body is not None:  # an entry bundle holds the leaves themselves
        start = index * tiles.TILE_WIDTH
        add_disclosure(
            request, coalesce((LeafRange(origin=info.origin, start=start, end=start + width),))
        )
    return _tile(body, width, phi=True)


def _tile(body: bytes | None, width: int, *, phi: bool = False) -> web.Response:
    if body is None:
        return error(404, "not_found", "that tile does not exist (yet)")
    if phi:  # entry bundles hold PHI: never stored by a shared cache
        cache = "private, no-store"
    elif width == tiles.TILE_WIDTH:
        cache = "public, max-age=31536000, immutable"
    else:
        cache = "no-cache"
    return web.Response(
        body=body, content_type="application/octet-stream", headers={"Cache-Control": cache}
    )


async def inclusion_proof(request: web.Request) -> web.Response:
    info = await _log_or_404(request)
    index = integer(request.query.get("index"), "index")
    tree_size = integer(request.query.get("tree_size"), "tree_size", minimum=1)
    hashes = await request.app[READER].inclusion(info.log_id, index, tree_size, info.size)
    return web.json_response(
        {
            "log_id": info.log_id,
            "origin": info.origin,
            "index": index,
            "tree_size": tree_size,
            "hashes": [b64(h) for h in hashes],
        }
    )


async def consistency_proof(request: web.Request) -> web.Response:
    info = await _log_or_404(request)
    first = integer(request.query.get("first"), "first", minimum=1)
    second = integer(request.query.get("second"), "second", minimum=1)
    hashes = await request.app[READER].consistency(info.log_id, first, second, info.size)
    return web.json_response(
        {
            "log_id": info.log_id,
            "origin": info.origin,
            "first": first,
            "second": second,
            "hashes": [b64(h) for h in hashes],
        }
    )


async def event_proof(request: web.Request) -> web.Response:
    ident = event_id(request.match_info["event_id"])
    proof = await request.app[READER].event_proof(ident)
    if proof is None:
        return error(404, "not_found", "no event with that id is in the ledger")
    add_disclosure(request, of_positions(((proof.log.origin, proof.leaf_index),)))
    # The entry itself travels in `extra`, so the file alone proves the event.
    text = format_tlog_proof(proof.leaf_index, proof.hashes, proof.checkpoint.note, proof.leaf)
    return web.Response(
        text=text,
        content_type="text/plain",
        headers={"Content-Disposition": f'attachment; filename="{ident}.tlog-proof"'},
    )
