"""Archive one sealed period of the ledger into a self-verifying bundle (``ledger archive``).

Invariant: the archive reads one REPEATABLE READ snapshot as the SELECT-only reader role;
it refuses (``MalformedInputError``, before ``before_writing`` and before a byte is
written) a period that has no logs, whose logs are of another length than the period
asked for, or any of whose logs has no seal yet. Then every log of the period is copied
verbatim like ``ledger export`` copies it (leaves, tiles, checkpoints with their
cosignatures, index rows, seal), streamed, with the previous period's seals that lead into
these logs, the producer seals its leaves reference and the public keys, and the manifest
lists every file's SHA-256 (``ledger.verify.bundle.archive``). docs/archive.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg

from ledger.errors import MalformedInputError
from ledger.log.periods import Period
from ledger.pg.export import ExportHead, Progress, chain_of, copy_log, seal_of, write_schemas
from ledger.pg.producerkeys import export_producer_auth
from ledger.pg.sql import archive as archive_sql
from ledger.verify.bundle.archive import ArchiveWriter, PreviousSeal
from ledger.verify.bundle.files import check_target
from ledger.verify.bundle.layout import StoredSeal

__all__ = ["ArchiveSummary", "archive_period"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchiveSummary:
    period: str
    logs: int
    leaves: int
    checkpoints: int
    #: SHA-256 hex of the archive's manifest.json: what stands for the whole archive.
    digest: str


def _stored_seal(row: asyncpg.Record) -> StoredSeal:
    return StoredSeal(
        size=int(row["size"]),
        note=row["note"],
        next_log_id=int(row["next_log_id"]),
        next_origin=row["next_origin"],
        next_first_offset=int(row["next_first_offset"]),
    )


async def _period_logs(conn: asyncpg.Connection, period: Period) -> list[asyncpg.Record]:
    """The period's logs, or the refusal that names why it cannot be archived."""
    logs = await conn.fetch(archive_sql.PERIOD_LOGS, period.start)
    if not logs:
        known = [r["period"].isoformat() for r in await conn.fetch(archive_sql.KNOWN_PERIODS)]
        raise MalformedInputError(
            f"no log belongs to period {period.label}; periods with logs: "
            + (", ".join(known) if known else "none")
        )
    other = sorted({g["origin"] for g in logs if g["period_end"] != period.end})
    if other:
        raise MalformedInputError(
            f"the logs of {period.start} are not {period.length.value} logs "
            f"({', '.join(other)}); name the period as the ledger cut it"
        )
    unsealed = [g["origin"] for g in logs if g["seal_note"] is None]
    if unsealed:
        raise MalformedInputError(
            f"period {period.label} is not sealed yet: {', '.join(unsealed)} "
            f"{'has' if len(unsealed) == 1 else 'have'} no seal"
        )
    return logs


async def archive_period(
    *,
    dsn: str,
    path: Path,
    ledger_name: str,
    period: Period,
    verifier_keys: Sequence[str],
    witness_keys: Sequence[str] = (),
    progress: Progress | None = None,
    before_writing: Callable[[Sequence[ExportHead]], Awaitable[None]] | None = None,
) -> ArchiveSummary:
    """Write ``period`` into ``path`` (a new or empty directory) as an archive."""
    check_target(path)
    conn = await asyncpg.connect(dsn)
    leaves_total = checkpoints_total = 0
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            logs = await _period_logs(conn, period)
            if before_writing is not None:
                await before_writing(
                    [
                        ExportHead(log_id=int(g["log_id"]), origin=g["origin"], size=int(g["size"]))
                        for g in logs
                    ]
                )
            log_ids = [int(g["log_id"]) for g in logs]
            previous = await conn.fetch(archive_sql.PREVIOUS_SEALS, log_ids)
            label = {"label": period.label, "start": str(period.start), "end": str(period.end)}
            with ArchiveWriter(path, ledger_name=ledger_name, period=label) as bundle:
                await write_schemas(conn, bundle)
                for g in logs:
                    row = dict(g.items())
                    log = replace(chain_of(row), size=int(g["size"]))
                    leaves, checkpoints = await copy_log(
                        conn, bundle, log=log, seal=seal_of(row), progress=progress
                    )
                    leaves_total += leaves
                    checkpoints_total += checkpoints
                bundle.write_previous_seals(
                    PreviousSeal(log_id=int(r["log_id"]), origin=r["origin"], seal=_stored_seal(r))
                    for r in previous
                )
                bundle.write_keys(verifier_keys=verifier_keys, witness_keys=witness_keys)
                await export_producer_auth(conn, bundle.path, log_ids, referenced_only=True)
    finally:
        await conn.close()
    return ArchiveSummary(
        period=period.label,
        logs=len(logs),
        leaves=leaves_total,
        checkpoints=checkpoints_total,
        digest=bundle.digest,
    )
