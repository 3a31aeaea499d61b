"""The compliance registry's stored changes, read from PostgreSQL (migration 0014).

Invariant: read-only (the reader role suffices); returns every ``registry_change`` leaf in
the order the registry applies them (event time, then ledger position), as stored: the
caller decodes them (``ledger registry import`` with the producer codec; the rules and
``ledger registry show`` with ``ledger.audit.registry``).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from ledger.pg import sql
from ledger.pg.pool import transient_as_unavailable


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRegistryLeaf:
    """One registry change as appended: its ledger position and its leaf bytes."""

    log_id: int
    leaf_index: int
    leaf: bytes


async def stored_registry_leaves(dsn: str) -> list[StoredRegistryLeaf]:
    """Every stored registry change, in the registry's order; ``UnavailableError`` when
    PostgreSQL cannot be reached."""
    with transient_as_unavailable():
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(sql.REGISTRY_LEAVES)
        finally:
            await conn.close()
    return [
        StoredRegistryLeaf(log_id=r["log_id"], leaf_index=r["leaf_index"], leaf=bytes(r["leaf"]))
        for r in rows
    ]
