-- 0009 (helper "sign"): producer authentication. The registry of producers' Ed25519
-- public keys (the private halves never enter the database), their revocations, the
-- seals (signed batches of leaf hashes) producers sent, each leaf's place in its seal,
-- and where each upgraded log's authentication starts, so an export can be checked offline.
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

-- Each seal a consumer received (docs/producer-auth.md): stored once, in the same
-- transaction as the leaves of the batch that carried it (whether or not the record that
-- carried it was appended), so a consumer that restarts after a seal, and an auditor,
-- find it. seal_id is a hash of key_id and leaf_hashes, so a row cannot be replaced.
CREATE TABLE producer_seals (
    seal_id     bytea PRIMARY KEY CHECK (octet_length(seal_id) = 16),
    key_id      text NOT NULL REFERENCES producer_keys (key_id),
    producer_id text NOT NULL,
    leaf_hashes bytea NOT NULL CHECK (octet_length(leaf_hashes) BETWEEN 32 AND 32 * 1024
                                      AND octet_length(leaf_hashes) % 32 = 0),
    signature   bytea NOT NULL CHECK (octet_length(signature) = 64),
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Where each leaf is in the seal it was authenticated with (entry seal_index of seal_id),
-- in the leaf's own row (written by the same COPY; ~20 bytes instead of a 338-byte
-- envelope per leaf, see docs/producer-auth.md). The leaf bytes, and so the Merkle tree,
-- are unchanged. Dedup stays on the value: a re-send under another seal is a duplicate.
ALTER TABLE leaves ADD COLUMN seal_id bytea, ADD COLUMN seal_index integer;

-- A quarantined record keeps its envelope, so a record refused for a reason that can be
-- fixed (e.g. a key registered later) can be re-submitted with its signature intact.
ALTER TABLE quarantine ADD COLUMN envelope bytea;

-- Leaves appended before producer authentication existed carry no seal reference. Each log's
-- size when this migration ran is where its authentication starts (a log created later
-- starts at 0, with no row); the offline check does not ask older leaves for seals.
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
    FOREACH t IN ARRAY ARRAY['producer_keys', 'producer_key_revocations', 'producer_seals',
                             'producer_auth_start'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION reject_mutation()', t || '_no_mutation', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation()', t || '_no_truncate', t);
    END LOOP;
END
$$;

-- Keys are added and revoked by the owner (`ledger producer ...`); the consumer and
-- the API only read them; the consumer adds seals.
REVOKE ALL ON producer_keys, producer_key_revocations, producer_seals, producer_auth_start
    FROM PUBLIC;
GRANT SELECT ON producer_keys, producer_key_revocations, producer_seals, producer_auth_start
    TO ledger_appender, ledger_reader;
GRANT INSERT ON producer_seals TO ledger_appender;
