"""What the SELECT-only reader runs: histories, events, leaves, logs, the event index.

Invariant: every history is limited to each log's signed size at its first page, so
pages stay stable while appends continue and every entry is covered by a checkpoint.
"""

from __future__ import annotations

from typing import Final

from ledger.verify.bundle.layout import INDEX_COLUMNS

_ACCESS_COLUMNS: Final = """
e.event_id, e.kind, e.event_time, e.facility_id, e.patient_id, e.patient_issuer,
e.patient_state, e.user_id, e.user_name, e.user_role, e.user_org, e.dicom_event_id,
e.action, e.outcome, e.study_uid, e.accession, e.network_address, e.purpose_of_use,
e.log_id, g.origin, e.leaf_index
"""

# Access histories by patient, user, study or accession: newest first, keyset-paged on
# (event_time, event_id), and limited to each log's signed size at the first page
# ($3: sizes indexed by log_id), so pages stay stable while appends continue and every
# entry is covered by a signed checkpoint.
_FILTERS: Final = """
  AND e.leaf_index < ($3::bigint[])[e.log_id]
  AND ($4::timestamptz IS NULL OR e.event_time >= $4)
  AND ($5::timestamptz IS NULL OR e.event_time < $5)
  AND ($6::text IS NULL OR e.action = $6)
  AND ($7::text IS NULL OR e.facility_id = $7)
  AND ($8::text IS NULL OR e.outcome = $8)
  AND ($9::timestamptz IS NULL OR (e.event_time, e.event_id) < ($9, $10::uuid))
  AND ($12::text IS NULL OR e.user_id = $12)
  AND ($13::text IS NULL OR e.study_uid = $13 OR EXISTS (
      SELECT 1 FROM event_patients s
      WHERE s.event_id = e.event_id AND s.study_uids @> ARRAY[$13::text]))
  AND ($14::text[] IS NULL OR coalesce(e.dicom_event_id, 'CRR') = ANY($14))
  AND ($15::text[] IS NULL OR e.action = ANY($15))
  AND ($16::text[] IS NULL OR e.outcome = ANY($16))
  AND ($17::text[] IS NULL OR e.facility_id = ANY($17))
  AND ($18::text[] IS NULL OR e.producer_id = ANY($18))
  AND ($19::text IS NULL OR starts_with(lower(e.network_address), lower($19)))
  AND ($20::text IS NULL OR starts_with(lower(e.user_name), lower($20)))
"""

_HISTORY: Final = f"""
SELECT {_ACCESS_COLUMNS}, {{disclosed}} AS via_disclosure
FROM events e JOIN logs g USING (log_id)
WHERE {{key}}
{_FILTERS}
ORDER BY e.event_time DESC, e.event_id DESC
LIMIT $11
"""

_PATIENT_KEY: Final = "e.patient_id = $1 AND ($2::text IS NULL OR e.patient_issuer = $2)"

# The access events whose answer returned the patient (PhiAccessEvent v2, event_patients;
# docs/design/multi-patient-events.md), by the event_patients_patient index.
_DISCLOSING_PATIENT: Final = """
SELECT x.event_id FROM event_patients x
WHERE x.patient_id = $1 AND ($2::text IS NULL OR x.patient_issuer = $2)
"""

# The access events that returned the patient without naming them, marked "disclosed".
_ACCESSES_OF_PATIENT: Final = f"""
SELECT {_ACCESS_COLUMNS}, true AS via_disclosure
FROM events e JOIN logs g USING (log_id)
WHERE e.event_id IN ({_DISCLOSING_PATIENT})
  AND NOT coalesce({_PATIENT_KEY}, false)
{_FILTERS}
ORDER BY e.event_time DESC, e.event_id DESC
LIMIT $11
"""

# A patient's history (docs/read-attribution.md) is the events that name the patient,
# the access events that returned the patient without naming them (above), and the reads
# of the ledger that do neither but whose disclosed ranges cover a leaf of either. Three
# ordered, limited branches: the first walks events_patient_time and stops after one page;
# the third probes event_patients_patient; the second probes the SP-GiST index
# read_disclosures_span once per leaf of the patient, then fetches those reads by primary
# key. The fences (MATERIALIZED, OFFSET 0) keep those per-row probes: PostgreSQL cannot
# estimate how many ranges contain a point and would otherwise hash-join whole tables
# (benchmarks/attribution.py).
_READS_OF_PATIENT: Final = f"""
WITH mine AS MATERIALIZED (
    SELECT p.leaf_index, pg.origin
    FROM events p JOIN logs pg ON pg.log_id = p.log_id
    WHERE p.patient_id = $1 AND ($2::text IS NULL OR p.patient_issuer = $2)
    UNION
    SELECT p.leaf_index, pg.origin
    FROM events p JOIN logs pg ON pg.log_id = p.log_id
    WHERE p.event_id IN ({_DISCLOSING_PATIENT})
), reads AS MATERIALIZED (
    SELECT DISTINCT x.event_id FROM mine m CROSS JOIN LATERAL (
        SELECT d.event_id FROM read_disclosures d
        WHERE d.span @> m.leaf_index AND d.origin = m.origin
        OFFSET 0) x
)
SELECT {_ACCESS_COLUMNS}, true AS via_disclosure
FROM reads r
CROSS JOIN LATERAL (SELECT * FROM events e0 WHERE e0.event_id = r.event_id OFFSET 0) e
JOIN logs g ON g.log_id = e.log_id
WHERE NOT coalesce({_PATIENT_KEY}, false)
{_FILTERS}
ORDER BY e.event_time DESC, e.event_id DESC
LIMIT $11
"""

