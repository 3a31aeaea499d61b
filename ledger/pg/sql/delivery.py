"""SQL of alert delivery (migration 0013): pending alerts per destination, oldest first,
and the append-only attempt and delivered rows."""

from __future__ import annotations

from typing import Final

from ledger.pg.sql.compliance import _ALERT_SELECT as ALERT_SELECT
from ledger.pg.sql.compliance import ALERT_EVIDENCE

__all__ = ["ALERT_EVIDENCE", "INSERT_ATTEMPT", "INSERT_DELIVERED", "PENDING"]

PENDING: Final = (
    ALERT_SELECT
    + """
WHERE NOT EXISTS (
    SELECT 1 FROM alert_deliveries d WHERE d.destination = $1 AND d.alert_id = a.alert_id
)
ORDER BY a.alert_id
LIMIT $2
"""
)

INSERT_ATTEMPT: Final = """
INSERT INTO alert_delivery_attempts (alert_id, destination, http_status, error_class, delivered)
VALUES ($1, $2, $3, $4, $5)
RETURNING attempt_id
"""

INSERT_DELIVERED: Final = """
INSERT INTO alert_deliveries (alert_id, destination, attempt_id) VALUES ($1, $2, $3)
ON CONFLICT (destination, alert_id) DO NOTHING
"""
