"""API tokens: issued, listed and revoked by the owner role (``ledger token``); the API
only reads them (``reads.py``). The database keeps SHA-256 of a token, never its text."""

from __future__ import annotations

from typing import Final

ISSUE_TOKEN: Final = """
INSERT INTO api_tokens (token_id, subject, role, token_hash, expires_at, note)
VALUES ($1, $2, $3, $4, CASE WHEN $5::float8 IS NULL THEN NULL
                             ELSE now() + make_interval(secs => $5::float8) END, $6)
"""

LIST_TOKENS: Final = """
SELECT t.token_id, t.subject, t.role, t.created_at, t.expires_at, t.note, r.revoked_at,
       coalesce(t.expires_at <= now(), false) AS expired
FROM api_tokens t LEFT JOIN api_token_revocations r USING (token_id)
ORDER BY t.created_at
"""

REVOKE_TOKEN: Final = (
    "INSERT INTO api_token_revocations (token_id) VALUES ($1) ON CONFLICT DO NOTHING"
)

LIVE_TOKEN_HASH: Final = """
SELECT 1 FROM api_tokens t
WHERE t.token_hash = $1 AND (t.expires_at IS NULL OR t.expires_at > now())
  AND NOT EXISTS (SELECT 1 FROM api_token_revocations r WHERE r.token_id = t.token_id)
"""
