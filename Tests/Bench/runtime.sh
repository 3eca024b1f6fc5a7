#!/usr/bin/env bash
# The consumer's Python (issue 13), run by `make bench` through Tests/Bench/run.sh (or alone: `bash
# Tests/Bench/runtime.sh` after `make build`). Prints a markdown summary; docs/benchmarks.md records a run of it.
#
#  11. with the real libraries (Debian's python3-torch 1.13, python3-sklearn; models written by
#      Tests/Generators/real_models.py):
#      - cold CLI: `airlock probe linear_state.pt` (a torch state_dict: static analysis, the runtime's description,
#        a detonation importing torch, the verdict) against the consumer's own
#        `python3 -c "import torch; torch.load(f, weights_only=False)"`, in the same hyperfine run. Budget: ≤ 1.3×.
#      - warm daemon: the same file probed through `airlockd --warm N` after one warm-up, at 1 and 4 clients
#        (Tests/Bench/daemon_load.py: latency from the send to the last byte of the reply), p50/p90/p99. Budget:
#        p50 at 1 client ≤ 0.1× the consumer's cold load.
#      - `airlock probe forest.pkl` (a scikit-learn random forest, real sklearn in the sandbox): wall time, the CLI's
#        peak RSS (GNU time) and the sandbox's memory peak (its cgroup, from the report).
#
# Every row is one detonation (`--worlds 1`, the daemon's `worlds` 1): the budgets compare one load with the consumer's;
# what more worlds cost is Tests/Bench/worlds.sh's.
#
# Knobs: BENCH_RUNTIME_RUNS (hyperfine runs, default 10), BENCH_RUNTIME_REQUESTS (daemon requests per row, default
# 40). Prints a FAIL line and exits 1 when a budget is missed. Takes about 1 minute on 2 cores.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RUNS=${BENCH_RUNTIME_RUNS:-10}
REQUESTS=${BENCH_RUNTIME_REQUESTS:-40}
LOAD="$REPO/Tests/Bench/daemon_load.py"

[ -x "$AIRLOCK" ] && [ -x "$AIRLOCKD" ] || die "release binaries missing: run 'make build' (or 'make bench')"
"$HOST_PY" -c 'import torch, sklearn' 2>/dev/null || die "$HOST_PY lacks torch or sklearn: run 'make deps'"
command -v hyperfine >/dev/null || die "hyperfine is missing: run 'make bench-deps'"
require_harness_bytecode

TMP=$(mktemp -d "${TMPDIR:-/tmp}/airlock-runtime-bench.XXXXXX")
DAEMON_PID=
cleanup() {
    [ -n "$DAEMON_PID" ] && { kill -TERM "$DAEMON_PID" 2>/dev/null || true; wait "$DAEMON_PID" 2>/dev/null || true; }
    rm -rf "$TMP"
}
trap cleanup EXIT
"$HOST_PY" "$REPO/Tests/Generators/real_models.py" "$TMP/models" --canary "$TMP/canary" --port 9 >/dev/null
STATE="$TMP/models/linear_state.pt"
FOREST="$TMP/models/forest.pkl"
FAILED=0

echo "### The consumer's Python (issue 13)"
echo
echo "torch $("$HOST_PY" -c 'import torch; print(torch.__version__)'), scikit-learn $("$HOST_PY" -c 'import sklearn; print(sklearn.__version__)'), $(nproc) CPUs"
echo
echo "#### Cold CLI: airlock probe against the consumer's own load (hyperfine, $RUNS runs)"
echo
hyperfine -N -w 2 -r "$RUNS" --export-json "$TMP/cold.json" \
    -n consumer "$HOST_PY -c \"import torch; torch.load('$STATE', weights_only=False)\"" \
    -n airlock "$AIRLOCK probe --worlds 1 $STATE" >/dev/null
read -r CONSUMER AIRLOCK_MS RATIO < <("$HOST_PY" - "$TMP/cold.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
c, a = r["consumer"]["mean"] * 1000, r["airlock"]["mean"] * 1000
print(f"{c:.1f} {a:.1f} {a / c:.2f}")
EOF
)
echo "| command | mean ms |"
echo "|---|---|"
echo "| \`python3 -c \"import torch; torch.load(f, weights_only=False)\"\` | $CONSUMER |"
echo "| \`airlock probe linear_state.pt\` | $AIRLOCK_MS |"
echo
if awk -v r="$RATIO" 'BEGIN { exit !(r <= 1.3) }'; then
    echo "PASS cold CLI: ${RATIO}× the consumer's cold load (budget 1.3×)"
