-- 0007: the index for security events (philedger.audit.SecurityEvent: DICOM User
-- Authentication 110114 login / logout / failures, Security Alert 110113 such as an
-- Emergency Override started 110127 / stopped 110138, Application Activity 110100,
-- Network Entry 110108). Like reads of the ledger (0005), a security event may name no
-- patient: a login names its user only.
-- depends: 0006.report-indexes

-- One ALTER TABLE: existing rows are checked in a single scan. Both constraints only
-- widen what 0005 allowed, so every existing row satisfies them.
ALTER TABLE events
    DROP CONSTRAINT events_kind_check,
    DROP CONSTRAINT events_patient_named,
    ADD CONSTRAINT events_kind_check
        CHECK (kind IN ('phi_access', 'critical_result_relay', 'audit_log_used', 'security_event')),
    ADD CONSTRAINT events_patient_named
        CHECK (patient_id IS NOT NULL OR kind IN ('audit_log_used', 'security_event'));
