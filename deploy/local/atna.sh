#!/usr/bin/env bash
# The IHE ATNA receiver (syslog TLS on 127.0.0.1:$ATNA_TLS_PORT, UDP on 127.0.0.1:$ATNA_UDP_PORT),
# no Docker. Generates a self-signed TLS certificate and key under .local/secrets/atna/ once.
# Events go to Kafka through a durable emitter (spool under LEDGER_SPOOL_DIR/atna-receiver);
# unmappable messages are kept under .local/atna/kept (list them with
# `ledger atna kept`).
# Usage: atna.sh start|stop|status. Needs .local/env (deploy/local/stack.sh infra or up).
source "$(dirname "$0")/common.sh"

ATNA_TLS_PORT="${LEDGER_ATNA_TLS_PORT:-16514}"
ATNA_UDP_PORT="${LEDGER_ATNA_UDP_PORT:-15514}"
ATNA_SECRETS="$SECRETS/atna"
ATNA_CERT="$ATNA_SECRETS/server.crt"
ATNA_KEY="$ATNA_SECRETS/server.key"
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

atna_ready() { port_open 127.0.0.1 "$ATNA_TLS_PORT"; }

start() {
  [ -s "$ENV_FILE" ] || die "$ENV_FILE is missing: run deploy/local/stack.sh infra first"
  if pid_alive "$PIDFILE"; then
    log "ATNA receiver already running (pid $(cat "$PIDFILE"))"
  else
    port_open 127.0.0.1 "$ATNA_TLS_PORT" && die "port $ATNA_TLS_PORT is taken by another process"
    ensure_cert
    mkdir -p "$KEPT_DIR"; chmod 700 "$LOCAL/atna" "$KEPT_DIR"
    log "starting the ATNA receiver (log: $ATNA_LOG)"
    (cd "$ROOT" && set -a && source "$ENV_FILE" && set +a && \
      export LEDGER_PRODUCER_KEY_FILE="$SECRETS/producers/atna.key" && exec setsid nohup \
      "$VENV/bin/ledger" atna serve --host 127.0.0.1 \
        --tls-port "$ATNA_TLS_PORT" --udp-port "$ATNA_UDP_PORT" \
        --cert "$ATNA_CERT" --key "$ATNA_KEY" --kept-dir "$KEPT_DIR" \
        >>"$ATNA_LOG" 2>&1 </dev/null) &
    echo $! >"$PIDFILE"
  fi
  wait_for 30 "ATNA receiver" atna_ready || { tail -20 "$ATNA_LOG" >&2 || true; die "the ATNA receiver did not start (log: $ATNA_LOG)"; }
  log "ATNA receiver: syslog over TLS on 127.0.0.1:$ATNA_TLS_PORT (RFC 5425), UDP on 127.0.0.1:$ATNA_UDP_PORT (RFC 5426); certificate $ATNA_CERT"
}

stop() { stop_pidfile "$PIDFILE" "ATNA receiver"; }

status() {
  if pid_alive "$PIDFILE"; then
    echo "ATNA receiver running (pid $(cat "$PIDFILE")): TLS 127.0.0.1:$ATNA_TLS_PORT, UDP 127.0.0.1:$ATNA_UDP_PORT"
  else
    echo "ATNA receiver not running"; return 3
  fi
}

case "${1:-start}" in
  start) start ;; stop) stop ;; status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
