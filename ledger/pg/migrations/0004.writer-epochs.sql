-- 0004: one writer per log at a time. A consumer claims a log on assignment with the
-- next epoch; an append carrying an older epoch is refused (fencing a stale writer).
-- depends: 0003.alerts-and-resubmissions

CREATE TABLE log_writers (
    log_id     integer NOT NULL REFERENCES logs (log_id),
    epoch      bigint  NOT NULL CHECK (epoch > 0),
    writer_id  text    NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log_id, epoch)
);

CREATE TRIGGER log_writers_no_mutation BEFORE UPDATE OR DELETE ON log_writers
    FOR EACH ROW EXECUTE FUNCTION reject_mutation();
CREATE TRIGGER log_writers_no_truncate BEFORE TRUNCATE ON log_writers
    FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation();

REVOKE ALL ON log_writers FROM PUBLIC;
GRANT SELECT, INSERT ON log_writers TO ledger_appender;
GRANT SELECT ON log_writers TO ledger_reader;
