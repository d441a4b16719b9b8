#!/usr/bin/env bash
# `make profile`: the release operator on TASKS tasks over ACCOUNTS accounts (the bench's scale
# phase in miniature), under a profiler, so that memory and CPU figures come with where they go.
#
#   TOOL=heaptrack  heap profile (heaptrack_print summary: peak heap by call site, allocations)
#   TOOL=perf       CPU profile (perf record -g; perf report --no-children summary)
#   TOOL=none       no profiler: RSS, heap-relevant /proc figures and CPU per 1 000 polls only
#   TOOL="none perf" one after the other, each a fresh operator taking the same tasks over;
#                   "none+MALLOC_ARENA_MAX=2" sets that variable for that run only, and
#                   "none@path/to/binary" runs another build
#
# TASKS (default 10000), ACCOUNTS (default 100), SECONDS_RUN (default 120: after the operator
# starts), OUT (default target/profile). The control plane, the simulator and the tasks are created
# first (tasks before the operator, as after a restart); the operator then runs SECONDS_RUN seconds.
# BIN runs another build of the operator; OPERATOR_ENV (e.g. MALLOC_ARENA_MAX=2) is set for it.
set -euo pipefail

TOOL=${TOOL:-none}
TASKS=${TASKS:-10000}
ACCOUNTS=${ACCOUNTS:-100}
SECONDS_RUN=${SECONDS_RUN:-120}
RUN=0
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/target/profile}
NS=profile
mkdir -p "$OUT"
say() { echo "[profile] $*" >&2; }

for tool in $TOOL; do
	tool=${tool%%+*}
	tool=${tool%%@*}
	case "$tool" in
	heaptrack | perf | none) ;;
	*)
		echo "TOOL must be a list of heaptrack, perf and none" >&2
		exit 2
		;;
	esac
	if [ "$tool" != none ] && ! command -v "$tool" >/dev/null; then
		echo "$tool is not installed (Debian: apt-get install $([ "$tool" = perf ] && echo linux-perf || echo heaptrack))" >&2
		exit 2
	fi
done

HEAP_BIN=$OUT/mpu-relay-operator.system-allocator
case " $TOOL " in *" heaptrack"*)
	# heaptrack hooks malloc, which jemalloc (our global allocator) never calls: its heap figures
	# come from a build with glibc's allocator (the same allocations, sizes and call sites; only
	# the RSS differs). Built first, so that the shipped build is what target/release holds after.
	say "building the operator with the system allocator for heaptrack"
	cargo build -q --release --bin mpu-relay-operator --features system-allocator
	cp "$ROOT/target/release/mpu-relay-operator" "$HEAP_BIN"
	;;
esac
say "building the release operator, the cloud simulator and the control plane helper"
cargo build -q --release --bin mpu-relay-operator --example controlplane
cargo build -q --release -p mpu-cloud-sim --bin mpu-cloud-sim
BIN=${BIN:-$ROOT/target/release/mpu-relay-operator}
KUBECTL=$("$ROOT/tests/controlplane/build.sh")/kubectl

DIR=$(mktemp -d /tmp/mpu-relay-profile.XXXXXX)
cleanup() {
	[ -n "${OP_PID:-}" ] && kill "$OP_PID" 2>/dev/null || true
	pkill -f "^$BIN run --namespaces $NS" 2>/dev/null || true
	[ -n "${SIM_PID:-}" ] && kill "$SIM_PID" 2>/dev/null || true
	"$ROOT/target/release/examples/controlplane" down "$DIR/cp" >/dev/null 2>&1 || true
	rm -rf "$DIR"
}
trap cleanup EXIT

