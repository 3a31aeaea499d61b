#!/usr/bin/env bash
# pg_auto_failover from Debian's package (postgresql-<major>-auto-failover), for the
# PostgreSQL high-availability fault test (docs/postgres.md). Usage: pgautofailover.sh install
source "$(dirname "$0")/common.sh"

pg_major() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 | awk -F/ '{print $5}'; }

case "${1:-}" in
  install)
    major="$(pg_major)"
    [ -n "$major" ] || apt_install postgresql
    major="$(pg_major)"
    # The extension (monitor) and pg_autoctl (the keeper and the command line).
    # pg_partman: the ledger database on these nodes is migrated like any other.
    apt_install "postgresql-$major-auto-failover" pg-auto-failover-cli "postgresql-$major-partman"
    command -v pg_autoctl >/dev/null || [ -x "/usr/lib/postgresql/$major/bin/pg_autoctl" ] || die "pg_autoctl not found after install"
    ;;
  *) die "usage: $0 install" ;;
esac
