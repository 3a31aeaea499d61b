-- The superuser's step (docs/postgres.md "The superuser's step"), run by a superuser in
-- template1 (so every database made afterwards has it) and in the ledger's database, before
-- `ledger migrate`. Idempotent. Two parts: the pg_partman extension, and the detach guard.

SET client_min_messages = warning;

-- 1. pg_partman for the ledger's time-partitioned index (docs/scale.md).
-- Run by a superuser in template1 (so every database made afterwards has it) and in the
-- ledger's database. Idempotent. CREATE EXTENSION pg_partman needs a superuser: it is not
-- a trusted extension; the migrations, run by ledger_owner, only use it.
-- ledger_owner gets what pg_partman's README asks for a non-superuser that runs it.
CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;
GRANT ALL ON SCHEMA partman TO ledger_owner;
GRANT ALL ON ALL TABLES IN SCHEMA partman TO ledger_owner;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA partman TO ledger_owner;
GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA partman TO ledger_owner;

-- 2. The detach guard (docs/archive.md "Detaching"): an event trigger that refuses any DDL
-- leaving a period's rows out of the ledger's partitioned tables unless that period was
-- archived (its bundle verified offline and against the database, and the signed archive
-- record stored: a row 'archived' in period_archives). DETACH PARTITION and DROP TABLE
-- fire none of the append-only row or TRUNCATE triggers; this closes that door for every
-- role but a superuser, who can also drop this trigger (the signed checkpoints, seals,
-- witnesses and `ledger monitor` are what catch a superuser).
--
-- Event triggers need a superuser: the installer runs this file (deploy/local/postgres.sh
-- in template1 and in the ledger's database; docs/postgres.md for a managed server).
-- Idempotent. The function reads the ledger's tables by name at run time, so it can exist
-- before the migrations have run and does nothing until the tables are partitioned.

CREATE OR REPLACE FUNCTION public.ledger_detach_guard() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    parents constant text[] := ARRAY['leaves', 'tiles', 'events', 'event_patients',
                                     'read_disclosures'];
    parent text;
    missing date;
BEGIN
    IF to_regclass('public.period_archives') IS NULL OR to_regclass('public.logs') IS NULL THEN
        RETURN;
    END IF;
    FOREACH parent IN ARRAY parents LOOP
        IF to_regclass('public.' || parent) IS NULL THEN
            IF TG_TAG = 'DROP TABLE' THEN  -- (a restore creates the tables one by one)
                RAISE EXCEPTION 'ledger table % is gone: refused', parent
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            CONTINUE;
        END IF;
        IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('public.' || parent)) <> 'p' THEN
            CONTINUE;  -- not partitioned (yet): the row and TRUNCATE triggers guard it
        END IF;
        SELECT m.month INTO missing
        -- Months that hold appended rows (a month being made, its partitions attached one
        -- table at a time, holds none yet; nor does a month made ahead).
        FROM (SELECT DISTINCT date_trunc('month', g.period)::date AS month
              FROM public.logs g
              WHERE EXISTS (SELECT 1 FROM public.ingest_positions p
                            WHERE p.log_id = g.log_id AND p.appended > 0)) m
        WHERE NOT EXISTS (
                SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = to_regclass('public.' || parent)
                  AND pg_get_expr(c.relpartbound, c.oid)
                      LIKE 'FOR VALUES FROM (''' || m.month::text || ''')%')
          AND NOT EXISTS (
                SELECT 1 FROM public.period_archives a
                WHERE a.period = m.month AND a.state = 'archived')
        ORDER BY m.month LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'the % partition of % would leave the ledger, but that period is not archived: refused (ledger archive detach is the only way)',
                to_char(missing, 'YYYY-MM'), parent
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END LOOP;
END
$$;

DROP EVENT TRIGGER IF EXISTS ledger_detach_guard;
CREATE EVENT TRIGGER ledger_detach_guard ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'DROP TABLE')
    EXECUTE FUNCTION public.ledger_detach_guard();
