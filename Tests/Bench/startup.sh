#!/usr/bin/env bash
# The start-up row of `make bench`, with its budgets (issue 12):
#
#   - `airlock --version`: mean ≤ BENCH_VERSION_BUDGET_MS (1.5 ms);
#   - `airlock exec -- /bin/true`: mean ≤ BENCH_EXEC_BUDGET_RATIO (1.5) × bubblewrap's mean over the same view
#     (BWRAP_VIEW in common.sh), measured in the same hyperfine run.
#
# Prints a markdown table, then one `PASS: …` or `FAIL: …` line per budget, and exits 1 when a budget is missed
# (run.sh runs it first, keeps going, and exits 1 at the end). Run alone: `make build bench-deps && bash
# Tests/Bench/startup.sh` (about 5 s). Knobs: BENCH_STARTUP_RUNS (hyperfine runs per command, default 200),
# BENCH_STARTUP_WARMUP (20). Absolute times only mean something on an idle machine: the load average is printed
# before and after.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUNS=${BENCH_STARTUP_RUNS:-200}
WARMUP=${BENCH_STARTUP_WARMUP:-20}
VERSION_BUDGET_MS=${BENCH_VERSION_BUDGET_MS:-1.5}
EXEC_BUDGET_RATIO=${BENCH_EXEC_BUDGET_RATIO:-1.5}

[ -x "$AIRLOCK" ] || die "$AIRLOCK is missing: run 'make build' (or 'make bench')"
for tool in hyperfine bwrap; do
    command -v "$tool" >/dev/null || die "$tool is missing: run 'make bench-deps' (or 'make bench')"
done
TMP=$(mktemp -d /tmp/airlock-startup.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
hyperfine_setup "$WARMUP" "$RUNS"

"$AIRLOCK" exec -- /bin/true >/dev/null || die "airlock exec -- /bin/true failed"
$BWRAP_VIEW /bin/true || die "bwrap failed over the default view (are user namespaces available?)"

echo "## Start-up budget"
echo
echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- bubblewrap: \`$BWRAP_VIEW /bin/true\`"
echo
hf --export-json "$TMP/version.json" "$AIRLOCK --version" "bwrap --version"
hf --export-json "$TMP/exec.json" "$AIRLOCK exec -- /bin/true" "$BWRAP_VIEW /bin/true"
"$HOST_PY" - "$TMP/version.json" "$TMP/exec.json" "$VERSION_BUDGET_MS" "$EXEC_BUDGET_RATIO" >"$TMP/verdict" <<'EOF'
import json, statistics, sys

def means(path):
    return [(statistics.mean(r["times"]) * 1e3, statistics.median(r["times"]) * 1e3, min(r["times"]) * 1e3)
            for r in json.load(open(path))["results"]]

(version, bwrap_version), (airlock_exec, bwrap_exec) = means(sys.argv[1]), means(sys.argv[2])
version_budget, ratio_budget = float(sys.argv[3]), float(sys.argv[4])
print("| command | mean ms | median ms | min ms | budget |")
print("|---|---:|---:|---:|---|")
print(f"| `airlock --version` | {version[0]:.2f} | {version[1]:.2f} | {version[2]:.2f} | ≤ {version_budget} ms |")
print(f"| `bwrap --version` | {bwrap_version[0]:.2f} | {bwrap_version[1]:.2f} | {bwrap_version[2]:.2f} | |")
print(f"| `airlock exec -- /bin/true` | {airlock_exec[0]:.2f} | {airlock_exec[1]:.2f} | {airlock_exec[2]:.2f} "
      f"| ≤ {ratio_budget}× bubblewrap |")
print(f"| bwrap (same view) `/bin/true` | {bwrap_exec[0]:.2f} | {bwrap_exec[1]:.2f} | {bwrap_exec[2]:.2f} | |")
print()
ratio = airlock_exec[0] / bwrap_exec[0]
verdict = "PASS" if version[0] <= version_budget else "FAIL"
print(f"{verdict}: airlock --version mean {version[0]:.2f} ms (budget ≤ {version_budget} ms)")
verdict = "PASS" if ratio <= ratio_budget else "FAIL"
print(f"{verdict}: airlock exec -- /bin/true mean {airlock_exec[0]:.2f} ms = {ratio:.2f}× bubblewrap's "
      f"{bwrap_exec[0]:.2f} ms (budget ≤ {ratio_budget}×)")
EOF
cat "$TMP/verdict"
echo
echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
! grep -q '^FAIL' "$TMP/verdict"
