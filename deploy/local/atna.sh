#!/usr/bin/env bash
# The IHE ATNA receiver (syslog over mutual TLS on 127.0.0.1:$ATNA_TLS_PORT; no UDP), no Docker.
# Generates once, under .local/secrets/atna/ (mode 700, files 600): the receiver's self-signed
# TLS certificate and key, a local client CA (deploy/local/atna-pki.sh) and a client
# certificate for the demo sender (CN atna-demo-sender; rsyslog or a test PACS uses it), and
# the sender policy .local/atna/senders.toml (which AuditSourceIDs each client CN may claim;
# edit it to add your PACS). UDP stays off: set LEDGER_ATNA_UDP_PORT to turn it on, knowing
# that datagrams are unauthenticated and spoofable (docs/atna.md). Plain TCP (RFC 6587)
# stays off too: LEDGER_ATNA_TCP_PORT turns it on, for the source addresses under [tcp].
# Events go to Kafka through a durable emitter (spool under LEDGER_SPOOL_DIR/atna-receiver);
# unmappable messages are kept under .local/atna/kept (list them with
# `ledger atna kept`).
# Usage: atna.sh start|stop|status. Needs .local/env (deploy/local/stack.sh infra or up).
source "$(dirname "$0")/common.sh"

ATNA_TLS_PORT="${LEDGER_ATNA_TLS_PORT:-16514}"
ATNA_UDP_PORT="${LEDGER_ATNA_UDP_PORT:-}"
ATNA_TCP_PORT="${LEDGER_ATNA_TCP_PORT:-}"
ATNA_SECRETS="$SECRETS/atna"
ATNA_CERT="$ATNA_SECRETS/server.crt"
ATNA_KEY="$ATNA_SECRETS/server.key"
ATNA_CLIENT_CA="$ATNA_SECRETS/client-ca.crt"
ATNA_DEMO_CN="atna-demo-sender"
ATNA_DEMO_CLIENT="$ATNA_SECRETS/$ATNA_DEMO_CN"
SENDERS="$LOCAL/atna/senders.toml"
KEPT_DIR="$LOCAL/atna/kept"
PIDFILE="$RUN_DIR/atna.pid"
ATNA_LOG="$LOG_DIR/atna.log"
ENV_FILE="$LOCAL/env"

ensure_cert() {
  if [ -s "$ATNA_CERT" ] && [ -s "$ATNA_KEY" ]; then return 0; fi
  command -v openssl >/dev/null || apt_install openssl
  log "generating a self-signed TLS certificate for the ATNA receiver ($ATNA_CERT)"
  mkdir -p "$ATNA_SECRETS"; chmod 700 "$ATNA_SECRETS"
  (umask 077
   openssl req -x509 -newkey rsa:2048 -sha256 -nodes -days 825 \
     -keyout "$ATNA_KEY.tmp" -out "$ATNA_CERT.tmp" -subj "/CN=localhost" \
     -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1) \
    || die "openssl could not make the ATNA certificate"
  mv "$ATNA_KEY.tmp" "$ATNA_KEY"; mv "$ATNA_CERT.tmp" "$ATNA_CERT"
}

ensure_client_pki() {
  "$ROOT/deploy/local/atna-pki.sh" ca "$ATNA_SECRETS"
  "$ROOT/deploy/local/atna-pki.sh" client "$ATNA_SECRETS" "$ATNA_DEMO_CN" "$ATNA_DEMO_CLIENT"
  if [ ! -s "$SENDERS" ]; then
    log "writing the ATNA sender policy $SENDERS"
    (umask 077; cat >"$SENDERS" <<TOML
# Which AuditSourceIDs each ATNA sender may claim (docs/atna.md). A TLS sender is the
# subject CN of its client certificate (signed by $ATNA_CLIENT_CA);
# a message claiming an AuditSourceID not listed for it is kept, never emitted.
[tls]
"$ATNA_DEMO_CN" = ["dcm4chee-arc"]

# Only with --udp-port (LEDGER_ATNA_UDP_PORT): what an unauthenticated datagram may claim.
[udp]
audit_source_ids = []

# Only with --tcp-port (LEDGER_ATNA_TCP_PORT): source address or network = what a plain
# TCP connection from it may claim (no certificate: only the addresses listed connect).
[tcp]
TOML
    )
  fi
}

atna_ready() { port_open 127.0.0.1 "$ATNA_TLS_PORT"; }

start() {
  [ -s "$ENV_FILE" ] || die "$ENV_FILE is missing: run deploy/local/stack.sh infra first"
  if pid_alive "$PIDFILE"; then
    log "ATNA receiver already running (pid $(cat "$PIDFILE"))"
  else
    port_open 127.0.0.1 "$ATNA_TLS_PORT" && die "port $ATNA_TLS_PORT is taken by another process"
    ensure_cert
    mkdir -p "$KEPT_DIR"; chmod 700 "$LOCAL/atna" "$KEPT_DIR"
    ensure_client_pki
    local listeners=()
    if [ -n "$ATNA_UDP_PORT" ]; then
      log "WARNING: UDP on 127.0.0.1:$ATNA_UDP_PORT: unauthenticated and spoofable (LEDGER_ATNA_UDP_PORT)"
      listeners=(--udp-port "$ATNA_UDP_PORT")
    fi
    if [ -n "$ATNA_TCP_PORT" ]; then
      log "WARNING: plain TCP on 127.0.0.1:$ATNA_TCP_PORT: no certificate, senders known by source address ([tcp] of $SENDERS)"
      listeners+=(--tcp-port "$ATNA_TCP_PORT")
    fi
    log "starting the ATNA receiver (log: $ATNA_LOG)"
    (cd "$ROOT" && set -a && source "$ENV_FILE" && set +a && \
      export LEDGER_PRODUCER_KEY_FILE="$SECRETS/producers/atna.key" LEDGER_OPS_PORT="$OPS_ATNA_PORT" && \
      exec setsid nohup \
      "$VENV/bin/ledger" atna serve --host 127.0.0.1 \
        --tls-port "$ATNA_TLS_PORT" "${listeners[@]}" \
        --cert "$ATNA_CERT" --key "$ATNA_KEY" --client-ca "$ATNA_CLIENT_CA" \
        --senders "$SENDERS" --kept-dir "$KEPT_DIR" \
        >>"$ATNA_LOG" 2>&1 </dev/null) &
    echo $! >"$PIDFILE"
  fi
  wait_for 30 "ATNA receiver" atna_ready || { tail -20 "$ATNA_LOG" >&2 || true; die "the ATNA receiver did not start (log: $ATNA_LOG)"; }
  log "ATNA receiver: syslog over mutual TLS on 127.0.0.1:$ATNA_TLS_PORT (RFC 5425), TCP ${ATNA_TCP_PORT:-off}, UDP ${ATNA_UDP_PORT:-off}; certificate $ATNA_CERT, client CA $ATNA_CLIENT_CA, demo sender $ATNA_DEMO_CLIENT.crt, policy $SENDERS"
}

stop() { stop_pidfile "$PIDFILE" "ATNA receiver"; }

status() {
  if pid_alive "$PIDFILE"; then
    echo "ATNA receiver running (pid $(cat "$PIDFILE")): mutual TLS 127.0.0.1:$ATNA_TLS_PORT, TCP ${ATNA_TCP_PORT:-off}, UDP ${ATNA_UDP_PORT:-off}"
  else
    echo "ATNA receiver not running"; return 3
  fi
}

case "${1:-start}" in
  start) start ;; stop) stop ;; status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
