-- 0011: "which access events disclosed study S?" A query's answer lists, per patient it
-- returned, the UIDs of the studies it returned (event_patients.study_uids, 0010); the
-- study history (/v1/studies/{uid}/accesses, FHIR AuditEvent?entity=) lists those events
-- marked "disclosed" next to the events that name the study, probing this index once per
-- page (docs/design/multi-patient-events.md). An index only: the rows, and what
-- `ledger verify` checks of them, are unchanged.
-- depends: 0010.multi-patient-events

CREATE INDEX event_patients_studies ON event_patients USING gin (study_uids);
