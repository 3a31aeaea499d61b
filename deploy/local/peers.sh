#!/usr/bin/env bash
# Build the peers benchmarks/peers.py runs beside the ledger's ingest (#19), from the Go
# module proxy, into .local/peers/bin (cached: each step runs only when its output is
# missing or older than its source):
#   immudb        the immudb v1.10.0 server (its own cmd/immudb, built inside its module:
#                 `go install` refuses the module's replace directives);
#   immudb-bench  our SetAll client for it (benchmarks/peers/immudb, go.sum committed);
#   tessera-bench our driver of Tessera v1.0.4's POSIX log (benchmarks/peers/tessera):
#                 Tessera is a library, so the log runs inside this program.
# Only `make bench` needs them; nothing in `make test` does. Go as in gotools.sh.
#
# LEDGER_PEERS_DIR (default .local/peers) says where bin/ goes.
source "$(dirname "$0")/common.sh"

IMMUDB_VERSION="v1.10.0"
# Pinned in benchmarks/peers/tessera/go.mod; checked below so the two cannot drift.
TESSERA_VERSION="v1.0.4"

OUT="${LEDGER_PEERS_DIR:-$LOCAL/peers}"
BIN="$OUT/bin"
mkdir -p "$BIN"

GO=""
need_go() {  # as gotools.sh: Go on the PATH, in /usr/local/go, or Debian's golang-go
  [ -n "$GO" ] && return 0
  if command -v go >/dev/null; then GO="$(command -v go)"; elif [ -x /usr/local/go/bin/go ]; then
    GO=/usr/local/go/bin/go; else apt_install golang-go; GO="$(command -v go)" || true; fi
  [ -n "$GO" ] && [ -x "$GO" ] || die "no Go toolchain (tried PATH, /usr/local/go, Debian's golang-go)"
}

immudb() {
  local stamp="$OUT/immudb.version"
  if [ -x "$BIN/immudb" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$IMMUDB_VERSION" ]; then return 0; fi
  need_go
  log "building immudb $IMMUDB_VERSION into $BIN"
  local src
  src="$("$GO" mod download -json "github.com/codenotary/immudb@$IMMUDB_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -s "$src/go.mod" ] || die "no go.mod in github.com/codenotary/immudb@$IMMUDB_VERSION"
  (cd "$src" && "$GO" mod download \
    && CGO_ENABLED=0 "$GO" build -buildvcs=false -o "$BIN/immudb.tmp" ./cmd/immudb)
  mv "$BIN/immudb.tmp" "$BIN/immudb"
  echo "$IMMUDB_VERSION" > "$stamp"
}

driver() {  # driver NAME DIR: our Go program in DIR, built from its committed go.sum
  local name="$1" src="$ROOT/benchmarks/peers/$2"
  if [ -x "$BIN/$name" ] && [ "$BIN/$name" -nt "$src/main.go" ] \
    && [ "$BIN/$name" -nt "$src/go.mod" ] && [ "$BIN/$name" -nt "$src/go.sum" ]; then return 0; fi
  need_go
  log "building $name ($src) into $BIN"
  (cd "$src" && GOFLAGS=-mod=readonly CGO_ENABLED=0 "$GO" build -buildvcs=false -o "$BIN/$name.tmp" .)
  mv "$BIN/$name.tmp" "$BIN/$name"
}

check_pins() {
  grep -q "github.com/transparency-dev/tessera $TESSERA_VERSION\$" "$ROOT/benchmarks/peers/tessera/go.mod" \
    || die "benchmarks/peers/tessera/go.mod does not pin Tessera $TESSERA_VERSION"
  grep -q "github.com/codenotary/immudb $IMMUDB_VERSION\$" "$ROOT/benchmarks/peers/immudb/go.mod" \
    || die "benchmarks/peers/immudb/go.mod does not pin immudb $IMMUDB_VERSION"
}

case "${1:-all}" in
  immudb) check_pins; immudb; driver immudb-bench immudb ;;
  tessera) check_pins; driver tessera-bench tessera ;;
  all) check_pins; immudb; driver immudb-bench immudb; driver tessera-bench tessera ;;
  version) echo "immudb $IMMUDB_VERSION tessera $TESSERA_VERSION" ;;
  *) die "usage: $0 [all|immudb|tessera|version]" ;;
esac
