"""Export a consistent snapshot of the ledger to an offline bundle (``ledger export``).

Invariant: the export reads one REPEATABLE READ snapshot as the SELECT-only reader
role and copies rows verbatim (no repair, no filtering), streaming through
server-side cursors, so what the bundle holds is exactly what the database held.
``before_writing`` sees the heads (origin, size) of that snapshot, which are exactly
what the bundle will disclose, before a byte of PHI is read or written; if it raises,
nothing is written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import asyncpg

from ledger.audit.disclosure import index_cells
from ledger.audit.records import StoredSchema
from ledger.pg import sql
from ledger.pg.producerkeys import export_producer_auth
from ledger.verify.bundle.files import check_target
from ledger.verify.bundle.writer import BundleWriter

_PREFETCH: Final = 20_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportSummary:
    logs: int
    leaves: int
    checkpoints: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportHead:
    """One log of the snapshot: the bundle holds its leaves up to ``size``."""

    log_id: int
    origin: str
    size: int


async def export_bundle(
    *,
    dsn: str,
    path: Path,
    ledger_name: str,
    progress: Callable[[str, int, int], None] | None = None,
    before_writing: Callable[[Sequence[ExportHead]], Awaitable[None]] | None = None,
) -> ExportSummary:
    check_target(path)
    conn = await asyncpg.connect(dsn)
    leaves_total = checkpoints_total = 0
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            logs = await conn.fetch(sql.LOGS)
            if before_writing is not None:
                await before_writing(
                    [
                        ExportHead(log_id=int(g["log_id"]), origin=g["origin"], size=int(g["size"]))
                        for g in logs
                    ]
                )
            schemas = await conn.fetch(sql.WRITER_SCHEMAS)
            with BundleWriter(path, ledger_name=ledger_name) as bundle:
                bundle.write_schemas(
                    StoredSchema(
                        fingerprint=bytes(s["fingerprint"]),
                        full_name=s["full_name"],
                        schema_json=s["schema_json"],
                    )
                    for s in schemas
                )
                for log in logs:
                    log_id, origin, size = int(log["log_id"]), log["origin"], int(log["size"])
                    with bundle.add_log(log_id=log_id, origin=origin, size=size) as out:
                        done = 0
                        async for r in conn.cursor(sql.EXPORT_LEAVES, log_id, prefetch=_PREFETCH):
                            out.add_entry(int(r["leaf_index"]), bytes(r["leaf"]))
                            done += 1
                            if progress is not None and done % 50_000 == 0:
                                progress(origin, done, size)
                        leaves_total += done
                        async for r in conn.cursor(sql.EXPORT_TILES, log_id, prefetch=1000):
                            out.add_tile(int(r["level"]), int(r["tile_index"]), bytes(r["hashes"]))
                        for r in await conn.fetch(sql.EXPORT_CHECKPOINTS, log_id):
                            out.add_checkpoint(int(r["size"]), r["note"])
                            checkpoints_total += 1
                        async for r in conn.cursor(sql.EXPORT_INDEX, log_id, prefetch=_PREFETCH):
                            out.add_index_row(index_cells(r.items()))
                        if progress is not None:
                            progress(origin, done, size)
                # Producer authentication (ledger.verify.producerbundle): registry, seals,
                # seal references.
                await export_producer_auth(conn, bundle.path, [int(g["log_id"]) for g in logs])
    finally:
        await conn.close()
    return ExportSummary(logs=len(logs), leaves=leaves_total, checkpoints=checkpoints_total)
