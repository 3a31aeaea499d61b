"""The registry as read from its ledger logs (role ``ledger_reader``): ``RegistryBook``.

Invariant: a read holds exactly the RegistryChange leaves of the registry topic's logs
below the sizes it names (each log's latest signed checkpoint, or its current size),
decoded with the stored writer schemas as the evaluator and the verifier decode them. A
registry is small (thousands to a few hundred thousand changes), so it is read whole;
decoded changes are kept per log and only leaves past what was decoded are read again,
and the timeline of a set of sizes is built once and reused until a size changes.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from ledger.audit.records import SchemaSet, StoredSchema
from ledger.audit.registry import (
    REGISTRY_CHANGE,
    RegistryChangeRecord,
    RegistryTimeline,
    parse_change,
)
from ledger.audit.registrybook import RegistryLog, RegistryRead
from ledger.audit.rules import AppendedEvent, Position
from ledger.errors import LedgerError, MalformedInputError
from ledger.log.leaf import decode_leaf
from ledger.pg import sql
from ledger.pg.pool import PooledAdapter, PoolSettings, transient_as_unavailable

#: Default name of the registry topic (``LEDGER_REGISTRY_TOPIC``).
REGISTRY_TOPIC: Final = "compliance-registry"
#: Leaves read per round trip.
_BATCH: Final = 5000
#: Timelines kept (one per set of sizes: signed and current, and a step behind).
_KEPT: Final = 4


@dataclass(slots=True)
class _Decoded:
    """One log's leaves decoded so far: ``[0, size)``, changes in leaf order."""

    size: int = 0
    changes: list[RegistryChangeRecord] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)
    bad: list[int] = field(default_factory=list)

    def below(self, size: int) -> tuple[list[RegistryChangeRecord], int]:
        """The changes below ``size`` and how many leaves below it were unreadable."""
        return (
            self.changes[: bisect.bisect_left(self.indexes, size)],
            bisect.bisect_left(self.bad, size),
        )


class PostgresRegistry(PooledAdapter):
    """``RegistryBook`` on PostgreSQL."""

    def __init__(
        self,
        *,
        dsn: str,
        registry_topic: str = REGISTRY_TOPIC,
        pool_size: int = 2,
        pool: PoolSettings | None = None,
    ) -> None:
        super().__init__(dsn=dsn, pool_size=pool_size, command_timeout=120.0, pool=pool)
        self._topic = registry_topic
        self._schemas: SchemaSet | None = None
        self._decoded: dict[int, _Decoded] = {}
        self._reads: dict[tuple[tuple[int, int], ...], RegistryRead] = {}
        self._lock = asyncio.Lock()

    async def read(self, *, signed: bool = True) -> RegistryRead:
        with transient_as_unavailable():
            rows = await self.pool.fetch(sql.REGISTRY_LOG_HEADS, self._topic)
        logs = tuple(
            RegistryLog(
                log_id=int(r["log_id"]),
                origin=r["origin"],
                size=int(r["signed_size"] or 0) if signed else int(r["size"]),
                checkpoint=r["note"] if signed else None,
            )
            for r in rows
        )
        key = tuple((g.log_id, g.size) for g in logs)
        async with self._lock:
            found = self._reads.get(key)
            if found is None:
                found = await self._build(logs)
                if len(self._reads) >= _KEPT:
                    self._reads.pop(next(iter(self._reads)))
                self._reads[key] = found
        return found

    async def _build(self, logs: Sequence[RegistryLog]) -> RegistryRead:
        timeline = RegistryTimeline()
        undecodable = 0
        for log in logs:
            decoded = await self._decode_to(log.log_id, log.size)
            changes, bad = decoded.below(log.size)
            timeline.extend(changes)
            undecodable += bad
        return RegistryRead.of(timeline, logs, undecodable)

    async def _decode_to(self, log_id: int, size: int) -> _Decoded:
        decoded = self._decoded.setdefault(log_id, _Decoded())
        while decoded.size < size:
            end = min(size, decoded.size + _BATCH)
            with transient_as_unavailable():
                rows = await self.pool.fetch(sql.REGISTRY_LOG_LEAVES, log_id, decoded.size, end)
            if len(rows) != end - decoded.size:
                raise MalformedInputError(f"registry log {log_id} has a gap below leaf {end}")
            for r in rows:
                index = int(r["leaf_index"])
                change = await self._change(log_id, index, bytes(r["leaf"]))
                if change is None:
                    decoded.bad.append(index)
                else:
                    decoded.changes.append(change)
                    decoded.indexes.append(index)
            decoded.size = end
        return decoded

    async def _change(self, log_id: int, index: int, leaf: bytes) -> RegistryChangeRecord | None:
        try:
            value = decode_leaf(leaf).value
            try:
                name, record = (await self._schema_set(reload=False)).decode(value)
            except MalformedInputError:  # a schema registered after the set was loaded
                name, record = (await self._schema_set(reload=True)).decode(value)
            if name != REGISTRY_CHANGE:
                return None
            event = AppendedEvent(
                position=Position(log_id=log_id, leaf_index=index), schema=name, record=record
            )
            return parse_change(event)
        except LedgerError:
            return None  # `ledger verify` reports it; no answer can use it

    async def _schema_set(self, *, reload: bool) -> SchemaSet:
        if self._schemas is None or reload:
            with transient_as_unavailable():
                rows = await self.pool.fetch(sql.REGISTRY_SCHEMAS)
            self._schemas = SchemaSet(
                StoredSchema(
                    fingerprint=bytes(r["fingerprint"]),
                    full_name=r["full_name"],
                    schema_json=r["schema_json"],
                )
                for r in rows
            )
        return self._schemas