else
    echo "FAIL cold CLI: ${RATIO}× the consumer's cold load (budget 1.3×)"
    FAILED=1
fi
echo
"$AIRLOCK" probe --worlds 1 --format json "$STATE" | "$HOST_PY" -c '
import json, sys
r = json.load(sys.stdin)
print("where the time goes (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items()))'

echo
echo "#### Warm daemon: the same file through airlockd with pre-started sandboxes"
echo
SOCK="$TMP/airlockd.sock"
WARM=${BENCH_RUNTIME_WARM:-4}
printf '{"warm": %d}\n' "$WARM" >"$TMP/airlockd.json"
"$AIRLOCKD" --config "$TMP/airlockd.json" --socket "$SOCK" --max-concurrent 4 --queue 256 2>>"$TMP/airlockd.log" &
DAEMON_PID=$!
for _ in $(seq 1 400); do
    [ -S "$SOCK" ] && "$HOST_PY" "$LOAD" --socket "$SOCK" --method status --clients 1 --requests 1 --warmup 0 \
        >/dev/null 2>&1 && break
    kill -0 "$DAEMON_PID" 2>/dev/null || die "airlockd exited at start: $(tail -5 "$TMP/airlockd.log")"
    sleep 0.05
done
echo "airlockd with \`{\"warm\": $WARM}\` (warm sandboxes per runtime and start-up), --max-concurrent 4; $REQUESTS requests per row, back to back, after one warm-up per client; the pool refills between rows"
echo
echo "| clients | p50 ms | p90 ms | p95 ms | p99 ms | max ms | p50 / consumer's cold load |"
echo "|---|---|---|---|---|---|---|"
for clients in 1 4; do
    sleep 10  # the pool refills between rows
    line=$("$HOST_PY" "$LOAD" --socket "$SOCK" --method probe --file "$STATE" --expect clean --outcome loaded \
        --clients "$clients" --requests "$REQUESTS" --warmup 1 --worlds 1 --label "warm $clients")
    read -r P50 P90 P95 P99 MAX < <("$HOST_PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["p50"], d["p90"], d["p95"], d["p99"], d["max"])' "$line")
    FRACTION=$(awk -v p="$P50" -v c="$CONSUMER" 'BEGIN { printf "%.3f", p / c }')
    echo "| $clients | $P50 | $P90 | $P95 | $P99 | $MAX | $FRACTION |"
    if [ "$clients" = 1 ]; then ONE_CLIENT=$FRACTION; fi
done
echo
echo "Each warm sandbox serves one model and is then replaced; a replacement imports torch again (about 0.8 s of CPU),"
echo "so back-to-back requests beyond the pool's size find none ready and run cold: the tail above."
echo
if awk -v r="$ONE_CLIENT" 'BEGIN { exit !(r <= 0.1) }'; then
    echo "PASS warm daemon: p50 at 1 client ${ONE_CLIENT}× the consumer's cold load (budget 0.1×)"
else
    echo "FAIL warm daemon: p50 at 1 client ${ONE_CLIENT}× the consumer's cold load (budget 0.1×)"
    FAILED=1
fi

echo
echo "#### A scikit-learn random forest, probed with real sklearn"
echo
echo "| run | wall s | CLI peak RSS MiB | sandbox memory peak MiB | verdict |"
echo "|---|---|---|---|---|"
for i in 1 2 3; do
    /usr/bin/time -f "%e %M" -o "$TMP/time" "$AIRLOCK" probe --worlds 1 --format json "$FOREST" >"$TMP/forest.json" || true
    read -r WALL RSS <"$TMP/time"
    read -r PEAK VERDICT < <("$HOST_PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))
peak = (r.get("detonation") or {}).get("cgroup", {}).get("memoryPeakBytes")
print(f"{peak / 1048576:.0f}" if peak else "n/a", r["verdict"])' "$TMP/forest.json")
    echo "| $i | $WALL | $((RSS / 1024)) | $PEAK | $VERDICT |"
done
exit "$FAILED"
