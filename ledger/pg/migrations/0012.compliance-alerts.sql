-- 0012: compliance alerts raised by the rules evaluator (`ledger rules run`,
-- docs/design/compliance.md). The evaluator reads the appended ledger in leaf order per
-- log and writes, in ONE transaction, the alerts a stretch of leaves raised, their
-- evidence, each alert's first transition (open) and the log's new cursor. Everything is
-- append-only: triage appends transitions, a cursor moves by a new row.
-- depends: 0011.disclosed-study-index

-- One alert per (rule, rule version, triggering leaf): re-evaluation and replay raise no
-- duplicate (the evaluator inserts ON CONFLICT DO NOTHING on this key).
CREATE TABLE alerts (
    alert_id       bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id        text    NOT NULL CHECK (rule_id ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    rule_version   integer NOT NULL CHECK (rule_version >= 1),
    severity       text    NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    facility_id    text,
    user_id        text,
    patient_id     text,
    patient_issuer text,
    summary        text    NOT NULL,
    log_id         integer NOT NULL REFERENCES logs (log_id),
    leaf_index     bigint  NOT NULL CHECK (leaf_index >= 0),
    thresholds     jsonb   NOT NULL,
    raised_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT alerts_rule_trigger UNIQUE (rule_id, rule_version, log_id, leaf_index)
);
CREATE INDEX alerts_raised ON alerts (raised_at DESC, alert_id DESC);
CREATE INDEX alerts_user ON alerts (user_id, alert_id DESC);

-- The ledger positions behind an alert (the trigger among them), each provable against a
-- signed checkpoint. role: trigger, window, justification_missing, ...
CREATE TABLE alert_evidence (
    alert_id   bigint  NOT NULL REFERENCES alerts (alert_id),
    log_id     integer NOT NULL REFERENCES logs (log_id),
    leaf_index bigint  NOT NULL CHECK (leaf_index >= 0),
    role       text    NOT NULL CHECK (role ~ '^[a-z][a-z0-9_]{0,31}$'),
    PRIMARY KEY (alert_id, log_id, leaf_index, role)
);

-- Triage: open -> acknowledged -> closed (with a disposition). The current state of an
-- alert is its latest transition; seq orders an alert's transitions.
CREATE TABLE alert_transitions (
    alert_id       bigint  NOT NULL REFERENCES alerts (alert_id),
    seq            integer NOT NULL CHECK (seq >= 1),
    state          text    NOT NULL CHECK (state IN ('open', 'acknowledged', 'closed')),
    disposition    text    CHECK (disposition IN
                       ('false_positive', 'policy_violation', 'breach_investigation')),
    note           text    NOT NULL DEFAULT '',
    transitioned_by text   NOT NULL,
    transitioned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alert_id, seq),
    CONSTRAINT alert_transitions_disposition
        CHECK ((state = 'closed') = (disposition IS NOT NULL))
);

-- How far the evaluator got in each log: the current cursor is the greatest row.
CREATE TABLE rule_cursors (
    log_id        integer NOT NULL REFERENCES logs (log_id),
    next_leaf     bigint  NOT NULL CHECK (next_leaf >= 0),
    alerts_raised integer NOT NULL CHECK (alerts_raised >= 0),
    committed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log_id, next_leaf)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['alerts', 'alert_evidence', 'alert_transitions', 'rule_cursors'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION reject_mutation()', t || '_no_mutation', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation()', t || '_no_truncate', t);
    END LOOP;
END
$$;

-- The evaluator runs as ledger_appender (it reads leaves and inserts alerts); the API and
-- reports read. Nobody updates or deletes (the triggers above refuse even the owner).
REVOKE ALL ON alerts, alert_evidence, alert_transitions, rule_cursors FROM PUBLIC;
GRANT SELECT, INSERT ON alerts, alert_evidence, alert_transitions, rule_cursors TO ledger_appender;
GRANT SELECT ON alerts, alert_evidence, alert_transitions, rule_cursors TO ledger_reader;
