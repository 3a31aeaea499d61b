"""What ``ledger registry import`` reads: the registry's stored changes (migration 0014).

Invariant: SELECT only; every registry change of every registry log, in the order the
registry applies them (its own ``event_time``, ties by ledger position), through the
partial index ``events_registry_changes``.
"""

from __future__ import annotations

from typing import Final

REGISTRY_LEAVES: Final = """
SELECT e.log_id, e.leaf_index, l.leaf
FROM events e JOIN leaves l ON l.log_id = e.log_id AND l.leaf_index = e.leaf_index
WHERE e.kind = 'registry_change'
ORDER BY e.event_time, e.log_id, e.leaf_index
"""
