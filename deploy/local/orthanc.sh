#!/usr/bin/env bash
# Orthanc (Debian's orthanc + orthanc-python) with the PHI audit plugin, as the current user:
# REST on 127.0.0.1:$ORTHANC_PORT (remote access refused, HTTP Basic users), DICOM on
# $ORTHANC_DICOM_PORT, answering only the loopback AEs configured below (Orthanc 1.10 cannot
# bind its DICOM port to one interface): the DICOM audit proxy (deploy/local/dicomproxy.sh, AE
# $LEDGER_DICOMPROXY_AET) for C-ECHO, C-FIND, C-GET and C-STORE, and LOCALSCU (a C-MOVE
# destination on 127.0.0.1:11114); any other AE (DCMTK's FINDSCU, GETSCU, ...) is refused and
# goes through the proxy on 127.0.0.1:$LEDGER_DICOMPROXY_PORT. Config, index and storage under
# .local/orthanc, pid file .local/run/orthanc.pid, log .local/log/orthanc.log, demo users'
# passwords in .local/secrets/orthanc-users (mode 600).
# Usage: orthanc.sh start|stop|status|env|install [--env]   (--env, or env: print ORTHANC_URL=
# and ORTHANC_USERS=user:pass,... on stdout, for .local/env; install: only the Debian
# packages). Idempotent.
source "$(dirname "$0")/common.sh"

ORTHANC_PORT="${LEDGER_ORTHANC_PORT:-18042}"
ORTHANC_DICOM_PORT="${LEDGER_ORTHANC_DICOM_PORT:-14242}"
ORTHANC_AET="${LEDGER_ORTHANC_AET:-PHILEDGER}"
# The DICOM audit proxy in front of this Orthanc (deploy/local/dicomproxy.sh).
PROXY_AET="${LEDGER_DICOMPROXY_AET:-LEDGERPROXY}"
PROXY_PORT="${LEDGER_DICOMPROXY_PORT:-11112}"
O_HOME="$LOCAL/orthanc"
CONF="$O_HOME/orthanc.json"
PIDFILE="$RUN_DIR/orthanc.pid"
O_LOG="$LOG_DIR/orthanc.log"
USERS_FILE="$SECRETS/orthanc-users"
PLUGIN_SCRIPT="$ROOT/integrations/orthanc/orthanc_plugin.py"
PYTHON_PLUGIN=/usr/share/orthanc/plugins/libOrthancPython.so
# Orthanc's DICOMweb plugin: the tests check the QIDO-RS searches the audit plugin records.
DICOMWEB_PLUGIN=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
# Demo users and the role each has in the ledger.
DEMO_USERS=("dr.alice:radiologist" "dr.bob:radiologist" "tech.carol:technologist")

ensure_installed() {
  if [ ! -x /usr/sbin/Orthanc ] || [ ! -e "$PYTHON_PLUGIN" ] || [ ! -e "$DICOMWEB_PLUGIN" ]; then
    apt_install orthanc orthanc-python orthanc-dicomweb
  fi
  [ -x /usr/sbin/Orthanc ] || die "Orthanc not found after install"
  [ -e "$PYTHON_PLUGIN" ] || die "orthanc-python's plugin $PYTHON_PLUGIN not found after install"
}

# The interpreter orthanc-python embeds (libpython3.X it links), e.g. 3.11.
plugin_python_version() {
  ldd "$PYTHON_PLUGIN" 2>/dev/null | sed -n 's/.*libpython\([0-9]*\.[0-9]*\)\.so.*/\1/p' | head -n 1
}

# Where the plugin finds aiokafka, fastavro, pydicom (C-FIND: the DICOM dictionary) and their
# dependencies: the project's virtualenv when it runs the same CPython minor version as
# Orthanc's interpreter (C extensions are ABI-compatible within a minor version); otherwise a
# dedicated directory filled by pip --target with wheels for Orthanc's version.
plugin_python_path() {
  local want venv_version purelib deps
  want="$(plugin_python_version)"
  [ -n "$want" ] || die "cannot tell which Python $PYTHON_PLUGIN embeds"
  [ -x "$VENV/bin/python" ] || "$ROOT/deploy/local/python.sh" >&2
  venv_version="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if [ "$venv_version" = "$want" ]; then
    "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
    return 0
  fi
  deps="$O_HOME/python$want-packages"
  if [ ! -e "$deps/.complete" ]; then
    log "Orthanc embeds Python $want, the virtualenv runs $venv_version: installing the plugin's dependencies into $deps"
    rm -rf "$deps"
    "$VENV/bin/python" -m pip install -q --target "$deps" --python-version "$want" --only-binary=:all: \
      -c "$ROOT/deploy/constraints.txt" aiokafka fastavro pydicom >"$LOG_DIR/orthanc-pip.log" 2>&1 \
      || { tail -20 "$LOG_DIR/orthanc-pip.log" >&2; die "pip could not install the plugin's dependencies"; }
    touch "$deps/.complete"
  fi
  echo "$deps"
}

