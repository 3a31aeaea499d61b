"""Every SQL statement the ledger's PostgreSQL adapters run, as named constants.

Invariant: statements are parameterised ($1, $2, ...); no value is ever
interpolated into SQL text.
"""

from __future__ import annotations

from typing import Final

from ledger.verify.bundle import INDEX_COLUMNS

# ------------------------------------------------------------------ appender
LOCK_LOG: Final = "SELECT pg_advisory_xact_lock(8723, $1)"

ENSURE_LOG: Final = """
INSERT INTO logs (origin, topic, kafka_partition) VALUES ($1, $2, $3)
ON CONFLICT (topic, kafka_partition) DO NOTHING
"""

LOG_ID: Final = "SELECT log_id, origin FROM logs WHERE topic = $1 AND kafka_partition = $2"

NEXT_OFFSET: Final = "SELECT max(next_offset) FROM ingest_positions WHERE log_id = $1"

NEXT_OFFSETS_FOR_TOPIC: Final = """
SELECT l.kafka_partition, max(p.next_offset)
FROM logs l JOIN ingest_positions p USING (log_id)
WHERE l.topic = $1 AND l.kafka_partition = ANY($2::int[])
GROUP BY l.kafka_partition
"""

NEXT_LEAF_INDEX: Final = "SELECT coalesce(max(leaf_index) + 1, 0) FROM leaves WHERE log_id = $1"

EXISTING_EVENTS: Final = """
SELECT e.event_id, e.log_id, e.leaf_index, l.leaf
FROM events e JOIN leaves l ON l.log_id = e.log_id AND l.leaf_index = e.leaf_index
WHERE e.event_id = ANY($1::uuid[])
"""

INSERT_POSITION: Final = """
INSERT INTO ingest_positions (log_id, next_offset, first_leaf, appended, duplicates, quarantined)
VALUES ($1, $2, $3, $4, $5, $6)
"""

INSERT_QUARANTINE: Final = """
INSERT INTO quarantine (topic, kafka_partition, kafka_offset, kafka_timestamp,
                        record_key, record_value, reason, detail, envelope)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""

REGISTER_SCHEMA: Final = """
INSERT INTO writer_schemas (fingerprint, full_name, canonical_form, schema_json)
VALUES ($1, $2, $3, $4)
ON CONFLICT (fingerprint) DO NOTHING
"""

LEAF_COLUMNS: Final = ("log_id", "leaf_index", "leaf", "leaf_hash")

# The event index row, in the order the appender builds it: the bundle format's index
# columns (the one list of them), with the log id after the event id.
EVENT_COLUMNS: Final = (
    "event_id",
    "log_id",
    "leaf_index",
    *(c for c in INDEX_COLUMNS if c not in ("event_id", "leaf_index", "disclosed")),
)

# What a read of the ledger disclosed (ledger.audit.disclosure), one row per range.
DISCLOSURE_COLUMNS: Final = ("event_id", "origin", "first_leaf", "end_leaf")

# An event's read_disclosures rows as the index row's ``disclosed`` cell: JSON text of
# [[origin, first leaf, end leaf], ...] sorted (ledger.audit.disclosure.cell), "[]" for none.
DISCLOSED_CELL: Final = """
(SELECT coalesce(json_agg(json_build_array(d.origin, d.first_leaf, d.end_leaf)
                          ORDER BY d.origin, d.first_leaf, d.end_leaf), '[]')::text
 FROM read_disclosures d WHERE d.event_id = e.event_id) AS disclosed
