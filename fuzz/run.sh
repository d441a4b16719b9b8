#!/usr/bin/env bash
# `make fuzz`: runs every cargo-fuzz (libFuzzer) target for FUZZ_SECONDS seconds each (default 60), prints a
# summary, and exits non-zero if any target crashed (the crashing input is kept under fuzz/artifacts/<target>/).
#
#   FUZZ_SECONDS=60      time per target
#   FUZZ_TARGETS="a b"   a subset of the targets (default: all, from `cargo fuzz list`)
#   FUZZ_SANITIZER=none  libFuzzer's -s flag: address (default) | none | ...
#
# cargo-fuzz (version pinned in tests/tools/build.sh) is built once into ~/.cache/mpu-relay-operator/tools/
# (`cargo install --locked`, ~40 s on 2 cores) and put first on PATH. It drives libFuzzer with `-Z` rustc flags (sanitizer, coverage instrumentation), which stable rustc
# accepts with RUSTC_BOOTSTRAP=1: no nightly toolchain is needed. The fuzz crate stands alone (its own
# [workspace], lock file and fuzz/target), so it never touches the main crate's build.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-address}"

# cargo-fuzz at the version pinned in tests/tools/build.sh, built once into the project's cache.
cargo_fuzz="$(env -u CARGO_TARGET_DIR "$root/tests/tools/build.sh" cargo-fuzz)"
export PATH="$(dirname "$cargo_fuzz"):$PATH"
export RUSTC_BOOTSTRAP=1

cd "$root"
read -r -a targets <<< "${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
echo "fuzz/run.sh: building ${#targets[@]} targets (sanitizer: $sanitizer)" >&2
build_started=$SECONDS
cargo fuzz build -s "$sanitizer" >&2
echo "fuzz/run.sh: built in $((SECONDS - build_started)) s; ${seconds} s per target" >&2

summary=()
crashed=0
for target in "${targets[@]}"; do
    log="$(mktemp)"
    args=(-max_total_time="$seconds" -print_final_stats=1)
    if [[ -f "$here/dicts/$target.dict" ]]; then
        args+=(-dict="$here/dicts/$target.dict")
    fi
    echo "fuzz/run.sh: $target for ${seconds} s" >&2
    # The corpus (fuzz/corpus/<target>, not committed) grows from the committed seeds
    # (fuzz/seeds/<target>): realistic queries, headers and answers, so that a clean clone does
    # not start from nothing.
    mkdir -p "$here/corpus/$target"
    seeds=()
    [[ -d "$here/seeds/$target" ]] && seeds=("$here/seeds/$target")
    if cargo fuzz run -s "$sanitizer" "$target" "$here/corpus/$target" "${seeds[@]}" -- "${args[@]}" >"$log" 2>&1; then
        result="ok"
    else
        result="CRASH"
        crashed=$((crashed + 1))
        tail -n 40 "$log" >&2
    fi
    runs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1 || true)"
    cov="$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || true)"
    corpus="$(find "$here/corpus/$target" -type f 2>/dev/null | wc -l)"
    summary+=("$(printf '%-18s %-6s %12s runs  cov %6s  corpus %6s' "$target" "$result" "${runs:-?}" "${cov:-?}" "$corpus")")
    rm -f "$log"
done

echo
echo "fuzz summary (${seconds} s per target, sanitizer $sanitizer):"
printf '  %s\n' "${summary[@]}"
if ((crashed > 0)); then
    echo "fuzz/run.sh: $crashed target(s) crashed; inputs are in fuzz/artifacts/" >&2
    exit 1
fi
echo "0 crashes"
