-- 0003: security alerts raised while ingesting, and re-submissions of quarantined records.
-- depends: 0002.tiles-and-checkpoints

-- A conflict (same event id, different content) or any other integrity event seen by
-- the consumer. Never merged, never silently dropped: an investigator reads these.
CREATE TABLE security_alerts (
    alert_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text NOT NULL,
    event_id   uuid,
    log_id     integer REFERENCES logs (log_id),
    leaf_index bigint,
    topic      text,
    kafka_partition integer,
    kafka_offset    bigint,
    detail     text NOT NULL,
    raised_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX security_alerts_time ON security_alerts (raised_at DESC);

-- Which quarantined record was sent back to Kafka, when, by whom, and where it landed.
CREATE TABLE quarantine_resubmissions (
    quarantine_id   bigint  NOT NULL REFERENCES quarantine (quarantine_id),
    resubmitted_at  timestamptz NOT NULL DEFAULT now(),
    resubmitted_by  text    NOT NULL,
    topic           text    NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint  NOT NULL,
    PRIMARY KEY (quarantine_id, kafka_partition, kafka_offset)
);

CREATE INDEX quarantine_reason_time ON quarantine (reason, quarantined_at DESC);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['security_alerts', 'quarantine_resubmissions'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION reject_mutation()', t || '_no_mutation', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation()', t || '_no_truncate', t);
    END LOOP;
END
$$;

REVOKE ALL ON security_alerts, quarantine_resubmissions FROM PUBLIC;
GRANT SELECT, INSERT ON security_alerts, quarantine_resubmissions TO ledger_appender;
GRANT SELECT ON security_alerts, quarantine_resubmissions TO ledger_reader;
