#!/usr/bin/env bash
# Provenance and intake benchmarks, run by `make bench` through Tests/Bench/run.sh (or alone: `bash
# Tests/Bench/provenance.sh` after `make build bench-deps`). Prints a markdown summary; docs/benchmarks.md records a
# run of it.
#
#   9a. `airlock manifest` (SHA-256 of every file, swift-crypto, 4 MiB preads, one thread per file, largest first) over
#       a folder of BENCH_PROV_FILES × BENCH_PROV_FILE_MIB MiB of random bytes (default 8 × 256 MiB = 2 GiB), at
#       --threads 1 and --threads 2, against `sha256sum` of the same files in one process (sequential), `xargs -P2
#       sha256sum` (one file per process, two at a time) and, when installed, `openssl dgst -sha256`; then a single
#       file of the same total size, one thread (SHA-256 of one file is sequential). Page cache warm: every file is
#       read once before timing. Throughput in MiB/s from hyperfine's median; target: `airlock manifest --threads 1`
#       ≥ 0.9× `sha256sum`. Peak RSS of `airlock manifest` (`/usr/bin/time -f %M`) on one 256 MiB file, on the
#       2 GiB file and on the folder at 1 and 2 threads, to show memory does not grow with the model.
#       Checked first: the manifest's hashes equal sha256sum's.
#       The data is written once, with `head -c` from /dev/urandom, under BENCH_PROV_DATA (default
#       .build-bench/provenance, git-ignored) and reused by later runs.
#   9b. `airlock intake --root ROOT --once --policy P` (P: `{"settleSeconds": 0, "workers": W}`) with
#       BENCH_INTAKE_MODELS small models (default 50) dropped in ROOT/incoming at once: copies of
#       Tests/Generators/models.py's `model.safetensors` (static path only: safetensors runs no code) and of its
#       `benign.pt` (one 2×2 tensor, PyTorch ZIP: each is detonated in the sandbox). A fresh ROOT (on the file system
#       of TMPDIR, /tmp by default) for every run, `sync` before each; median wall time of BENCH_INTAKE_RUNS runs and
#       models per minute, at each of BENCH_INTAKE_WORKERS. Every run must approve every model (exit 0, each in
#       approved/ with report.json and manifest.json, incoming/ and quarantine/ empty). Checked first: `evil.pt` from
#       the generator, dropped among benign models, is rejected with the detonation's `dynamic.exec` finding.
#       Where the time goes: the process with nothing to take (start, profile + filter + policy, root and journal),
#       the probes (the sum of each report's own `staticMs` + `detonationMs` + `verdictMs`), and the fsyncs (counted
#       with `strace -f -c` on one extra safetensors run when strace is installed; their cost timed on the same file
#       system).
#
# Knobs (environment): BENCH_PROV_RUNS (hyperfine runs per command, default 5), BENCH_PROV_WARMUP (default 1),
# BENCH_PROV_FILES (default 8), BENCH_PROV_FILE_MIB (default 256), BENCH_PROV_DATA (default .build-bench/provenance;
# kept for later runs), BENCH_INTAKE_MODELS (default 50), BENCH_INTAKE_RUNS (default 5), BENCH_INTAKE_WORKERS
# (default "1 2"), BENCH_INTAKE_TMPFS (a tmpfs for the rows with the root in memory, default /dev/shm; empty
# leaves them out). Takes about 2 minutes on 2 cores with the defaults (plus about 10 s the first time, to write the
# 4 GiB of data).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RUNS=${BENCH_PROV_RUNS:-5}
WARMUP=${BENCH_PROV_WARMUP:-1}
NFILES=${BENCH_PROV_FILES:-8}
FILE_MIB=${BENCH_PROV_FILE_MIB:-256}
DATA=${BENCH_PROV_DATA:-$REPO/.build-bench/provenance}
MODELS=${BENCH_INTAKE_MODELS:-50}
IRUNS=${BENCH_INTAKE_RUNS:-5}
IWORKERS=${BENCH_INTAKE_WORKERS:-1 2}
TMPFS=${BENCH_INTAKE_TMPFS-/dev/shm}
TOTAL_MIB=$((NFILES * FILE_MIB))

