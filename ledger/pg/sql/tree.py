"""Tiles, leaf hashes and signed checkpoints: the Merkle tree as stored.

Invariant: the checkpoint advisory lock serialises the signers of one log; a checkpoint
is inserted once per (log, size).
"""

from __future__ import annotations

from typing import Final

from ledger.pg.sql.cosignatures import COSIGNED_NOTE

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

TILE_COLUMNS: Final = ("log_id", "level", "tile_index", "hashes", "root", "period")
#: COPY target of new tiles (``copy_records_to_table``), with ``TILE_COLUMNS``.
TILE_TABLE: Final = "tiles"

LOCK_CHECKPOINT: Final = "SELECT pg_advisory_xact_lock(8724, $1)"

LATEST_CHECKPOINT: Final = """
SELECT size, root_hash, note, signed_at FROM checkpoints
WHERE log_id = $1 ORDER BY size DESC LIMIT 1
"""

INSERT_CHECKPOINT: Final = """
INSERT INTO checkpoints (log_id, size, root_hash, note) VALUES ($1, $2, $3, $4)
ON CONFLICT (log_id, size) DO NOTHING
"""

# What readers are handed: the note with its witnesses' cosignature lines (0016).
CHECKPOINT_COVERING: Final = f"""
SELECT c.size, {COSIGNED_NOTE} AS note FROM checkpoints c
WHERE c.log_id = $1 AND c.size > $2 ORDER BY c.size DESC LIMIT 1
"""

CHECKPOINTS_AFTER: Final = f"""
SELECT c.size, {COSIGNED_NOTE} AS note FROM checkpoints c
WHERE c.log_id = $1 AND c.size > $2 ORDER BY c.size LIMIT $3
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
WHERE NOT EXISTS (SELECT 1 FROM log_seals s WHERE s.log_id = g.log_id)
"""

#: Closed logs (a later period's log of the same partition exists) without a seal yet,
#: each with its successor: the log that follows it and the offset that log starts at.
UNSEALED_CLOSED_LOGS: Final = """
SELECT g.log_id, g.origin, n.log_id AS next_log_id, n.origin AS next_origin,
       n.first_offset AS next_first_offset
FROM logs g
JOIN LATERAL (
    SELECT log_id, origin, first_offset FROM logs n
    WHERE n.topic = g.topic AND n.kafka_partition = g.kafka_partition AND n.period > g.period
    ORDER BY n.period LIMIT 1
) n ON true
WHERE NOT EXISTS (SELECT 1 FROM log_seals s WHERE s.log_id = g.log_id)
ORDER BY g.log_id
"""

#: pg_partman's maintenance of the ledger's partitioned tables (migration 0018): the
#: months ahead, each with its TRUNCATE guard. Never detaches or drops anything.
PARTITION_MAINTENANCE: Final = "SELECT ledger_partition_maintenance()"

INSERT_SEAL: Final = """
INSERT INTO log_seals (log_id, size, next_log_id, next_first_offset, note)
VALUES ($1, $2, $3, $4, $5)
"""
