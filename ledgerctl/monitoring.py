"""One round of `ledger monitor`: read every endpoint, judge, and grow the remembered state.

Invariant: only the public read routes are used (``/v1/logs``, each log's checkpoint, the
consistency proof from the remembered size, entry bundles or leaves), so the monitor's
reads are recorded by the API like any other; per log, the state moves forward only when
the round found nothing wrong with that log; an endpoint that cannot be read is an error
of the round (``RoundResult.errors``), never a silent pass.
"""

from __future__ import annotations

import base64
import contextlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from ledger.errors import LedgerError, MalformedInputError
from ledger.log import tiles
from ledger.log.checkpoint import Checkpoint
from ledger.log.note import Verifier
from ledger.verify.growth import Growth, judge_tile
from ledger.verify.monitor import (
    MonitorFinding,
    Remembered,
    Served,
    check_consistency,
    judge_heads,
    judge_listing,
    open_heads,
    open_history,
    stall,
    target,
)
from ledgerctl.client import Api
from ledgerctl.monitorstate import MonitorState

_U16 = struct.Struct(">H")
_READ_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, LedgerError, ValueError, KeyError)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundResult:
    state: MonitorState
    findings: tuple[MonitorFinding, ...]
    errors: tuple[str, ...]  # endpoints that could not be read, one line each
    advanced: Mapping[str, tuple[int, int]]  # origin -> (remembered size, new size)


@dataclass(frozen=True, slots=True, kw_only=True)
class Round:
    """What the monitor brings to a round: endpoints, keys, the stall age, "now"."""

    endpoints: Sequence[Api]
    verifiers: Sequence[Verifier]
    stall_after: timedelta
    now: datetime


async def run_round(ctx: Round, state: MonitorState) -> RoundResult:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
    async with contextlib.AsyncExitStack() as stack:
        sessions = {
            api.url: (api, await stack.enter_async_context(api.session(timeout=timeout)))
            for api in ctx.endpoints
        }
        listings: dict[str, dict[str, Served]] = {}
        errors: list[str] = []
        for url, (_, session) in sessions.items():
            try:
                listings[url] = await _listing(session, url)
            except _READ_ERRORS as exc:
                errors.append(f"ERROR endpoint {url} could not be read: {_why(exc)}")
        logs = dict(state.logs)
        findings: list[MonitorFinding] = []
        advanced: dict[str, tuple[int, int]] = {}
        origins = sorted({o for views in listings.values() for o in views} | set(logs))
        for origin in origins if listings else ():
            mem = logs.get(origin) or Remembered(origin=origin)
            try:
                new, found = await _one_log(ctx, sessions, listings, mem)
            except _READ_ERRORS as exc:
                errors.append(f"ERROR log {origin} could not be read: {_why(exc)}")
                continue
            findings += found
            logs[origin] = new
            if new.size != mem.size:
                advanced[origin] = (mem.size, new.size)
    return RoundResult(
        state=replace(state, logs=logs),
        findings=tuple(findings),
        errors=tuple(errors),
        advanced=advanced,
    )


def _why(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):
        hint = " (is LEDGER_API_TOKEN set and valid?)" if exc.status in (401, 403) else ""
        return f"HTTP {exc.status} {exc.message}{hint}"
    return str(exc) or type(exc).__name__


async def _json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        resp.raise_for_status()
        return await resp.json()


async def _listing(session: aiohttp.ClientSession, url: str) -> dict[str, Served]:
    """Every log the endpoint lists, with its latest checkpoint note (None: not signed yet)."""
    out: dict[str, Served] = {}
    for log in (await _json(session, f"{url}/v1/logs"))["logs"]:
        log_id = int(log["id"])
        async with session.get(f"{url}/logs/{log_id}/checkpoint") as resp:
            if resp.status != 404:
                resp.raise_for_status()
            note = None if resp.status == 404 else await resp.text()
        out[str(log["origin"])] = Served(
            endpoint=url, log_id=log_id, size=int(log["size"]),
            checkpoint_size=int(log["checkpoint_size"]),
            unsigned=int(log["unsigned_leaves"]), note=note,
            archive=str(log["archive"]) if log.get("archive") else None,
        )  # fmt: skip
    return out


