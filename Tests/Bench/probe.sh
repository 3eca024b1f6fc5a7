#!/usr/bin/env bash
# Detonation benchmarks, run by `make bench` through Tests/Bench/run.sh (or alone: `bash Tests/Bench/probe.sh` after
# `make build bench-deps`). Prints a markdown summary; docs/benchmarks.md records a run of it.
#
#   7. `airlock probe FILE` (static analysis, then loading the file with the loader harness in the sandbox, then the
#      verdict), whole process, against `picklescan -p FILE` (a static look only; installed by `make bench-deps`
#      in .build-bench/venv), on two PyTorch ZIP state_dicts: Tests/Generators/models.py's one-tensor `benign.pt`, and
#      `small_cnn.pt`, 11 tensors (2.0 MiB) written here with the same opcode-level helpers (Tests/Generators/
#      pickles.py). Also `airlock probe --no-probe-phase`, and python3 / `airlock --version` / `airlock scan` for
#      scale. Then where the probe's time goes, from airlock's own `timings` (`--format json`).
#      The harness is Profiles/harness/serve.py, a small entry point that imports the module model_loader, whose
#      bytecode `make build` compiles (`make harness`); the script checks that bytecode is current before timing.
#      Checked first: both files probe CLEAN (exit 0), models.py's `evil.pt` probes MALICIOUS (exit 1) with the
#      detonation's `dynamic.exec` finding, and picklescan agrees on all three.
#
# Nothing is unpickled on the host: the files are assembled opcode by opcode, and only airlock's sandboxed harness
# loads them.
#
# Knobs (environment): BENCH_PROBE_RUNS (hyperfine runs per command, default 200), BENCH_PROBE_WARMUP (default 10),
# BENCH_PROBE_SAMPLES (`--format json` runs per file for the breakdown, default 30). Takes about 45 s on 2 cores with
# the defaults.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
RUNS=${BENCH_PROBE_RUNS:-200}
WARMUP=${BENCH_PROBE_WARMUP:-10}
SAMPLES=${BENCH_PROBE_SAMPLES:-30}

[ -x "$AIRLOCK" ] || die "$AIRLOCK is missing: run 'make build' (or 'make bench')"
[ -x "$PICKLESCAN" ] || die "$PICKLESCAN is missing: run 'make bench-deps' (or 'make bench')"
command -v hyperfine >/dev/null || die "hyperfine is missing: run 'make bench-deps'"
[ -x "$HOST_PY" ] || die "$HOST_PY is missing (apt-get install python3)"
require_harness_bytecode

