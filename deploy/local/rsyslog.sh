#!/usr/bin/env bash
# rsyslog with its GnuTLS network driver, the syslog daemon the ATNA end-to-end test
# forwards through (RFC 5425 over TLS, octet-counted), the way a PACS host's own syslog
# daemon would relay its audit messages to the ledger's receiver. The test runs its own
# rsyslogd (-n, its own configuration, work directory and pid file); nothing here starts
# or configures the system's daemon.
# Usage: rsyslog.sh install   (only the Debian packages; idempotent)
source "$(dirname "$0")/common.sh"

case "${1:-}" in
  install)
    apt_install rsyslog rsyslog-gnutls
    [ -x /usr/sbin/rsyslogd ] || die "rsyslogd not found after install"
    ;;
  *) die "usage: $0 install" ;;
esac
