#!/usr/bin/env bash
# A probe's worlds (issue 15, docs/probe.md "Worlds"), run by `make bench` through Tests/Bench/run.sh (or alone:
# `bash Tests/Bench/worlds.sh` after `make build`). Prints a markdown summary; docs/benchmarks.md records a run of it.
#
#  12. the cost of each extra world, for three benign files: a torch state_dict saved by the real torch
#      (Tests/Generators/real_models.py's linear_state.pt), a scikit-learn forest in joblib (forest.pkl) and a plain
#      pickle (Tests/Generators/worlds.py's benign.pkl):
#      - cold: `airlock probe --worlds N FILE`, N = 1, 2, 3, 5 (hyperfine), and the cost per extra world
#        ((t5 - t1) / 4);
#      - warm: the same through airlockd with `{"warm": 1}` (a warm sandbox per runtime start-up and per default
#        world), one client, requests spaced so the pool refills (Tests/Bench/daemon_load.py, `worlds` N);
#      - the probe time of the default (--worlds 3) is the N = 3 row.
#
# Knobs: BENCH_WORLDS_RUNS (hyperfine runs per row, default 5), BENCH_WORLDS_REQUESTS (daemon requests per row,
# default 8). Takes about 3 minutes on 2 cores.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RUNS=${BENCH_WORLDS_RUNS:-5}
REQUESTS=${BENCH_WORLDS_REQUESTS:-8}
LOAD="$REPO/Tests/Bench/daemon_load.py"

[ -x "$AIRLOCK" ] && [ -x "$AIRLOCKD" ] || die "release binaries missing: run 'make build' (or 'make bench')"
"$HOST_PY" -c 'import torch, sklearn' 2>/dev/null || die "$HOST_PY lacks torch or sklearn: run 'make deps'"
command -v hyperfine >/dev/null || die "hyperfine is missing: run 'make bench-deps'"
require_harness_bytecode

TMP=$(mktemp -d "${TMPDIR:-/tmp}/airlock-worlds-bench.XXXXXX")
DAEMON_PID=
cleanup() {
    [ -n "$DAEMON_PID" ] && { kill -TERM "$DAEMON_PID" 2>/dev/null || true; wait "$DAEMON_PID" 2>/dev/null || true; }
    rm -rf "$TMP"
}
trap cleanup EXIT
"$HOST_PY" "$REPO/Tests/Generators/real_models.py" "$TMP/models" --canary "$TMP/canary" --port 9 >/dev/null
"$HOST_PY" "$REPO/Tests/Generators/worlds.py" "$TMP/worlds" --canary "$TMP/canary" --port 9 >/dev/null
FILES=("$TMP/models/linear_state.pt" "$TMP/models/forest.pkl" "$TMP/worlds/benign.pkl")
LABELS=("torch state_dict" "sklearn forest (joblib)" "plain pickle")
COUNTS=(1 2 3 5)

echo "### Worlds (issue 15)"
echo
echo "#### Cold: \`airlock probe --worlds N FILE\`, whole process (hyperfine, $RUNS runs, mean ms)"
echo
echo "| file | N=1 | N=2 | N=3 (default) | N=5 | per extra world |"
echo "|---|---|---|---|---|---|"
for i in "${!FILES[@]}"; do
    f=${FILES[$i]}
    for n in "${COUNTS[@]}"; do
        v=$("$AIRLOCK" probe --worlds "$n" --format json "$f" | "$HOST_PY" -c 'import json,sys; print(json.load(sys.stdin)["verdict"])' || true)
        [ "$v" = clean ] || die "${LABELS[$i]} --worlds $n: verdict $v, not clean"
    done
    commands=()
    for n in "${COUNTS[@]}"; do commands+=(-n "$n" "$AIRLOCK probe --worlds $n $f"); done
    hyperfine -N -w 1 -r "$RUNS" --export-json "$TMP/cold.json" "${commands[@]}" >/dev/null 2>>"$TMP/hyperfine.log" ||
        die "hyperfine failed: $(tail -5 "$TMP/hyperfine.log")"
    "$HOST_PY" - "$TMP/cold.json" "${LABELS[$i]}" <<'PY'
import json, sys
r = {x["command"]: x["mean"] * 1000 for x in json.load(open(sys.argv[1]))["results"]}
print(f"| {sys.argv[2]} | {r['1']:.0f} | {r['2']:.0f} | {r['3']:.0f} | {r['5']:.0f} | {(r['5'] - r['1']) / 4:.0f} |")
PY
done

echo
echo "#### Warm: through airlockd with \`{\"warm\": 1}\`, one client, p50 ms over $REQUESTS requests"
echo
SOCK="$TMP/airlockd.sock"
printf '{"warm": 1}\n' >"$TMP/airlockd.json"
"$AIRLOCKD" --config "$TMP/airlockd.json" --socket "$SOCK" 2>>"$TMP/airlockd.log" &
DAEMON_PID=$!
for _ in $(seq 1 400); do
    [ -S "$SOCK" ] && "$HOST_PY" "$LOAD" --socket "$SOCK" --method status --clients 1 --requests 1 --warmup 0 \
        >/dev/null 2>&1 && break
    kill -0 "$DAEMON_PID" 2>/dev/null || die "airlockd exited at start: $(tail -5 "$TMP/airlockd.log")"
    sleep 0.05
done
echo "| file | N=1 | N=2 | N=3 (default) | per extra world |"
echo "|---|---|---|---|---|"
for i in "${!FILES[@]}"; do
    f=${FILES[$i]}
    row=()
    for n in 1 2 3; do
        ms=()
        for _ in $(seq 1 "$REQUESTS"); do
            sleep 4  # the pool refills (a warm torch sandbox imports torch again)
            line=$("$HOST_PY" "$LOAD" --socket "$SOCK" --method probe --file "$f" --expect clean --worlds "$n" \
                --clients 1 --requests 1 --warmup 0)
            ms+=("$("$HOST_PY" -c 'import json,sys; print(json.loads(sys.argv[1])["p50"])' "$line")")
        done
        row+=("$(printf '%s\n' "${ms[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')")
    done
    extra=$(awk -v a="${row[0]}" -v c="${row[2]}" 'BEGIN { printf "%.0f", (c - a) / 2 }')
    echo "| ${LABELS[$i]} | ${row[0]} | ${row[1]} | ${row[2]} | $extra |"
done