"""

# ------------------------------------------------------------------ reader
_ACCESS_COLUMNS: Final = """
e.event_id, e.kind, e.event_time, e.facility_id, e.patient_id, e.patient_issuer,
e.patient_state, e.user_id, e.user_name, e.user_role, e.user_org, e.dicom_event_id,
e.action, e.outcome, e.study_uid, e.accession, e.network_address, e.purpose_of_use,
e.log_id, g.origin, e.leaf_index
"""

# Access histories by patient, user or study: newest first, keyset-paged on
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
  AND ($13::text IS NULL OR e.study_uid = $13)
  AND ($14::text[] IS NULL OR coalesce(e.dicom_event_id, 'CRR') = ANY($14))
  AND ($15::text[] IS NULL OR e.action = ANY($15))
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

# A patient's history (docs/read-attribution.md) is the events that name the patient,
# and the reads of the ledger that do not but whose disclosed ranges cover a leaf of such
# an event. Two ordered, limited branches: the first walks events_patient_time and stops
# after one page; the second probes the SP-GiST index read_disclosures_span once per leaf
# of the patient, then fetches those reads by primary key. The fences (MATERIALIZED,
# OFFSET 0) keep those per-row probes: PostgreSQL cannot estimate how many ranges contain
# a point and would otherwise hash-join whole tables (benchmarks/attribution.py).
_READS_OF_PATIENT: Final = f"""
WITH mine AS MATERIALIZED (
    SELECT p.leaf_index, pg.origin
    FROM events p JOIN logs pg ON pg.log_id = p.log_id
    WHERE p.patient_id = $1 AND ($2::text IS NULL OR p.patient_issuer = $2)
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

HISTORY_BY: Final = {
    "patient": f"""
SELECT * FROM (
    ({_HISTORY.format(disclosed="false", key=_PATIENT_KEY)})
    UNION ALL
    ({_READS_OF_PATIENT})
) h
ORDER BY h.event_time DESC, h.event_id DESC
LIMIT $11
""",
    "user": _HISTORY.format(
        # $2 (the qualifier) is unused for users and always NULL.
        disclosed="false",
        key="e.user_id = $1 AND $2::text IS NULL",
    ),
    "study": _HISTORY.format(
        disclosed="false",
        key="e.study_uid = $1 AND ($2::text IS NULL OR e.accession = $2)",
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

LOGS: Final = """
SELECT g.log_id, g.origin, g.topic, g.kafka_partition,
       (SELECT coalesce(max(leaf_index) + 1, 0) FROM leaves l WHERE l.log_id = g.log_id) AS size,
       (SELECT coalesce(max(size), 0) FROM checkpoints c WHERE c.log_id = g.log_id)
           AS checkpoint_size
FROM logs g ORDER BY g.log_id
"""

LOG_INFO: Final = """
SELECT g.log_id, g.origin, g.topic, g.kafka_partition,
       (SELECT coalesce(max(leaf_index) + 1, 0) FROM leaves l WHERE l.log_id = g.log_id) AS size,
       (SELECT coalesce(max(size), 0) FROM checkpoints c WHERE c.log_id = g.log_id)
           AS checkpoint_size
FROM logs g WHERE g.log_id = $1
"""

EVENT_POSITION: Final = """
SELECT e.log_id, e.leaf_index, l.leaf FROM events e
JOIN leaves l ON l.log_id = e.log_id AND l.leaf_index = e.leaf_index
WHERE e.event_id = $1
"""

# ------------------------------------------------------------------ tree and checkpoints
LOG_SIZE: Final = "SELECT coalesce(max(leaf_index) + 1, 0) FROM leaves WHERE log_id = $1"

FULL_TILES: Final = """
SELECT level, tile_index, hashes FROM tiles
WHERE log_id = $1
  AND (level, tile_index) IN (SELECT * FROM unnest($2::smallint[], $3::bigint[]))
"""

LEAF_HASH_RANGE: Final = """
SELECT leaf_hash FROM leaves
WHERE log_id = $1 AND leaf_index >= $2 AND leaf_index < $3
ORDER BY leaf_index
"""

TILE_ROOT_RANGE: Final = """
SELECT tile_index, root FROM tiles
WHERE log_id = $1 AND level = $2 AND tile_index >= $3 AND tile_index < $4
ORDER BY tile_index
"""

TILE_COLUMNS: Final = ("log_id", "level", "tile_index", "hashes", "root")

LOCK_CHECKPOINT: Final = "SELECT pg_advisory_xact_lock(8724, $1)"

LATEST_CHECKPOINT: Final = """
SELECT size, root_hash, note, signed_at FROM checkpoints
WHERE log_id = $1 ORDER BY size DESC LIMIT 1
"""

INSERT_CHECKPOINT: Final = """
INSERT INTO checkpoints (log_id, size, root_hash, note) VALUES ($1, $2, $3, $4)
ON CONFLICT (log_id, size) DO NOTHING
"""

CHECKPOINT_COVERING: Final = """
SELECT size, note FROM checkpoints
WHERE log_id = $1 AND size > $2 ORDER BY size DESC LIMIT 1
"""

CHECKPOINTS_AFTER: Final = """
SELECT size, note FROM checkpoints
WHERE log_id = $1 AND size > $2 ORDER BY size LIMIT $3
"""

LEAVES_RANGE: Final = """
SELECT leaf_index, leaf FROM leaves
WHERE log_id = $1 AND leaf_index >= $2 AND leaf_index < $3
ORDER BY leaf_index
"""

LOG_BY_ID: Final = "SELECT log_id, origin, topic, kafka_partition FROM logs WHERE log_id = $1"

LOGS_DUE_CHECKPOINT: Final = """
SELECT g.log_id, g.origin,
       (SELECT coalesce(max(leaf_index) + 1, 0) FROM leaves l WHERE l.log_id = g.log_id) AS size,
       (SELECT coalesce(max(size), 0) FROM checkpoints c WHERE c.log_id = g.log_id) AS signed
FROM logs g
"""

# The event index of one log as the verifier reads it (ledger.verify.bundle.INDEX_COLUMNS).
INDEX_COLUMNS_SQL: Final = (
    ", ".join(f"e.{c}" for c in INDEX_COLUMNS if c != "disclosed") + f", {DISCLOSED_CELL}"
)

INDEX_RANGE: Final = f"""
SELECT {INDEX_COLUMNS_SQL}
FROM events e WHERE e.log_id = $1 AND e.leaf_index >= $2 ORDER BY e.leaf_index LIMIT $3
"""

# ------------------------------------------------------------------ quarantine and alerts
INSERT_ALERT: Final = """
INSERT INTO security_alerts (kind, event_id, log_id, leaf_index, topic, kafka_partition,
                             kafka_offset, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""

QUARANTINE_PAGE: Final = """
SELECT q.quarantine_id, q.topic, q.kafka_partition, q.kafka_offset, q.kafka_timestamp,
       q.record_key, q.record_value, q.reason, q.detail, q.quarantined_at,
       (SELECT count(*) FROM quarantine_resubmissions r
         WHERE r.quarantine_id = q.quarantine_id) AS resubmissions
FROM quarantine q
WHERE q.quarantine_id > $1 AND ($2::text IS NULL OR q.reason = $2)
ORDER BY q.quarantine_id LIMIT $3
"""

QUARANTINE_BY_ID: Final = """
SELECT quarantine_id, topic, kafka_partition, kafka_offset, record_key, record_value, reason,
       envelope
FROM quarantine WHERE quarantine_id = $1
"""

INSERT_RESUBMISSION: Final = """
INSERT INTO quarantine_resubmissions
    (quarantine_id, resubmitted_by, topic, kafka_partition, kafka_offset)
VALUES ($1, $2, $3, $4, $5)
"""

ALERTS_PAGE: Final = """
SELECT alert_id, kind, event_id, log_id, leaf_index, topic, kafka_partition, kafka_offset,
       detail, raised_at
FROM security_alerts WHERE alert_id > $1 ORDER BY alert_id LIMIT $2
"""

# ------------------------------------------------------------------ writer fencing
CLAIM_LOG: Final = """
INSERT INTO log_writers (log_id, epoch, writer_id)
SELECT $1, coalesce(max(epoch), 0) + 1, $2 FROM log_writers WHERE log_id = $1
RETURNING epoch
"""

CURRENT_EPOCH: Final = "SELECT max(epoch) FROM log_writers WHERE log_id = $1"

# ------------------------------------------------------------------ producer keys (0009)
PRODUCER_KEYS: Final = """
SELECT k.key_id, k.producer_id, k.public_key, k.created_at, r.revoked_at, r.reason
FROM producer_keys k LEFT JOIN producer_key_revocations r USING (key_id)
ORDER BY k.producer_id, k.created_at
"""

INSERT_PRODUCER_KEY: Final = """
INSERT INTO producer_keys (key_id, producer_id, public_key, note) VALUES ($1, $2, $3, $4)
"""

PRODUCER_KEY_EXISTS: Final = "SELECT 1 FROM producer_keys WHERE key_id = $1"

REVOKE_PRODUCER_KEY: Final = """
INSERT INTO producer_key_revocations (key_id, reason) VALUES ($1, $2)
ON CONFLICT (key_id) DO NOTHING
"""

#: A leaf row with its place in the producer seal it was accepted with (migration 0009).
SIGNED_LEAF_COLUMNS: Final = (*LEAF_COLUMNS, "seal_id", "seal_index")

EXPORT_SEAL_REFS: Final = """
SELECT leaf_index, seal_id, seal_index FROM leaves WHERE log_id = $1 AND seal_id IS NOT NULL
ORDER BY leaf_index
"""

#: INSERT_POSITION, and the seals a batch carried (idempotent) in the same statement.
INSERT_POSITION_AND_SEALS: Final = """
WITH seals AS (
    INSERT INTO producer_seals (seal_id, key_id, producer_id, leaf_hashes, signature)
    SELECT * FROM unnest($7::bytea[], $8::text[], $9::text[], $10::bytea[], $11::bytea[])
    ON CONFLICT (seal_id) DO NOTHING
)
INSERT INTO ingest_positions (log_id, next_offset, first_leaf, appended, duplicates, quarantined)
VALUES ($1, $2, $3, $4, $5, $6)
"""

PRODUCER_SEALS_BY_ID: Final = """
SELECT seal_id, key_id, producer_id, leaf_hashes, signature
FROM producer_seals WHERE seal_id = ANY($1::bytea[])
"""

EXPORT_PRODUCER_SEALS: Final = """
SELECT seal_id, key_id, producer_id, leaf_hashes, signature FROM producer_seals ORDER BY seal_id
"""

#: Where each upgraded log's producer authentication starts (migration 0009).
PRODUCER_AUTH_START: Final = (
    "SELECT log_id, first_leaf FROM producer_auth_start WHERE first_leaf > 0"
)

COPY_PRODUCER_KEY: Final = """
INSERT INTO producer_keys (key_id, producer_id, public_key, created_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (key_id) DO NOTHING
"""

COPY_PRODUCER_REVOCATION: Final = """
INSERT INTO producer_key_revocations (key_id, revoked_at, reason) VALUES ($1, $2, $3)
ON CONFLICT (key_id) DO NOTHING
"""