say "starting etcd + kube-apiserver"
export KUBECONFIG
KUBECONFIG=$("$ROOT/target/release/examples/controlplane" up "$DIR/cp")
k() { "$KUBECTL" "$@"; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
{
	echo "accounts:"
	for i in $(seq 0 $((ACCOUNTS - 1))); do
		echo "  - {accessKeyId: LTAIprof$i, accessKeySecret: prof-secret-$i, qps: 10}"
	done
	echo "taskSets:"
	echo "  - {appId: prof, taskIdPrefix: p-, count: $TASKS, status: 1}"
} >"$DIR/sim.yaml"
say "starting the simulator on 127.0.0.1:$PORT ($ACCOUNTS accounts at 10 QPS)"
"$ROOT/target/release/mpu-cloud-sim" --listen "127.0.0.1:$PORT" --http --config "$DIR/sim.yaml" >"$OUT/simulator.log" 2>&1 &
SIM_PID=$!

say "creating namespace $NS, $ACCOUNTS accounts and $TASKS tasks (kubectl, a minute or two at 10 000)"
k create namespace "$NS" >/dev/null
{
	for i in $(seq 0 $((ACCOUNTS - 1))); do
		cat <<EOF
apiVersion: v1
kind: Secret
metadata: {name: ltaiprof$i, namespace: $NS}
stringData: {accessKeyId: LTAIprof$i, accessKeySecret: prof-secret-$i}
---
apiVersion: mpurelay.io/v1alpha1
kind: MpuRelayAccount
metadata: {name: ltaiprof$i, namespace: $NS}
spec: {endpoint: "http://127.0.0.1:$PORT", qps: 10, credentials: {secretRef: {name: ltaiprof$i}}}
---
EOF
	done
} | k create -f - >/dev/null
# Tasks in chunks of 1 000 in parallel: one kubectl per chunk.
for start in $(seq 0 1000 $((TASKS - 1))); do
	end=$((start + 1000 < TASKS ? start + 1000 : TASKS))
	for i in $(seq "$start" $((end - 1))); do
		cat <<EOF
apiVersion: mpurelay.io/v1alpha1
kind: MpuRelayTask
metadata: {name: t-$i, namespace: $NS}
spec: {appId: prof, taskId: p-$i, accountRef: {name: ltaiprof$((i % ACCOUNTS))}}
---
EOF
	done >"$DIR/tasks-$start.yaml"
	k create -f "$DIR/tasks-$start.yaml" >/dev/null &
done
wait $(jobs -p | grep -v "^$SIM_PID$") 2>/dev/null || true
say "$(k get mpurelaytasks -n "$NS" --no-headers | wc -l) tasks exist"

run_one() { # tool[@binary][+NAME=VALUE...]: e.g. none+MALLOC_ARENA_MAX=2, none@/tmp/other-build
local extra BIN=$BIN
extra=$(echo "${1#*+}" | tr '+' ' ')
[ "$extra" = "$1" ] && extra=
set -- "${1%%+*}"
case "$1" in *@*)
	BIN=${1#*@}
	set -- "${1%%@*}"
	;;
esac
P0=
METRICS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ARGS=(run --namespaces "$NS" --metrics-addr "127.0.0.1:$METRICS_PORT" --allowed-endpoints 'http://127.0.0.1:*'
	--namespaced-accounts --running-interval 1s --waiting-interval 1s --stopped-interval 1s)
case "$1" in
heaptrack)
	[ "$BIN" = "$ROOT/target/release/mpu-relay-operator" ] && BIN=$HEAP_BIN
	CMD=(heaptrack -o "$OUT/heaptrack" "$BIN" "${ARGS[@]}")
	;;
perf) CMD=(perf record -F 199 --call-graph dwarf,16384 -o "$OUT/perf.data" "$BIN" "${ARGS[@]}") ;;
none) CMD=("$BIN" "${ARGS[@]}") ;;
esac
# Each run's log of its own (operator.1.log, ...): a later run does not overwrite what an
# earlier one printed (jemalloc's stats_print, a panic).
RUN=$((RUN + 1))
LOG=$OUT/operator.$RUN.log
say "starting the operator under $1 ${extra:+($extra) }for ${SECONDS_RUN}s (log: $LOG): ${CMD[*]}"
env RUST_LOG=warn ${OPERATOR_ENV:-} $extra ALIBABA_CLOUD_STS_ENDPOINT="http://127.0.0.1:$PORT" "${CMD[@]}" >"$LOG" 2>&1 &
OP_PID=$!
polls() { curl -s "127.0.0.1:$METRICS_PORT/metrics" | awk '/^mpu_relay_cloud_calls_total/ {s+=$NF} END {print s+0}'; }
reconciles() { curl -s "127.0.0.1:$METRICS_PORT/metrics" | awk '/^mpu_relay_reconciles_total/ {s+=$NF} END {print s+0}'; }
operator_pid() { pgrep -f -n "^$BIN run --namespaces $NS" || echo "$OP_PID"; }
cpu() { awk '{print ($14+$15)/100}' "/proc/$(operator_pid)/stat"; }
# Voluntary context switches of all the operator's threads: how often its runtime wakes up.
wakeups() { cat /proc/"$(operator_pid)"/task/*/status | awk '/^voluntary_ctxt_switches/ {s+=$2} END {print s+0}'; }
rss() { awk '/^VmRSS|^VmHWM|^RssAnon|^RssFile/ {printf "%s %.1f MiB  ", $1, $2/1024}' "/proc/$(operator_pid)/status"; }
# The bench's take-over figure: tasks the simulator saw polled fewer than 3 times in the first
# 90 s, with what a few of them say in their status (why they were left behind).
laggards() {
	curl -s "127.0.0.1:$PORT/admin/stats?tasks=true" | python3 -c '
import json, sys
tasks = [t for t in json.load(sys.stdin)["tasks"] if t["appId"] == "prof"]
behind = sorted((t for t in tasks if t["calls"] < 3), key=lambda t: t["calls"])
print(len(behind), "of", len(tasks), "tasks polled fewer than 3 times;",
      sum(1 for t in behind if t["calls"] == 0), "never")
for t in behind[:8]:
    print("t-" + t["taskId"][2:], t["calls"], t.get("lastCallUnixMs"))
' >"$OUT/laggards.txt" || true
	say "t=90s: $(head -1 "$OUT/laggards.txt")"
	tail -n +2 "$OUT/laggards.txt" | while read -r name calls last; do
		say "  $name: $calls calls, last at $last; status: $(k get mpurelaytask -n "$NS" "$name" -o jsonpath='{.status.lastSyncTime} {range .status.conditions[*]}{.type}={.status}/{.reason} {end}')"
	done
}
# Runs of 180 s or more count staleness over their second half; shorter ones from 90 s (after
# the take-over figure, which counts calls since the start), or their second half under 90 s.
STALE_FROM=$(((SECONDS_RUN >= 180 || SECONDS_RUN < 100 ? SECONDS_RUN / 2 : 90) / 10 * 10))
for t in $(seq 10 10 "$SECONDS_RUN"); do
	sleep 10
	if ! kill -0 "$OP_PID" 2>/dev/null; then
		say "the operator stopped; its log:"
		tail -20 "$LOG" >&2
		exit 1
	fi
	say "t=${t}s polls=$(polls) cpu=$(cpu)s $(rss)"
	if [ "$t" = 90 ]; then laggards; fi
	if [ -z "$P0" ] && [ "$t" -ge $((SECONDS_RUN / 2)) ]; then
		P0=$(polls)
		R0=$(reconciles)
		C0=$(cpu)
		W0=$(wakeups)
	fi
	# Each task's longest wait without a call is counted afresh from here.
	if [ "$t" = "$STALE_FROM" ]; then
		curl -s -X POST "127.0.0.1:$PORT/admin/stats/reset" >/dev/null
	fi
done
P1=$(polls)
R1=$(reconciles)
C1=$(cpu)
W1=$(wakeups)
say "second half: $((P1 - P0)) polls, $(echo "$C1 - $C0" | bc) CPU s, $(echo "scale=3; ($C1 - $C0) * 1000 / ($P1 - $P0)" | bc) CPU s per 1 000 polls, $(echo "scale=2; ($R1 - $R0) / ($P1 - $P0)" | bc) reconciles per poll, $(echo "scale=2; ($W1 - $W0) / ($P1 - $P0)" | bc) voluntary context switches per poll"
say "memory at the end: $(rss)"
# Staleness from STALE_FROM on, from the simulator's count of every call: each task's longest
# wait, against the floor its account's budget allows (tasks per account / 9.7 calls/s).
curl -s "127.0.0.1:$PORT/admin/stats?tasks=true" | python3 -c '
import json, sys
tasks = [t for t in json.load(sys.stdin)["tasks"] if t["appId"] == "prof"]
floor = ('"$TASKS"' / '"$ACCOUNTS"') / 9.7
waits = sorted(t.get("longestWaitMs", 0) / 1000 for t in tasks)
if waits:
    worst = max(tasks, key=lambda t: t.get("longestWaitMs", 0))
    print("from t='"$STALE_FROM"'s: longest wait without a call, median %.2f s, p99 %.2f s, max %.2f s = %.2f x the floor (%.2f s), worst t-%s"
          % (waits[len(waits) // 2], waits[int(len(waits) * 0.99)], waits[-1], waits[-1] / floor, floor, worst["taskId"][2:]))
    print("tasks waiting over 1.1 x the floor: %d" % sum(1 for w in waits if w > 1.1 * floor))
' >"$OUT/staleness.txt" || true
cat "$OUT/staleness.txt" >&2
grep -E '^(Rss|Pss|Anonymous|Private)' "/proc/$(operator_pid)/smaps_rollup" | tr -s ' ' | paste -sd' ' >&2 || true
kill -INT "$(operator_pid)"
wait "$OP_PID" 2>/dev/null || true
OP_PID=

case "$1" in
heaptrack)
	f=$(ls -t "$OUT"/heaptrack*.zst "$OUT"/heaptrack*.gz 2>/dev/null | head -1 || true)
	say "heaptrack_print $f > $OUT/heaptrack.txt"
	heaptrack_print -f "$f" --print-peaks 1 --print-allocators 0 --print-leaks 0 --print-temporary 0 \
		--peak-limit 25 --sub-peak-limit 6 >"$OUT/heaptrack.txt" 2>/dev/null || true
	grep -E '^(peak heap|peak RSS|total memory leaked|calls to allocation)' "$OUT/heaptrack.txt" >&2 || true
	;;
perf)
	say "perf report > $OUT/perf.txt"
	perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --percent-limit 0.7 --stdio -g none 2>/dev/null |
		grep -v '^$' | grep -E '^ +[0-9]' >"$OUT/perf.txt" || true
	head -40 "$OUT/perf.txt" >&2
	;;
esac
}

for tool in $TOOL; do
	run_one "$tool"
done
say "done; logs and profiles in $OUT"
