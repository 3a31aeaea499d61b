#!/usr/bin/env bash
# Debian's Prometheus server and promtool, for the tests that scrape the ledger's processes
# and check deploy/prometheus/alerts.yml (docs/observability.md). Only installed: the
# tests run a server of their own (own port, config and data directory), and the
# Debian service the package enables is never used.
# Usage: prometheus.sh install
source "$(dirname "$0")/common.sh"

install() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  apt_install prometheus
  # The package enables a system service on :9090; the local stack does not use it.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
}

case "${1:-install}" in
  install) install ;;
  *) die "usage: $0 install" ;;
esac
