"""What the compliance report reads (role ``ledger_reader``: SELECT only).

Invariant: every event and registry change it reads lies below the checkpoints the report
is computed against (log ids and sizes, ``unnest``), and every alert-store row it reads
was recorded by the report's cut-off (``$at``): the same request as of the same
checkpoints and cut-off reads the same rows however much the ledger and the alert store
have grown since.
"""

from __future__ import annotations

from typing import Final

#: The facility's PHI accesses in [start, end), driven by ``events_facility_time``.
COMPLIANCE_ACCESSES: Final = """
SELECT e.event_id, e.log_id, g.origin, e.leaf_index
FROM events e JOIN logs g USING (log_id)
JOIN unnest($5::int[], $6::bigint[]) AS b (log_id, size)
  ON b.log_id = e.log_id AND e.leaf_index < b.size
WHERE e.facility_id = $1
  AND e.kind = 'phi_access'
  AND e.event_time >= $2 AND e.event_time < $3
ORDER BY e.log_id, e.leaf_index
LIMIT $4
"""

#: Reads of the ledger (Audit Log Used) recorded in [start, end), every facility.
COMPLIANCE_LEDGER_READS: Final = """
SELECT count(*)
FROM events e
JOIN unnest($3::int[], $4::bigint[]) AS b (log_id, size)
  ON b.log_id = e.log_id AND e.leaf_index < b.size
WHERE e.kind = 'audit_log_used'
  AND e.event_time >= $1 AND e.event_time < $2
"""

#: A stretch of the registry log's leaves, below its checkpoint's size.
COMPLIANCE_REGISTRY_LEAVES: Final = """
SELECT leaf_index, leaf FROM leaves
WHERE log_id = $1 AND leaf_index >= $2 AND leaf_index < $3
ORDER BY leaf_index
LIMIT $4
"""

#: The facility's alerts of the given rules raised by $at whose trigger lies below the
#: checkpoints, each with its state at $at (open when no transition was recorded by then:
#: the evaluator writes an alert's first transition in the alert's own transaction).
COMPLIANCE_ALERTS: Final = """
SELECT a.alert_id, a.rule_id, a.rule_version, a.log_id, a.leaf_index,
       coalesce(t.state, 'open') AS state
FROM alerts a
JOIN unnest($4::int[], $5::bigint[]) AS b (log_id, size)
  ON b.log_id = a.log_id AND a.leaf_index < b.size
LEFT JOIN LATERAL (
    SELECT x.state FROM alert_transitions x
    WHERE x.alert_id = a.alert_id AND x.transitioned_at <= $3
    ORDER BY x.seq DESC LIMIT 1
) t ON true
WHERE a.facility_id = $1 AND a.rule_id = ANY($2::text[]) AND a.raised_at <= $3
ORDER BY a.alert_id
"""

#: The facility's alerts closed in [start, end) and by $at.
COMPLIANCE_CLOSURES: Final = """
SELECT a.alert_id, a.rule_id, t.disposition, t.transitioned_at, t.transitioned_by
FROM alert_transitions t JOIN alerts a USING (alert_id)
WHERE a.facility_id = $1 AND t.state = 'closed'
  AND t.transitioned_at >= $2 AND t.transitioned_at < $3 AND t.transitioned_at <= $4
ORDER BY t.transitioned_at, a.alert_id
"""

#: How far the rules evaluator had got in each log by $at.
COMPLIANCE_EVALUATED: Final = """
SELECT log_id, max(next_leaf) AS next_leaf FROM rule_cursors
WHERE log_id = ANY($1::int[]) AND committed_at <= $2
GROUP BY log_id
"""

#: The database's clock (the snapshot's transaction start): a cut-off after it is refused.
COMPLIANCE_NOW: Final = "SELECT now()"
