"""SELECTs of the periods that left the database (migration 0019, ``period_archives``)."""

from __future__ import annotations

from typing import Final

#: Every detached period: its first day, its bundle's manifest digest, its events' span.
DETACHED_PERIODS: Final = """
SELECT period, state, manifest_digest, first_event_time, last_event_time
FROM period_archives
WHERE state = 'detached'
ORDER BY period
"""