# user:password per line, generated once.
ensure_users() {
  local entry user pw
  (umask 077; touch "$USERS_FILE")
  for entry in "${DEMO_USERS[@]}"; do
    user="${entry%%:*}"
    if ! grep -q "^$user:" "$USERS_FILE"; then
      pw="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
      echo "$user:$pw" >>"$USERS_FILE"
    fi
  done
  chmod 600 "$USERS_FILE"
}

env_value() {  # env_value KEY DEFAULT: from .local/env when present
  local v=""
  [ -f "$LOCAL/env" ] && v="$(sed -n "s/^$1=//p" "$LOCAL/env" | tail -n 1)"
  echo "${v:-$2}"
}

write_config() {
  local pypath="$1" bootstrap access relay protocol ca mechanism creds
  bootstrap="$(env_value KAFKA_BOOTSTRAP "127.0.0.1:$KAFKA_PORT")"
  # The plugin's pipe process authenticates as its own principal, ledger-orthanc (docs/kafka.md).
  protocol="$(env_value KAFKA_SECURITY_PROTOCOL PLAINTEXT)"
  ca="$(env_value KAFKA_SSL_CA_FILE "")"
  mechanism="$(env_value KAFKA_SASL_MECHANISM "")"
  creds="$(env_value LEDGER_KAFKA_CREDENTIALS_DIR "")"
  access="$(env_value LEDGER_ACCESS_TOPIC phi-access)"
  relay="$(env_value LEDGER_RELAY_TOPIC critical-result-relay)"
  mkdir -p "$O_HOME/db" "$O_HOME/spool"
  chmod 700 "$O_HOME" "$O_HOME/db" "$O_HOME/spool"
  LEDGER_ORTHANC_PRODUCER_KEY_FILE="$SECRETS/producers/orthanc.key" \
  "$VENV/bin/python" - "$CONF" "$USERS_FILE" "$pypath" "$bootstrap" "$access" "$relay" \
      "$ORTHANC_PORT" "$ORTHANC_DICOM_PORT" "$ORTHANC_AET" "$O_HOME" "$PLUGIN_SCRIPT" \
      "$PYTHON_PLUGIN" "$VENV" "$protocol" "$ca" "$mechanism" "$creds" "$PROXY_AET" "$PROXY_PORT" \
      "${DEMO_USERS[@]}" <<'PY'
import json, os, sys
(conf, users_file, pypath, bootstrap, access, relay, http_port, dicom_port, aet, home,
 script, plugin, venv, protocol, ca, mechanism, creds, proxy_aet, proxy_port,
 *roles) = sys.argv[1:]
users = dict(line.split(":", 1) for line in open(users_file).read().split() if ":" in line)
role = dict(r.split(":", 1) for r in roles)
config = {
    "Name": "phi-ledger-local",
    "StorageDirectory": f"{home}/db",
    "IndexDirectory": f"{home}/db",
    "HttpPort": int(http_port),
    "RemoteAccessAllowed": False,
    "AuthenticationEnabled": True,
    "RegisteredUsers": users,
    "DicomServerEnabled": True,
    "DicomAet": aet,
    "DicomPort": int(dicom_port),
    # Orthanc 1.10 listens on every interface for DICOM: only these loopback AEs may talk.
    # Queries and retrieves from any other AE are refused: they go through the DICOM audit
    # proxy, which Orthanc knows as a modality allowed to echo, find, get and store (it never
    # sends C-MOVE: it fetches by C-GET, docs/dicom-proxy.md).
    "DicomAlwaysAllowEcho": False,
    "DicomAlwaysAllowStore": False,
    "DicomAlwaysAllowFind": False,
    "DicomAlwaysAllowFindWorklist": False,
    "DicomAlwaysAllowGet": False,
    "DicomAlwaysAllowMove": False,
    "DicomCheckModalityHost": True,
    # Orthanc 1.10 has no plugin hook for C-GET, and orthanc-python cannot replace its
    # C-MOVE with the same answers (docs/orthanc.md): no AE but the proxy may retrieve,
    # so every retrieve is audited by the proxy. C-FIND and C-STORE are audited here.
    "DicomModalities": {
        "self": {
            "AET": aet, "Host": "127.0.0.1", "Port": int(dicom_port),
            "AllowEcho": True, "AllowFind": True, "AllowStore": True,
            "AllowGet": False, "AllowMove": False,
        },
        # Its port is where Orthanc sends a C-MOVE to LOCALSCU (11112 is the proxy's).
        "local-scu": {
            "AET": "LOCALSCU", "Host": "127.0.0.1", "Port": 11114,
            "AllowEcho": True, "AllowFind": True, "AllowFindWorklist": True,
            "AllowStore": True, "AllowGet": False, "AllowMove": False,
        },
        "ledger-proxy": {
            "AET": proxy_aet, "Host": "127.0.0.1", "Port": int(proxy_port),
            "AllowEcho": True, "AllowFind": True, "AllowFindWorklist": True,
            "AllowGet": True, "AllowMove": False, "AllowStore": True,
        },
    },
    "Plugins": [plugin],
    "PythonScript": script,
    "PythonVerbose": False,
    "PhiLedger": {
        "KafkaBootstrap": bootstrap,
        "AccessTopic": access,
        "RelayTopic": relay,
        "ProducerId": "orthanc-local",
        "FacilityId": "orthanc-local",
        "FacilityName": "Local Orthanc (demo)",
        "SpoolDirectory": f"{home}/spool",
        # Its own producer key (deploy/local/stack.sh ensure_producer_keys).
        "ProducerKeyFile": os.environ["LEDGER_ORTHANC_PRODUCER_KEY_FILE"],
        "BlockSeconds": 0.05,
        "PurposeOfUse": "TREAT",
        "Users": {u: {"Role": role.get(u, "orthanc-user")} for u in users},
        "PythonPath": [pypath],
    },
}
security = {"SecurityProtocol": protocol}
if ca:
    security["SslCaFile"] = ca
if protocol.startswith("SASL_"):
    security.update(SaslMechanism=mechanism, SaslUsername="ledger-orthanc",
                    SaslPasswordFile=f"{creds}/ledger-orthanc")
config["PhiLedger"].update(security)
if pypath.startswith(venv + "/"):
    # The plugin imports from the project's virtualenv: its interpreter runs the pipe process
    # (it has every dependency; the system may have no python3.X binary at all).
    config["PhiLedger"]["PipePython"] = f"{venv}/bin/python"
tmp = conf + ".tmp"
with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
    json.dump(config, f, indent=2)
os.replace(tmp, conf)
PY
}

