"""The producer key registry and seals in PostgreSQL (migration 0009).

Invariant: keys are only ever added and revoked, seals only added (all append-only
tables); the private halves never reach the database; a key id is derived from its
public key and a seal id from its content, so a row cannot name what it does not hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ledger.audit.producerauth import ProducerKeyId, RegisteredKey, Seal, key_id_of
from ledger.errors import ConflictError, MalformedInputError
from ledger.pg import sql
from ledger.verify.producerbundle import (
    SealRefWriter,
    write_auth_start,
    write_producer_keys,
    write_producer_seals,
)

Conn = asyncpg.Connection | PoolConnectionProxy


async def fetch_producer_keys(conn: Conn) -> list[RegisteredKey]:
    rows = await conn.fetch(sql.PRODUCER_KEYS)
    return [
        RegisteredKey(
            key_id=ProducerKeyId(r["key_id"]),
            producer_id=r["producer_id"],
            public_key=bytes(r["public_key"]),
            created_at=r["created_at"],
            revoked_at=r["revoked_at"],
            revoked_reason=r["reason"],
        )
        for r in rows
    ]


def _seal(r: asyncpg.Record) -> Seal:
    return Seal(
        seal_id=bytes(r["seal_id"]),
        key_id=ProducerKeyId(r["key_id"]),
        producer_id=r["producer_id"],
        leaf_hashes=bytes(r["leaf_hashes"]),
        signature=bytes(r["signature"]),
    )


async def fetch_producer_seals(conn: Conn, seal_ids: Sequence[bytes]) -> list[Seal]:
    return [_seal(r) for r in await conn.fetch(sql.PRODUCER_SEALS_BY_ID, list(seal_ids))]


def seal_columns(seals: Mapping[bytes, Seal]) -> tuple[list[object], ...]:
    """Seals as the five arrays ``sql.INSERT_POSITION_AND_SEALS`` unnests (the appender
    stores them in its batch's transaction; a seal id is its content's hash, so storing
    one twice is a no-op)."""
    rows = list(seals.values())
    return (
        [s.seal_id for s in rows],
        [s.key_id for s in rows],
        [s.producer_id for s in rows],
        [s.leaf_hashes for s in rows],
        [s.signature for s in rows],
    )


async def add_producer_key(
    dsn: str, *, producer_id: str, public_key: bytes, note: str | None = None
) -> ProducerKeyId:
    """Register a public key for a producer; returns its key id."""
    if len(public_key) != 32:
        raise MalformedInputError("an Ed25519 public key is 32 bytes")
    key_id = key_id_of(public_key)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql.INSERT_PRODUCER_KEY, key_id, producer_id, public_key, note)
    except asyncpg.UniqueViolationError as exc:
        raise ConflictError(f"key {key_id} is registered already") from exc
    finally:
        await conn.close()
    return key_id


async def revoke_producer_key(dsn: str, *, key_id: str, reason: str) -> bool:
    """Revoke a key for good; False if it was revoked already. Unknown key: error."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            known = await conn.fetchval(sql.PRODUCER_KEY_EXISTS, key_id)
            if known is None:
                raise MalformedInputError(f"no producer key {key_id!r}")
            status = await conn.execute(sql.REVOKE_PRODUCER_KEY, key_id, reason)
    finally:
        await conn.close()
    return status.endswith(" 1")


async def list_producer_keys(dsn: str) -> Sequence[RegisteredKey]:
    conn = await asyncpg.connect(dsn)
    try:
        return await fetch_producer_keys(conn)
    finally:
        await conn.close()


async def copy_producer_keys(source_dsn: str, target_dsn: str) -> int:
    """Copy the registry, revocations included, into another ledger (``ledger replay``)."""
    keys = await list_producer_keys(source_dsn)
    conn = await asyncpg.connect(target_dsn)
    try:
        async with conn.transaction():
            for k in keys:
                await conn.execute(
                    sql.COPY_PRODUCER_KEY, k.key_id, k.producer_id, k.public_key, k.created_at
                )
                if k.revoked_at is not None:
                    await conn.execute(
                        sql.COPY_PRODUCER_REVOCATION, k.key_id, k.revoked_at, k.revoked_reason
                    )
    finally:
        await conn.close()
    return len(keys)


async def export_producer_auth(
    conn: Conn, bundle: Path, log_ids: Sequence[int], *, referenced_only: bool = False
) -> None:
    """Write the registry, the seals and every log's seal references into a bundle
    (``ledger export``), inside the export's snapshot transaction.  With
    ``referenced_only`` (``ledger archive``), only the seals these logs' leaves name."""
    from ledger.pg.sql.archive import ARCHIVE_PRODUCER_SEALS

    write_producer_keys(bundle, await fetch_producer_keys(conn))
    seals = (
        await conn.fetch(ARCHIVE_PRODUCER_SEALS, list(log_ids))
        if referenced_only
        else await conn.fetch(sql.EXPORT_PRODUCER_SEALS)
    )
    write_producer_seals(bundle, [_seal(r) for r in seals])
    wanted = set(log_ids)
    starts = {
        int(r["log_id"]): int(r["first_leaf"])
        for r in await conn.fetch(sql.PRODUCER_AUTH_START)
        if int(r["log_id"]) in wanted
    }
    write_auth_start(bundle, starts)
    for log_id in log_ids:
        with SealRefWriter(bundle, log_id) as out:
            async for r in conn.cursor(sql.EXPORT_SEAL_REFS, log_id, prefetch=20_000):
                out.add(int(r["leaf_index"]), bytes(r["seal_id"]), int(r["seal_index"]))
