-- 0013: delivery of compliance alerts to external receivers (`ledger alerts deliver`,
-- docs/design/compliance.md, "Delivery"). The alerts table is the outbox: an alert is a
-- row before it is a message, so nothing is lost while a receiver is down. Delivery state
-- is derived from two append-only logs, never from an UPDATE of alerts: every attempt
-- (its outcome: an HTTP status or an error class, never a body), and one row per
-- (alert, destination) once the receiver accepted it. Pending = no delivered row.
-- depends: 0012.compliance-alerts

CREATE TABLE alert_delivery_attempts (
    attempt_id    bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id      bigint  NOT NULL REFERENCES alerts (alert_id),
    destination   text    NOT NULL CHECK (destination ~ '^[a-z][a-z0-9_-]{0,63}$'),
    attempted_at  timestamptz NOT NULL DEFAULT now(),
    http_status   integer CHECK (http_status BETWEEN 100 AND 599),
    error_class   text    CHECK (error_class ~ '^[a-z][a-z0-9_]{0,31}$'),
    delivered     boolean NOT NULL,
    -- A webhook attempt has an HTTP status or an error class; a syslog attempt an
    -- error class, or neither when the message was written (syslog has no answer).
    CONSTRAINT alert_delivery_attempts_outcome
        CHECK (http_status IS NULL OR error_class IS NULL),
    CONSTRAINT alert_delivery_attempts_delivered
        CHECK (delivered = (error_class IS NULL
                            AND (http_status IS NULL OR http_status BETWEEN 200 AND 299)))
);
CREATE INDEX alert_delivery_attempts_alert
    ON alert_delivery_attempts (alert_id, destination, attempt_id);

-- The final word per (alert, destination): written once, in the transaction of the
-- attempt that succeeded (a second success, at-least-once, is absorbed by the key).
CREATE TABLE alert_deliveries (
    alert_id      bigint  NOT NULL REFERENCES alerts (alert_id),
    destination   text    NOT NULL CHECK (destination ~ '^[a-z][a-z0-9_-]{0,63}$'),
    delivered_at  timestamptz NOT NULL DEFAULT now(),
    attempt_id    bigint  NOT NULL REFERENCES alert_delivery_attempts (attempt_id),
    PRIMARY KEY (destination, alert_id)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['alert_delivery_attempts', 'alert_deliveries'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION reject_mutation()', t || '_no_mutation', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation()', t || '_no_truncate', t);
    END LOOP;
END
$$;

-- The deliverer runs as ledger_appender, like the rules evaluator; the API and reports read.
REVOKE ALL ON alert_delivery_attempts, alert_deliveries FROM PUBLIC;
GRANT SELECT, INSERT ON alert_delivery_attempts, alert_deliveries TO ledger_appender;
GRANT SELECT ON alert_delivery_attempts, alert_deliveries TO ledger_reader;
