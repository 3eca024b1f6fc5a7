#!/usr/bin/env bash
# Trace-flood benchmark (issue 11, class 4), run by `make bench` through Tests/Bench/run.sh (or alone:
# `bash Tests/Bench/flood.sh` after `make build`). Prints a markdown summary; docs/benchmarks.md records a run of it.
#
#   10. a model that floods refused program starts: Tests/Generators/floods.py's `exec_flood.pkl` loops `os.execv`
#       (20 arguments of 4000 control bytes each, six bytes apiece once JSON-escaped) and `os.system` for longer
#       than the deadline. Probed with a BENCH_FLOOD_TIMEOUT-second deadline (default 5):
#       - `airlock probe --timeout T --format json` (the CLI is the supervisor): wall time, time past the deadline,
#         report size, and the CLI's peak RSS (`/usr/bin/time -v`, maximum resident set size);
#       - the same through `airlockd` (`airlock --socket PATH probe …`): wall time, report size, and the daemon's
#         peak RSS (VmHWM of /proc/PID/status after the request; the sandboxes are other processes);
#       Targets (issue 11): the verdict is `malicious`, the probe returns within seconds of its deadline, the report
#       is at most 64 MiB, the supervisor's RSS at most 1 GiB. The script fails when a verdict or a target is missed.
#
# Knobs (environment): BENCH_FLOOD_TIMEOUT (the deadline in seconds, default 5), BENCH_FLOOD_RUNS (runs of each, the
# worst kept, default 1). Takes about 20 s with the defaults.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DEADLINE=${BENCH_FLOOD_TIMEOUT:-5}
RUNS=${BENCH_FLOOD_RUNS:-1}

[ -x "$AIRLOCK" ] || die "$AIRLOCK is missing: run 'make build' (or 'make bench')"
[ -x "$AIRLOCKD" ] || die "$AIRLOCKD is missing: run 'make build' (or 'make bench')"
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install time)"
require_harness_bytecode

