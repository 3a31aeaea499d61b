-- 0006: indexes for the HIPAA reports (ledger/pg/reports.py): breach investigations by
-- facility or by network address over a time window, and critical-result relay reports
-- by time. Investigations by user use events_user_time (0001); accountings of
-- disclosures use events_patient_time (0001).
-- depends: 0005.api-tokens-and-ledger-reads

CREATE INDEX events_facility_time ON events (facility_id, event_time);
CREATE INDEX events_address_time  ON events (network_address, event_time) WHERE network_address IS NOT NULL;
CREATE INDEX events_relay_time    ON events (event_time) WHERE kind = 'critical_result_relay';
