"""Download a ledger through its public read API into an offline bundle (verify --api).

Invariant: only the public, standard endpoints are used (C2SP entry bundles and
hash tiles, the checkpoint history, the event index, the writer schemas), and
every byte is written to the bundle as received: the verifier judges it, this
module does not.  Each log is pinned to its latest signed checkpoint, fetched
before anything else, and nothing beyond that checkpoint's size is read: the
log keeps growing while it is read (these reads are audited too), and what no
checkpoint signed yet is not the auditor's to judge.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from ledger.audit.records import StoredSchema
from ledger.errors import MalformedInputError
from ledger.log import tiles
from ledger.log.checkpoint import parse_checkpoint
from ledger.log.note import Verifier
from ledger.verify import Finding, signing_key_finding
from ledger.verify.bundle import BundleLog
from ledger.verify.bundle.writer import BundleWriter, LogWriter
from ledgerctl.client import Api

_U16 = struct.Struct(">H")


def _split_bundle(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos + 2 <= len(data):
        (n,) = _U16.unpack_from(data, pos)
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return out


def _list(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise MalformedInputError("the API answered with an unexpected document")
    return value


async def _json(session: aiohttp.ClientSession, url: str) -> dict[str, object]:
    async with session.get(url) as resp:
        resp.raise_for_status()
        body: dict[str, object] = await resp.json()
        return body


async def pinned_checkpoint(
    session: aiohttp.ClientSession, api: Api, log_id: int
) -> tuple[int, str | None]:
    """The log's latest signed checkpoint as served, and the size it names (0 when there is
    none yet or the note does not parse: the verifier then reports the note itself)."""
    async with session.get(f"{api.url}/logs/{log_id}/checkpoint") as resp:
        if resp.status == 404:
            return 0, None
        resp.raise_for_status()
        note = await resp.text()
    split = note.rfind("\n\n")
    try:
        size = parse_checkpoint(note[: split + 1]).size if split >= 0 else 0
    except MalformedInputError:
        size = 0
    return size, note


async def download_bundle(
    api: Api,
    path: Path,
    *,
    ledger_name: str,
    progress: Callable[[str, int, int], None] | None = None,
    verifiers: Sequence[Verifier] | None = None,
    archived: list[tuple[str, str]] | None = None,
) -> Finding | None:
    """Write the ledger as a bundle pinned to ONE signed checkpoint per log.

    Every log's latest checkpoint is fetched first; then only what that checkpoint covers
    is read (leaves, full tiles, checkpoint history and index rows below its size), so the
    log growing meanwhile -- by the audit entries of these very reads, among others -- is
    not seen.  The manifest's size of each log is its pinned checkpoint's size.  A log
    whose month left the database is not downloaded: ``archived`` gets its origin and
    its archive's digest.  With
    ``verifiers``, when no pinned checkpoint carries a signature by one of them, nothing
    more is read and the one ``verifier_key_unknown`` finding is returned.
    """
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with api.session(timeout=timeout) as session:
        listed = _list((await _json(session, f"{api.url}/v1/logs"))["logs"])
        # A log whose month was detached is verified from its archive, not from here.
        logs = [log for log in listed if not log.get("archive")]
        if archived is not None:
            archived.extend(
                (str(g["origin"]), str(g["archive"])) for g in listed if g.get("archive")
            )
        pins = [await pinned_checkpoint(session, api, int(str(log["id"]))) for log in logs]
        if verifiers is not None:
            notes = [note for _, note in pins if note is not None]
            wrong_key = signing_key_finding(notes, verifiers, log=ledger_name)
            if wrong_key is not None:
                return wrong_key
        schemas = _list((await _json(session, f"{api.url}/v1/schemas"))["schemas"])
        with BundleWriter(path, ledger_name=ledger_name) as bundle:
            bundle.write_schemas(
                StoredSchema(
                    fingerprint=bytes.fromhex(s["fingerprint"]),
                    full_name=s["full_name"],
                    schema_json=s["schema_json"],
                )
                for s in schemas
            )
            for log, pin in zip(logs, pins, strict=True):
                await _download_log(session, api, bundle, log, pin, progress)
    return None


async def _download_log(
    session: aiohttp.ClientSession,
    api: Api,
    bundle: BundleWriter,
    log: dict[str, Any],
    pin: tuple[int, str | None],
    progress: Callable[[str, int, int], None] | None,
) -> None:
    log_id, origin = int(str(log["id"])), str(log["origin"])
    size, pinned = pin
    chain = _chain(log_id, origin, log)
    with bundle.add_log(log_id=log_id, origin=origin, size=size, chain=chain) as out:
        await _entries(session, api, out, log_id, origin, size, progress)
        base = f"{api.url}/logs/{log_id}"
        level = 0
        while tiles.entries_at_level(level, size) >= tiles.TILE_WIDTH:
            for index in range(tiles.entries_at_level(level, size) // tiles.TILE_WIDTH):
                async with session.get(f"{base}/{tiles.tile_path(level, index)}") as resp:
                    if resp.status == 200:  # a missing tile is the verifier's to report
                        out.add_tile(level, index, await resp.read())
            level += 1
        await _checkpoints(session, api, out, log_id, size, pinned)
        await _index(session, api, out, log_id, size)
        seal = log.get("seal")
        if isinstance(seal, dict):  # the verifier judges it (ledger.verify.seals)
            out.add_seal(
                size=int(seal["size"]),
                note=str(seal["note"]),
                next_log_id=int(seal["next_log_id"]),
                next_origin=str(seal["next_origin"]),
                next_first_offset=int(seal["next_first_offset"]),
            )
        if progress is not None:
            progress(origin, size, size)


def _chain(log_id: int, origin: str, log: dict[str, Any]) -> BundleLog | None:
    """The log's place in its partition's chain of periods, as listed (None: an API from
    before migration 0017)."""
    period, first = log.get("period"), log.get("first_offset")
    if not isinstance(period, str) or type(first) is not int:
        return None
    return BundleLog(
        log_id=log_id, origin=origin, size=0, topic=str(log["topic"]),
        partition=int(str(log["partition"])), period=period, first_offset=first,
    )  # fmt: skip


async def _entries(
    session: aiohttp.ClientSession,
    api: Api,
    out: LogWriter,
    log_id: int,
    origin: str,
    size: int,
    progress: Callable[[str, int, int], None] | None,
) -> None:
    base = f"{api.url}/logs/{log_id}"
    for index in range((size + 255) // 256):
        width = min(256, size - index * 256)
        async with session.get(f"{base}/{tiles.entries_path(index, width)}") as resp:
            data = await resp.read() if resp.status == 200 else None
        if data is not None:
            for k, leaf in enumerate(_split_bundle(data)):
                out.add_entry(index * 256 + k, leaf)
        else:
            # The bundle is unavailable (rows missing?): take the indexed leaves instead,
            # so the verifier sees exactly which indexes exist.
            start = index * 256
            page = await _json(
                session, f"{api.url}/v1/logs/{log_id}/leaves?start={start}&limit={width}"
            )
            for row in _list(page["leaves"]):
                out.add_entry(int(row["index"]), base64.b64decode(row["leaf"]))
        if progress is not None and index % 200 == 0:
            progress(origin, index * 256 + width, size)


async def _checkpoints(
    session: aiohttp.ClientSession,
    api: Api,
    out: LogWriter,
    log_id: int,
    size: int,
    pinned: str | None,
) -> None:
    """The checkpoint history up to the pinned size, and the pinned note itself."""
    after, seen = 0, False
    while True:
        page = await _json(session, f"{api.url}/v1/logs/{log_id}/checkpoints?after={after}")
        listed = _list(page["checkpoints"])
        cps = [c for c in listed if int(c["size"]) <= size]
        for c in cps:
            out.add_checkpoint(int(c["size"]), str(c["note"]))
            # The same checkpoint, maybe with more witness cosignatures than when pinned.
            seen = seen or (pinned is not None and _body(str(c["note"])) == _body(pinned))
        if len(cps) < len(listed) or not cps:
            break
        after = int(cps[-1]["size"])
    if pinned is not None and not seen:
        out.add_checkpoint(size, pinned)


def _body(note: str) -> str:
    """A signed note's text, without its signature lines (cosignatures arrive later)."""
    return note[: note.rfind("\n\n") + 1]


async def _index(
    session: aiohttp.ClientSession, api: Api, out: LogWriter, log_id: int, size: int
) -> None:
    """Index rows of the leaves below the pinned size (rows beyond it are not ours to judge)."""
    start = 0
    while start < size:
        limit = min(10_000, size - start)
        page = await _json(session, f"{api.url}/v1/logs/{log_id}/index?start={start}&limit={limit}")
        rows = _list(page["rows"])
        if not rows:
            break
        for row in rows:
            if int(row["leaf_index"]) >= size:
                return
            if row.get("event_time"):
                row["event_time"] = datetime.fromisoformat(row["event_time"])
            out.add_index_row(row)
        start = int(rows[-1]["leaf_index"]) + 1
