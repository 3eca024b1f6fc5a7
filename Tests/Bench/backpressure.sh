#!/usr/bin/env bash
# Back-pressure benchmarks (issue 16), run by `make bench` through Tests/Bench/run.sh (BENCH_BACKPRESSURE=0 skips
# it), or alone: `bash Tests/Bench/backpressure.sh` after `make build`. Prints a markdown summary; docs/benchmarks.md
# ("Back-pressure") records a run of it.
#
#   a. p50/p99 latency of static-only requests (a small safetensors, probed: the static lane answers it) through an
#      airlockd of 2 detonation workers and a queue of 64, first idle, then while BENCH_BP_SATURATORS clients (default
#      8) keep every detonation worker busy with a pickle that computes for about 1 s (harmless: `sum(range(N))`).
#      The load generator is Tests/Bench/daemon_load.py (BENCH_BP_CLIENTS clients, default 4, BENCH_BP_REQUESTS
#      requests each, default 200).
#   b. BENCH_BP_BURST (default 150) concurrent `airlock --socket S probe --timeout 600` processes of a small plain
#      pickle (each a detonation) on the same daemon (requestTimeoutSeconds 600, so that the CLI may retry that
#      long): how many exited 0 with a verdict, how many printed a busy error (must be 0: `busy` is retried), how
#      many said once that they wait, the wall time, and the daemon's own count of `busy` answers (what the clients
#      absorbed).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# BENCH_BP_BIN=.build/debug: the debug binaries, to check the script without a release build (numbers meaningless).
if [ -n "${BENCH_BP_BIN:-}" ]; then AIRLOCK="$REPO/$BENCH_BP_BIN/airlock"; AIRLOCKD="$REPO/$BENCH_BP_BIN/airlockd"; fi
LOAD="$REPO/Tests/Bench/daemon_load.py"
SATURATORS=${BENCH_BP_SATURATORS:-8}
CLIENTS=${BENCH_BP_CLIENTS:-4}
REQUESTS=${BENCH_BP_REQUESTS:-200}
BURST=${BENCH_BP_BURST:-150}

[ -x "$AIRLOCKD" ] || die "$AIRLOCKD is missing: run 'make build' (or 'make bench')"
[ -x "$AIRLOCK" ] || die "$AIRLOCK is missing: run 'make build' (or 'make bench')"
require_harness_bytecode