async def _one_log(
    ctx: Round,
    sessions: Mapping[str, tuple[Api, aiohttp.ClientSession]],
    listings: Mapping[str, Mapping[str, Served]],
    mem: Remembered,
) -> tuple[Remembered, list[MonitorFinding]]:
    origin = mem.origin
    views = [v[origin] for v in listings.values() if origin in v]
    found = _listed(mem, listings)
    heads, bad = open_heads(origin, views, ctx.verifiers)
    found += bad + judge_listing(mem, views) + judge_heads(mem, heads)
    goal = target(mem, heads)
    grown = mem
    if goal is not None and any(v.archive for v in views):
        # Its month left the database: the entries are in the archive (`ledger verify
        # --bundle`); forks and rollbacks of its head are still judged above.
        goal = None
    if goal is not None:
        url = goal[0]
        view = listings[url][origin]
        session = sessions[url][1]
        proof = await _consistency(session, url, view.log_id, mem.size, goal[1].size)
        wrong = check_consistency(mem, goal, proof)
        found += [] if wrong is None else [wrong]
        notes = await _history(session, url, view.log_id, mem.size, goal[1].size)
        history, untrusted = open_history(origin, url, notes, ctx.verifiers)
        found += untrusted
        growth = Growth(mem, heads, goal, history)
        await _feed(session, url, view.log_id, growth, goal[1])
        new, more = growth.finish(view.note or "")
        found += more
        grown = new if new is not None and not found else mem
    grown, stalled = stall(grown, views, now=ctx.now, after=ctx.stall_after)
    return grown, found + ([] if stalled is None else [stalled])


def _listed(mem: Remembered, listings: Mapping[str, Mapping[str, Served]]) -> list[MonitorFinding]:
    """A remembered log no endpoint lists; a log one endpoint lists and another does not."""
    having = [url for url, views in listings.items() if mem.origin in views]
    if not having:
        return [
            MonitorFinding(
                kind="log_missing", log=mem.origin, checkpoint_size=mem.size,
                detail=f"no endpoint lists this log any more; {mem.size} leaves of it were "
                "verified earlier: it was removed or the ledger was replaced",
            )
        ] if mem.size else []  # fmt: skip
    return [
        MonitorFinding(
            kind="split_view", log=mem.origin, endpoint=url,
            detail=f"does not list this log, which {having[0]} lists",
        )
        for url in listings
        if url not in having
    ]  # fmt: skip


async def _history(
    session: aiohttp.ClientSession, url: str, log_id: int, after: int, upto: int
) -> list[str]:
    """The notes of the log's signed checkpoints of sizes in ``(after, upto)``."""
    notes: list[str] = []
    while after < upto - 1:
        page = await _json(session, f"{url}/v1/logs/{log_id}/checkpoints?after={after}")
        rows = [(int(c["size"]), str(c["note"])) for c in page["checkpoints"]]
        if not rows:
            break
        notes += [note for size, note in rows if size < upto]
        after = max(after + 1, rows[-1][0])  # sizes ascend; never loop on a bad page
    return notes


async def _consistency(
    session: aiohttp.ClientSession, url: str, log_id: int, first: int, second: int
) -> list[bytes] | None:
    if first == 0:
        return []
    query = f"first={first}&second={second}"
    async with session.get(f"{url}/v1/logs/{log_id}/proof/consistency?{query}") as resp:
        if resp.status != 200:
            return None
        body = await resp.json()
    try:
        return [base64.b64decode(h, validate=True) for h in body["hashes"]]
    except (ValueError, KeyError, TypeError):
        return None


async def _feed(
    session: aiohttp.ClientSession, url: str, log_id: int, growth: Growth, goal: Checkpoint
) -> None:
    """Feed the leaves from the remembered size up to the goal: entry bundles, or the
    leaves route (which shows gaps) where a bundle is not served."""
    base = f"{url}/logs/{log_id}"
    for index in range(growth.size // 256, (goal.size + 255) // 256):
        width = min(256, goal.size - index * 256)
        async with session.get(f"{base}/{tiles.entries_path(index, width)}") as resp:
            data = await resp.read() if resp.status == 200 else None
        if data is not None:
            rows = list(enumerate(_split_bundle(data), start=index * 256))
        else:
            page = await _json(
                session, f"{url}/v1/logs/{log_id}/leaves?start={index * 256}&limit={width}"
            )
            rows = [(int(r["index"]), base64.b64decode(r["leaf"])) for r in page["leaves"]]
        going = all(i < growth.size or growth.feed(i, leaf) for i, leaf in rows)
        for tile, expected in growth.completed:
            async with session.get(f"{base}/{tiles.tile_path(0, tile)}") as resp:
                served = await resp.read() if resp.status == 200 else None
            wrong = judge_tile(growth.mem.origin, url, tile, expected, served)
            growth.found += [] if wrong is None else [wrong]
        growth.completed.clear()
        if not going or growth.size < min(goal.size, (index + 1) * 256):
            return  # the goal is reached, or a leaf is missing (growth.finish reports it)


def _split_bundle(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise MalformedInputError("an entry bundle ends inside a length prefix")
        (n,) = _U16.unpack_from(data, pos)
        if pos + 2 + n > len(data):
            raise MalformedInputError("an entry bundle ends inside an entry")
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return out
