"""What the appender writes: logs, ingest positions, leaves, events, writer schemas.

Invariant: the statements and COPY targets of one append transaction; the advisory lock
of a log serialises its appenders, and an epoch claim fences out a superseded writer.
"""

from __future__ import annotations

from typing import Final

from ledger.verify.bundle.layout import INDEX_COLUMNS

LOCK_LOG: Final = "SELECT pg_advisory_xact_lock(8723, $1)"

#: Serialises the creation of a partition's first log (no row to lock yet).
LOCK_PARTITION: Final = (
    "SELECT pg_advisory_xact_lock(8725, hashtext($1::text || '/' || ($2::integer)::text))"
)

#: The partition's first log: its lock and writer epochs stand for the whole partition.
FIRST_LOG: Final = """
SELECT log_id, origin FROM logs WHERE topic = $1 AND kafka_partition = $2
ORDER BY period LIMIT 1
"""

#: The partition's current log: the one of its latest period (a log never reopens).
CURRENT_LOG: Final = """
SELECT log_id, origin, period, period_end FROM logs
WHERE topic = $1 AND kafka_partition = $2
ORDER BY period DESC LIMIT 1
"""

#: Whether the month of a date was archived (its partitions may be detached): no log is
#: ever opened in it again.
MONTH_ARCHIVED: Final = """
SELECT EXISTS (SELECT 1 FROM period_archives WHERE period = date_trunc('month', $1::date)::date)
"""

OPEN_LOG: Final = """
INSERT INTO logs (origin, topic, kafka_partition, period, period_end, first_offset)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING log_id, origin, period, period_end
"""

#: The next offset to append, over every log of the partition (a redelivered record of
#: a closed period's log is skipped, not appended to the current one).
NEXT_OFFSET: Final = """
SELECT max(p.next_offset) FROM ingest_positions p JOIN logs l USING (log_id)
WHERE l.topic = $1 AND l.kafka_partition = $2
"""

NEXT_OFFSETS_FOR_TOPIC: Final = """
SELECT l.kafka_partition, max(p.next_offset)
FROM logs l JOIN ingest_positions p USING (log_id)
WHERE l.topic = $1 AND l.kafka_partition = ANY($2::int[])
GROUP BY l.kafka_partition
"""

NEXT_LEAF_INDEX: Final = "SELECT coalesce(max(leaf_index) + 1, 0) FROM leaves WHERE log_id = $1"

EXISTING_EVENTS: Final = """
SELECT e.event_id, e.log_id, e.leaf_index, l.leaf
FROM events e
JOIN leaves l ON l.log_id = e.log_id AND l.leaf_index = e.leaf_index AND l.period = e.period
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

#: ``period`` (the log's, logs.period) is the partition key of every row below (0018).
LEAF_COLUMNS: Final = ("log_id", "leaf_index", "leaf", "leaf_hash", "period")

# The event index row, in the order the appender builds it: the bundle format's index
# columns (the one list of them), with the log id after the event id.
EVENT_COLUMNS: Final = (
    "event_id",
    "log_id",
    "leaf_index",
    *(c for c in INDEX_COLUMNS if c not in ("event_id", "leaf_index", "disclosed", "patients")),
    "period",
)

# What a read of the ledger disclosed (ledger.audit.disclosure), one row per range.
DISCLOSURE_COLUMNS: Final = ("event_id", "origin", "first_leaf", "end_leaf", "period")
# The patients an access answer returned (PhiAccessEvent v2), one row per patient.
EVENT_PATIENT_COLUMNS: Final = (
    "event_id",
    "patient_id",
    "patient_issuer",
    "patient_state",
    "study_uids",
    "period",
)

#: COPY targets of an append (``copy_records_to_table``), with the columns above.
LEAF_TABLE: Final = "leaves"
EVENT_TABLE: Final = "events"
DISCLOSURE_TABLE: Final = "read_disclosures"
EVENT_PATIENT_TABLE: Final = "event_patients"

# ------------------------------------------------------------------ writer fencing
CLAIM_LOG: Final = """
INSERT INTO log_writers (log_id, epoch, writer_id)
SELECT $1, coalesce(max(epoch), 0) + 1, $2 FROM log_writers WHERE log_id = $1
RETURNING epoch
"""

CURRENT_EPOCH: Final = "SELECT max(epoch) FROM log_writers WHERE log_id = $1"