TMP=$(mktemp -d "${TMPDIR:-/tmp}/airlock-probe-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

hyperfine_setup "$WARMUP" "$RUNS"

cat >"$TMP/stats.py" <<'EOF'
import json, statistics, subprocess, sys, time

def rows(path):
    for r in json.load(open(path))["results"]:
        t = r["times"]
        yield statistics.mean(t) * 1e3, statistics.median(t) * 1e3, statistics.stdev(t) * 1e3, min(t) * 1e3

mode = sys.argv[1]
if mode == "rows":  # rows JSON FIRST-CELL LABEL...: table rows with a leading cell, one per command
    first, labels = sys.argv[3], sys.argv[4:]
    for label, (mean, med, sd, mn) in zip(labels, rows(sys.argv[2])):
        print(f"| {first} | {label} | {mean:.1f} | {med:.1f} | {sd:.1f} | {mn:.1f} |")
        first = ""
elif mode == "means":
    for mean, *_ in rows(sys.argv[2]):
        print(f"{mean:.3f}")
elif mode == "breakdown":  # breakdown AIRLOCK SAMPLES FILE...: medians of airlock's own timings, one column per file
    airlock, n, files = sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    keys = ["sandboxSetupMs", "startupMs", "loadMs", "probeMs", "observationMs", "detonationMs", "verdictMs", "staticMs"]
    cols = []
    for f in files:
        runs = []
        for i in range(n + 3):  # 3 warm-up runs, not kept
            t0 = time.perf_counter_ns()
            p = subprocess.run([airlock, "probe", "--format", "json", f], stdout=subprocess.PIPE)
            wall = (time.perf_counter_ns() - t0) / 1e6
            if p.returncode != 0:
                sys.exit(f"airlock probe --format json {f}: exit {p.returncode}")
            d = json.loads(p.stdout.splitlines()[0])
            t = d["timings"]
            missing = [k for k in keys if k not in t]
            if missing or d["verdict"] != "clean":
                sys.exit(f"airlock probe --format json {f}: verdict {d['verdict']}, timings {t} (missing {missing})")
            if i >= 3:
                r = {k: t[k] for k in keys}
                r["otherDetonation"] = t["detonationMs"] - sum(t[k] for k in keys[:5])
                r["rest"] = wall - t["detonationMs"] - t["verdictMs"] - t["staticMs"]
                r["wall"] = wall
                runs.append(r)
        cols.append({k: statistics.median(r[k] for r in runs) for k in runs[0]})
    labels = [
        ("sandbox set-up: clone, namespaces, mounts (harness, model by descriptor), filter, until python3's execve", "sandboxSetupMs"),
        ("interpreter start: `python3 -I -S`, serve.py, model_loader from its bytecode with its imports (os, pickle, struct), until the `load` marker", "startupMs"),
        ("load: the ZIP's central directory (the harness's TorchZip), `data.pkl` unpickled with the stand-ins, storage records looked up", "loadMs"),
        ("probe phase (touch and call the object), until the `end` marker", "probeMs"),
        ("after `end`: the supervisor's look at what was left, the harness's settling, interpreter exit, sandbox teardown and reaping", "observationMs"),
        ("rest of the detonation: mount specs before clone, trace and result after", "otherDetonation"),
        ("verdict: trace and harness outcome to findings", "verdictMs"),
        ("static analysis (`staticMs`: map, SHA-256, ZIP + pickle parse, rules)", "staticMs"),
        ("rest of the process: Swift start, arguments, profile + policy load, filter compile, harness lookup, output, exit", "rest"),
    ]
    print("| where (median of %d runs) | %s |" % (n, " | ".join(f.rsplit("/", 1)[-1] + " ms" for f in files)))
    print("|---|" + "---:|" * len(files))
    for label, k in labels:
        print(f"| {label} | " + " | ".join(f"{c[k]:.2f}" for c in cols) + " |")
    print("| **whole process** (this driver's clock: Python's `subprocess.run`, output piped) | " + " | ".join(f"**{c['wall']:.2f}**" for c in cols) + " |")
    print("| (`detonationMs`, the four phases, the observation and the rest of the detonation) | " + " | ".join(f"{c['detonationMs']:.2f}" for c in cols) + " |")
EOF
stats() { "$HOST_PY" "$TMP/stats.py" "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# ---- the files ----

"$HOST_PY" "$REPO/Tests/Generators/models.py" "$TMP/gen" >/dev/null
B="$TMP/benign.pt" E="$TMP/evil.pt" C="$TMP/small_cnn.pt"
cp "$TMP/gen/benign.pt" "$B"
cp "$TMP/gen/evil.pt" "$E"
# A copy of the harness module without bytecode, for the reference row that imports it compiling it every time (as
# the harness did when it was one script run as `__main__`). Imported with -B, so no __pycache__ is written anywhere.
mkdir "$TMP/nocache"
cp "$HARNESS_DIR/model_loader.py" "$TMP/nocache/"

# A small CNN classifier's state_dict as torch.save writes it (protocol 2): OrderedDict() by REDUCE, entries by
# SETITEMS, BUILD with `_metadata`; each tensor is `_rebuild_tensor_v2` over a persistent-id storage whose bytes are
# the ZIP record `data/<key>`.
"$HOST_PY" - "$REPO/Tests/Generators" "$C" <<'EOF'
import pickle, random, sys, zipfile
sys.path.insert(0, sys.argv[1])
import pickles  # noqa: E402
from pickles import Call, Global, PersId  # noqa: E402

TENSORS = [  # name, storage type, shape
    ("conv1.weight", "FloatStorage", (32, 3, 3, 3)),
    ("conv1.bias", "FloatStorage", (32,)),
    ("bn1.weight", "FloatStorage", (32,)),
    ("bn1.bias", "FloatStorage", (32,)),
    ("bn1.running_mean", "FloatStorage", (32,)),
    ("bn1.running_var", "FloatStorage", (32,)),
    ("bn1.num_batches_tracked", "LongStorage", ()),
    ("fc1.weight", "FloatStorage", (256, 2048)),
    ("fc1.bias", "FloatStorage", (256,)),
    ("fc2.weight", "FloatStorage", (10, 256)),
    ("fc2.bias", "FloatStorage", (10,)),
]
ITEMSIZE = {"FloatStorage": 4, "LongStorage": 8}

def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n

def strides(shape):
    out, s = [], 1
    for d in reversed(shape):
        out.insert(0, s)
        s *= d
    return tuple(out)

w = pickles.Writer(2)
w.save(Call(Global("collections", "OrderedDict"), ()))
w.w(pickle.MARK)
for key, (name, stype, shape) in enumerate(TENSORS):
    w.save(name)
    w.save(Call(Global("torch._utils", "_rebuild_tensor_v2"),
                (PersId(("storage", Global("torch", stype), str(key), "cpu", numel(shape))), 0, shape, strides(shape),
                 False, Call(Global("collections", "OrderedDict"), ()))))
w.w(pickle.SETITEMS)
w.save({"_metadata": Call(Global("collections", "OrderedDict"), ())})
w.w(pickle.BUILD)
data_pkl, _ = w.finish()

rng = random.Random(0)
with zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_STORED) as z:
    z.writestr("small_cnn/data.pkl", data_pkl)
    z.writestr("small_cnn/.format_version", "1")
    z.writestr("small_cnn/.storage_alignment", "64")
    z.writestr("small_cnn/byteorder", "little")
    for key, (name, stype, shape) in enumerate(TENSORS):
        z.writestr(f"small_cnn/data/{key}", rng.randbytes(numel(shape) * ITEMSIZE[stype]))
    z.writestr("small_cnn/version", "3\n")
    z.writestr("small_cnn/.data/serialization_id", "0" * 40)
EOF

# ---- correctness first: a wrong answer fast is no answer ----

# probe_check EXPECTED_EXIT EXPECTED_VERDICT FILE [ARGS...]: the text report's first word and the exit status.
probe_check() {
    local want_rc=$1 want=$2 f=$3 rc=0
    shift 3
    "$AIRLOCK" probe "$@" "$f" >"$TMP/out.txt" 2>&1 || rc=$?
    [ "$rc" -eq "$want_rc" ] && [ "$(head -1 "$TMP/out.txt" | awk '{print $1}')" = "$want" ] ||
        die "airlock probe $* $f: exit $rc, expected $want_rc and $want: $(head -c 600 "$TMP/out.txt")"
}
probe_check 0 CLEAN "$B"
probe_check 0 CLEAN "$C"
probe_check 0 CLEAN "$B" --no-probe-phase
probe_check 0 CLEAN "$C" --no-probe-phase
probe_check 1 MALICIOUS "$E"
# The detonation itself must see the payload, not only the static analysis; and clean files must load completely.
"$AIRLOCK" probe --format json "$E" >"$TMP/evil.json" || true
"$HOST_PY" - "$TMP/evil.json" <<'EOF' || die "the detonation of evil.pt did not report the payload's exec: $(head -c 600 "$TMP/evil.json")"
import json, sys
d = json.loads(open(sys.argv[1]).readline())
assert d["verdict"] == "malicious" and any(f["rule"] == "dynamic.exec" and f["source"] == "dynamic" for f in d["findings"])
EOF
for f in "$B" "$C"; do
    "$AIRLOCK" probe --format json "$f" >"$TMP/clean.json" || die "airlock probe --format json $f: exit $?"
    "$HOST_PY" - "$TMP/clean.json" <<'EOF' || die "airlock probe $f did not load it completely: $(head -c 600 "$TMP/clean.json")"
import json, sys
d = json.loads(open(sys.argv[1]).readline())
det = d["detonation"]
assert d["verdict"] == "clean" and det["outcome"] == "loaded" and det["phaseReached"] == "end" and det["exitCode"] == 0
assert det["observation"]["left"] == [] and not det["observation"]["windowExpired"]
assert det["stdoutTail"].strip().endswith("airlock-harness: loaded OrderedDict")
EOF
done
for f in "$B" "$C"; do
    "$PICKLESCAN" -p "$f" >"$TMP/out.txt" 2>&1 || die "picklescan -p $f: exit $? (expected 0): $(head -c 400 "$TMP/out.txt")"
    grep -q '^Infected files: 0' "$TMP/out.txt" || die "picklescan flagged $f: $(head -c 400 "$TMP/out.txt")"
done
P_RC=0
"$PICKLESCAN" -p "$E" >"$TMP/picklescan-evil.txt" 2>&1 || P_RC=$?
[ "$P_RC" -eq 1 ] && grep -q "dangerous import 'os system'" "$TMP/picklescan-evil.txt" ||
    die "picklescan did not flag $E (exit $P_RC): $(cat "$TMP/picklescan-evil.txt")"

# ---- timing ----

PS_VERSION=$("$VENV_PY" -c 'import importlib.metadata as m; print(m.version("picklescan"))')
echo "## 7. Probe: airlock probe vs picklescan"
echo
echo "- \`airlock probe FILE\`: static analysis, then \`python3 -I -S\` loads the file in the sandbox with the harness"
echo "  (Profiles/harness/serve.py, which imports model_loader from the bytecode \`make build\` compiled; load phase, then"
echo "  probe phase), then the verdict; \`--no-probe-phase\` stops after loading."
echo "  \`picklescan -p FILE\` (picklescan $PS_VERSION on $("$VENV_PY" --version)) only reads the pickle."
echo "- files: \`benign.pt\` from Tests/Generators/models.py (one 2×2 tensor, $(stat -c %s "$B") B) and \`small_cnn.pt\`"
echo "  (11 tensors of a conv + batch-norm + 2-linear classifier, $(awk -v b="$(stat -c %s "$C")" 'BEGIN { printf "%.1f", b / 1048576 }') MiB), both PyTorch ZIP, pickle protocol 2"
echo "- checked first: both probe \`CLEAN\` (exit 0, harness \`loaded OrderedDict\`), \`evil.pt\` probes \`MALICIOUS\` (exit 1)"
echo "  with the detonation's \`dynamic.exec\` finding; picklescan passes both and flags \`evil.pt\`"
echo "- hyperfine ${HF[*]:1}; output to /dev/null; python3 is \`$HOST_PY\` ($("$HOST_PY" --version 2>&1 | cut -d' ' -f2))"
echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

hf --export-json "$TMP/benign.json" "$AIRLOCK probe $B" "$AIRLOCK probe --no-probe-phase $B" "$PICKLESCAN -p $B"
hf --export-json "$TMP/cnn.json" "$AIRLOCK probe $C" "$AIRLOCK probe --no-probe-phase $C" "$PICKLESCAN -p $C"
hf --export-json "$TMP/ref.json" \
    "$HOST_PY -c pass" \
    "$HOST_PY -I -S -c pass" \
    "$HOST_PY -I -S -c 'import io, os, pickle, struct, sys, time'" \
    "$HOST_PY -I -S -B -c 'import sys; sys.path.insert(0, \"$HARNESS_DIR\"); import model_loader'" \
    "$HOST_PY -I -S -B -c 'import sys; sys.path.insert(0, \"$TMP/nocache\"); import model_loader'" \
    "$AIRLOCK --version" \
    "$AIRLOCK scan $B"

echo "| file | command | mean ms | median ms | stddev ms | min ms |"
echo "|---|---|---:|---:|---:|---:|"
stats rows "$TMP/benign.json" benign.pt "\`airlock probe\`" "\`airlock probe --no-probe-phase\`" "\`picklescan -p\`"
stats rows "$TMP/cnn.json" small_cnn.pt "\`airlock probe\`" "\`airlock probe --no-probe-phase\`" "\`picklescan -p\`"
stats rows "$TMP/ref.json" "for scale" "\`python3 -c pass\`" "\`python3 -I -S -c pass\`" \
    "\`python3 -I -S -c 'import io, os, pickle, struct, sys, time'\` (the harness's imports)" \
    "\`python3 -I -S -B -c 'import model_loader'\` (its imports and the module, from \`make build\`'s bytecode)" \
    "the same from a copy without \`__pycache__\` (compiled on every run, as the harness was before)" \
    "\`airlock --version\`" "\`airlock scan benign.pt\` (static only)"
mapfile -t MB < <(stats means "$TMP/benign.json")
mapfile -t MC < <(stats means "$TMP/cnn.json")
mapfile -t MR < <(stats means "$TMP/ref.json")
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b ? "met" : "not met") }'; }
echo
echo "Target: \`airlock probe\` (static analysis and a full detonation) no slower than \`picklescan -p\` (a static look only)."
echo "airlock probe / picklescan (means): benign.pt **$(ratio "${MB[0]}" "${MB[2]}")×** ($(verdict "${MB[0]}" "${MB[2]}")),"
echo "small_cnn.pt **$(ratio "${MC[0]}" "${MC[2]}")×** ($(verdict "${MC[0]}" "${MC[2]}")); with \`--no-probe-phase\`: $(ratio "${MB[1]}" "${MB[2]}")× and $(ratio "${MC[1]}" "${MC[2]}")×."
echo "The issue quoted ≈85 ms for \`picklescan -p\`, ≈20 ms for python3 and ≈8 ms for \`python3 -I -S\`; this run measured (means)"
echo "$(printf '%.1f' "${MB[2]}") ms (\`picklescan -p benign.pt\`), $(printf '%.1f' "${MR[0]}") ms and $(printf '%.1f' "${MR[1]}") ms."
echo

echo "### Where \`airlock probe\`'s time goes"
echo
echo "From \`airlock probe --format json FILE\`'s \`timings\` (airlock's own clock), $SAMPLES runs per file after 3 warm-up runs;"
echo "each row is the median of its per-run values, so the rows need not add up to the whole exactly. The last-but-one"
echo "row is per run: whole process − \`detonationMs\` − \`verdictMs\` − \`staticMs\`."
echo
stats breakdown "$AIRLOCK" "$SAMPLES" "$B" "$C"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if grep -q 'Warning' "$TMP/hyperfine.log" 2>/dev/null; then
    echo
    echo "hyperfine warnings (counts): $(grep -o 'Warning: [^.(]*' "$TMP/hyperfine.log" | sort | uniq -c | sed 's/^ *//' | paste -sd ';' | sed 's/;/; /g')"
fi
