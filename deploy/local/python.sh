#!/usr/bin/env bash
# Create .venv with the project and its dev tools installed (idempotent, fast when current).
source "$(dirname "$0")/common.sh"

pick_python() {
  for py in python3 python3.13 python3.12 python3.11; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0; fi
  done
  return 1
}

PY="$(pick_python)" || { apt_install python3 python3-venv; PY="$(pick_python)" || die "Python 3.11+ is required"; }
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; rm -rf "$VENV"; "$PY" -m venv "$VENV"; }
fi

# Reinstall only when the dependency pins or the project metadata changed.
stamp="$VENV/.installed-$(cat "$ROOT/pyproject.toml" "$ROOT/deploy/constraints.txt" | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ] || [ ! -x "$VENV/bin/ledger" ]; then
  log "installing the project into .venv (log: $LOG_DIR/pip.log)"
  "$VENV/bin/python" -m pip install -q --upgrade pip >"$LOG_DIR/pip.log" 2>&1 || true
  "$VENV/bin/python" -m pip install -c "$ROOT/deploy/constraints.txt" -e "$ROOT[dev]" >>"$LOG_DIR/pip.log" 2>&1 \
    || { tail -20 "$LOG_DIR/pip.log" >&2; die "pip install failed (log: $LOG_DIR/pip.log)"; }
  rm -f "$VENV"/.installed-*; touch "$stamp"
fi
log "virtualenv ready: $VENV"
