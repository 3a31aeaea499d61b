"""The PostgreSQL side of alert delivery (role ledger_appender, migration 0013).

Invariant: pending = alerts with no ``alert_deliveries`` row for the destination, oldest
first; an attempt is one inserted row, and a successful one also inserts the delivered
row in the same transaction, so delivery state is derived from append-only rows and the
alerts table is never updated.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.audit.delivery import Outcome
from ledger.audit.rules.alerts import AlertDetail, StoredEvidence
from ledger.pg.compliance import _alert
from ledger.pg.pool import PooledAdapter, PoolSettings, transient_as_unavailable
from ledger.pg.sql.delivery import ALERT_EVIDENCE, INSERT_ATTEMPT, INSERT_DELIVERED, PENDING


class PostgresDeliveryStore(PooledAdapter):
    """``DeliveryStore`` on PostgreSQL."""

    def __init__(
        self,
        *,
        dsn: str,
        pool_size: int = 2,
        command_timeout: float = 60.0,
        pool: PoolSettings | None = None,
    ) -> None:
        super().__init__(dsn=dsn, pool_size=pool_size, command_timeout=command_timeout, pool=pool)

    async def pending(self, destination: str, limit: int) -> Sequence[AlertDetail]:
        with transient_as_unavailable():
            async with (
                self.pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                rows = await conn.fetch(PENDING, destination, limit)
                found = []
                for row in rows:
                    evidence = await conn.fetch(ALERT_EVIDENCE, int(row["alert_id"]))
                    found.append(
                        AlertDetail(
                            alert=_alert(row),
                            evidence=tuple(
                                StoredEvidence(
                                    log_id=int(e["log_id"]),
                                    origin=e["origin"],
                                    leaf_index=int(e["leaf_index"]),
                                    role=e["role"],
                                )
                                for e in evidence
                            ),
                            transitions=(),
                        )
                    )
        return found

    async def record(self, alert_id: int, destination: str, outcome: Outcome) -> None:
        with transient_as_unavailable():
            async with self.pool.acquire() as conn, conn.transaction():
                attempt = await conn.fetchval(
                    INSERT_ATTEMPT, alert_id, destination, outcome.http_status,
                    outcome.error_class, outcome.delivered,
                )  # fmt: skip
                if outcome.delivered:
                    await conn.execute(INSERT_DELIVERED, alert_id, destination, attempt)
