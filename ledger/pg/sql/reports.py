"""What the HIPAA reports' adapter reads (role ``ledger_reader``: SELECT only).

Invariant: each statement selects through an index and stops at the row cap, so a report
never scans more than ``max_rows`` + 1 index rows; and each reads only events below the
checkpoints the report is computed against (the last two parameters: log ids and sizes,
``b``), so a report re-run as of the same checkpoints reads the same events however much the
ledger has grown since.
"""

from __future__ import annotations

from typing import Final

# Each selects (event id, log id, origin, leaf index) through an index and stops at the
# row cap ($LIMIT = cap + 1, so "more than the cap" is detectable without counting all).

#: Driven by ``events_user_time`` (user_id, event_time). A registry change (its author
#: as the user, no facility) is no access: never in an investigation.
INVESTIGATION_BY_USERS: Final = """
SELECT e.event_id, e.log_id, g.origin, e.leaf_index
FROM events e JOIN logs g USING (log_id)
JOIN unnest($7::int[], $8::bigint[]) AS b (log_id, size)
  ON b.log_id = e.log_id AND e.leaf_index < b.size
WHERE e.user_id = ANY($1::text[])
  AND e.kind <> 'registry_change'
  AND e.event_time >= $2 AND e.event_time < $3
  AND ($4::text IS NULL OR e.facility_id = $4)
  AND (cardinality($5::text[]) = 0 OR e.network_address = ANY($5::text[]))
LIMIT $6
"""

#: Driven by ``events_address_time`` (network_address, event_time), migration 0006.
INVESTIGATION_BY_ADDRESSES: Final = """
SELECT e.event_id, e.log_id, g.origin, e.leaf_index
FROM events e JOIN logs g USING (log_id)
JOIN unnest($6::int[], $7::bigint[]) AS b (log_id, size)
  ON b.log_id = e.log_id AND e.leaf_index < b.size
WHERE e.network_address = ANY($1::text[])
  AND e.event_time >= $2 AND e.event_time < $3
  AND ($4::text IS NULL OR e.facility_id = $4)
LIMIT $5
"""

#: Driven by ``events_facility_time`` (facility_id, event_time), migration 0006.
INVESTIGATION_BY_FACILITY: Final = """
SELECT e.event_id, e.log_id, g.origin, e.leaf_index
FROM events e JOIN logs g USING (log_id)
JOIN unnest($5::int[], $6::bigint[]) AS b (log_id, size)
  ON b.log_id = e.log_id AND e.leaf_index < b.size
WHERE e.facility_id = $1
  AND e.kind <> 'registry_change'
  AND e.event_time >= $2 AND e.event_time < $3
LIMIT $4
"""

#: One patient's PHI accesses in the accounting period: those that name the patient
#: (``events_patient_time``) and those whose answer returned them (PhiAccessEvent v2,
#: ``event_patients_patient`` then ``events`` by primary key). Every access is fetched:
#: whether an event names a recipient is only in its leaf.
DISCLOSURE_CANDIDATES: Final = """
SELECT e.event_id, e.log_id, g.origin, e.leaf_index
FROM events e JOIN logs g USING (log_id)
JOIN unnest($6::int[], $7::bigint[]) AS b (log_id, size)
  ON b.log_id = e.log_id AND e.leaf_index < b.size
WHERE e.patient_id = $1
  AND ($2::text IS NULL OR e.patient_issuer = $2)
  AND e.kind = 'phi_access'
  AND e.event_time >= $3 AND e.event_time <= $4
UNION
SELECT e.event_id, e.log_id, g.origin, e.leaf_index
FROM event_patients x
JOIN events e ON e.event_id = x.event_id
JOIN logs g ON g.log_id = e.log_id
JOIN unnest($6::int[], $7::bigint[]) AS b (log_id, size)
  ON b.log_id = e.log_id AND e.leaf_index < b.size
WHERE x.patient_id = $1
  AND ($2::text IS NULL OR x.patient_issuer = $2)
  AND e.kind = 'phi_access'
  AND e.event_time >= $3 AND e.event_time <= $4
LIMIT $5
"""

#: Relay records made in a time range. Driven by the partial index ``events_relay_time``
#: (event_time) WHERE kind = 'critical_result_relay', migration 0006.
RELAYS_RECORDED: Final = """
SELECT e.event_id, e.log_id, g.origin, e.leaf_index
FROM events e JOIN logs g USING (log_id)
JOIN unnest($5::int[], $6::bigint[]) AS b (log_id, size)
  ON b.log_id = e.log_id AND e.leaf_index < b.size
WHERE e.kind = 'critical_result_relay'
  AND e.event_time >= $1 AND e.event_time < $2
  AND ($3::text IS NULL OR e.facility_id = $3)
LIMIT $4
"""

#: The stored leaves at the given (log id, leaf index) pairs, by primary key.
REPORT_LEAVES_AT: Final = """
SELECT t.log_id, t.leaf_index, l.leaf
FROM unnest($1::int[], $2::bigint[]) AS t (log_id, leaf_index)
JOIN leaves l ON l.log_id = t.log_id AND l.leaf_index = t.leaf_index
"""

#: The latest signed checkpoint of every log (the default "as of"): one backward step of
#: the primary key (log_id, size) per log, however many checkpoints each log has.
LATEST_CHECKPOINTS: Final = """
SELECT g.log_id, g.origin, c.size, c.note
FROM logs g
CROSS JOIN LATERAL (
    SELECT k.size, k.note FROM checkpoints k
    WHERE k.log_id = g.log_id
    ORDER BY k.size DESC
    LIMIT 1
) c
ORDER BY g.log_id
"""

#: The named checkpoints (origin, size), each with its log and note, or NULLs where the
#: ledger has no such log (``log_id``) or no signed checkpoint of that size (``note``).
NAMED_CHECKPOINTS: Final = """
SELECT t.origin, t.size, g.log_id, c.note
FROM unnest($1::text[], $2::bigint[]) AS t (origin, size)
LEFT JOIN logs g ON g.origin = t.origin
LEFT JOIN checkpoints c ON c.log_id = g.log_id AND c.size = t.size
ORDER BY t.origin
"""

#: The writer schemas a report decodes leaves with (no canonical form needed).
REPORT_WRITER_SCHEMAS: Final = "SELECT fingerprint, full_name, schema_json FROM writer_schemas"
