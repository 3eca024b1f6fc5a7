#!/usr/bin/env bash
# Intake scale-out: models per minute against the number of `airlock intake` workers (processes) on one root
# (docs/intake.md, "Several workers on one root"; docs/benchmarks.md, "Intake workers").
#
#   bash Tests/Bench/intake-workers.sh            # after `make build` (release) and `make harness`; as root
#
# For each W in BENCH_IW_WORKERS (default "1 2 3 4") and each of BENCH_IW_RUNS runs (default 3): a fresh root under
# ${TMPDIR:-/tmp}, BENCH_IW_MODELS models (default 40) dropped in incoming/ (a mix: every BENCH_IW_DETONATE-th one
# (default 2, so half) a copy of Tests/Generators/models.py's benign.pt, which is detonated in the sandbox, the others
# its model.safetensors, static only), `sync`, then W processes `airlock intake --once --worker wI` started together
# with the policy {"settleSeconds": 0, "workers": 1} (one examination at a time per process, so W is the concurrency)
# and timed until the last exits. Every run is checked: every process exits 0, every model is in approved/ exactly
# once with its report.json, each was taken by exactly one worker, and incoming/, quarantine/ and .airlock/workers/
# are empty. Prints a Markdown table: workers, median wall seconds, models per minute, and the spread of the runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

AIRLOCK=${AIRLOCK_BIN:-$AIRLOCK}
[ -x "$AIRLOCK" ] || die "$AIRLOCK is missing: make build (or AIRLOCK_BIN=.build/debug/airlock)"
[ "$(id -u)" = 0 ] || die "run as root (the detonations build sandboxes, as airlock probe does)"
MODELS=${BENCH_IW_MODELS:-40}
RUNS=${BENCH_IW_RUNS:-3}
WORKERS=${BENCH_IW_WORKERS:-"1 2 3 4"}
DETONATE=${BENCH_IW_DETONATE:-2}
export AIRLOCK_PROFILE_DIR=${AIRLOCK_PROFILE_DIR:-$REPO/Profiles}
require_harness_bytecode

TMP=$(mktemp -d "${TMPDIR:-/tmp}/airlock-bench-intake-workers.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
"$HOST_PY" "$REPO/Tests/Generators/models.py" "$TMP/gen" >/dev/null
echo '{"settleSeconds": 0, "workers": 1}' >"$TMP/policy.json"

"$HOST_PY" - "$AIRLOCK" "$TMP" "$MODELS" "$RUNS" "$DETONATE" $WORKERS <<'EOF'
import json, os, shutil, statistics, subprocess, sys, time

airlock, tmp, models, runs, detonate = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
counts = [int(w) for w in sys.argv[6:]]
gen = os.path.join(tmp, "gen")

def one_run(workers):
    root = os.path.join(tmp, "root")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.join(root, "incoming"))
    names = []
    for i in range(models):
        kind = "benign.pt" if detonate > 0 and i % detonate == 0 else "model.safetensors"
        name = f"m{i:04d}-{kind}"
        shutil.copyfile(os.path.join(gen, kind), os.path.join(root, "incoming", "." + name))
        os.rename(os.path.join(root, "incoming", "." + name), os.path.join(root, "incoming", name))
        names.append(name)
    os.sync()
    start = time.monotonic()
    procs = [subprocess.Popen([airlock, "intake", "--root", root, "--policy", os.path.join(tmp, "policy.json"),
                               "--once", "--worker", f"w{i + 1}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(workers)]
    outs = [p.communicate() for p in procs]
    wall = time.monotonic() - start
    took = {}
    for p, (out, err) in zip(procs, outs):
        if p.returncode != 0:
            sys.exit(f"bench: a worker exited {p.returncode}: {out.decode()[-400:]} {err.decode()[-400:]}")
        for line in err.decode().splitlines():
            if line.startswith("airlock intake: took "):
                took[line.split()[3]] = took.get(line.split()[3], 0) + 1
    problems = [n for n in names if took.get(n) != 1]
    problems += [n for n in names if not os.path.exists(os.path.join(root, "approved", n, "report.json"))]
    if sorted(os.listdir(os.path.join(root, "approved"))) != sorted(names):
        problems.append("approved/ holds " + ", ".join(sorted(set(os.listdir(os.path.join(root, "approved"))) - set(names)))[:200])
    for left in ("incoming", "quarantine", ".airlock/workers"):
        entries = [e for e in os.listdir(os.path.join(root, left)) if not e.startswith(".")] if os.path.isdir(os.path.join(root, left)) else []
        if entries:
            problems.append(f"{left}/ holds {entries[:5]}")
    if problems:
        sys.exit(f"bench: {workers} workers: not exactly once: {problems[:5]}")
    shutil.rmtree(root)
    return wall

print(f"intake workers: {models} models ({sum(1 for i in range(models) if detonate > 0 and i % detonate == 0)} "
      f"benign.pt detonated, the rest model.safetensors), {runs} runs each, root on "
      f"{subprocess.run(['df', '-T', tmp], capture_output=True, text=True).stdout.splitlines()[1].split()[1]}, "
      f"{os.cpu_count()} CPUs")
print()
print("| workers | median wall (s) | models / min | runs (s) |")
print("|---|---|---|---|")
for w in counts:
    walls = [one_run(w) for _ in range(runs)]
    med = statistics.median(walls)
    print(f"| {w} | {med:.2f} | {models * 60 / med:.0f} | {', '.join(f'{x:.2f}' for x in walls)} |", flush=True)
EOF
