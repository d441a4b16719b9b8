#!/usr/bin/env bash
# Builds (once) the ecosystem tools the tests and `make image` use, and prints the path of each
# executable asked for, one a line, in order:
#
#   tests/tools/build.sh kstatus promtool cargo-deny cargo-cyclonedx
#
#   kstatus          tests/kstatus: sigs.k8s.io/cli-utils' kstatus (Flux's health library)
#   promtool         Prometheus' promtool (tests/promtool/build), from the Go module proxy
#   cargo-deny       license, ban and source checks of the dependency graph
#   cargo-cyclonedx  the image's SBOM (CycloneDX JSON)
#   cargo-fuzz       libFuzzer driver of fuzz/run.sh
#
# Every version is pinned: below, or by the go.mod of kstatus (tests/kstatus/go.mod: cli-utils)
# and of promtool (tests/promtool/build/go.mod: Prometheus v3.5.1 LTS). Each tool is built from its
# registry (crates.io, the Go module proxy) into
#   ${MPU_RELAY_CACHE:-~/.cache/mpu-relay-operator}/tools/<tool>-<version>/
# and later runs find it there. Build output goes to stderr; progress lines every 30 s.
set -euo pipefail

CARGO_DENY_VERSION=0.20.2
CARGO_CYCLONEDX_VERSION=0.5.9
CARGO_FUZZ_VERSION=0.13.2

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${MPU_RELAY_CACHE:-$HOME/.cache/mpu-relay-operator}/tools

log() { echo "[tools] $*" >&2; }

# Runs "$@" with a progress line every 30 s, and reports how long it took.
with_progress() { # what, command...
  local what=$1 start=$SECONDS ticker
  shift
  log "building $what (first time only; can take a few minutes)"
  ( while sleep 30 >/dev/null 2>&1; do log "still building $what ... ($((SECONDS - start)) s)"; done ) &
  ticker=$!
  if ! "$@" >&2; then
    kill $ticker 2>/dev/null || true
    log "building $what failed"
    return 1
  fi
  kill $ticker 2>/dev/null || true
  log "built $what in $((SECONDS - start)) s"
}

need_go() {
  command -v go >/dev/null || { log "Go is required to build $1 (see README prerequisites)"; exit 1; }
  export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
}

go_tool() { # name, dir, binary
  local name=$1 dir=$2 out=$3
  if [ ! -x "$dir/$out" ]; then
    need_go "$name"
    mkdir -p "$dir.partial"
    case "$name" in
      kstatus)
        with_progress "kstatus (sigs.k8s.io/cli-utils)" \
          bash -c "cd '$root/tests/kstatus' && go build -trimpath -ldflags='-s -w' -o '$dir.partial/$out' ."
        ;;
      promtool)
        # Stamped like Prometheus' release builds, so that `promtool --version` tells the truth.
        local release="3.$((10#$(echo "$PROMETHEUS_VERSION" | cut -d. -f2) - 300)).$(echo "$PROMETHEUS_VERSION" | cut -d. -f3)"
        with_progress "promtool (Prometheus $release, module $PROMETHEUS_VERSION)" \
          bash -c "cd '$root/tests/promtool/build' && go build -trimpath \
            -ldflags='-s -w -X github.com/prometheus/common/version.Version=$release' \
            -o '$dir.partial/$out' github.com/prometheus/prometheus/cmd/promtool"
        ;;
    esac
    rm -rf "$dir" && mv "$dir.partial" "$dir"
  fi
  echo "$dir/$out"
}

cargo_tool() { # crate, version
  local crate=$1 version=$2 dir="$cache/$1-$2"
  if [ ! -x "$dir/bin/$crate" ]; then
    rm -rf "$dir.partial"
    with_progress "$crate $version (cargo install --locked)" \
      env -u CARGO_TARGET_DIR cargo install --locked --quiet --version "=$version" --root "$dir.partial" "$crate"
    rm -rf "$dir" && mv "$dir.partial" "$dir"
  fi
  echo "$dir/bin/$crate"
}

mkdir -p "$cache"
for tool in "$@"; do
  # One build of a tool at a time: tests running side by side may ask for it at once.
  exec 9>"$cache/.$tool.lock"
  flock 9
  case "$tool" in
    kstatus)
      # Keyed by the program's own files, so an edit rebuilds it.
      key=$(cat "$root/tests/kstatus/go.mod" "$root/tests/kstatus/go.sum" "$root/tests/kstatus/main.go" | sha256sum | cut -c1-12)
      go_tool kstatus "$cache/kstatus-$key" kstatus
      ;;
    promtool)
      PROMETHEUS_VERSION=$(awk '/github.com\/prometheus\/prometheus v/ {print $NF; exit}' "$root/tests/promtool/build/go.mod")
      go_tool promtool "$cache/promtool-$PROMETHEUS_VERSION" promtool
      ;;
    cargo-deny) cargo_tool cargo-deny "$CARGO_DENY_VERSION" ;;
    cargo-cyclonedx) cargo_tool cargo-cyclonedx "$CARGO_CYCLONEDX_VERSION" ;;
    cargo-fuzz) cargo_tool cargo-fuzz "$CARGO_FUZZ_VERSION" ;;
    *) log "unknown tool $tool"; exit 2 ;;
  esac
  exec 9>&-
done
