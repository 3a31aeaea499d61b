-- 0014: changes to the compliance registry (philedger.registry.RegistryChange) in the event
-- index, one row per leaf of the registry's log like every event
-- (docs/design/compliance-registry.md, "The registry topic and `ledger registry import`").
-- A registry change names no patient and happens at no facility: kind 'registry_change',
-- patient NULL, facility_id '' (the column is NOT NULL), its author as the user. The
-- audit queries (histories, reports, FHIR search) never return such a row.
-- depends: 0013.alert-delivery

-- One ALTER TABLE: existing rows are checked in a single scan. The first two only widen
-- what 0010 allowed; the third holds for every existing row (none is a registry change).
ALTER TABLE events
    DROP CONSTRAINT events_kind_check,
    DROP CONSTRAINT events_patient_named,
    ADD CONSTRAINT events_kind_check
        CHECK (kind IN ('phi_access', 'critical_result_relay', 'audit_log_used',
                        'security_event', 'registry_change')),
    ADD CONSTRAINT events_patient_named
        CHECK (patient_id IS NOT NULL
               OR kind IN ('audit_log_used', 'security_event', 'phi_access', 'registry_change')),
    ADD CONSTRAINT events_registry_change_unnamed
        CHECK (kind <> 'registry_change' OR (patient_id IS NULL AND facility_id = ''));

-- The registry as stored: every change in leaf order (`ledger registry import` reads it
-- to check references and overlapping periods; the rules evaluator reads the log itself).
CREATE INDEX events_registry_changes ON events (log_id, leaf_index)
    WHERE kind = 'registry_change';
