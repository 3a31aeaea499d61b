-- 0017: logs sharded by time (docs/design/periods.md). A log is one Kafka partition for
-- one period (a UTC month or day); the partition moves on to its next period's log at the
-- first record whose broker timestamp is at or past the period's end, and never back. A
-- log that has a successor is closed: the checkpointer signs its final size and a seal
-- naming the successor and the offset it starts at.
-- Logs that existed before this migration keep their origin and become the period of the
-- month they were created in; their first record after it opens the current period's log.
-- depends: 0016.checkpoint-cosignatures

ALTER TABLE logs
    ADD COLUMN period       date,
    ADD COLUMN period_end   date,
    ADD COLUMN first_offset bigint;

ALTER TABLE logs DISABLE TRIGGER logs_no_mutation;
UPDATE logs SET
    period       = date_trunc('month', created_at AT TIME ZONE 'UTC')::date,
    period_end   = (date_trunc('month', created_at AT TIME ZONE 'UTC') + interval '1 month')::date,
    first_offset = 0;
ALTER TABLE logs ENABLE TRIGGER logs_no_mutation;

-- A log inserted without a period (by hand, by an older tool) is the current month's.
ALTER TABLE logs
    ALTER COLUMN period SET NOT NULL,
    ALTER COLUMN period SET DEFAULT (date_trunc('month', now() AT TIME ZONE 'UTC'))::date,
    ALTER COLUMN period_end SET NOT NULL,
    ALTER COLUMN period_end SET DEFAULT
        (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month')::date,
    ALTER COLUMN first_offset SET NOT NULL,
    ALTER COLUMN first_offset SET DEFAULT 0,
    ADD CONSTRAINT logs_period_order CHECK (period_end > period),
    ADD CONSTRAINT logs_first_offset CHECK (first_offset >= 0),
    DROP CONSTRAINT logs_topic_kafka_partition_key,
    ADD CONSTRAINT logs_partition_period UNIQUE (topic, kafka_partition, period);

-- The seal of a closed log: its final signed checkpoint (same size), the log that follows
-- it and that log's first Kafka offset, and the seal's signed note (ledger/log/seal.py).
CREATE TABLE log_seals (
    log_id            integer PRIMARY KEY REFERENCES logs (log_id),
    size              bigint  NOT NULL,
    next_log_id       integer NOT NULL UNIQUE REFERENCES logs (log_id),
    next_first_offset bigint  NOT NULL CHECK (next_first_offset >= 0),
    note              text    NOT NULL,
    sealed_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (next_log_id <> log_id),
    FOREIGN KEY (log_id, size) REFERENCES checkpoints (log_id, size)
);

CREATE TRIGGER log_seals_no_mutation BEFORE UPDATE OR DELETE ON log_seals
    FOR EACH ROW EXECUTE FUNCTION reject_mutation();
CREATE TRIGGER log_seals_no_truncate BEFORE TRUNCATE ON log_seals
    FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation();

REVOKE ALL ON log_seals FROM PUBLIC;
GRANT SELECT, INSERT ON log_seals TO ledger_appender;
GRANT SELECT ON log_seals TO ledger_reader;
