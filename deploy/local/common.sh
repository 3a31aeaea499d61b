# Shared settings for the local, Docker-free stack. Sourced by the other scripts.
# Every path lives under the repository's ignored .local/ directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL="$ROOT/.local"
VENV="$ROOT/.venv"
RUN_DIR="$LOCAL/run"
LOG_DIR="$LOCAL/log"
SECRETS="$LOCAL/secrets"

# Ports sit below Linux's ephemeral range (32768-60999): a port inside it can be taken
# as the *source* port of some outgoing connection while a server restarts, and the
# restart then fails to bind.
PG_PORT="${LEDGER_PG_PORT:-15432}"
KAFKA_PORT="${LEDGER_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${LEDGER_KAFKA_CONTROLLER_PORT:-19093}"
# Kafka nodes: 1 (the default) or a replicated cluster of 3 (`make up KAFKA_BROKERS=3`);
# node N listens on $KAFKA_PORT + 100*(N-1) (docs/scaling.md).
KAFKA_BROKERS="${KAFKA_BROKERS:-${LEDGER_KAFKA_BROKERS:-1}}"
API_PORT="${LEDGER_API_PORT:-18080}"
PG_DB="${LEDGER_PG_DB:-ledger}"
# Each long-running process's ops listener (/metrics, /livez, /readyz, /version) on
# loopback: deploy/prometheus/prometheus-local.yml scrapes them (docs/observability.md).
OPS_API_PORT="${LEDGER_OPS_API_PORT:-18090}"
OPS_CONSUMER_PORT="${LEDGER_OPS_CONSUMER_PORT:-18091}"
OPS_ATNA_PORT="${LEDGER_OPS_ATNA_PORT:-18092}"
OPS_RULES_PORT="${LEDGER_OPS_RULES_PORT:-18093}"
OPS_PIPE_PORT="${LEDGER_OPS_PIPE_PORT:-18094}"
OPS_DICOMPROXY_PORT="${LEDGER_OPS_DICOMPROXY_PORT:-18095}"

mkdir -p "$RUN_DIR" "$LOG_DIR" "$SECRETS"
chmod 700 "$SECRETS"

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $*"; fi
}

APT_UPDATED=""
apt_install() {
  # Install Debian packages that are missing; apt-get update once per run.
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local limit="$1" what="$2"; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.3
  done
  log "$what is ready"
}

# secret NAME: print a random secret stored (mode 600) under .local/secrets, creating it once.
secret() {
  local f="$SECRETS/$1"
  if [ ! -s "$f" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$f")
  fi
  cat "$f"
}

# pid_alive FILE: the process is running (a killed one its parent has not reaped yet, a
# zombie, is not: a server SIGKILLed and restarted at once must not be taken for running).
pid_alive() {
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null \
    && ! grep -q '^State:[[:space:]]*Z' "/proc/$(cat "$1")/status" 2>/dev/null
}

# stop_pidfile FILE NAME: TERM the process, wait up to 20 s, then KILL.
stop_pidfile() {
  local f="$1" name="$2"
  if pid_alive "$f"; then
    local pid; pid="$(cat "$f")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { log "$name did not stop in 20 s; killing"; kill -9 "$pid" 2>/dev/null || true; }
    log "$name stopped"
  fi
  rm -f "$f"
}
