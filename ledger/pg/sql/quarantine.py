"""Quarantined records, their resubmissions, and security alerts.

Invariant: quarantine and alert rows are only ever inserted; a resubmission is a new row
that names the quarantined one.
"""

from __future__ import annotations

from typing import Final

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
