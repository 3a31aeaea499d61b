"""What ``ledger registry show`` and the ``/v1/registry`` API read (role ``ledger_reader``):
the registry topic's logs and their leaves, decoded by ``ledger.pg.registrybook``.

Invariant: SELECTs only. The registry logs are the logs of the registry topic (any
partition); each is read with its current size and its latest signed checkpoint, and its
leaves in index order within a half-open range.
"""

from __future__ import annotations

from typing import Final

REGISTRY_LOG_HEADS: Final = """
SELECT g.log_id, g.origin,
       (SELECT coalesce(max(l.leaf_index) + 1, 0) FROM leaves l WHERE l.log_id = g.log_id)
           AS size,
       c.size AS signed_size, c.note
FROM logs g
LEFT JOIN LATERAL (
    SELECT size, note FROM checkpoints x WHERE x.log_id = g.log_id ORDER BY size DESC LIMIT 1
) c ON true
WHERE g.topic = $1
ORDER BY g.log_id
"""

REGISTRY_LOG_LEAVES: Final = """
SELECT leaf_index, leaf FROM leaves
WHERE log_id = $1 AND leaf_index >= $2 AND leaf_index < $3
ORDER BY leaf_index
"""

REGISTRY_SCHEMAS: Final = "SELECT fingerprint, full_name, schema_json FROM writer_schemas"
