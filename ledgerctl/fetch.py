"""Download a ledger through its public read API into an offline bundle (verify --api).

Invariant: only the public, standard endpoints are used (C2SP entry bundles and
hash tiles, the checkpoint history, the event index, the writer schemas), and
every byte is written to the bundle as received: the verifier judges it, this
module does not.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from ledger import tiles
from ledger.avro import StoredSchema
from ledger.bundle import BundleWriter
from ledger.errors import MalformedInputError
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


async def download_bundle(
    api: Api,
    path: Path,
    *,
    ledger_name: str,
    progress: Callable[[str, int, int], None] | None = None,
) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with api.session(timeout=timeout) as session:
        logs = _list((await _json(session, f"{api.url}/v1/logs"))["logs"])
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
            for log in logs:
                await _download_log(session, api, bundle, log, progress)


async def _download_log(
    session: aiohttp.ClientSession,
    api: Api,
    bundle: BundleWriter,
    log: dict[str, Any],
    progress: Callable[[str, int, int], None] | None,
) -> None:
    log_id, origin, size = int(str(log["id"])), str(log["origin"]), int(str(log["size"]))
    base = f"{api.url}/logs/{log_id}"
    with bundle.add_log(log_id=log_id, origin=origin, size=size) as out:
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
        level = 0
        while tiles.entries_at_level(level, size) >= tiles.TILE_WIDTH:
            for index in range(tiles.entries_at_level(level, size) // tiles.TILE_WIDTH):
                async with session.get(f"{base}/{tiles.tile_path(level, index)}") as resp:
                    if resp.status == 200:  # a missing tile is the verifier's to report
                        out.add_tile(level, index, await resp.read())
            level += 1
        after = 0
        while True:
            page = await _json(session, f"{api.url}/v1/logs/{log_id}/checkpoints?after={after}")
            cps = _list(page["checkpoints"])
            if not cps:
                break
            for c in cps:
                out.add_checkpoint(int(c["size"]), str(c["note"]))
            after = int(cps[-1]["size"])
        start = 0
        while True:
            page = await _json(
                session, f"{api.url}/v1/logs/{log_id}/index?start={start}&limit=10000"
            )
            rows = _list(page["rows"])
            if not rows:
                break
            for row in rows:
                if row.get("event_time"):
                    row["event_time"] = datetime.fromisoformat(row["event_time"])
                out.add_index_row(row)
            start = int(rows[-1]["leaf_index"]) + 1
        if progress is not None:
            progress(origin, size, size)
