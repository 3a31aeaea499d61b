-- 0005: API bearer tokens (stored only as SHA-256 hashes) with their roles, and the
-- index for reads of the ledger itself (AuditLogUsed events, DICOM 110101), which may
-- name no patient.
-- depends: 0004.writer-epochs

-- A token is 32 random bytes; only SHA-256 of its text is kept, so a database dump
-- does not hand out API access. Tokens are random (not passwords): a fast hash is the
-- right one, and lookups are by hash.
CREATE TABLE api_tokens (
    token_id    uuid PRIMARY KEY,
    subject     text NOT NULL CHECK (subject ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    role        text NOT NULL CHECK (role IN ('investigator', 'auditor', 'admin')),
    token_hash  bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    note        text CHECK (octet_length(note) <= 256)
);

-- Revocation is itself append-only: a token is revoked once a row names it.
CREATE TABLE api_token_revocations (
    token_id   uuid PRIMARY KEY REFERENCES api_tokens (token_id),
    revoked_at timestamptz NOT NULL DEFAULT now()
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['api_tokens', 'api_token_revocations'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION reject_mutation()', t || '_no_mutation', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation()', t || '_no_truncate', t);
    END LOOP;
END
$$;

-- Issued and revoked by the owner (`ledger token ...`); the API only looks them up.
REVOKE ALL ON api_tokens, api_token_revocations FROM PUBLIC;
GRANT SELECT ON api_tokens, api_token_revocations TO ledger_reader;

-- Reads of the ledger are indexed like any other access; a read names a patient only
-- when its query did.
ALTER TABLE events ALTER COLUMN patient_id DROP NOT NULL;
ALTER TABLE events DROP CONSTRAINT events_kind_check;
ALTER TABLE events ADD CONSTRAINT events_kind_check
    CHECK (kind IN ('phi_access', 'critical_result_relay', 'audit_log_used'));
ALTER TABLE events ADD CONSTRAINT events_patient_named
    CHECK (patient_id IS NOT NULL OR kind = 'audit_log_used');
