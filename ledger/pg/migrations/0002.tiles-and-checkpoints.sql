-- 0002: the integrated tree (full C2SP tiles) and signed checkpoints.
-- depends: 0001.ledger-core

-- Full tiles only (256 hashes): they never change once written. The rightmost
-- partial tile of each level is derived from the level below (ledger/tiles.py).
CREATE TABLE tiles (
    log_id     integer  NOT NULL REFERENCES logs (log_id),
    level      smallint NOT NULL CHECK (level >= 0),
    tile_index bigint   NOT NULL CHECK (tile_index >= 0),
    hashes     bytea    NOT NULL CHECK (octet_length(hashes) = 8192),
    root       bytea    NOT NULL CHECK (octet_length(root) = 32),
    PRIMARY KEY (log_id, level, tile_index)
);
ALTER TABLE tiles ALTER COLUMN hashes SET STORAGE EXTERNAL;  -- SHA-256 output does not compress

-- Every signed checkpoint, in the C2SP signed-note format, verbatim.
CREATE TABLE checkpoints (
    log_id    integer NOT NULL REFERENCES logs (log_id),
    size      bigint  NOT NULL CHECK (size >= 0),
    root_hash bytea   NOT NULL CHECK (octet_length(root_hash) = 32),
    note      text    NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log_id, size)
);

CREATE TRIGGER tiles_no_mutation BEFORE UPDATE OR DELETE ON tiles
    FOR EACH ROW EXECUTE FUNCTION reject_mutation();
CREATE TRIGGER tiles_no_truncate BEFORE TRUNCATE ON tiles
    FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation();
CREATE TRIGGER checkpoints_no_mutation BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION reject_mutation();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation();

REVOKE ALL ON tiles, checkpoints FROM PUBLIC;
GRANT SELECT, INSERT ON tiles, checkpoints TO ledger_appender;
GRANT SELECT ON tiles, checkpoints TO ledger_reader;
