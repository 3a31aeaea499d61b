"""What the rules evaluator and alert triage run (role ``ledger_appender``: the evaluator
reads leaves and inserts alerts; triage inserts transitions).

Invariant: inserts only; an alert is inserted at most once per (rule, version, log,
leaf) and a cursor row at most once per (log, next leaf). One evaluator transaction per
log at a time (the advisory lock); a transition's (alert, seq) key refuses a concurrent
second transition from the same state.
"""

from __future__ import annotations

from typing import Final

RULES_LOCK_LOG: Final = "SELECT pg_advisory_xact_lock(8724, $1)"

RULES_LOG_IDS: Final = "SELECT log_id FROM logs ORDER BY log_id"

#: The registry's logs: those whose topic is the registry topic (spec15 section 1).
RULES_REGISTRY_LOG_IDS: Final = "SELECT log_id FROM logs WHERE topic = $1 ORDER BY log_id"

RULES_CURSOR: Final = "SELECT coalesce(max(next_leaf), 0) FROM rule_cursors WHERE log_id = $1"

RULES_LEAVES: Final = """
SELECT leaf_index, leaf FROM leaves
WHERE log_id = $1 AND leaf_index >= $2
ORDER BY leaf_index
LIMIT $3
"""

RULES_WRITER_SCHEMAS: Final = "SELECT fingerprint, full_name, schema_json FROM writer_schemas"

INSERT_RULE_ALERT: Final = """
INSERT INTO alerts (rule_id, rule_version, severity, facility_id, user_id, patient_id,
                    patient_issuer, summary, log_id, leaf_index, thresholds)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb)
ON CONFLICT ON CONSTRAINT alerts_rule_trigger DO NOTHING
RETURNING alert_id
"""

INSERT_ALERT_EVIDENCE: Final = """
INSERT INTO alert_evidence (alert_id, log_id, leaf_index, role) VALUES ($1, $2, $3, $4)
"""

#: Evidence for an alert already stored (a registry change known later): a row already
#: there is kept as it is.
INSERT_LATE_EVIDENCE: Final = """
INSERT INTO alert_evidence (alert_id, log_id, leaf_index, role) VALUES ($1, $2, $3, $4)
ON CONFLICT (alert_id, log_id, leaf_index, role) DO NOTHING
"""

#: Stored alerts of some rules about some users or facilities whose triggering access
#: (its events row) happened in [since, until): what a registry change read late may
#: have prevented.
RULES_LATER_CANDIDATES: Final = """
SELECT a.alert_id, a.rule_id, a.user_id, a.facility_id, e.event_time, e.patient_state
FROM alerts a
JOIN events e ON e.log_id = a.log_id AND e.leaf_index = a.leaf_index
WHERE a.rule_id = ANY($1::text[])
  AND (a.user_id = ANY($2::text[]) OR a.facility_id = ANY($3::text[]))
  AND e.event_time >= $4 AND e.event_time < $5
ORDER BY a.alert_id
"""

INSERT_ALERT_TRANSITION: Final = """
INSERT INTO alert_transitions (alert_id, seq, state, disposition, note, transitioned_by)
VALUES ($1, $2, $3, $4, $5, $6)
"""

INSERT_RULE_CURSOR: Final = """
INSERT INTO rule_cursors (log_id, next_leaf, alerts_raised) VALUES ($1, $2, $3)
ON CONFLICT (log_id, next_leaf) DO NOTHING
"""

_ALERT_SELECT: Final = """
SELECT a.alert_id, a.rule_id, a.rule_version, a.severity, a.facility_id, a.user_id,
       a.patient_id, a.patient_issuer, a.summary, a.log_id, l.origin, a.leaf_index,
       a.thresholds::text AS thresholds, a.raised_at, t.seq, t.state, t.disposition
FROM alerts a
JOIN logs l ON l.log_id = a.log_id
CROSS JOIN LATERAL (
    SELECT seq, state, disposition FROM alert_transitions x
    WHERE x.alert_id = a.alert_id ORDER BY seq DESC LIMIT 1
) t
"""

ALERTS_LIST: Final = (
    _ALERT_SELECT
    + """
WHERE ($1::text IS NULL OR t.state = $1)
  AND ($2::text IS NULL OR a.rule_id = $2)
  AND ($3::text IS NULL OR a.user_id = $3)
ORDER BY a.alert_id DESC
LIMIT $4
"""
)

#: A page of alerts for the API: every filter optional, newest first, keyset by id.
ALERTS_QUERY: Final = (
    _ALERT_SELECT
    + """
WHERE ($1::text IS NULL OR t.state = $1)
  AND ($2::text IS NULL OR a.rule_id = $2)
  AND ($3::text IS NULL OR a.facility_id = $3)
  AND ($4::text IS NULL OR a.user_id = $4)
  AND ($5::timestamptz IS NULL OR a.raised_at >= $5)
  AND ($6::timestamptz IS NULL OR a.raised_at < $6)
  AND ($7::bigint IS NULL OR a.alert_id < $7)
ORDER BY a.alert_id DESC
LIMIT $8
"""
)

ALERT_ONE: Final = _ALERT_SELECT + "WHERE a.alert_id = $1"

ALERT_EVIDENCE: Final = """
SELECT e.log_id, l.origin, e.leaf_index, e.role
FROM alert_evidence e JOIN logs l ON l.log_id = e.log_id
WHERE e.alert_id = $1
ORDER BY e.log_id, e.leaf_index, e.role
"""

ALERT_TRANSITIONS: Final = """
SELECT seq, state, disposition, note, transitioned_by, transitioned_at
FROM alert_transitions WHERE alert_id = $1 ORDER BY seq
"""

#: Every alert with its triggering event's id and producer (``ledger rules
#: check-answers``): no user or patient is read.
ALERT_TRIGGERS: Final = """
SELECT a.alert_id, a.rule_id, a.rule_version, e.event_id, e.producer_id
FROM alerts a
LEFT JOIN events e ON e.log_id = a.log_id AND e.leaf_index = a.leaf_index
ORDER BY a.alert_id
"""

EVENTS_PRESENT: Final = "SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])"

EVENTS_UNEVALUATED: Final = """
SELECT count(*) FROM events e
WHERE e.event_id = ANY($1::uuid[])
  AND e.leaf_index >= coalesce(
      (SELECT max(c.next_leaf) FROM rule_cursors c WHERE c.log_id = e.log_id), 0)
"""
