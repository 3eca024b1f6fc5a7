#!/usr/bin/env bash
# A folder of 100,000 empty files (in a tmpfs) scanned through airlockd: the client's wall time, the daemon's peak
# resident memory (VmHWM) before and after, and the reply's reports. docs/benchmarks.md, "Folder of 100k empty files".
# Usage: Tests/Bench/folder-budget.sh [BUILD_DIR]   (default .build/debug; give another checkout's to compare)
set -euo pipefail
build=${1:-.build/debug}
work=$(mktemp -d /dev/shm/airlock-folder-bench.XXXXXX)
trap 'kill "$daemon" 2>/dev/null || true; rm -rf -- "$work"' EXIT
/usr/bin/python3 -c "
import os, sys
d = sys.argv[1]
os.mkdir(d)
for i in range(100000):
    os.close(os.open(os.path.join(d, 'f%06d' % i), os.O_CREAT | os.O_WRONLY, 0o644))
" "$work/d"
"$build/airlockd" --socket "$work/s.sock" 2>"$work/airlockd.log" &
daemon=$!
for _ in $(seq 100); do [ -S "$work/s.sock" ] && break; sleep 0.1; done
sleep 1
before=$(awk '/VmHWM/ {print $2}' "/proc/$daemon/status")
start=$(date +%s.%N)
status=0
"$build/airlock" --socket "$work/s.sock" scan --format json "$work/d" >"$work/out.jsonl" || status=$?
end=$(date +%s.%N)
after=$(awk '/VmHWM/ {print $2}' "/proc/$daemon/status")
printf 'build %s: %.1f s, daemon VmHWM %d -> %d kB, %d reports (%d bytes), exit %d\n' "$build" \
    "$(echo "$end - $start" | bc)" "$before" "$after" "$(wc -l <"$work/out.jsonl")" "$(wc -c <"$work/out.jsonl")" \
    "$status"
