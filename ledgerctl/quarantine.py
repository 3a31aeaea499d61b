"""Quarantine operations for operators: list what could not be appended, re-submit a fix.

Invariant: re-submission sends the quarantined bytes back to their topic unchanged,
with their original key (so they land in the same partition), and records who did
it and where the copy landed; the quarantine row itself is never changed. Records
that can never succeed as they are (conflicts, oversize) need --force.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from ledger.audit.producerauth import ENVELOPE_HEADER
from ledger.errors import ConflictError, MalformedInputError
from ledger.pg import sql
from ledgerctl.client import Api
from producers.kafka_security import KafkaSecurity, client_kwargs

#: Reasons for which re-sending the same bytes cannot help. A record refused for its
#: producer key being unknown may succeed once the key is registered; it is re-sent with
#: its original envelope (docs/producer-auth.md).
HOPELESS = frozenset(
    {
        "conflicting_event_id",
        "conflicting_event_id_original",
        "oversize",
        "unauthenticated",
        "bad_envelope",
        "bad_signature",
        "revoked_key",
        "producer_mismatch",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Resubmitted:
    quarantine_id: int
    topic: str
    partition: int
    offset: int


async def fetch_quarantine(api: Api, *, reason: str | None, limit: int) -> list[dict[str, Any]]:
    params = {"limit": str(limit)}
    if reason:
        params["reason"] = reason
    async with (
        api.session() as session,
        session.get(f"{api.url}/v1/quarantine", params=params) as resp,
    ):
        resp.raise_for_status()
        body = await resp.json()
    records: list[dict[str, Any]] = body["records"]
    return records


async def fetch_alerts(api: Api, *, limit: int) -> list[dict[str, Any]]:
    async with (
        api.session() as session,
        session.get(f"{api.url}/v1/alerts", params={"limit": str(limit)}) as resp,
    ):
        resp.raise_for_status()
        body = await resp.json()
    alerts: list[dict[str, Any]] = body["alerts"]
    return alerts


async def resubmit(
    *,
    dsn: str,
    bootstrap: str,
    quarantine_id: int,
    force: bool,
    security: KafkaSecurity | None = None,
) -> Resubmitted:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(sql.QUARANTINE_BY_ID, quarantine_id)
        if row is None:
            raise MalformedInputError(f"no quarantined record {quarantine_id}")
        if row["reason"] in HOPELESS and not force:
            raise ConflictError(
                f"record {quarantine_id} was quarantined as {row['reason']}; re-sending the "
                "same bytes cannot succeed (use --force to send it anyway)"
            )
        if row["record_value"] is None:
            raise MalformedInputError(f"record {quarantine_id} has no value to re-send")
        meta = await _send_back(row, bootstrap, security or KafkaSecurity())
        await conn.execute(
            sql.INSERT_RESUBMISSION,
            quarantine_id, getpass.getuser(), meta.topic, meta.partition, meta.offset,
        )  # fmt: skip
    finally:
        await conn.close()
    return Resubmitted(
        quarantine_id=quarantine_id, topic=meta.topic, partition=meta.partition, offset=meta.offset
    )


async def _send_back(row: asyncpg.Record, bootstrap: str, security: KafkaSecurity) -> Any:
    """Send a quarantined record's bytes, key and envelope to its topic; its metadata."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        **client_kwargs(security),
    )
    await producer.start()
    try:
        return await producer.send_and_wait(
            row["topic"],
            value=bytes(row["record_value"]),
            key=None if row["record_key"] is None else bytes(row["record_key"]),
            headers=None
            if row["envelope"] is None
            else [(ENVELOPE_HEADER, bytes(row["envelope"]))],
        )
    finally:
        await producer.stop()
