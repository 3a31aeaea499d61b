"""The PostgreSQL reader: the API's read-only queries (role ledger_reader).

Invariant: this adapter only ever runs SELECTs; it connects as a role that may
do nothing else, so a bug here cannot change the ledger.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import asyncpg

from ledger.errors import UnavailableError
from ledger.pg import sql
from ledger.query import AccessEntry, Cursor, LedgerPosition, LogInfo, StoredEvent


def _entry(r: asyncpg.Record) -> AccessEntry:
    return AccessEntry(
        event_id=r["event_id"],
        kind=r["kind"],
        event_time=r["event_time"],
        facility_id=r["facility_id"],
        patient_id=r["patient_id"],
        patient_issuer=r["patient_issuer"],
        patient_state=r["patient_state"],
        user_id=r["user_id"],
        user_name=r["user_name"],
        user_role=r["user_role"],
        user_org=r["user_org"],
        dicom_event_id=r["dicom_event_id"],
        action=r["action"],
        outcome=r["outcome"],
        study_uid=r["study_uid"],
        accession=r["accession"],
        network_address=r["network_address"],
        purpose_of_use=r["purpose_of_use"],
        position=LedgerPosition(log_id=r["log_id"], origin=r["origin"], leaf_index=r["leaf_index"]),
    )


class PostgresReader:
    def __init__(self, *, dsn: str, pool_size: int = 8) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=self._pool_size, command_timeout=30
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise UnavailableError(f"cannot connect to PostgreSQL: {type(exc).__name__}") from exc

    async def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def _p(self) -> asyncpg.Pool:
        if self._pool is None:
            raise UnavailableError("reader is not started")
        return self._pool

    async def patient_accesses(
        self, *, patient_id: str, issuer: str | None, limit: int, after: Cursor | None
    ) -> Sequence[AccessEntry]:
        rows = await self._p.fetch(
            sql.PATIENT_ACCESSES,
            patient_id,
            issuer,
            None if after is None else after.event_time,
            None if after is None else after.event_id,
            limit,
        )
        return [_entry(r) for r in rows]

    async def event(self, event_id: uuid.UUID) -> StoredEvent | None:
        r = await self._p.fetchrow(sql.EVENT_BY_ID, event_id)
        if r is None:
            return None
        return StoredEvent(
            entry=_entry(r),
            producer_id=r["producer_id"],
            producer_seq=r["producer_seq"],
            leaf=bytes(r["leaf"]),
            leaf_hash=bytes(r["leaf_hash"]),
        )

    async def logs(self) -> Sequence[LogInfo]:
        rows = await self._p.fetch(sql.LOGS)
        return [
            LogInfo(
                log_id=r["log_id"],
                origin=r["origin"],
                topic=r["topic"],
                partition=r["kafka_partition"],
                size=r["size"],
            )
            for r in rows
        ]

    async def writer_schemas(self) -> Sequence[tuple[bytes, str, str]]:
        rows = await self._p.fetch(sql.WRITER_SCHEMAS)
        return [(bytes(r["fingerprint"]), r["full_name"], r["schema_json"]) for r in rows]
