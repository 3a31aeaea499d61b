-- 0009 (helper "sign"): producer authentication. The registry of producers' Ed25519
-- public keys (the private halves never enter the database), their revocations, and
-- the envelope each leaf was accepted with, so an export can be checked offline.
-- depends: 0008.attr-read-disclosures

-- key_id = hex(SHA-256("philedger/producer-key/v1" || 0x00 || public_key)[:8]).
CREATE TABLE producer_keys (
    key_id      text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
    producer_id text NOT NULL CHECK (octet_length(producer_id) BETWEEN 1 AND 256),
    public_key  bytea NOT NULL UNIQUE CHECK (octet_length(public_key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    note        text CHECK (octet_length(note) <= 256)
);
CREATE INDEX producer_keys_producer ON producer_keys (producer_id);

-- Revocation is append-only like token revocation: a key is revoked once a row names it.
CREATE TABLE producer_key_revocations (
    key_id     text PRIMARY KEY REFERENCES producer_keys (key_id),
    revoked_at timestamptz NOT NULL DEFAULT now(),
    reason     text NOT NULL CHECK (octet_length(reason) BETWEEN 1 AND 256)
);

-- The envelope (docs/producer-auth.md) a leaf was authenticated with, in the leaf's own
-- row (written by the same COPY; a side table cost ~20% of ingest throughput in
-- benchmarks/producer_auth.py). The leaf bytes, and so the Merkle tree, are unchanged.
-- Dedup stays on the value: a re-send with another envelope is a duplicate.
ALTER TABLE leaves ADD COLUMN envelope bytea;

-- A quarantined record keeps its envelope, so a record refused for a reason that can be
-- fixed (e.g. a key registered later) can be re-submitted with its signature intact.
ALTER TABLE quarantine ADD COLUMN envelope bytea;

-- Leaves appended before producer authentication existed carry no envelope. Each log's
-- size when this migration ran is where its authentication starts (a log created later
-- starts at 0, with no row); the offline check does not ask older leaves for envelopes.
CREATE TABLE producer_auth_start (
    log_id     integer PRIMARY KEY REFERENCES logs (log_id),
    first_leaf bigint NOT NULL CHECK (first_leaf >= 0)
);
INSERT INTO producer_auth_start (log_id, first_leaf)
SELECT g.log_id, (SELECT coalesce(max(l.leaf_index) + 1, 0) FROM leaves l WHERE l.log_id = g.log_id)
FROM logs g;
-- Written once, here: a later row could exempt a new log's forged leaves.
CREATE TRIGGER producer_auth_start_no_insert BEFORE INSERT ON producer_auth_start
    FOR EACH ROW EXECUTE FUNCTION reject_mutation();

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['producer_keys', 'producer_key_revocations', 'producer_auth_start'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION reject_mutation()', t || '_no_mutation', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation()', t || '_no_truncate', t);
    END LOOP;
END
$$;

-- Keys are added and revoked by the owner (`ledger producer ...`); the consumer and
-- the API only read them.
REVOKE ALL ON producer_keys, producer_key_revocations, producer_auth_start FROM PUBLIC;
GRANT SELECT ON producer_keys, producer_key_revocations, producer_auth_start
    TO ledger_appender, ledger_reader;