TMP=$(mktemp -d "${TMPDIR:-/tmp}/airlock-backpressure-bench.XXXXXX")
SOCK="$TMP/airlockd.sock"
DAEMON_PID=
SAT_PIDS=()
cleanup() {
    touch "$TMP/stop"
    for p in "${SAT_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "$DAEMON_PID" ]; then kill -TERM "$DAEMON_PID" 2>/dev/null || true; wait "$DAEMON_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT

"$HOST_PY" - "$TMP" <<'PY'
import json, pickle, struct, sys
out = sys.argv[1]
header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
open(f"{out}/small.safetensors", "wb").write(struct.pack("<Q", len(header)) + header + bytes(8))
pickle.dump({"w": [0.5] * 8}, open(f"{out}/plain.pkl", "wb"))
# builtins.sum(builtins.range(N)): about a second of CPU in the sandbox, no side effect.
n = b"60000000"
open(f"{out}/busy.pkl", "wb").write(b"\x80\x02cbuiltins\nsum\ncbuiltins\nrange\nI" + n + b"\n\x85R\x85R.")
PY

# The clients retry busy for their --timeout, which the daemon caps at requestTimeoutSeconds: 600 s lets the last of
# a 150-client burst (about 2 detonations a second) wait its turn.
echo '{"requestTimeoutSeconds": 600}' >"$TMP/config.json"
"$AIRLOCKD" --socket "$SOCK" --config "$TMP/config.json" --max-concurrent 2 --queue 64 2>>"$TMP/airlockd.log" &
DAEMON_PID=$!
for _ in $(seq 1 200); do
    "$HOST_PY" "$LOAD" --socket "$SOCK" --method status --clients 1 --requests 1 --warmup 0 >/dev/null 2>&1 && break
    kill -0 "$DAEMON_PID" 2>/dev/null || die "airlockd exited at start: $(tail -5 "$TMP/airlockd.log")"
    sleep 0.05
done

static_row() {
    "$HOST_PY" "$LOAD" --socket "$SOCK" --method probe --file "$TMP/small.safetensors" --outcome none \
        --clients "$CLIENTS" --requests "$REQUESTS" --label "$1"
}
refused_busy() {
    "$AIRLOCK" status --socket "$SOCK" --json | "$HOST_PY" -c 'import json, sys; print(json.load(sys.stdin)["refused"].get("busy", 0))'
}

echo "## Back-pressure"
echo
echo "### Static-only requests while detonations saturate the workers"
echo
echo "| daemon | clients | requests | p50 ms | p99 ms | max ms |"
echo "|---|---|---|---|---|---|"
row() {
    "$HOST_PY" -c 'import json, sys
r = json.loads(sys.stdin.read())
print("| %s | %s | %s | %s | %s | %s |" % tuple(r[k] for k in ("label", "clients", "requests", "p50", "p99", "max")))'
}
static_row "idle" | row
for i in $(seq 1 "$SATURATORS"); do
    # Each loops until told to stop, then ends after its current probe (no request left behind in the daemon).
    ( while [ ! -e "$TMP/stop" ]; do "$HOST_PY" "$LOAD" --socket "$SOCK" --method probe --file "$TMP/busy.pkl" \
        --expect any --clients 1 --requests 1 --warmup 0 >/dev/null 2>&1 || true; done ) &
    SAT_PIDS+=($!)
done
sleep 2
static_row "2 detonation workers busy, $SATURATORS probes queued" | row
touch "$TMP/stop"
wait "${SAT_PIDS[@]}" 2>/dev/null || true
SAT_PIDS=()

echo
echo "### $BURST concurrent CLI clients, each a detonation (2 workers, queue 64)"
echo
before=$(refused_busy)
start=$(date +%s.%N)
mkdir -p "$TMP/burst"
BURST_PIDS=()
for i in $(seq 1 "$BURST"); do
    ( rc=0; "$AIRLOCK" --socket "$SOCK" probe --timeout 600 --format json "$TMP/plain.pkl" >"$TMP/burst/$i.out" \
        2>"$TMP/burst/$i.err" || rc=$?; echo "$rc" >"$TMP/burst/$i.rc" ) &
    BURST_PIDS+=($!)
done
wait "${BURST_PIDS[@]}"
end=$(date +%s.%N)
ok=0; busy=0; waited=0
for i in $(seq 1 "$BURST"); do
    if [ "$(cat "$TMP/burst/$i.rc")" = 0 ] && grep -q '"verdict"' "$TMP/burst/$i.out"; then ok=$((ok + 1)); fi
    if grep -q '"busy"' "$TMP/burst/$i.out" "$TMP/burst/$i.err"; then busy=$((busy + 1)); fi
    if grep -q "airlockd is busy" "$TMP/burst/$i.err"; then waited=$((waited + 1)); fi
done
after=$(refused_busy)
echo "| clients | answered (exit 0, verdict) | busy reaching the user | said they wait | daemon's busy answers | wall s |"
echo "|---|---|---|---|---|---|"
printf '| %s | %s | %s | %s | %s | %.1f |\n' "$BURST" "$ok" "$busy" "$waited" "$((after - before))" \
    "$(echo "$end - $start" | bc)"
if [ "$busy" != 0 ] || [ "$ok" != "$BURST" ]; then
    for i in $(seq 1 "$BURST"); do
        [ "$(cat "$TMP/burst/$i.rc")" = 0 ] || { echo "client $i: exit $(cat "$TMP/burst/$i.rc")"; head -c 600 "$TMP/burst/$i.err"; break; }
    done >&2
    die "busy reached a user, or a client was not answered"
fi
