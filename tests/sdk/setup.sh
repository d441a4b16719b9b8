#!/usr/bin/env bash
# Creates (once) a Python venv with Alibaba Cloud's official SDKs pinned in requirements.txt, outside the repo,
# keyed by the hash of requirements.txt, and prints the venv's python path on stdout (progress goes to stderr).
# Used by tests/sdk_signatures.rs; by hand: "$(tests/sdk/setup.sh)" tests/sdk/sign_vectors.py < input.json
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
requirements="$here/requirements.txt"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "setup.sh: '$python' not found; install Python 3 with its venv module, or set PYTHON" >&2
    exit 1
fi

hash="$(sha256sum "$requirements" | cut -c1-16)"
cache="${MPU_RELAY_CACHE:-$HOME/.cache/mpu-relay-operator}"
venv="$cache/py-$hash"
mkdir -p "$cache"

# One builder at a time (test binaries may start together); the marker is written last, so an interrupted
# install is rebuilt rather than used.
exec 9>"$cache/.py-$hash.lock"
flock 9
if [[ ! -f "$venv/.complete" || ! -x "$venv/bin/python" ]]; then
    echo "setup.sh: creating $venv with $("$python" --version 2>&1)" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
    touch "$venv/.complete"
    echo "setup.sh: ready" >&2
fi
echo "$venv/bin/python"
