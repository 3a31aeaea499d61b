#!/usr/bin/env bash
# PostgreSQL from Debian's package, with its cluster under .local/pg, on 127.0.0.1:$PG_PORT.
# Usage: postgres.sh start|stop|status. Idempotent. Creates the database and three roles:
#   ledger_owner    owns the schema; only migrations use it (and tests, to make scratch databases)
#   ledger_appender the consumer: INSERT and SELECT on ledger tables, nothing else
#   ledger_reader   the API: SELECT only
source "$(dirname "$0")/common.sh"

# LEDGER_PG_HOME: another cluster directory (tests start a throwaway cluster with it).
PG_HOME="${LEDGER_PG_HOME:-$LOCAL/pg}"
DATA="$PG_HOME/data"
SOCK="$PG_HOME/run"
PG_LOG="$PG_HOME/log/postgresql.log"

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
pg_major() { pg_bin | awk -F/ '{print $5}'; }

# Run a command as the cluster's owner: PostgreSQL refuses to run as root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

ensure_installed() {
  if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
    apt_install postgresql
    # Debian's package may create and start a default cluster on 5432; it is not ours and
    # we leave it alone. Ours lives under .local/pg.
  fi
  [ -x "$(pg_bin)/initdb" ] || die "PostgreSQL server binaries not found after install"
  # pg_partman (the event index's monthly partitions, docs/scale.md), for the installed major.
  apt_install "postgresql-$(pg_major)-partman"
}

ensure_cluster() {
  mkdir -p "$PG_HOME/log" "$SOCK"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$PG_HOME" "$PG_HOME/log" "$SOCK"
    runuser -u postgres -- test -w "$PG_HOME" \
      || die "user postgres cannot reach $PG_HOME (a parent directory is not traversable)"
  fi
  if [ ! -s "$DATA/PG_VERSION" ]; then
    log "creating cluster in $DATA"
    local pwfile="$PG_HOME/.superpw"
    (umask 077; secret pg-superuser > "$pwfile")
    [ "$(id -u)" = 0 ] && chown postgres: "$pwfile"
    as_pg "$(pg_bin)/initdb" -D "$DATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
      --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 >"$PG_HOME/log/initdb.log" 2>&1 \
      || { rm -f "$pwfile"; die "initdb failed (log: $PG_HOME/log/initdb.log)"; }
    rm -f "$pwfile"
    cat >>"$DATA/postgresql.conf" <<CONF
# --- phi-audit-ledger local settings ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCK'
max_connections = 200
shared_buffers = 512MB
wal_buffers = 16MB
max_wal_size = 4GB
checkpoint_timeout = 15min
synchronous_commit = on
log_min_duration_statement = 2000
log_line_prefix = '%m [%p] %u@%d '
CONF
  fi
  ensure_log_settings
}

# The server log must carry no PHI: no failing rows (DETAIL), no key values, no statement
# text or bind parameters of failing or slow statements (docs/operations.md). Written on
# every start, so an existing cluster gets them too; the include is appended once, last,
# so these values win over anything earlier in postgresql.conf.
LOG_CONF="phi-ledger-logging.conf"
ensure_log_settings() {
  local tmp="$DATA/$LOG_CONF.tmp"
  cat >"$tmp" <<'CONF'
# Written by deploy/local/postgres.sh on every start; edits here are overwritten.
# No row values, key values, statement text or parameters in the server log.
log_error_verbosity = terse
log_min_error_statement = panic
log_parameter_max_length_on_error = 0
log_parameter_max_length = 0
CONF
  [ "$(id -u)" = 0 ] && chown postgres: "$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" "$DATA/$LOG_CONF"
  if ! grep -qxF "include = '$LOG_CONF'" "$DATA/postgresql.conf"; then
    printf "\n# --- phi-audit-ledger: no PHI in the server log ---\ninclude = '%s'\n" "$LOG_CONF" \
      >>"$DATA/postgresql.conf"
  fi
}

psql_super() { as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PG_PORT" -U postgres -d postgres "$@"; }

ensure_roles() {
  local owner_pw appender_pw reader_pw
  owner_pw="$(secret pg-ledger_owner)"; appender_pw="$(secret pg-ledger_appender)"; reader_pw="$(secret pg-ledger_reader)"
  # Passwords go through psql variables on stdin, never on a command line or in a log.
  psql_super -v owner_pw="$owner_pw" -v appender_pw="$appender_pw" -v reader_pw="$reader_pw" -v db="$PG_DB" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', r) FROM unnest(ARRAY['ledger_owner','ledger_appender','ledger_reader']) r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
ALTER ROLE ledger_owner    LOGIN CREATEDB PASSWORD :'owner_pw';
ALTER ROLE ledger_appender LOGIN NOCREATEDB NOCREATEROLE PASSWORD :'appender_pw';
ALTER ROLE ledger_reader   LOGIN NOCREATEDB NOCREATEROLE PASSWORD :'reader_pw';
SELECT format('CREATE DATABASE %I OWNER ledger_owner', :'db')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
}

# The pg_partman extension in template1 (every database made afterwards, such as the tests'
# scratch databases, has it) and in the ledger's database; a superuser's step (docs/postgres.md).
ensure_superuser_step() {
  local db
  for db in template1 "$PG_DB"; do
    psql_super -d "$db" <"$(dirname "$0")/pg-superuser.sql" \
      || die "the superuser step (pg_partman, detach guard) failed in $db"
  done
}

start() {
  ensure_installed
  ensure_cluster
  if as_pg "$(pg_bin)/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT; reloading its log settings"
    as_pg "$(pg_bin)/pg_ctl" -D "$DATA" reload >/dev/null
  else
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
    # The port is passed on every start (not frozen into postgresql.conf at initdb time).
    as_pg "$(pg_bin)/pg_ctl" -D "$DATA" -l "$PG_LOG" -o "-p $PG_PORT" -w -t 60 start >/dev/null \
      || { tail -20 "$PG_LOG" >&2; die "PostgreSQL did not start (log: $PG_LOG)"; }
  fi
  wait_for 60 "PostgreSQL" as_pg "$(pg_bin)/pg_isready" -q -h "$SOCK" -p "$PG_PORT" \
    || die "PostgreSQL not ready (log: $PG_LOG)"
  ensure_roles
  ensure_superuser_step
  log "PostgreSQL logs: $PG_LOG"
}

stop() {
  if [ -n "$(pg_bin)" ] && [ -s "$DATA/PG_VERSION" ] && as_pg "$(pg_bin)/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_pg "$(pg_bin)/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null && log "PostgreSQL stopped"
  else
    log "PostgreSQL not running"
  fi
}

status() { as_pg "$(pg_bin)/pg_ctl" -D "$DATA" status; }

case "${1:-start}" in
  start) start ;; stop) stop ;; status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
