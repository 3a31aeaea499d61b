"""Producer keys, their revocations and the producer seals (migration 0009).

Invariant: registering, revoking and copying keys and seals is idempotent
(``ON CONFLICT DO NOTHING``), so an import or a retried batch never fails on a duplicate.
"""

from __future__ import annotations

from typing import Final

from ledger.pg.sql.ingest import LEAF_COLUMNS

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
