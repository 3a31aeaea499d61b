"""Witness cosignatures of checkpoints (migration 0016) and the notes served with them.

Invariant: a cosignature row is inserted once per (log, size, witness key); every note the
API or the export hands out is the stored checkpoint note followed by its cosignature
lines, in (witness, key ID) order, so two reads of one checkpoint are byte-identical.
"""

from __future__ import annotations

from typing import Final

#: The SQL expression of a checkpoint row ``c`` with its cosignature lines appended.
COSIGNED_NOTE: Final = """c.note || coalesce((
    SELECT string_agg(w.line, '' ORDER BY w.witness, w.key_id)
    FROM checkpoint_cosignatures w WHERE w.log_id = c.log_id AND w.size = c.size), '')"""

INSERT_COSIGNATURE: Final = """
INSERT INTO checkpoint_cosignatures (log_id, size, witness, key_id, cosigned_at, line)
VALUES ($1, $2, $3, $4, to_timestamp($5), $6)
ON CONFLICT (log_id, size, witness, key_id) DO NOTHING
"""

#: Per log: its latest checkpoint, and the largest size this witness key cosigned.
COSIGN_WORK: Final = """
SELECT g.log_id, g.origin, c.size, c.note,
       (SELECT max(w.size) FROM checkpoint_cosignatures w
        WHERE w.log_id = g.log_id AND w.witness = $1 AND w.key_id = $2) AS cosigned
FROM logs g
JOIN LATERAL (SELECT size, note FROM checkpoints x WHERE x.log_id = g.log_id
              ORDER BY size DESC LIMIT 1) c ON true
ORDER BY g.log_id
"""

CHECKPOINT_AT: Final = "SELECT size, note FROM checkpoints WHERE log_id = $1 AND size = $2"

LATEST_COSIGNED_CHECKPOINT: Final = f"""
SELECT c.size, {COSIGNED_NOTE} AS note FROM checkpoints c
WHERE c.log_id = $1 ORDER BY c.size DESC LIMIT 1
"""
