-- 0016: witness cosignatures (C2SP tlog-cosignature) of the signed checkpoints. The
-- checkpoints table stays immutable; each cosignature a witness returned is one row here,
-- and the API and the export append the lines to the checkpoint note they serve (as C2SP
-- signed-note allows). Append-only like the checkpoints: a cosignature, once held, is
-- evidence. docs/design/witnesses.md.
-- depends: 0015.accession-index

CREATE TABLE checkpoint_cosignatures (
    log_id      integer     NOT NULL,
    size        bigint      NOT NULL,
    witness     text        NOT NULL,  -- the witness's key name
    key_id      bytea       NOT NULL CHECK (octet_length(key_id) = 4),
    cosigned_at timestamptz NOT NULL,  -- the timestamp inside the cosignature
    line        text        NOT NULL,  -- the signature line, verbatim, with its newline
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log_id, size, witness, key_id),
    FOREIGN KEY (log_id, size) REFERENCES checkpoints (log_id, size)
);

CREATE TRIGGER checkpoint_cosignatures_no_mutation BEFORE UPDATE OR DELETE
    ON checkpoint_cosignatures FOR EACH ROW EXECUTE FUNCTION reject_mutation();
CREATE TRIGGER checkpoint_cosignatures_no_truncate BEFORE TRUNCATE
    ON checkpoint_cosignatures FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation();

REVOKE ALL ON checkpoint_cosignatures FROM PUBLIC;
GRANT SELECT, INSERT ON checkpoint_cosignatures TO ledger_appender;
GRANT SELECT ON checkpoint_cosignatures TO ledger_reader;
