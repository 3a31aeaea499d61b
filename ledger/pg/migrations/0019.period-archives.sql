-- 0019: archived and detached periods (docs/archive.md, docs/scale.md "Detaching").
-- One row per step of a period's retention: 'archived' once its bundle was verified
-- offline and against the database and the signed archive record is in the ledger;
-- 'detached' once its partitions left the database. Append-only: the history of what
-- left the database, and where it went, is itself evidence. Queries over a time range
-- name the detached periods whose events (first..last event_time) overlap it.
-- depends: 0018.partitioned-index

CREATE TABLE period_archives (
    period           date        NOT NULL,  -- the first day of the partition's month
    state            text        NOT NULL CHECK (state IN ('archived', 'detached')),
    manifest_digest  bytea       NOT NULL CHECK (octet_length(manifest_digest) = 32),
    logs             integer     NOT NULL CHECK (logs >= 0),
    events           bigint      NOT NULL CHECK (events >= 0),
    first_event_time timestamptz,           -- NULL when the period holds no event
    last_event_time  timestamptz,
    record_event_id  uuid        NOT NULL,  -- the archive record's event id in the ledger
    actor            text        NOT NULL,
    copies           text        NOT NULL,  -- where the bundle's copies are kept
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (period, state),
    CHECK (first_event_time IS NULL OR last_event_time >= first_event_time)
);

CREATE TRIGGER period_archives_no_mutation BEFORE UPDATE OR DELETE ON period_archives
    FOR EACH ROW EXECUTE FUNCTION reject_mutation();
CREATE TRIGGER period_archives_no_truncate BEFORE TRUNCATE ON period_archives
    FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation();

REVOKE ALL ON period_archives FROM PUBLIC;
GRANT SELECT ON period_archives TO ledger_appender, ledger_reader;