[ -x "$AIRLOCK" ] || die "$AIRLOCK is missing: run 'make build' (or 'make bench')"
command -v hyperfine >/dev/null || die "hyperfine is missing: run 'make bench-deps'"
[ -x /usr/bin/time ] || die "/usr/bin/time is missing: run 'make bench-deps' (package time)"
[ -x "$HOST_PY" ] || die "$HOST_PY is missing (apt-get install python3)"
require_harness_bytecode
OPENSSL=$(command -v openssl || true)
STRACE=$(command -v strace || true)
export AIRLOCK_PROFILE_DIR="$REPO/Profiles"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/airlock-provenance-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

hyperfine_setup "$WARMUP" "$RUNS"

cat >"$TMP/stats.py" <<'EOF'
import json, os, statistics, subprocess, sys, time

mode = sys.argv[1]
if mode == "rows":  # rows JSON MIB LABEL...: one table row per command, throughput from the median
    mib, labels = float(sys.argv[3]), sys.argv[4:]
    for label, r in zip(labels, json.load(open(sys.argv[2]))["results"]):
        t = r["times"]
        med = statistics.median(t)
        print(f"| {label} | {med:.3f} | {min(t):.3f} | {max(t):.3f} | {mib / med:.0f} |")
elif mode == "medians":  # medians JSON: one median (s) per line
    for r in json.load(open(sys.argv[2]))["results"]:
        print(f"{statistics.median(r['times']):.6f}")
elif mode == "check-manifest":  # check-manifest MANIFEST SHA256SUM-OUTPUT: same files, same hashes
    m = {f["path"]: f["sha256"] for f in json.load(open(sys.argv[2]))["files"]}
    s = {}
    for line in open(sys.argv[3]):
        digest, name = line.split(None, 1)
        s[os.path.basename(name.strip().lstrip("*"))] = digest
    if m != s:
        sys.exit(f"airlock manifest and sha256sum disagree:\n{m}\n{s}")
