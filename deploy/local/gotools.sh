#!/usr/bin/env bash
# Build helm, kubeconform and the litewitness witness (litewitness, witnessctl: the
# independent C2SP tlog-witness the witness tests run; docs/design/witnesses.md) from the
# Go module proxy, the Kubernetes JSON schemas
# kubeconform checks against, and containerlint (deploy/local/containerlint: BuildKit's
# Containerfile lint), into .local/bin and .local/k8s-schemas (cached: each step runs
# only when its output is missing or older than its source). `make test` runs it; the
# deployment tests (tests/unit/test_deploy_helm.py, test_deploy_container.py) use what it
# leaves.
#
# Why schemas from k8s.io/kubernetes: kubeconform downloads its schemas from the web by
# default, and this machine reaches the package registries only. The Kubernetes module
# (a Go module like any other) ships the API's own OpenAPI document,
# api/openapi-spec/swagger.json; deploy/local/k8s_jsonschema.py turns its definitions into
# kubeconform's "standalone-strict" layout, one file per kind.
#
# LEDGER_GOTOOLS_DIR (default .local) says where bin/ and k8s-schemas/ go.
source "$(dirname "$0")/common.sh"

HELM_VERSION="v4.3.2"
KUBECONFORM_VERSION="v0.8.0"
# The Kubernetes release whose API the chart is validated against.
K8S_VERSION="1.37.2"
# litewitness and witnessctl (torchwood); later releases need a newer Go than Debian's.
TORCHWOOD_VERSION="v0.6.1"

OUT="${LEDGER_GOTOOLS_DIR:-$LOCAL}"
BIN="$OUT/bin"
SCHEMAS="$OUT/k8s-schemas"
mkdir -p "$BIN"

go_bin() {
  if command -v go >/dev/null; then command -v go; elif [ -x /usr/local/go/bin/go ]; then
    echo /usr/local/go/bin/go; else apt_install golang-go; command -v go; fi
}

install_tool() {  # install_tool NAME PACKAGE@VERSION
  local name="$1" pkg="$2"
  [ -x "$BIN/$name" ] && return 0
  log "building $name ($pkg) into $BIN"
  GOBIN="$BIN" GOFLAGS=-mod=mod CGO_ENABLED=0 "$(go_bin)" install "$pkg"
}

k8s_schemas() {
  local dir="$SCHEMAS/v$K8S_VERSION-strict"
  [ -s "$dir/deployment-apps-v1.json" ] && return 0
  log "writing the Kubernetes v$K8S_VERSION JSON schemas into $SCHEMAS"
  local src
  src="$(GOFLAGS=-mod=mod "$(go_bin)" mod download -json "k8s.io/kubernetes@v$K8S_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -s "$src/api/openapi-spec/swagger.json" ] || die "no api/openapi-spec/swagger.json in k8s.io/kubernetes@v$K8S_VERSION"
  local py="python3"; [ -x "$VENV/bin/python" ] && py="$VENV/bin/python"
  rm -rf "$dir.tmp"
  "$py" "$ROOT/deploy/local/k8s_jsonschema.py" "$src/api/openapi-spec/swagger.json" "$dir.tmp"
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
}

containerlint() {
  local src="$ROOT/deploy/local/containerlint"
  if [ -x "$BIN/containerlint" ] && [ "$BIN/containerlint" -nt "$src/main.go" ] \
    && [ "$BIN/containerlint" -nt "$src/go.sum" ]; then return 0; fi
  log "building containerlint (BuildKit's Dockerfile lint) into $BIN"
  (cd "$src" && GOFLAGS=-mod=readonly CGO_ENABLED=0 "$(go_bin)" build -o "$BIN/containerlint" .)
}

case "${1:-all}" in
  helm) install_tool helm "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" ;;
  kubeconform) install_tool kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" ;;
  schemas) k8s_schemas ;;
  containerlint) containerlint ;;
  litewitness)
    command -v ssh-agent >/dev/null || apt_install openssh-client
    install_tool litewitness "filippo.io/torchwood/cmd/litewitness@$TORCHWOOD_VERSION"
    install_tool witnessctl "filippo.io/torchwood/cmd/witnessctl@$TORCHWOOD_VERSION" ;;
  all)
    install_tool helm "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
    install_tool kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
    k8s_schemas
    containerlint
    command -v ssh-agent >/dev/null || apt_install openssh-client
    install_tool litewitness "filippo.io/torchwood/cmd/litewitness@$TORCHWOOD_VERSION"
    install_tool witnessctl "filippo.io/torchwood/cmd/witnessctl@$TORCHWOOD_VERSION" ;;
  version) echo "helm $HELM_VERSION kubeconform $KUBECONFORM_VERSION kubernetes v$K8S_VERSION torchwood $TORCHWOOD_VERSION" ;;
  *) die "usage: $0 [all|helm|kubeconform|schemas|containerlint|litewitness|version]" ;;
esac