_STUDY_KEY: Final = "e.study_uid = $1 AND ($2::text IS NULL OR e.accession = $2)"

# The access events whose answer returned the study (in a disclosed patient's studies)
# without naming it, marked "disclosed", by the GIN index event_patients_studies
# (migration 0011). The accession ($2) narrows only the events that name the study: an
# answer lists study UIDs alone.
_ACCESSES_OF_STUDY: Final = f"""
SELECT {_ACCESS_COLUMNS}, true AS via_disclosure
FROM events e JOIN logs g USING (log_id)
WHERE e.event_id IN (
    SELECT x.event_id FROM event_patients x WHERE x.study_uids @> ARRAY[$1::text])
  AND e.study_uid IS DISTINCT FROM $1
{_FILTERS}
ORDER BY e.event_time DESC, e.event_id DESC
LIMIT $11
"""

# Every history statement checks, once and before any row, that this server has the
# signed sizes its snapshot ($3) pins (migration 0020: a one-time filter raising LDG01).
_SIGNED: Final = "ledger_require_signed($3::bigint[])"


def _guarded(branches: str) -> str:
    """A history statement: its branches merged, newest first, behind the signed check."""
    return f"""
SELECT * FROM (
{branches}
) h
WHERE {_SIGNED}
ORDER BY h.event_time DESC, h.event_id DESC
LIMIT $11
"""


HISTORY_BY: Final = {
    "patient": _guarded(f"""
    ({_HISTORY.format(disclosed="false", key=_PATIENT_KEY)})
    UNION ALL
    ({_READS_OF_PATIENT})
    UNION ALL
    ({_ACCESSES_OF_PATIENT})"""),
    "user": _guarded(
        _HISTORY.format(
            # $2 (the qualifier) is unused for users and always NULL. A registry change's
            # author is its user, but it is no access (docs/design/compliance-registry.md).
            disclosed="false",
            key="e.user_id = $1 AND $2::text IS NULL AND e.kind <> 'registry_change'",
        )
    ),
    "study": _guarded(f"""
    ({_HISTORY.format(disclosed="false", key=_STUDY_KEY)})
    UNION ALL
    ({_ACCESSES_OF_STUDY})"""),
    # The events that name the accession number, whatever their study (an accession is
    # the RIS's order number: normally one study, but the index does not assume it).
    # $2 is unused and always NULL. By the index events_accession_time (0015).
    "accession": _guarded(
        _HISTORY.format(disclosed="false", key="e.accession = $1 AND $2::text IS NULL")
    ),
}

# Stored leaves at (log_id, leaf_index) positions.
LEAVES_AT: Final = """
SELECT l.log_id, l.leaf_index, l.leaf
FROM unnest($1::integer[], $2::bigint[]) AS p(log_id, leaf_index)
JOIN leaves l USING (log_id, leaf_index)
"""

# Each log's newest signed size (0 where none is signed yet), by log id.
SIGNED_SIZES: Final = """
SELECT g.log_id, g.origin,
       coalesce((SELECT max(c.size) FROM checkpoints c WHERE c.log_id = g.log_id), 0) AS size
FROM logs g ORDER BY g.log_id
"""

PRINCIPAL_BY_TOKEN_HASH: Final = """
SELECT t.token_id, t.subject, t.role
FROM api_tokens t
WHERE t.token_hash = $1
  AND (t.expires_at IS NULL OR t.expires_at > now())
  AND NOT EXISTS (SELECT 1 FROM api_token_revocations r WHERE r.token_id = t.token_id)
"""

EVENT_BY_ID: Final = f"""
SELECT {_ACCESS_COLUMNS}, e.producer_id, e.producer_seq, l.leaf, l.leaf_hash
FROM events e
JOIN logs g USING (log_id)
JOIN leaves l ON l.log_id = e.log_id AND l.leaf_index = e.leaf_index
WHERE e.event_id = $1
"""

WRITER_SCHEMAS: Final = (
    "SELECT fingerprint, full_name, canonical_form, schema_json FROM writer_schemas"
)

