"""Export a consistent snapshot of the ledger to an offline bundle (``ledger export``).

Invariant: the export reads one REPEATABLE READ snapshot as the SELECT-only reader
role and copies rows verbatim (no repair, no filtering), streaming through
server-side cursors, so what the bundle holds is exactly what the database held.
``before_writing`` sees the heads (origin, size) of that snapshot, which are exactly
what the bundle will disclose, before a byte of PHI is read or written; if it raises,
nothing is written. Each log's place in its partition's chain of periods and its seal
(migration 0017) go with it, so the verifier checks the seals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ledger.audit.disclosure import index_cells
from ledger.audit.records import StoredSchema
from ledger.pg import sql
from ledger.pg.producerkeys import export_producer_auth
from ledger.verify.bundle import BundleLog
from ledger.verify.bundle.files import check_target
from ledger.verify.bundle.writer import BundleWriter

_PREFETCH: Final = 20_000

Conn = asyncpg.Connection | PoolConnectionProxy
Progress = Callable[[str, int, int], None]


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


def chain_of(row: Mapping[str, object]) -> BundleLog:
    """A log's place in its partition's chain, from a row with ``log_id``, ``origin``,
    ``topic``, ``kafka_partition``, ``period`` and ``first_offset`` (size left 0)."""
    period = row["period"]
    return BundleLog(
        log_id=int(str(row["log_id"])),
        origin=str(row["origin"]),
        size=0,
        topic=str(row["topic"]),
        partition=int(str(row["kafka_partition"])),
        period=period.isoformat() if isinstance(period, date) else None,
        first_offset=int(str(row["first_offset"])),
    )


async def copy_log(
    conn: Conn,
    bundle: BundleWriter,
    *,
    log: BundleLog,
    seal: Mapping[str, object] | None,
    progress: Progress | None,
) -> tuple[int, int]:
    """Stream one log's leaves, tiles, checkpoints (with cosignatures), index rows and seal
    into ``bundle``; ``(leaves, checkpoints)`` copied.  ``log.size`` is what the manifest
    claims."""
    leaves = checkpoints = 0
    with bundle.add_log(log_id=log.log_id, origin=log.origin, size=log.size, chain=log) as out:
        async for r in conn.cursor(sql.EXPORT_LEAVES, log.log_id, prefetch=_PREFETCH):
            out.add_entry(int(r["leaf_index"]), bytes(r["leaf"]))
            leaves += 1
            if progress is not None and leaves % 50_000 == 0:
                progress(log.origin, leaves, log.size)
        async for r in conn.cursor(sql.EXPORT_TILES, log.log_id, prefetch=1000):
            out.add_tile(int(r["level"]), int(r["tile_index"]), bytes(r["hashes"]))
        # A month's log may hold millions of checkpoints (one a second): streamed too.
        async for r in conn.cursor(sql.EXPORT_CHECKPOINTS, log.log_id, prefetch=_PREFETCH):
            out.add_checkpoint(int(r["size"]), r["note"])
            checkpoints += 1
        async for r in conn.cursor(sql.EXPORT_INDEX, log.log_id, prefetch=_PREFETCH):
            out.add_index_row(index_cells(r.items()))
        if seal is not None:
            out.add_seal(
                size=int(str(seal["size"])),
                note=str(seal["note"]),
                next_log_id=int(str(seal["next_log_id"])),
                next_origin=str(seal["next_origin"]),
                next_first_offset=int(str(seal["next_first_offset"])),
            )
        if progress is not None:
            progress(log.origin, leaves, log.size)
    return leaves, checkpoints


def seal_of(row: Mapping[str, object]) -> dict[str, object] | None:
    """The seal columns of a log row (``seal_size``, ``seal_note``, ``next_log_id``,
    ``next_origin``, ``next_first_offset``; from ``sql.LOGS`` and alike), or None."""
    if row.get("seal_note") is None:
        return None
    return {
        "size": row["seal_size"],
        "note": row["seal_note"],
        "next_log_id": row["next_log_id"],
        "next_origin": row["next_origin"],
        "next_first_offset": row["next_first_offset"],
    }


async def write_schemas(conn: Conn, bundle: BundleWriter) -> None:
    bundle.write_schemas(
        StoredSchema(
            fingerprint=bytes(s["fingerprint"]),
            full_name=s["full_name"],
            schema_json=s["schema_json"],
        )
        for s in await conn.fetch(sql.WRITER_SCHEMAS)
    )


async def export_bundle(
    *,
    dsn: str,
    path: Path,
    ledger_name: str,
    progress: Progress | None = None,
    before_writing: Callable[[Sequence[ExportHead]], Awaitable[None]] | None = None,
) -> ExportSummary:
    check_target(path)
    conn = await asyncpg.connect(dsn)
    leaves_total = checkpoints_total = 0
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # A log whose month left the database is in its archive, not exported here.
            logs = [g for g in await conn.fetch(sql.LOGS) if g["archive"] is None]
            if before_writing is not None:
                await before_writing(
                    [
                        ExportHead(log_id=int(g["log_id"]), origin=g["origin"], size=int(g["size"]))
                        for g in logs
                    ]
                )
            with BundleWriter(path, ledger_name=ledger_name) as bundle:
                await write_schemas(conn, bundle)
                for g in logs:
                    row = dict(g.items())
                    log = replace(chain_of(row), size=int(g["size"]))
                    leaves, checkpoints = await copy_log(
                        conn, bundle, log=log, seal=seal_of(row), progress=progress
                    )
                    leaves_total += leaves
                    checkpoints_total += checkpoints
                # Producer authentication (ledger.verify.producerbundle): registry, seals,
                # seal references.
                await export_producer_auth(conn, bundle.path, [int(g["log_id"]) for g in logs])
    finally:
        await conn.close()
    return ExportSummary(logs=len(logs), leaves=leaves_total, checkpoints=checkpoints_total)
