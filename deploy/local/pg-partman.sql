-- pg_partman for the ledger's time-partitioned index (docs/scale.md, docs/postgres.md).
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