# A log's period, first offset and seal (migration 0017), joined to every log read.
_SEAL_COLUMNS: Final = """g.period, g.first_offset, s.size AS seal_size, s.note AS seal_note,
       s.next_log_id, s.next_first_offset, n.origin AS next_origin,
       encode(a.manifest_digest, 'hex') AS archive"""
# A log whose month was detached: its entries are in the archive named by the digest.
_SEAL_JOIN: Final = """LEFT JOIN log_seals s ON s.log_id = g.log_id
LEFT JOIN logs n ON n.log_id = s.next_log_id
LEFT JOIN period_archives a
       ON a.state = 'detached' AND a.period = date_trunc('month', g.period)::date"""

LOGS: Final = f"""
SELECT g.log_id, g.origin, g.topic, g.kafka_partition,
       (SELECT coalesce(max(leaf_index) + 1, 0) FROM leaves l WHERE l.log_id = g.log_id) AS size,
       (SELECT coalesce(max(size), 0) FROM checkpoints c WHERE c.log_id = g.log_id)
           AS checkpoint_size,
       (SELECT now() - max(signed_at) FROM checkpoints c WHERE c.log_id = g.log_id)
           AS checkpoint_age,
       {_SEAL_COLUMNS}
FROM logs g {_SEAL_JOIN} ORDER BY g.log_id
"""

LOG_INFO: Final = f"""
SELECT g.log_id, g.origin, g.topic, g.kafka_partition,
       (SELECT coalesce(max(leaf_index) + 1, 0) FROM leaves l WHERE l.log_id = g.log_id) AS size,
       (SELECT coalesce(max(size), 0) FROM checkpoints c WHERE c.log_id = g.log_id)
           AS checkpoint_size,
       {_SEAL_COLUMNS}
FROM logs g {_SEAL_JOIN} WHERE g.log_id = $1
"""

EVENT_POSITION: Final = """
SELECT e.log_id, e.leaf_index, l.leaf FROM events e
JOIN leaves l ON l.log_id = e.log_id AND l.leaf_index = e.leaf_index
WHERE e.event_id = $1
"""

# An event's read_disclosures rows as the index row's ``disclosed`` cell: JSON text of
# [[origin, first leaf, end leaf], ...] sorted (ledger.audit.disclosure.cell), "[]" for none.
DISCLOSED_CELL: Final = """
(SELECT coalesce(json_agg(json_build_array(d.origin, d.first_leaf, d.end_leaf)
                          ORDER BY d.origin, d.first_leaf, d.end_leaf), '[]')::text
 FROM read_disclosures d WHERE d.event_id = e.event_id) AS disclosed
"""

# An event's event_patients rows as the index row's ``patients`` cell: JSON text of
# [[issuer, id, state, [study UIDs]], ...] in the leaf's (canonical) order, "[]" for none.
PATIENTS_CELL: Final = """
(SELECT coalesce(json_agg(json_build_array(p.patient_issuer, p.patient_id, p.patient_state,
                                           to_json(p.study_uids))
                          ORDER BY coalesce(p.patient_issuer, '') COLLATE "C",
                                   p.patient_id COLLATE "C",
                                   p.patient_issuer NULLS FIRST), '[]')::text
 FROM event_patients p WHERE p.event_id = e.event_id) AS patients
"""

# The event index of one log as the verifier reads it (ledger.verify.bundle.INDEX_COLUMNS).
INDEX_COLUMNS_SQL: Final = (
    ", ".join(f"e.{c}" for c in INDEX_COLUMNS if c not in ("disclosed", "patients"))
    + f", {DISCLOSED_CELL}, {PATIENTS_CELL}"
)

INDEX_RANGE: Final = f"""
SELECT {INDEX_COLUMNS_SQL}
FROM events e WHERE e.log_id = $1 AND e.leaf_index >= $2 ORDER BY e.leaf_index LIMIT $3
"""

# Readiness probes (docs/observability.md): the database answers a statement.
PING: Final = "SELECT 1"

# ``ledger status``: per log, its Kafka partition, what was ingested (the next offset to
# read), its size, its latest signed checkpoint's size and when it was signed.
INGESTION_STATUS: Final = """
SELECT g.origin, g.topic, g.kafka_partition,
       (SELECT max(p.next_offset) FROM ingest_positions p WHERE p.log_id = g.log_id)
           AS next_offset,
       (SELECT coalesce(max(leaf_index) + 1, 0) FROM leaves l WHERE l.log_id = g.log_id) AS size,
       c.size AS checkpoint_size, c.signed_at, now() AS db_now
FROM logs g
LEFT JOIN LATERAL (
    SELECT size, signed_at FROM checkpoints c WHERE c.log_id = g.log_id
    ORDER BY size DESC LIMIT 1
) c ON true
-- A sealed log is finished: its checkpoint ages for ever, and is no lag of anything.
WHERE NOT EXISTS (SELECT 1 FROM log_seals s WHERE s.log_id = g.log_id)
ORDER BY g.topic, g.kafka_partition, g.period
"""