TMP=$(mktemp -d "${TMPDIR:-/tmp}/airlock-flood-bench.XXXXXX")
DAEMON_PID=
cleanup() {
    if [ -n "$DAEMON_PID" ]; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

"$HOST_PY" "$REPO/Tests/Generators/floods.py" "$TMP/samples" >/dev/null
FLOOD="$TMP/samples/exec_flood.pkl"

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

# check REPORT LABEL: the verdict and the exec evidence, or stop.
check() {
    "$HOST_PY" - "$1" "$2" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
if r["verdict"] != "malicious" or not any(f["rule"] == "dynamic.exec" for f in r["findings"]):
    sys.exit(f"{sys.argv[2]}: verdict {r['verdict']}, findings {[f['rule'] for f in r['findings']]}")
d = r["detonation"]
print(len(r["trace"]), d["traceDropped"], d["traceDroppedBytes"])
EOF
}

# Local: the CLI runs the sandbox and serves its notifications itself.
LOCAL_WALL=0 LOCAL_SIZE=0 LOCAL_RSS=0 LOCAL_COUNTS=
for _ in $(seq "$RUNS"); do
    start=$(now)
    set +e
    /usr/bin/time -v -o "$TMP/time.txt" "$AIRLOCK" probe --timeout "$DEADLINE" --format json "$FLOOD" >"$TMP/local.json"
    status=$?
    set -e
    wall=$(calc %.2f "$(now) - $start")
    [ "$status" = 1 ] || die "local probe: exit $status (expected 1, malicious)"
    LOCAL_COUNTS=$(check "$TMP/local.json" local) || die "$LOCAL_COUNTS"
    size=$(stat -c %s "$TMP/local.json")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$TMP/time.txt")
    LOCAL_WALL=$(calc %.2f "($wall > $LOCAL_WALL) ? $wall : $LOCAL_WALL")
    [ "$size" -gt "$LOCAL_SIZE" ] && LOCAL_SIZE=$size
    [ "$rss" -gt "$LOCAL_RSS" ] && LOCAL_RSS=$rss
done

# Through airlockd: the daemon is the supervisor; its RSS is read after the request (VmHWM: the peak).
SOCK="$TMP/airlockd.sock"
"$AIRLOCKD" --socket "$SOCK" 2>"$TMP/airlockd.log" &
DAEMON_PID=$!
for _ in $(seq 200); do
    [ -S "$SOCK" ] && break
    kill -0 "$DAEMON_PID" 2>/dev/null || die "airlockd exited at start: $(tail -5 "$TMP/airlockd.log")"
    sleep 0.05
done
[ -S "$SOCK" ] || die "airlockd did not create $SOCK"
DAEMON_START_RSS=$(awk '/VmRSS/ {print $2}' "/proc/$DAEMON_PID/status")
DAEMON_WALL=0 DAEMON_SIZE=0 DAEMON_COUNTS=
for _ in $(seq "$RUNS"); do
    start=$(now)
    set +e
    "$AIRLOCK" --socket "$SOCK" probe --timeout "$DEADLINE" --format json "$FLOOD" >"$TMP/daemon.json"
    status=$?
    set -e
    wall=$(calc %.2f "$(now) - $start")
    [ "$status" = 1 ] || die "probe through airlockd: exit $status (expected 1, malicious): $(tail -3 "$TMP/airlockd.log")"
    kill -0 "$DAEMON_PID" 2>/dev/null || die "airlockd died during the flood"
    DAEMON_COUNTS=$(check "$TMP/daemon.json" airlockd) || die "$DAEMON_COUNTS"
    size=$(stat -c %s "$TMP/daemon.json")
    DAEMON_WALL=$(calc %.2f "($wall > $DAEMON_WALL) ? $wall : $DAEMON_WALL")
    [ "$size" -gt "$DAEMON_SIZE" ] && DAEMON_SIZE=$size
done
DAEMON_RSS=$(awk '/VmHWM/ {print $2}' "/proc/$DAEMON_PID/status")

mib() { calc %.1f "$1 / 1048576"; }
kmib() { calc %.1f "$1 / 1024"; }
past() { calc %.2f "$1 - $DEADLINE"; }

echo "## 10. A flood of refused execs: a verdict always comes back, bounded"
echo
echo "- \`exec_flood.pkl\` (Tests/Generators/floods.py): refused \`os.execv\`s with 20 × 4000 control bytes in argv, and"
echo "  \`os.system\`, in a loop for longer than the deadline; \`--timeout $DEADLINE\`, worst of $RUNS run(s), $(nproc) CPUs,"
echo "  load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| run | wall s | past the deadline s | report | supervisor peak RSS | trace kept / dropped events, dropped bytes |"
echo "|---|---|---|---|---|---|"
read -r lk ld lb <<<"$LOCAL_COUNTS"
read -r dk dd db <<<"$DAEMON_COUNTS"
echo "| \`airlock probe\` (CLI supervises) | $LOCAL_WALL | $(past "$LOCAL_WALL") | $(mib "$LOCAL_SIZE") MiB | $(kmib "$LOCAL_RSS") MiB (CLI) | $lk / $ld, $(mib "$lb") MiB |"
echo "| through \`airlockd\` | $DAEMON_WALL | $(past "$DAEMON_WALL") | $(mib "$DAEMON_SIZE") MiB | $(kmib "$DAEMON_RSS") MiB (daemon; $(kmib "$DAEMON_START_RSS") MiB at start) | $dk / $dd, $(mib "$db") MiB |"
echo
echo "Targets: report ≤ 64 MiB, supervisor RSS ≤ 1 GiB, verdict \`malicious\` with \`dynamic.exec\` (checked)."

for v in "$LOCAL_SIZE" "$DAEMON_SIZE"; do [ "$v" -le $((64 << 20)) ] || die "a report of $v bytes (target ≤ 64 MiB)"; done
for v in "$LOCAL_RSS" "$DAEMON_RSS"; do [ "$v" -le $((1 << 20)) ] || die "a peak RSS of $v KiB (target ≤ 1 GiB)"; done
