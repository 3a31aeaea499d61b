"""What the detach procedure reads and writes (as the owner role): the period's logs and
seals, its event span, its partitions, and the period_archives rows.

Invariant: a partition is detached only in the transaction that first stores the
period's 'archived' row (the event trigger ``ledger_detach_guard`` checks for it).
"""

from __future__ import annotations

from typing import Final

#: The logs of a month (every log whose period starts in it), each with its size and seal.
PERIOD_LOGS: Final = """
SELECT g.log_id, g.origin, g.period,
       (SELECT coalesce(max(l.leaf_index) + 1, 0) FROM leaves l WHERE l.log_id = g.log_id) AS size,
       s.size AS sealed_size, s.note AS seal_note
FROM logs g LEFT JOIN log_seals s USING (log_id)
WHERE g.period >= $1 AND g.period < $2
ORDER BY g.log_id
"""

#: How many events the month's logs hold, and the span of their event times.
PERIOD_EVENT_SPAN: Final = """
SELECT count(*) AS events, min(e.event_time) AS first, max(e.event_time) AS last
FROM events e JOIN logs g USING (log_id)
WHERE g.period >= $1 AND g.period < $2
"""

PERIOD_STATES: Final = "SELECT state FROM period_archives WHERE period = $1"

#: The attached partitions of the ledger's partitioned tables that hold one month.
MONTH_PARTITIONS: Final = """
SELECT p.relname AS parent, c.relname AS child
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
JOIN pg_namespace n ON n.oid = p.relnamespace AND n.nspname = 'public'
WHERE p.relname = ANY($1::text[])
  AND pg_get_expr(c.relpartbound, c.oid) LIKE 'FOR VALUES FROM (''' || $2::date::text || ''')%'
"""

#: Foreign keys a detached table still holds towards the ledger's tables (dropped after
#: the detach, so the referenced month can be detached too). A key referencing a
#: partitioned table has one row per referenced partition, all of one name.
FOREIGN_KEYS_OF: Final = """
SELECT DISTINCT conname FROM pg_constraint
WHERE conrelid = to_regclass('public.' || $1) AND contype = 'f' AND conparentid = 0
"""

INSERT_PERIOD_STATE: Final = """
INSERT INTO period_archives (period, state, manifest_digest, logs, events, first_event_time,
                             last_event_time, record_event_id, actor, copies)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"""

EVENT_RECORDED: Final = "SELECT count(*) FROM events WHERE event_id = $1"
