"""What ``ledger archive`` reads of one period: its logs with their seals, the previous
period's seals that lead into them, and the producer seals their leaves reference.

Invariant: a period's logs are found by ``logs.period`` and every other table is read by
``log_id`` (which stays valid when those tables are partitioned by period); rows are
copied verbatim.
"""

from __future__ import annotations

from typing import Final

#: The logs of one period ($1: its first day), each with its seal and successor (if any).
PERIOD_LOGS: Final = """
SELECT g.log_id, g.origin, g.topic, g.kafka_partition, g.period, g.period_end, g.first_offset,
       (SELECT coalesce(max(leaf_index) + 1, 0) FROM leaves l WHERE l.log_id = g.log_id) AS size,
       s.size AS seal_size, s.note AS seal_note, s.next_log_id, s.next_first_offset,
       n.origin AS next_origin
FROM logs g
LEFT JOIN log_seals s ON s.log_id = g.log_id
LEFT JOIN logs n ON n.log_id = s.next_log_id
WHERE g.period = $1
ORDER BY g.log_id
"""

#: The periods that have logs (to name them when an unknown period is asked for).
KNOWN_PERIODS: Final = "SELECT DISTINCT period, period_end FROM logs ORDER BY period"

#: The seals whose next log is one of $1 (the previous period's hand-overs).
PREVIOUS_SEALS: Final = """
SELECT s.log_id, p.origin, s.size, s.note, s.next_log_id, s.next_first_offset,
       n.origin AS next_origin
FROM log_seals s
JOIN logs p ON p.log_id = s.log_id
JOIN logs n ON n.log_id = s.next_log_id
WHERE s.next_log_id = ANY($1::int[])
ORDER BY s.log_id
"""

#: The producer seals the leaves of logs $1 reference (not the whole registry's).
ARCHIVE_PRODUCER_SEALS: Final = """
SELECT seal_id, key_id, producer_id, leaf_hashes, signature FROM producer_seals
WHERE seal_id IN (SELECT seal_id FROM leaves WHERE log_id = ANY($1::int[]) AND seal_id IS NOT NULL)
ORDER BY seal_id
"""
