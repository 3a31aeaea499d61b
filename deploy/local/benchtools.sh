#!/usr/bin/env bash
# Install what `make bench` drives the HTTP benchmarks with and nothing in `make test`
# needs: wrk, the load generator (Debian's package; benchmarks/httpload.py,
# histories.py). Idempotent: installs only what is missing.
source "$(dirname "$0")/common.sh"

apt_install wrk
