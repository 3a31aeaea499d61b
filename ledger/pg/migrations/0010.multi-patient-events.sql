-- 0010: access events that name many patients, or none (PhiAccessEvent v2,
-- docs/design/multi-patient-events.md). A query's answer discloses a result set: one row
-- per disclosed patient, so the event shows up in each of their histories marked
-- "disclosed", as reads of the ledger do through read_disclosures (0008). A projection of
-- the leaf like `events`, written in the same transaction, checked by `ledger verify`.
-- depends: 0009.sign-producer-keys

-- A PHI access may now name no patient (a query that names none, e.g. by date). Only
-- widens what 0007 allowed, so every existing row satisfies it.
ALTER TABLE events
    DROP CONSTRAINT events_patient_named,
    ADD CONSTRAINT events_patient_named
        CHECK (patient_id IS NOT NULL
               OR kind IN ('audit_log_used', 'security_event', 'phi_access'));

-- The event's leaf position is its events row (event_id is unique per leaf). The leaf
-- lists each patient once (the producer and the consumer refuse anything else), so the
-- key is unique; the issuer is often absent, hence NULLS NOT DISTINCT.
CREATE TABLE event_patients (
    event_id       uuid   NOT NULL REFERENCES events (event_id),
    patient_id     text   NOT NULL,
    patient_issuer text,
    patient_state  text,
    study_uids     text[] NOT NULL DEFAULT '{}',
    CONSTRAINT event_patients_key UNIQUE NULLS NOT DISTINCT (event_id, patient_issuer, patient_id)
);

-- "Which access events disclosed patient P?": the history probes this once per page.
CREATE INDEX event_patients_patient ON event_patients (patient_id, patient_issuer)
    INCLUDE (event_id);

DO $$
DECLARE t text := 'event_patients';
BEGIN
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION reject_mutation()', t || '_no_mutation', t);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation()', t || '_no_truncate', t);
END
$$;

REVOKE ALL ON event_patients FROM PUBLIC;
GRANT SELECT, INSERT ON event_patients TO ledger_appender;
GRANT SELECT ON event_patients TO ledger_reader;
