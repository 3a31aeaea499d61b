#!/usr/bin/env bash
# The DICOM audit proxy (`ledger dicom-proxy serve`, docs/dicom-proxy.md) in front of the local
# Orthanc's DICOM port, no Docker: listens on 127.0.0.1:$LEDGER_DICOMPROXY_PORT (default 11112)
# as AE $LEDGER_DICOMPROXY_AET (default LEDGERPROXY), accepts DCMTK's default calling AEs
# (ECHOSCU, FINDSCU, GETSCU, MOVESCU, STORESCU) and LOCALSCU, relays to Orthanc
# (127.0.0.1:$LEDGER_ORTHANC_DICOM_PORT, AE $LEDGER_ORTHANC_AET), and records every operation
# in the ledger: Kafka as its own principal ledger-dicomproxy (WRITE on the event topics only),
# events signed with its own producer key (dicom-proxy-local, .local/secrets/producers/
# dicomproxy.key), spooled under .local/dicomproxy/spool while Kafka is away; fail-closed.
# C-MOVE destination MOVESCU is 127.0.0.1:$LEDGER_DICOMPROXY_MOVE_PORT (default 11113):
# `movescu -aem MOVESCU +P 11113 ...`. Config .local/dicomproxy/proxy.toml (mode 600, written at
# each start), pid .local/run/dicomproxy.pid, log .local/log/dicomproxy.log.
# Usage: dicomproxy.sh start|stop|status|env. Needs .local/env (stack.sh infra) and, to answer,
# Orthanc (orthanc.sh start). Idempotent.
source "$(dirname "$0")/common.sh"

PROXY_PORT="${LEDGER_DICOMPROXY_PORT:-11112}"
PROXY_AET="${LEDGER_DICOMPROXY_AET:-LEDGERPROXY}"
MOVE_PORT="${LEDGER_DICOMPROXY_MOVE_PORT:-11113}"
ORTHANC_DICOM_PORT="${LEDGER_ORTHANC_DICOM_PORT:-14242}"
ORTHANC_AET="${LEDGER_ORTHANC_AET:-PHILEDGER}"
P_HOME="$LOCAL/dicomproxy"
CONF="$P_HOME/proxy.toml"
PIDFILE="$RUN_DIR/dicomproxy.pid"
P_LOG="$LOG_DIR/dicomproxy.log"
ENV_FILE="$LOCAL/env"
PRODUCER_ID="dicom-proxy-local"
KEY_FILE="$SECRETS/producers/dicomproxy.key"
PRINCIPAL="ledger-dicomproxy"

env_value() {  # env_value KEY DEFAULT: from .local/env when present
  local v=""
  [ -f "$ENV_FILE" ] && v="$(sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1)"
  echo "${v:-$2}"
}

write_config() {
  local protocol ca mechanism creds
  protocol="$(env_value KAFKA_SECURITY_PROTOCOL PLAINTEXT)"
  ca="$(env_value KAFKA_SSL_CA_FILE "")"
  mechanism="$(env_value KAFKA_SASL_MECHANISM "")"
  creds="$(env_value LEDGER_KAFKA_CREDENTIALS_DIR "")"
  mkdir -p "$P_HOME/spool"; chmod 700 "$P_HOME" "$P_HOME/spool"
  (umask 077; cat >"$CONF.tmp" <<TOML
# Written by deploy/local/dicomproxy.sh at each start; the format is in docs/dicom-proxy.md.
[listen]
host = "127.0.0.1"
port = $PROXY_PORT
ae_title = "$PROXY_AET"
allowed_calling_aets = ["ECHOSCU", "FINDSCU", "GETSCU", "MOVESCU", "STORESCU", "LOCALSCU"]

[upstream]
host = "127.0.0.1"
port = $ORTHANC_DICOM_PORT
ae_title = "$ORTHANC_AET"

[destinations.MOVESCU]
host = "127.0.0.1"
port = $MOVE_PORT

[recording]
fail_closed = true

[ledger]
bootstrap_servers = "$(env_value KAFKA_BOOTSTRAP "127.0.0.1:$KAFKA_PORT")"
topic = "$(env_value LEDGER_ACCESS_TOPIC phi-access)"
producer_id = "$PRODUCER_ID"
producer_key_file = "$KEY_FILE"
facility_id = "dicom-proxy-local"
facility_name = "Local DICOM proxy (demo)"
spool_dir = "$P_HOME/spool"

[ledger.kafka]
protocol = "$protocol"
TOML
  if [ -n "$ca" ]; then echo "ca_file = \"$ca\"" >>"$CONF.tmp"; fi
  case "$protocol" in SASL_*)
    printf 'sasl_mechanism = "%s"\nsasl_username = "%s"\nsasl_password_file = "%s"\n' \
      "$mechanism" "$PRINCIPAL" "$creds/$PRINCIPAL" >>"$CONF.tmp" ;;
  esac
  mv "$CONF.tmp" "$CONF")
}

proxy_ready() { port_open 127.0.0.1 "$PROXY_PORT"; }

start() {
  [ -s "$ENV_FILE" ] || die "$ENV_FILE is missing: run deploy/local/stack.sh infra first"
  [ -s "$KEY_FILE" ] || die "$KEY_FILE is missing: run deploy/local/stack.sh infra first"
  if pid_alive "$PIDFILE"; then
    log "DICOM proxy already running (pid $(cat "$PIDFILE"))"
  else
    port_open 127.0.0.1 "$PROXY_PORT" && die "port $PROXY_PORT is taken by another process (LEDGER_DICOMPROXY_PORT)"
    write_config
    log "starting the DICOM proxy (log: $P_LOG)"
    (cd "$ROOT" && LEDGER_OPS_PORT="$OPS_DICOMPROXY_PORT" exec setsid nohup "$VENV/bin/ledger" dicom-proxy serve --config "$CONF" \
      >>"$P_LOG" 2>&1 </dev/null) &
    echo $! >"$PIDFILE"
  fi
  wait_for 60 "DICOM proxy" proxy_ready || { tail -20 "$P_LOG" >&2 || true; die "the DICOM proxy did not start (log: $P_LOG)"; }
  log "DICOM proxy: AE $PROXY_AET on 127.0.0.1:$PROXY_PORT in front of Orthanc $ORTHANC_AET@127.0.0.1:$ORTHANC_DICOM_PORT (config $CONF)"
}

print_env() {
  echo "LEDGER_DICOMPROXY_ADDRESS=127.0.0.1:$PROXY_PORT"
  echo "LEDGER_DICOMPROXY_AET=$PROXY_AET"
}

stop() { stop_pidfile "$PIDFILE" "DICOM proxy"; }

status() {
  if pid_alive "$PIDFILE"; then
    echo "DICOM proxy running (pid $(cat "$PIDFILE")): AE $PROXY_AET on 127.0.0.1:$PROXY_PORT"
  else
    echo "DICOM proxy not running"; return 3
  fi
}

case "${1:-start}" in
  start) start ;; stop) stop ;; status) status ;; env) print_env ;;
  *) die "usage: $0 start|stop|status|env" ;;
esac
