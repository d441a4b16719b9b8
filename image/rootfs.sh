#!/usr/bin/env bash
# Builds the operator as a static executable and assembles the image's root filesystem in
# <out>/rootfs: the one recipe behind both `make image` (image/build.sh) and the Dockerfile's
# build stage, so that both images have the same files.
#
#   image/rootfs.sh <out>      CARGO_TARGET_DIR is honoured (default: target/)
#   image/rootfs.sh --cargo-features   prints the cargo feature flags of the image's binary
#   image/rootfs.sh --binary   builds only the image's binary and prints its path (`make bench`
#                              and `make profile` measure the operator that ships)
#
# <out>/rootfs/
#   usr/local/bin/mpu-relay-operator   static, stripped, mode 0755
#   etc/ssl/certs/ca-certificates.crt  Debian's ca-certificates bundle (the HTTP client trusts it)
#   etc/passwd, etc/group              root and nonroot (65532), no login shell (there is none)
#   etc/nsswitch.conf                  hosts: files dns
#
# Static how: the glibc target of the machine (x86_64- or aarch64-unknown-linux-gnu) with
# `-C target-feature=+crt-static`. The musl targets need a Rust standard library that neither
# rustup (offline here) nor Debian (its libstd-rust-dev ships the gnu target only) provides.
# glibc >= 2.34 has its `files` and `dns` name services built in, so getaddrinfo (reqwest and
# kube's hyper-util resolver) reads /etc/hosts and /etc/resolv.conf without loading any NSS
# module; tests/image.rs resolves a name through a DNS server from inside the image to prove it.
# RUSTFLAGS with an explicit --target reach only the target's crates, not build scripts and
# proc-macros, which stay dynamic as they must.
# opt-level 2 with fat LTO, one codegen unit, no symbols: 15.9 MB since event callbacks (15.2 MB
# since managed relays, 14.6 MB before), under the image's 17 MB target (15 MB until issue 26,
# 16 MB until issue 27)
# (opt-level 3 with thin LTO was 15.6 MB, opt-level 2 with thin LTO 15.4 MB). opt-level s (12.6 MB)
# cost a third more CPU per poll at 10 000 tasks (0.120 against 0.080-0.083 CPU s per 1 000 polls,
# `make profile`; bench 0.146 against 0.107): docs/benchmarks-history.md, "The image's binary at opt-level 2".
set -euo pipefail

out=${1:?usage: image/rootfs.sh <out dir> | --binary | --cargo-features}
root=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "[image] $*" >&2; }

triple=$(rustc -vV | sed -n 's/^host: //p')
case "$triple" in
  *-linux-gnu) ;;
  *) log "unsupported build machine $triple (needs a *-linux-gnu Rust host)"; exit 1 ;;
esac
# Cargo features of the image's binary: the defaults (the operator has none of its own; the
# simulator and the signature verifier are other workspace crates, never linked into it).
features=()
# image/build.sh builds the SBOM for the same features.
if [ "$out" = --cargo-features ]; then
  echo "${features[@]}"
  exit 0
fi

certs=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$certs" ]; then
  log "installing Debian's ca-certificates (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >&2
fi

target_dir=${CARGO_TARGET_DIR:-$root/target}
log "building a static release binary for $triple (first time: several minutes; then seconds)"
start=$SECONDS
( while sleep 30 >/dev/null 2>&1; do log "still compiling ... ($((SECONDS - start)) s)"; done ) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true' EXIT
(
  cd "$root"
  export CARGO_TARGET_DIR=$target_dir \
    RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=2 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_PROFILE_RELEASE_LTO=fat \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
  cargo build --release --locked --target "$triple" --bin mpu-relay-operator "${features[@]}" >&2
)
kill $ticker 2>/dev/null || true
log "compiled in $((SECONDS - start)) s"

bin=$target_dir/$triple/release/mpu-relay-operator
if [ "$out" = --binary ]; then
  echo "$bin"
  exit 0
fi
# A static executable has no program interpreter (PT_INTERP) and no shared-library needs.
command -v readelf >/dev/null || { log "readelf (binutils) is needed to check the binary"; exit 1; }
if LC_ALL=C readelf -lW "$bin" | grep -qE 'INTERP|Requesting program interpreter'; then
  log "$bin is dynamically linked"; exit 1
fi

rm -rf "$out/rootfs"
mkdir -p "$out/rootfs/usr/local/bin" "$out/rootfs/etc/ssl/certs"
install -m 0755 "$bin" "$out/rootfs/usr/local/bin/mpu-relay-operator"
install -m 0644 "$certs" "$out/rootfs/etc/ssl/certs/ca-certificates.crt"
install -m 0644 "$root/image/passwd" "$root/image/group" "$root/image/nsswitch.conf" "$out/rootfs/etc/"
"$out/rootfs/usr/local/bin/mpu-relay-operator" --version >&2
log "root filesystem ready in $out/rootfs ($(du -sk "$out/rootfs" | cut -f1) KiB)"