users_csv() { paste -sd, "$USERS_FILE"; }

orthanc_ready() {
  local first; first="$(head -n 1 "$USERS_FILE")"
  "$VENV/bin/python" - "http://127.0.0.1:$ORTHANC_PORT/system" "$first" <<'PY'
import base64, sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={
    "Authorization": "Basic " + base64.b64encode(sys.argv[2].encode()).decode()})
urllib.request.urlopen(req, timeout=2).read()
PY
}

start() {
  if pid_alive "$PIDFILE"; then
    log "Orthanc already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$ORTHANC_PORT"
  else
    port_open 127.0.0.1 "$ORTHANC_PORT" && die "port $ORTHANC_PORT is taken by another process"
    ensure_installed
    ensure_users
    write_config "$(plugin_python_path)"
    log "starting Orthanc on 127.0.0.1:$ORTHANC_PORT, DICOM $ORTHANC_DICOM_PORT (log: $O_LOG)"
    local mark=0; [ -f "$O_LOG" ] && mark="$(wc -l <"$O_LOG")"
    # The plugin's pipe process inherits PHI_LEDGER_PIPE_OPS: its ops listener's address.
    (cd "$O_HOME" && PHI_LEDGER_PIPE_OPS="127.0.0.1:$OPS_PIPE_PORT" \
      exec setsid nohup /usr/sbin/Orthanc "$CONF" >>"$O_LOG" 2>&1 </dev/null) &
    echo $! >"$PIDFILE"
    wait_for 60 "Orthanc" orthanc_ready || { tail -20 "$O_LOG" >&2; die "Orthanc did not become ready (log: $O_LOG)"; }
    tail -n +"$((mark + 1))" "$O_LOG" | grep -q "PhiLedger: auditing PHI access" \
      || { grep PhiLedger "$O_LOG" | tail -5 >&2; die "the PHI audit plugin did not load (log: $O_LOG)"; }
  fi
  log "Orthanc: http://127.0.0.1:$ORTHANC_PORT (users and passwords: $USERS_FILE)"
  log "users: $(cut -d: -f1 "$USERS_FILE" | paste -sd' ')"
}

print_env() {
  echo "ORTHANC_URL=http://127.0.0.1:$ORTHANC_PORT"
  echo "ORTHANC_USERS=$(users_csv)"
}

stop() { stop_pidfile "$PIDFILE" "Orthanc"; }

status() {
  if pid_alive "$PIDFILE"; then echo "Orthanc running (pid $(cat "$PIDFILE")) on 127.0.0.1:$ORTHANC_PORT"
  else echo "Orthanc not running"; return 3; fi
}

want_env=""
for arg in "$@"; do [ "$arg" = "--env" ] && want_env=1; done
case "${1:-start}" in
  start|--env) start; if [ -n "$want_env" ]; then print_env; fi ;;
  stop) stop ;;
  status) status ;;
  env) ensure_users; print_env ;;
  install) ensure_installed ;;
  *) die "usage: $0 start|stop|status|env|install [--env]" ;;
esac