elif mode == "fsync":  # fsync DIR N: µs per 100-byte append + fdatasync, and per fsync of a folder
    d, n = sys.argv[2], int(sys.argv[3])
    fd = os.open(os.path.join(d, "fsync-probe"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    t0 = time.perf_counter()
    for _ in range(n):
        os.write(fd, b"x" * 100)
        os.fdatasync(fd)
    t1 = time.perf_counter()
    os.close(fd)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    t2 = time.perf_counter()
    for i in range(n):
        os.close(os.open(os.path.join(d, f"f{i}"), os.O_WRONLY | os.O_CREAT, 0o600))
        os.fsync(dfd)
    t3 = time.perf_counter()
    os.close(dfd)
    print(f"{(t1 - t0) / n * 1e6:.0f} {(t3 - t2) / n * 1e6:.0f}")
elif mode == "intake":  # intake AIRLOCK ROOT POLICY MODELS KIND: one timed run, checked; prints a JSON line
    airlock, root, policy, models, kind = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    p = subprocess.run([airlock, "intake", "--root", root, "--once", "--policy", policy],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    out = p.stdout.decode()
    approved = [l for l in out.splitlines() if l.split()[:1] == ["approved"]]
    problems = []
    if p.returncode != 0 or len(approved) != models:
        problems.append(f"exit {p.returncode}, {len(approved)} of {models} approved")
    if os.listdir(os.path.join(root, "incoming")) or os.listdir(os.path.join(root, "quarantine")):
        problems.append("incoming/ or quarantine/ not empty")
    probe = 0.0
    for name in os.listdir(os.path.join(root, "approved")):
        folder = os.path.join(root, "approved", name)
        if sorted(os.listdir(folder)) != sorted([name, "report.json", "manifest.json"]):
            problems.append(f"approved/{name} holds {sorted(os.listdir(folder))}")
            continue
        rep = json.load(open(os.path.join(folder, "report.json")))
        for r in rep["reports"]:
            t = r["timings"]
            probe += t.get("staticMs", 0) + t.get("detonationMs", 0) + t.get("verdictMs", 0)
            det = r.get("detonation")
            if kind == "pt" and (not det or det["outcome"] != "loaded"):
                problems.append(f"{name}: detonation {det and det['outcome']}")
            if kind == "safetensors" and det:
                problems.append(f"{name}: detonated, expected the static path only")
        if rep["verdict"] != "clean" or rep["intake"]["decision"] != "approved":
            problems.append(f"{name}: {rep['verdict']} {rep['intake']['decision']}")
    if problems:
        sys.exit(f"airlock intake ({kind}): {'; '.join(problems[:5])}\nstdout: {out[:600]}\nstderr: {p.stderr.decode()[-600:]}")
    print(json.dumps({"wall": wall, "probeMs": probe}))
elif mode == "intake-summary":  # intake-summary MODELS FILE: median wall, models/min, median probe sum, over runs
    models = int(sys.argv[2])
    runs = [json.loads(l) for l in open(sys.argv[3])]
    walls = sorted(r["wall"] for r in runs)
    med = statistics.median(walls)
    print(f"{med * 1e3:.0f} {walls[0] * 1e3:.0f} {walls[-1] * 1e3:.0f} {models / med * 60:.0f} "
          f"{statistics.median(r['probeMs'] for r in runs):.1f} {med * 1e3 / models:.2f}")
elif mode == "strace-count":  # strace-count FILE MODELS: fsync and fdatasync calls per model
    calls = {}
    for line in open(sys.argv[2]):
        parts = line.split()
        if parts and parts[-1] in ("fsync", "fdatasync"):
            calls[parts[-1]] = int(parts[3])
    n = int(sys.argv[3])
    print(f"{calls.get('fsync', 0) / n:.1f} {calls.get('fdatasync', 0) / n:.1f}")
EOF
stats() { "$HOST_PY" "$TMP/stats.py" "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mibs() { awk -v m="$TOTAL_MIB" -v s="$1" 'BEGIN { printf "%.0f", m / s }'; }

# ---- the data: written once, reused ----

STAMP="$NFILES x $FILE_MIB MiB"
if [ "$(cat "$DATA/.complete" 2>/dev/null)" != "$STAMP" ]; then
    echo "bench: writing $STAMP of random bytes and one $TOTAL_MIB MiB file under $DATA (once)" >&2
    rm -rf "$DATA"
    mkdir -p "$DATA/folder"
    for i in $(seq 0 $((NFILES - 1))); do head -c "${FILE_MIB}M" /dev/urandom >"$DATA/folder/shard-$i.bin"; done
    head -c "${TOTAL_MIB}M" /dev/urandom >"$DATA/single.bin"
    echo "$STAMP" >"$DATA/.complete"
fi
FOLDER="$DATA/folder" SINGLE="$DATA/single.bin"
mapfile -t SHARDS < <(printf '%s\n' "$FOLDER"/shard-*.bin)
# Warm the page cache: every timed command then reads from memory.
cat "${SHARDS[@]}" "$SINGLE" >/dev/null

# ---- correctness first ----

"$AIRLOCK" manifest --threads 2 --no-progress "$FOLDER" >"$TMP/manifest.json" || die "airlock manifest $FOLDER failed"
sha256sum "${SHARDS[@]}" >"$TMP/sha256sum.txt"
stats check-manifest "$TMP/manifest.json" "$TMP/sha256sum.txt" || die "the manifest's hashes are wrong"
"$AIRLOCK" manifest --threads 1 --no-progress "$SINGLE" >"$TMP/manifest-single.json" || die "airlock manifest $SINGLE failed"
sha256sum "$SINGLE" >"$TMP/sha256sum-single.txt"
stats check-manifest "$TMP/manifest-single.json" "$TMP/sha256sum-single.txt" || die "the manifest's hash of $SINGLE is wrong"

# ---- 9a. hashing ----

echo "## 9. Provenance and intake"
echo
echo "### Manifest hashing: \`airlock manifest\` vs sha256sum"
echo
echo "- data: \`folder/\`, $NFILES × $FILE_MIB MiB of random bytes ($TOTAL_MIB MiB), and \`single.bin\`, one $TOTAL_MIB MiB file,"
echo "  under $DATA; page cache warm (every file read once before timing)"
echo "- tools: $(sha256sum --version | head -1)${OPENSSL:+, $(openssl version | cut -d' ' -f1-2)}, $(hyperfine --version)"
echo "- checked first: the manifest's hashes equal sha256sum's, for the folder and the single file"
echo "- hyperfine ${HF[*]:1}; MiB/s = $TOTAL_MIB MiB / the median; output to /dev/null"
echo "- CPU: $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), SHA extensions: $(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no)"
echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

XARGS="sh -c 'printf \"%s\\\\0\" $FOLDER/shard-*.bin | xargs -0 -P2 -n1 sha256sum'"
FCMDS=("$AIRLOCK manifest --threads 1 --no-progress $FOLDER"
    "sha256sum ${SHARDS[*]}"
    "$AIRLOCK manifest --threads 2 --no-progress $FOLDER"
    "$XARGS")
FLABELS=("\`airlock manifest --threads 1\` folder" "\`sha256sum\` the $NFILES files (one process)"
    "\`airlock manifest --threads 2\` folder" "\`xargs -P2 -n1 sha256sum\` the $NFILES files")
SCMDS=("$AIRLOCK manifest --threads 1 --no-progress $SINGLE" "sha256sum $SINGLE")
SLABELS=("\`airlock manifest\` single.bin" "\`sha256sum\` single.bin")
if [ -n "$OPENSSL" ]; then
    FCMDS+=("$OPENSSL dgst -sha256 ${SHARDS[*]}")
    FLABELS+=("\`openssl dgst -sha256\` the $NFILES files (one process)")
    SCMDS+=("$OPENSSL dgst -sha256 $SINGLE")
    SLABELS+=("\`openssl dgst -sha256\` single.bin")
fi
hf --export-json "$TMP/folder.json" "${FCMDS[@]}"
hf --export-json "$TMP/single.json" "${SCMDS[@]}"
mapfile -t FM < <(stats medians "$TMP/folder.json")
mapfile -t SM < <(stats medians "$TMP/single.json")

echo "| command | median s | min s | max s | MiB/s |"
echo "|---|---:|---:|---:|---:|"
stats rows "$TMP/folder.json" "$TOTAL_MIB" "${FLABELS[@]}"
stats rows "$TMP/single.json" "$TOTAL_MIB" "${SLABELS[@]}"
echo
T1=$(ratio "${FM[1]}" "${FM[0]}")
echo "- one core, folder: airlock / sha256sum throughput **${T1}×** (target ≥ 0.9×: $(awk -v r="$T1" 'BEGIN { print (r >= 0.9 ? "met" : "not met") }'));"
echo "  single file: **$(ratio "${SM[1]}" "${SM[0]}")×**"
echo "- $(nproc) threads, folder: **$(ratio "${FM[1]}" "${FM[2]}")×** sha256sum sequential, **$(ratio "${FM[3]}" "${FM[2]}")×** \`xargs -P2 sha256sum\`;"
echo "  --threads 2 / --threads 1: $(ratio "${FM[0]}" "${FM[2]}")×"
if [ -n "$OPENSSL" ]; then
    echo "- against OpenSSL's SHA-256 (one process, sequential): folder $(ratio "${FM[4]}" "${FM[0]}")×, single file $(ratio "${SM[2]}" "${SM[0]}")× (airlock / openssl throughput)"
fi
echo

rss() { /usr/bin/time -f '%M' -o "$TMP/rss" "$@" >/dev/null && awk '{ printf "%.1f", $1 / 1024 }' "$TMP/rss"; }
R_SHARD=$(rss "$AIRLOCK" manifest --threads 1 --no-progress "${SHARDS[0]}")
R_SINGLE=$(rss "$AIRLOCK" manifest --threads 1 --no-progress "$SINGLE")
R_F1=$(rss "$AIRLOCK" manifest --threads 1 --no-progress "$FOLDER")
R_F2=$(rss "$AIRLOCK" manifest --threads 2 --no-progress "$FOLDER")
R_SHA=$(rss sha256sum "$SINGLE")
R_VER=$(rss "$AIRLOCK" --version)
echo "Peak RSS (\`/usr/bin/time -f %M\`, one run each):"
echo
echo "| command | peak RSS MiB |"
echo "|---|---:|"
echo "| \`airlock --version\` (for scale) | $R_VER |"
echo "| \`airlock manifest --threads 1\` one $FILE_MIB MiB file | $R_SHARD |"
echo "| \`airlock manifest --threads 1\` single.bin ($TOTAL_MIB MiB) | $R_SINGLE |"
echo "| \`airlock manifest --threads 1\` folder ($TOTAL_MIB MiB) | $R_F1 |"
echo "| \`airlock manifest --threads 2\` folder ($TOTAL_MIB MiB) | $R_F2 |"
echo "| \`sha256sum\` single.bin | $R_SHA |"
echo

# ---- 9b. intake ----

"$HOST_PY" "$REPO/Tests/Generators/models.py" "$TMP/gen" >/dev/null
S="$TMP/gen/model.safetensors" B="$TMP/gen/benign.pt" E="$TMP/gen/evil.pt"
policy() { echo "{\"settleSeconds\": 0, \"workers\": $1}" >"$TMP/policy-$1.json"; echo "$TMP/policy-$1.json"; }
# fresh_root KIND [BASE]: a new root BASE/root (default BASE: $TMP) with MODELS copies of the kind's file in incoming/.
ROOT="$TMP/root"
fresh_root() {
    local src i
    ROOT="${2:-$TMP}/root"
    rm -rf "$ROOT"
    mkdir -p "$ROOT/incoming"
    case $1 in safetensors) src=$S ;; pt) src=$B ;; esac
    for i in $(seq -w 1 "$MODELS"); do cp "$src" "$ROOT/incoming/model-$i.$1"; done
}

# Correctness first: a malicious model among benign ones is rejected, with the detonation's finding.
fresh_root pt
cp "$E" "$TMP/root/incoming/evil.pt"
RC=0
"$AIRLOCK" intake --root "$TMP/root" --once --policy "$(policy 2)" >"$TMP/evil.out" 2>"$TMP/evil.err" || RC=$?
[ "$RC" -eq 1 ] && grep -q '^rejected  *evil.pt  *malicious' "$TMP/evil.out" &&
    [ "$(grep -c '^approved ' "$TMP/evil.out")" -eq "$MODELS" ] ||
    die "intake with evil.pt: exit $RC (expected 1), $(head -c 600 "$TMP/evil.out") $(tail -c 400 "$TMP/evil.err")"
"$HOST_PY" - "$TMP/root/rejected/evil.pt/report.json" <<'EOF' || die "evil.pt's intake report lacks the detonation's dynamic.exec"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["intake"]["decision"] == "rejected" and d["verdict"] == "malicious"
assert any(f["rule"] == "dynamic.exec" and f["source"] == "dynamic" for r in d["reports"] for f in r["findings"])
EOF

# The process with nothing to take: start, policy, profile, filter, harness lookup, root, lock, journal.
rm -rf "$TMP/empty"
"$AIRLOCK" intake --root "$TMP/empty" --once --policy "$(policy 1)" >/dev/null 2>&1 || die "intake of an empty root failed"
hf --export-json "$TMP/empty.json" "$AIRLOCK intake --root $TMP/empty --once --policy $TMP/policy-1.json"
EMPTY_MS=$(awk '{ printf "%.1f", $1 * 1000 }' < <(stats medians "$TMP/empty.json"))

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for kind in safetensors pt; do
    for w in $IWORKERS; do
        : >"$TMP/intake-$kind-$w.jsonl"
        for _ in $(seq 1 "$IRUNS"); do
            fresh_root "$kind"
            stats intake "$AIRLOCK" "$ROOT" "$(policy "$w")" "$MODELS" "$kind" >>"$TMP/intake-$kind-$w.jsonl" ||
                die "intake run failed ($kind, workers $w)"
        done
    done
done
# The same at one worker with the root on tmpfs, where fsync does nothing and metadata stays in memory: the file
# system's share.
SHM=""
if [ -n "$TMPFS" ] && [ -d "$TMPFS" ] && [ -w "$TMPFS" ]; then
    SHM=$(mktemp -d "$TMPFS/airlock-provenance-bench.XXXXXX")
    trap 'rm -rf "$TMP" "$SHM"' EXIT
    for kind in safetensors pt; do
        : >"$TMP/intake-$kind-tmpfs.jsonl"
        for _ in $(seq 1 "$IRUNS"); do
            fresh_root "$kind" "$SHM"
            stats intake "$AIRLOCK" "$ROOT" "$(policy 1)" "$MODELS" "$kind" >>"$TMP/intake-$kind-tmpfs.jsonl" ||
                die "intake run on tmpfs failed ($kind)"
        done
    done
    rm -rf "$SHM/root"
fi

# What one fsync costs on this file system, and how many the intake makes (one extra, untimed run under strace).
mkdir -p "$TMP/fsync"
read -r FDATASYNC_US DIRSYNC_US < <(stats fsync "$TMP/fsync" 200)
SYNCS=""
if [ -n "$STRACE" ]; then
    fresh_root safetensors
    "$STRACE" -f -c -e trace=fsync,fdatasync -o "$TMP/strace.txt" \
        "$AIRLOCK" intake --root "$TMP/root" --once --policy "$(policy 1)" >/dev/null 2>&1 || die "intake under strace failed"
    read -r N_FSYNC N_FDATASYNC < <(stats strace-count "$TMP/strace.txt" "$MODELS")
    SYNCS="$N_FSYNC fsync + $N_FDATASYNC fdatasync per model (\`strace -f -c\`, one safetensors run)"
fi

echo "### Intake: $MODELS small models dropped at once"
echo
echo "- \`airlock intake --root ROOT --once --policy P\`, P = \`{\"settleSeconds\": 0, \"workers\": W}\`; a fresh ROOT under"
echo "  ${TMPDIR:-/tmp} ($(df -T "$TMP" | awk 'NR == 2 { print $2 }')) for every run, \`sync\` before it; wall time of the whole process, median of $IRUNS runs"
echo "- models: $MODELS copies of Tests/Generators/models.py's \`model.safetensors\` ($(stat -c %s "$S") B; static path, no detonation)"
echo "  or of its \`benign.pt\` ($(stat -c %s "$B") B, PyTorch ZIP; each detonated in the sandbox)"
echo "- every run checked: exit 0, every model in approved/ with report.json and manifest.json, incoming/ and quarantine/"
echo "  empty, detonation \`loaded\` for each benign.pt and none for safetensors; checked first: \`evil.pt\` dropped among"
echo "  $MODELS benign.pt is rejected (exit 1) with the detonation's \`dynamic.exec\`"
echo "- probe Σ: the sum over the models of each report's own \`staticMs\` + \`detonationMs\` + \`verdictMs\` (median over runs)"
echo "- load average before: $LOAD_BEFORE"
echo
echo "| models | workers | median ms | min ms | max ms | models/min | ms/model | probe Σ ms |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
declare -A MED PROBE
for kind in safetensors pt; do
    label=$([ "$kind" = pt ] && echo "$MODELS × benign.pt (detonated)" || echo "$MODELS × model.safetensors (static)")
    for w in $IWORKERS; do
        read -r med mn mx per_min probe per_model < <(stats intake-summary "$MODELS" "$TMP/intake-$kind-$w.jsonl")
        echo "| $label | $w | $med | $mn | $mx | **$per_min** | $per_model | $probe |"
        MED[$kind-$w]=$med PROBE[$kind-$w]=$probe
        label=""
    done
    if [ -n "$SHM" ]; then
        read -r med mn mx per_min probe per_model < <(stats intake-summary "$MODELS" "$TMP/intake-$kind-tmpfs.jsonl")
        echo "| the same, root on tmpfs ($TMPFS) | 1 | $med | $mn | $mx | $per_min | $per_model | $probe |"
        MED[$kind-tmpfs]=$med PROBE[$kind-tmpfs]=$probe
    fi
done
echo
echo "- the process with nothing to take (\`airlock intake --once\`, empty root; hyperfine median): $EMPTY_MS ms"
echo "- on this file system: an append + \`fdatasync\` takes ${FDATASYNC_US} µs, a file create + folder \`fsync\` ${DIRSYNC_US} µs (200 each)"
[ -n "$SYNCS" ] && echo "- $SYNCS"
echo
if [ -n "${MED[safetensors-1]:-}" ]; then
    per() { awk -v a="$1" -v n="$MODELS" 'BEGIN { printf "%.2f", a / n }'; }
    echo "Where the time goes at one worker, ms per model (whole process ÷ $MODELS):"
    echo
    echo "| per model, workers 1 | safetensors | benign.pt |"
    echo "|---|---:|---:|"
    echo "| **whole** (median ÷ models) | $(per "${MED[safetensors-1]}") | $(per "${MED[pt-1]}") |"
    echo "| process start, policy, profile + filter, root, lock, journal (empty run ÷ models) | $(per "$EMPTY_MS") | $(per "$EMPTY_MS") |"
    echo "| probe: static analysis (+ detonation) + verdict (reports' own timings) | $(per "${PROBE[safetensors-1]}") | $(per "${PROBE[pt-1]}") |"
    # Everything but the process start and the probes, on disk and on tmpfs; their difference is the file system's.
    rest() { awk -v a="$1" -v b="$EMPTY_MS" -v c="$2" -v n="$MODELS" 'BEGIN { printf "%.2f", (a - b - c) / n }'; }
    echo "| everything else: arrival check, take, hashing, report.json + manifest.json, release, journal (whole − the two rows above) | $(rest "${MED[safetensors-1]}" "${PROBE[safetensors-1]}") | $(rest "${MED[pt-1]}" "${PROBE[pt-1]}") |"
    if [ -n "$SHM" ]; then
        echo "| … of which with the root on tmpfs (the same computed from the tmpfs runs: no fsync cost, metadata in memory) | $(rest "${MED[safetensors-tmpfs]}" "${PROBE[safetensors-tmpfs]}") | $(rest "${MED[pt-tmpfs]}" "${PROBE[pt-tmpfs]}") |"
        fs() { awk -v a="$(rest "$1" "$2")" -v b="$(rest "$3" "$4")" 'BEGIN { printf "%.2f", a - b }'; }
        echo "| … of which the file system (fsyncs, journal, mkdir, renames on disk): the difference | $(fs "${MED[safetensors-1]}" "${PROBE[safetensors-1]}" "${MED[safetensors-tmpfs]}" "${PROBE[safetensors-tmpfs]}") | $(fs "${MED[pt-1]}" "${PROBE[pt-1]}" "${MED[pt-tmpfs]}" "${PROBE[pt-tmpfs]}") |"
    fi
    if [ -n "$SYNCS" ]; then
        est=$(awk -v a="$N_FSYNC" -v b="$DIRSYNC_US" -v c="$N_FDATASYNC" -v d="$FDATASYNC_US" 'BEGIN { printf "%.2f", (a * b + c * d) / 1000 }')
        echo "| (for comparison, the syncs' estimate: $N_FSYNC fsync × ${DIRSYNC_US} µs + $N_FDATASYNC fdatasync × ${FDATASYNC_US} µs) | $est | $est |"
    fi
    echo
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if grep -q 'Warning' "$TMP/hyperfine.log" 2>/dev/null; then
    echo
    echo "hyperfine warnings (counts): $(grep -o 'Warning: [^.(]*' "$TMP/hyperfine.log" | sort | uniq -c | sed 's/^ *//' | paste -sd ';' | sed 's/;/; /g')"
fi
