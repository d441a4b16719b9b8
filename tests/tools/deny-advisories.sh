#!/usr/bin/env bash
# `cargo deny check advisories` offline, against the dated RustSec snapshot beside this script
# (see tests/tools/advisory-db/README.md), then a canary: the same check must fail once a
# made-up advisory names a crate of the graph.
#   tests/tools/deny-advisories.sh <cargo-deny binary>
set -euo pipefail
deny=${1:?usage: deny-advisories.sh <cargo-deny binary>}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
snapshot_name=rustsec-advisory-db-2026-08-21-bf5c0d24
snapshot_date=2026-08-21T08:28:40+02:00
snapshot="$here/advisory-db/$snapshot_name.tar.xz"
root="$HOME/.cache/mpu-relay-operator/advisory-dbs"
# The directory name cargo-deny (0.20) gives the database of https://github.com/rustsec/advisory-db
# under db-path; another cargo-deny version may hash the URL otherwise (the check then says it
# cannot find this directory).
db="$root/advisory-db-3157b0e258782691"
log() { echo "[deny] $*" >&2; }

# cargo-deny reads the database as a git checkout (it asks for HEAD's date): one commit, dated
# as the snapshot, so that staleness is judged on the snapshot's age.
make_db() { # <dir>
  rm -rf "$1" && mkdir -p "$1"
  tar -xJf "$snapshot" -C "$1"
  git -C "$1" init -q
  git -C "$1" add -A
  GIT_AUTHOR_DATE=$snapshot_date GIT_COMMITTER_DATE=$snapshot_date \
    git -C "$1" -c user.name=mpu-relay-operator -c user.email=ci@mpu-relay-operator.invalid \
    commit -q -m "$snapshot_name"
}

if [ "$(cat "$root/.snapshot" 2>/dev/null)" != "$snapshot_name" ]; then
  log "unpacking the RustSec advisory database snapshot ($snapshot_name)"
  make_db "$db"
  echo "$snapshot_name" >"$root/.snapshot"
fi
count=$(find "$db/crates" -name 'RUSTSEC-*.md' | wc -l)
[ "$count" -gt 500 ] || { log "the snapshot holds $count advisories: broken"; exit 1; }

config=$(mktemp)
canary=$(mktemp -d)
trap 'rm -rf "$config" "$canary"' EXIT
cat "$repo/deny.toml" >"$config"
printf '\n[advisories]\ndb-path = "%s"\n' "$root" >>"$config"
echo "cargo deny check advisories (RustSec snapshot of ${snapshot_date%%T*}, $count advisories, offline)"
"$deny" deny --offline --log-level error --config "$config" check advisories

# The canary: a made-up advisory for `hex` (in the graph) must fail the same check.
make_db "$canary/advisory-db-3157b0e258782691" >/dev/null
mkdir -p "$canary/advisory-db-3157b0e258782691/crates/hex"
cat >"$canary/advisory-db-3157b0e258782691/crates/hex/RUSTSEC-2099-0001.md" <<'ADVISORY'
```toml
[advisory]
id = "RUSTSEC-2099-0001"
package = "hex"
date = "2026-08-01"
title = "Canary of tests/tools/deny-advisories.sh"
description = "Not a real advisory: proves the check reads the database."
[versions]
patched = [">= 999.0.0"]
```

# Canary of tests/tools/deny-advisories.sh

Not a real advisory.
ADVISORY
git -C "$canary/advisory-db-3157b0e258782691" add -A
git -C "$canary/advisory-db-3157b0e258782691" -c user.name=canary -c user.email=canary@invalid commit -q -m canary
printf '\n[advisories]\ndb-path = "%s"\n' "$canary" >"$config.canary"
cat "$repo/deny.toml" "$config.canary" >"$config"
rm -f "$config.canary"
if "$deny" deny --offline --log-level error --config "$config" check advisories >/dev/null 2>&1; then
  log "the canary advisory was not reported: the advisory check reads nothing"
  exit 1
fi
echo "cargo deny check advisories: the canary advisory is caught, so the database is read"
