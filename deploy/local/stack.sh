#!/usr/bin/env bash
# The local stack: `stack.sh up` (everything), `stack.sh infra` (PostgreSQL + Kafka + schema,
# what the tests need), `stack.sh down` (stop everything), `stack.sh status`.
source "$(dirname "$0")/common.sh"
HERE="$ROOT/deploy/local"
ENV_FILE="$LOCAL/env"
LEDGER="$VENV/bin/ledger"

LEDGER_NAME="${LEDGER_NAME:-philedger.localhost}"
SIGNER_KEY="$SECRETS/checkpoint-signer.key"
API_TOKEN_FILE="$SECRETS/api-admin-token"
# One Ed25519 producer key per producer identity (docs/producer-auth.md), mode 600.
PRODUCER_KEYS="$SECRETS/producers"
CURSOR_KEY="$SECRETS/api-cursor-key"

ensure_signer_key() {
  # One Ed25519 checkpoint key per installation, named after the ledger; mode 600.
  if [ ! -s "$SIGNER_KEY" ]; then
    log "generating the checkpoint signing key ($SIGNER_KEY)"
    "$LEDGER" keygen --name "$LEDGER_NAME" --out "$SIGNER_KEY" >/dev/null
  fi
}

# The key that MACs the API's page cursors (32 random bytes, hex; mode 600), created once,
# so cursors survive an API restart and are accepted by every API of this installation.
ensure_cursor_key() {
  if [ ! -s "$CURSOR_KEY" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CURSOR_KEY")
  fi
  chmod 600 "$CURSOR_KEY"
}

write_env() {
  local owner appender reader verifier
  owner="$(secret pg-ledger_owner)"; appender="$(secret pg-ledger_appender)"; reader="$(secret pg-ledger_reader)"
  ensure_signer_key
  ensure_cursor_key
  verifier="$("$LEDGER" verifier-key "$SIGNER_KEY" | paste -sd' ')"
  (umask 077; cat >"$ENV_FILE.tmp" <<ENV
# Written by deploy/local/stack.sh. Shell KEY=value lines; contains secrets (mode 600).
LEDGER_API_URL=http://127.0.0.1:$API_PORT
KAFKA_BOOTSTRAP=$("$HERE/kafka.sh" bootstrap)
LEDGER_TOPIC_REPLICATION_FACTOR=$([ "$KAFKA_BROKERS" -ge 3 ] && echo 3 || echo 1)
LEDGER_TOPIC_MIN_INSYNC_REPLICAS=$([ "$KAFKA_BROKERS" -ge 3 ] && echo 2 || echo 1)
KAFKA_SECURITY_PROTOCOL=SASL_SSL
KAFKA_SSL_CA_FILE=$SECRETS/kafka/ca.crt
KAFKA_SASL_MECHANISM=SCRAM-SHA-512
LEDGER_KAFKA_CREDENTIALS_DIR=$SECRETS/kafka/users
DATABASE_URL=postgresql://ledger_owner:$owner@127.0.0.1:$PG_PORT/$PG_DB
LEDGER_APPENDER_URL=postgresql://ledger_appender:$appender@127.0.0.1:$PG_PORT/$PG_DB
LEDGER_READER_URL=postgresql://ledger_reader:$reader@127.0.0.1:$PG_PORT/$PG_DB
LEDGER_TRIAGE_URL=postgresql://ledger_appender:$appender@127.0.0.1:$PG_PORT/$PG_DB
LEDGER_NAME=$LEDGER_NAME
LEDGER_SIGNER_KEY_FILE=$SIGNER_KEY
LEDGER_VERIFIER_KEY=$verifier
LEDGER_PRODUCER_KEY_FILE=$PRODUCER_KEYS/simulator.key
LEDGER_CLI_PRODUCER_KEY_FILE=$PRODUCER_KEYS/cli.key
LEDGER_REGISTRY_PRODUCER_KEY_FILE=$PRODUCER_KEYS/registry.key
LEDGER_COMPLIANCE_DEMO_KEY_FILE=$PRODUCER_KEYS/compliance-demo.key
LEDGER_RULES_FILE=$LOCAL/compliance-demo/compliance-rules.toml
LEDGER_CURSOR_KEY_FILE=$CURSOR_KEY
ENV
  if [ -s "$API_TOKEN_FILE" ]; then echo "LEDGER_API_TOKEN=$(cat "$API_TOKEN_FILE")" >>"$ENV_FILE.tmp"; fi
  # The ATNA receiver `make up` starts (deploy/local/atna.sh): point a PACS's audit logger here.
  cat >>"$ENV_FILE.tmp" <<ENV
LEDGER_ATNA_TLS=127.0.0.1:${LEDGER_ATNA_TLS_PORT:-16514}
LEDGER_ATNA_CA_FILE=$SECRETS/atna/server.crt
LEDGER_ATNA_CLIENT_CERT=$SECRETS/atna/atna-demo-sender.crt
LEDGER_ATNA_CLIENT_KEY=$SECRETS/atna/atna-demo-sender.key
ENV
  if [ -n "${LEDGER_ATNA_UDP_PORT:-}" ]; then echo "LEDGER_ATNA_UDP=127.0.0.1:$LEDGER_ATNA_UDP_PORT" >>"$ENV_FILE.tmp"; fi
  # Orthanc with the audit plugin (deploy/local/orthanc.sh), once `make up` started it.
  if [ -s "$LOCAL/orthanc/env" ]; then cat "$LOCAL/orthanc/env" >>"$ENV_FILE.tmp"; fi
  # The DICOM audit proxy in front of it (deploy/local/dicomproxy.sh): point DICOM clients here.
  if [ -s "$LOCAL/dicomproxy/env" ]; then cat "$LOCAL/dicomproxy/env" >>"$ENV_FILE.tmp"; fi
  mv "$ENV_FILE.tmp" "$ENV_FILE")
}

# One admin API token per installation (only its hash is in the database).
ensure_api_token() {
  (cd "$ROOT" && "$LEDGER" token ensure --file "$API_TOKEN_FILE" --role admin --subject local-admin)
  write_env
}

# Each producer identity gets its own key, registered in the ledger; a process is given
# only its own key file (the CLI's simulate/demo sign as "simulator" via .local/env, and
# its records of its own reads - export, replay, atna kept, quarantine resubmit - as
# "ledger-cli"; `ledger registry import` signs registry changes as "registry-local").
ensure_producer_keys() {
  mkdir -p "$PRODUCER_KEYS"; chmod 700 "$PRODUCER_KEYS"
  local pair
  for pair in ledger-api:api ledger-fhir-feed:fhir-feed atna-receiver:atna orthanc-local:orthanc dicom-proxy-local:dicomproxy simulator:simulator ledger-cli:cli registry-local:registry compliance-demo:compliance-demo; do
    (cd "$ROOT" && "$LEDGER" producer ensure "${pair%%:*}" --out "$PRODUCER_KEYS/${pair#*:}.key")
  done
}

# start_service NAME COMMAND...: run in the background with a pid file and a log.
start_service() {
  local name="$1"; shift
  local pidfile="$RUN_DIR/$name.pid" logfile="$LOG_DIR/$name.log"
  if pid_alive "$pidfile"; then log "$name already running (pid $(cat "$pidfile"))"; return 0; fi
  log "starting $name (log: $logfile)"
  (cd "$ROOT" && set -a && source "$ENV_FILE" && set +a && exec setsid nohup "$@" >>"$logfile" 2>&1 </dev/null) &
  echo $! >"$pidfile"
}

infra() {
  "$HERE/python.sh"
  # DCMTK: the real DICOM clients the DICOM proxy's tests drive (findscu, movescu, ...).
  command -v findscu >/dev/null || apt_install dcmtk
  # Debian's Chromium: the console's browser tests drive it through Playwright (no browser
  # is ever downloaded by the tests).
  [ -x /usr/bin/chromium ] || apt_install chromium
  # Debian's Prometheus and promtool: a test scrapes every process, another checks the
  # alert rules (docs/observability.md).
  "$HERE/prometheus.sh" install
  # pg_auto_failover (Debian's postgresql-<major>-auto-failover and pg-auto-failover-cli):
  # the PostgreSQL failover fault test builds a formation of its own (docs/postgres.md).
  "$HERE/pgautofailover.sh" install
  # Orthanc with its Python and DICOMweb plugins: the tests start Orthancs of their own.
  "$HERE/orthanc.sh" install
  "$HERE/postgres.sh" start
  "$HERE/kafka.sh" start
  write_env
  (cd "$ROOT" && "$LEDGER" migrate && "$LEDGER" topics)
  ensure_producer_keys
  ensure_api_token
  # The rules' configuration: deploy/compliance-rules.toml with the watch list of the
  # demo's world (`ledger rules demo`), read by `ledger rules run` and the API.
  (cd "$ROOT" && "$LEDGER" rules demo --prepare --dir "$LOCAL/compliance-demo" >/dev/null)
}

up() {
  infra
  # Static group membership: a restarted consumer gets its partitions back at once.
  start_service consumer env LEDGER_CONSUMER_INSTANCE_ID=local-consumer-1 \
    LEDGER_OPS_PORT="$OPS_CONSUMER_PORT" "$LEDGER" consume
  # The compliance rules evaluator: reads the appended ledger, raises alerts; ingestion
  # never waits on it (docs/design/compliance.md).
  start_service rules env LEDGER_OPS_PORT="$OPS_RULES_PORT" "$LEDGER" rules run --interval 1
  start_service api env LEDGER_PRODUCER_KEY_FILE="$PRODUCER_KEYS/api.key" LEDGER_OPS_PORT="$OPS_API_PORT" \
    LEDGER_FHIR_PRODUCER_KEY_FILE="$PRODUCER_KEYS/fhir-feed.key" "$LEDGER" serve --port "$API_PORT"
  (cd "$ROOT" && "$LEDGER" wait api --timeout 60) || { tail -20 "$LOG_DIR/api.log" >&2; die "API did not start (log: $LOG_DIR/api.log)"; }
  "$HERE/atna.sh" start
  # A real PACS with the audit plugin, on loopback, with named demo users.
  "$HERE/orthanc.sh" start
  (umask 077; "$HERE/orthanc.sh" env >"$LOCAL/orthanc/env")
  # The DICOM audit proxy in front of Orthanc's DICOM port.
  "$HERE/dicomproxy.sh" start
  (umask 077; "$HERE/dicomproxy.sh" env >"$LOCAL/dicomproxy/env")
  write_env
  sleep 1
  pid_alive "$RUN_DIR/consumer.pid" || { tail -20 "$LOG_DIR/consumer.log" >&2; die "consumer exited (log: $LOG_DIR/consumer.log)"; }
  log "stack is up; settings in $ENV_FILE (passwords masked here):"
  sed -E -e 's#(://[^:]+:)[^@]*@#\1****@#' -e 's#^(LEDGER_API_TOKEN=plt_).*#\1****#' -e 's#^(ORTHANC_USERS=).*#\1(see .local/env)#' "$ENV_FILE" | grep -v '^#'
}

down() {
  "$HERE/dicomproxy.sh" stop
  "$HERE/orthanc.sh" stop
  "$HERE/atna.sh" stop
  stop_pidfile "$RUN_DIR/api.pid" "API"
  stop_pidfile "$RUN_DIR/rules.pid" "rules evaluator"
  stop_pidfile "$RUN_DIR/consumer.pid" "consumer"
  "$HERE/kafka.sh" stop
  "$HERE/postgres.sh" stop
}

status() {
  for s in api consumer rules; do
    if pid_alive "$RUN_DIR/$s.pid"; then echo "$s: running (pid $(cat "$RUN_DIR/$s.pid"))"; else echo "$s: stopped"; fi
  done
  "$HERE/atna.sh" status || true
  "$HERE/orthanc.sh" status || true
  "$HERE/dicomproxy.sh" status || true
  "$HERE/kafka.sh" status || true
  "$HERE/postgres.sh" status >/dev/null 2>&1 && echo "PostgreSQL running" || echo "PostgreSQL not running"
}

case "${1:-up}" in
  up) up ;; infra) infra ;; down) down ;; status) status ;;
  *) die "usage: $0 up|infra|down|status" ;;
esac
