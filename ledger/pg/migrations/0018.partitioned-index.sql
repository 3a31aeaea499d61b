-- 0018: the event index partitioned by time (docs/scale.md, "A time-partitioned index").
-- leaves, tiles, events, event_patients and read_disclosures gain `period` (the first day
-- of their log's period, logs.period) and become PARTITION BY RANGE (period), one
-- partition per UTC month, made by pg_partman 4.x (create_parent, p_type 'native'). Every
-- key includes period; the references to events become (event_id, period); leaves and
-- tiles reference (log_id, period) of logs, so a row cannot sit in another period than
-- its log. Existing rows are copied in (one transaction: a failure leaves 0017's schema).
-- pg_partman never drops or detaches anything here: retention is unset and automatic
-- maintenance off; partitions are made by ledger_make_partitions() (a trigger on logs,
-- for every new log's period) and ledger_partition_maintenance() (premakes 3 months),
-- which also puts a TRUNCATE guard on each partition (statement triggers are not cloned).
-- The extension is created by a superuser (deploy/local/pg-superuser.sql), not here.
-- depends: 0017.time-sharded-logs

DO $$
DECLARE
    v text;
    s name;
BEGIN
    SELECT e.extversion, n.nspname INTO v, s
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_partman';
    IF v IS NULL THEN
        RAISE EXCEPTION 'migration 0018 needs the pg_partman extension in this database'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'a superuser must run deploy/local/pg-superuser.sql in this database '
                         '(deploy/local/postgres.sh does it in template1 and the ledger '
                         'database; docs/postgres.md)';
    END IF;
    IF s <> 'partman' OR split_part(v, '.', 1) <> '4' THEN
        RAISE EXCEPTION 'migration 0018 needs pg_partman 4.x in schema partman, found % in %', v, s
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'install Debian''s postgresql-<major>-partman and run deploy/local/pg-superuser.sql';
    END IF;
END
$$;

-- pg_partman computes partition bounds in the session's time zone: months are UTC months.
SET LOCAL TimeZone = 'UTC';

ALTER TABLE logs ADD CONSTRAINT logs_log_period UNIQUE (log_id, period);

ALTER TABLE read_disclosures RENAME TO read_disclosures_0017;
ALTER TABLE event_patients RENAME TO event_patients_0017;
ALTER TABLE events RENAME TO events_0017;
ALTER TABLE tiles RENAME TO tiles_0017;
ALTER TABLE leaves RENAME TO leaves_0017;

CREATE TABLE leaves (
    log_id     integer NOT NULL,
    leaf_index bigint  NOT NULL,
    leaf       bytea   NOT NULL,
    leaf_hash  bytea   NOT NULL,
    seal_id    bytea,
    seal_index integer,
    period     date    NOT NULL,
    CONSTRAINT leaves_leaf_check CHECK (octet_length(leaf) <= 65535),
    CONSTRAINT leaves_leaf_hash_check CHECK (octet_length(leaf_hash) = 32),
    CONSTRAINT leaves_leaf_index_check CHECK (leaf_index >= 0)
) PARTITION BY RANGE (period);

CREATE TABLE tiles (
    log_id     integer  NOT NULL,
    level      smallint NOT NULL,
    tile_index bigint   NOT NULL,
    hashes     bytea    NOT NULL,
    root       bytea    NOT NULL,
    period     date     NOT NULL,
    CONSTRAINT tiles_hashes_check CHECK (octet_length(hashes) = 8192),
    CONSTRAINT tiles_level_check CHECK (level >= 0),
    CONSTRAINT tiles_root_check CHECK (octet_length(root) = 32),
    CONSTRAINT tiles_tile_index_check CHECK (tile_index >= 0)
) PARTITION BY RANGE (period);
ALTER TABLE tiles ALTER COLUMN hashes SET STORAGE EXTERNAL;

CREATE TABLE events (
    event_id        uuid    NOT NULL,
    log_id          integer NOT NULL,
    leaf_index      bigint  NOT NULL,
    kind            text    NOT NULL,
    event_time      timestamptz NOT NULL,
    producer_id     text    NOT NULL,
    producer_seq    bigint  NOT NULL,
    facility_id     text    NOT NULL,
    patient_id      text,
    patient_issuer  text,
    patient_state   text,
    user_id         text    NOT NULL,
    user_name       text,
    user_role       text,
    user_org        text,
    dicom_event_id  text,
    action          text,
    outcome         text,
    study_uid       text,
    accession       text,
    network_address text,
    purpose_of_use  text,
    period          date    NOT NULL,
    CONSTRAINT events_kind_check CHECK (kind IN ('phi_access', 'critical_result_relay',
        'audit_log_used', 'security_event', 'registry_change')),
    CONSTRAINT events_patient_named CHECK (patient_id IS NOT NULL
        OR kind IN ('audit_log_used', 'security_event', 'phi_access', 'registry_change')),
    CONSTRAINT events_registry_change_unnamed CHECK (kind <> 'registry_change'
        OR (patient_id IS NULL AND facility_id = ''))
) PARTITION BY RANGE (period);

CREATE TABLE event_patients (
    event_id       uuid   NOT NULL,
    patient_id     text   NOT NULL,
    patient_issuer text,
    patient_state  text,
    study_uids     text[] NOT NULL DEFAULT '{}',
    period         date   NOT NULL
) PARTITION BY RANGE (period);

CREATE TABLE read_disclosures (
    event_id   uuid   NOT NULL,
    origin     text   NOT NULL,
    first_leaf bigint NOT NULL,
    end_leaf   bigint NOT NULL,
    span       int8range GENERATED ALWAYS AS (int8range(first_leaf, end_leaf)) STORED,
    period     date   NOT NULL,
    CONSTRAINT read_disclosures_check CHECK (end_leaf > first_leaf),
    CONSTRAINT read_disclosures_first_leaf_check CHECK (first_leaf >= 0)
) PARTITION BY RANGE (period);

-- The tables pg_partman manages, parents before the tables that reference them.
CREATE FUNCTION ledger_partitioned_tables() RETURNS text[]
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT ARRAY['public.leaves', 'public.tiles', 'public.events',
                       'public.event_patients', 'public.read_disclosures'] $$;

-- Monthly partitions from the current month, 3 ahead. No default partition: a row whose
-- month has no partition fails loudly (and the trigger on logs makes the month first).
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ledger_partitioned_tables() LOOP
        PERFORM partman.create_parent(
            p_parent_table => t, p_control => 'period', p_type => 'native',
            p_interval => '1 month', p_premake => 3, p_jobmon => false,
            p_start_partition => to_char(date_trunc('month', now()), 'YYYY-MM-DD'));
    END LOOP;
END
$$;

UPDATE partman.part_config
SET retention = NULL, automatic_maintenance = 'off', infinite_time_partitions = true
WHERE parent_table = ANY (ledger_partitioned_tables());

DROP TABLE leaves_default, tiles_default, events_default, event_patients_default,
    read_disclosures_default;

-- Every partition gets a TRUNCATE guard: a statement trigger on the parent does not fire
-- for a TRUNCATE of one partition, and PostgreSQL clones only row triggers.
CREATE FUNCTION ledger_guard_partitions() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
DECLARE
    child regclass;
    n integer := 0;
BEGIN
    FOR child IN
        SELECT i.inhrelid::regclass FROM pg_inherits i
        WHERE i.inhparent = ANY (ledger_partitioned_tables()::regclass[])
          AND NOT EXISTS (SELECT 1 FROM pg_trigger g
                          WHERE g.tgrelid = i.inhrelid AND g.tgname = 'partition_no_truncate')
    LOOP
        EXECUTE format('CREATE TRIGGER partition_no_truncate BEFORE TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION public.reject_mutation()', child);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- The month of p_period in every partitioned table, made if missing (true when made).
-- Serialised (advisory lock 8726) so two appenders opening logs of the same new month do
-- not both create it.
CREATE FUNCTION ledger_make_partitions(p_period date) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET TimeZone = 'UTC'
    AS $$
DECLARE
    t text;
    month timestamptz := date_trunc('month', p_period::timestamptz);
    made boolean := false;
BEGIN
    IF (SELECT bool_and(n.table_exists)
        FROM unnest(ledger_partitioned_tables()) AS p(t),
             LATERAL partman.show_partition_name(p.t, month::text) AS n) THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(8726, 0);
    FOREACH t IN ARRAY ledger_partitioned_tables() LOOP
        made := partman.create_partition_time(t, ARRAY[month], p_analyze => false) OR made;
    END LOOP;
    PERFORM ledger_guard_partitions();
    RETURN made;
END
$$;

-- The months ahead (premake), by pg_partman; for a timer or the checkpointer.
CREATE FUNCTION ledger_partition_maintenance() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    SET TimeZone = 'UTC'
    AS $$
DECLARE
    t text;
BEGIN
    PERFORM pg_advisory_xact_lock(8726, 0);
    FOREACH t IN ARRAY ledger_partitioned_tables() LOOP
        PERFORM partman.run_maintenance(t, p_analyze => false, p_jobmon => false);
    END LOOP;
    RETURN ledger_guard_partitions();
END
$$;

CREATE FUNCTION logs_make_partitions() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public
    AS $$
BEGIN
    PERFORM ledger_make_partitions(NEW.period);
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION ledger_guard_partitions(), ledger_make_partitions(date),
    ledger_partition_maintenance() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger_partition_maintenance() TO ledger_appender;

-- The months of the logs that exist (an old ledger, or records timestamped long ago).
DO $$
BEGIN
    PERFORM ledger_make_partitions(p.period) FROM (SELECT DISTINCT period FROM logs) p;
    PERFORM ledger_guard_partitions();
END
$$;

CREATE TRIGGER logs_make_partitions AFTER INSERT ON logs
    FOR EACH ROW EXECUTE FUNCTION logs_make_partitions();

-- Copy, each row into its log's period; a row that does not find its log aborts all.
INSERT INTO leaves (log_id, leaf_index, leaf, leaf_hash, seal_id, seal_index, period)
SELECT o.log_id, o.leaf_index, o.leaf, o.leaf_hash, o.seal_id, o.seal_index, g.period
FROM leaves_0017 o JOIN logs g USING (log_id);

INSERT INTO tiles (log_id, level, tile_index, hashes, root, period)
SELECT o.log_id, o.level, o.tile_index, o.hashes, o.root, g.period
FROM tiles_0017 o JOIN logs g USING (log_id);

INSERT INTO events (event_id, log_id, leaf_index, kind, event_time, producer_id, producer_seq,
    facility_id, patient_id, patient_issuer, patient_state, user_id, user_name, user_role,
    user_org, dicom_event_id, action, outcome, study_uid, accession, network_address,
    purpose_of_use, period)
SELECT o.event_id, o.log_id, o.leaf_index, o.kind, o.event_time, o.producer_id,
    o.producer_seq, o.facility_id, o.patient_id, o.patient_issuer, o.patient_state,
    o.user_id, o.user_name, o.user_role, o.user_org, o.dicom_event_id, o.action, o.outcome,
    o.study_uid, o.accession, o.network_address, o.purpose_of_use, g.period
FROM events_0017 o JOIN logs g USING (log_id);

INSERT INTO event_patients (event_id, patient_id, patient_issuer, patient_state, study_uids,
    period)
SELECT o.event_id, o.patient_id, o.patient_issuer, o.patient_state, o.study_uids, g.period
FROM event_patients_0017 o JOIN events_0017 e USING (event_id) JOIN logs g ON g.log_id = e.log_id;

INSERT INTO read_disclosures (event_id, origin, first_leaf, end_leaf, period)
SELECT o.event_id, o.origin, o.first_leaf, o.end_leaf, g.period
FROM read_disclosures_0017 o JOIN events_0017 e USING (event_id)
JOIN logs g ON g.log_id = e.log_id;

DO $$
DECLARE
    t text;
    before bigint;
    after bigint;
BEGIN
    FOREACH t IN ARRAY ARRAY['leaves', 'tiles', 'events', 'event_patients', 'read_disclosures']
    LOOP
        EXECUTE format('SELECT count(*) FROM %I', t || '_0017') INTO before;
        EXECUTE format('SELECT count(*) FROM %I', t) INTO after;
        IF before <> after THEN
            RAISE EXCEPTION 'migration 0018: % has % rows, % of them found their log', t, before, after
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END LOOP;
END
$$;

DROP TABLE read_disclosures_0017, event_patients_0017, events_0017, tiles_0017, leaves_0017;

-- Keys (each with period, as PostgreSQL requires of a partitioned table's unique keys).
ALTER TABLE leaves ADD CONSTRAINT leaves_pkey PRIMARY KEY (log_id, leaf_index, period),
    ADD CONSTRAINT leaves_log_id_fkey FOREIGN KEY (log_id, period) REFERENCES logs (log_id, period);
ALTER TABLE tiles ADD CONSTRAINT tiles_pkey PRIMARY KEY (log_id, level, tile_index, period),
    ADD CONSTRAINT tiles_log_id_fkey FOREIGN KEY (log_id, period) REFERENCES logs (log_id, period);
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (event_id, period),
    ADD CONSTRAINT events_log_id_leaf_index_key UNIQUE (log_id, leaf_index, period);
ALTER TABLE event_patients
    ADD CONSTRAINT event_patients_key
        UNIQUE NULLS NOT DISTINCT (event_id, patient_issuer, patient_id, period),
    ADD CONSTRAINT event_patients_event_id_fkey FOREIGN KEY (event_id, period)
        REFERENCES events (event_id, period);
ALTER TABLE read_disclosures
    ADD CONSTRAINT read_disclosures_pkey PRIMARY KEY (event_id, origin, first_leaf, period),
    ADD CONSTRAINT read_disclosures_event_id_fkey FOREIGN KEY (event_id, period)
        REFERENCES events (event_id, period);

-- The secondary indexes of 0001-0015, unchanged (one per partition).
CREATE INDEX events_patient_time ON events (patient_id, event_time DESC, event_id DESC);
CREATE INDEX events_user_time ON events (user_id, event_time DESC, event_id DESC);
CREATE INDEX events_study_time ON events (study_uid, event_time DESC, event_id DESC)
    WHERE study_uid IS NOT NULL;
CREATE INDEX events_accession_time ON events (accession, event_time DESC, event_id DESC)
    WHERE accession IS NOT NULL;
CREATE INDEX events_address_time ON events (network_address, event_time)
    WHERE network_address IS NOT NULL;
CREATE INDEX events_facility_time ON events (facility_id, event_time);
CREATE INDEX events_registry_changes ON events (log_id, leaf_index)
    WHERE kind = 'registry_change';
CREATE INDEX events_relay_time ON events (event_time) WHERE kind = 'critical_result_relay';
CREATE INDEX event_patients_patient ON event_patients (patient_id, patient_issuer)
    INCLUDE (event_id);
CREATE INDEX event_patients_studies ON event_patients USING gin (study_uids);
CREATE INDEX read_disclosures_span ON read_disclosures USING spgist (span)
    INCLUDE (origin, event_id);

-- Append-only, as in 0001: row triggers are cloned to every partition.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['leaves', 'tiles', 'events', 'event_patients', 'read_disclosures'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION reject_mutation()', t || '_no_mutation', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION reject_mutation()', t || '_no_truncate', t);
    END LOOP;
END
$$;

-- Least privilege, as before, on the parents; the partitions grant nothing (native
-- partitions inherit no privileges): the roles reach rows through the parents only.
REVOKE ALL ON leaves, tiles, events, event_patients, read_disclosures FROM PUBLIC;
GRANT SELECT, INSERT ON leaves, tiles, events, event_patients, read_disclosures TO ledger_appender;
GRANT SELECT ON leaves, tiles, events, event_patients, read_disclosures TO ledger_reader;
