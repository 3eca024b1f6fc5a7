#!/usr/bin/env bash
# Static-analysis benchmarks, run by `make bench` through Tests/Bench/run.sh (or alone: `bash Tests/Bench/scan.sh`
# after `make build bench-deps`). Prints a markdown summary; docs/benchmarks.md records a run of it.
#
#   5. `airlock scan` against picklescan (installed by `make bench-deps` in .build-bench/venv), whole process, on the
#      same files, generated here: a list of 5 million floats (45 MB), a dict of 1 million entries (41 MB), a tiny
#      pickle; peak RSS of each; both must flag an `os.system` pickle and pass the others first.
#   6. hashing: `airlock scan` of a big safetensors file (SHA-256 of every byte plus a header parse) against
#      `sha256sum` of the same file.
#
# Knobs (environment): BENCH_SCAN_RUNS (hyperfine runs per big file, default 5), BENCH_TINY_RUNS (runs on the tiny
# pickle, default 50), BENCH_HASH_MIB (size of the hashed file, default 1024; needs that much free space under
# $TMPDIR or /tmp). Takes about 2 minutes on 2 cores with the defaults, most of it picklescan.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
SCAN_RUNS=${BENCH_SCAN_RUNS:-5}
TINY_RUNS=${BENCH_TINY_RUNS:-50}
HASH_MIB=${BENCH_HASH_MIB:-1024}
GNU_TIME=/usr/bin/time

[ -x "$AIRLOCK" ] || die "$AIRLOCK is missing: run 'make build' (or 'make bench')"
[ -x "$PICKLESCAN" ] || die "$PICKLESCAN is missing: run 'make bench-deps' (or 'make bench')"
[ -x "$GNU_TIME" ] || die "$GNU_TIME is missing: run 'make bench-deps' (Debian package 'time')"
command -v hyperfine >/dev/null || die "hyperfine is missing: run 'make bench-deps'"
[ -x "$HOST_PY" ] || die "$HOST_PY is missing (apt-get install python3)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/airlock-scan-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
avail_mib=$(df -Pm "$TMP" | awk 'NR == 2 { print $4 }')
[ "$avail_mib" -gt $((HASH_MIB + 256)) ] || die "$TMP has $avail_mib MiB free; BENCH_HASH_MIB=$HASH_MIB needs more (set it lower)"

hf() { hyperfine --style none -N "$@" 2>>"$TMP/hyperfine.log"; }

cat >"$TMP/stats.py" <<'EOF'
import json, statistics, sys

def rows(path):
    for r in json.load(open(path))["results"]:
        t = r["times"]
        yield statistics.mean(t) * 1e3, statistics.median(t) * 1e3, statistics.stdev(t) * 1e3, min(t) * 1e3

mode = sys.argv[1]
if mode == "row":  # row JSON INDEX LABEL EXTRA: one table row, with an extra last cell
    mean, med, sd, mn = list(rows(sys.argv[2]))[int(sys.argv[3])]
    print(f"| {sys.argv[4]} | {mean:.1f} | {med:.1f} | {sd:.1f} | {mn:.1f} | {sys.argv[5]} |")
elif mode == "means":
    for mean, *_ in rows(sys.argv[2]):
        print(f"{mean:.3f}")
elif mode == "static-ms":  # static-ms FILE...: median of airlock's own timings.staticMs (map + hash + parse + rules)
    vals = [json.loads(open(f).readline())["timings"]["staticMs"] for f in sys.argv[2:]]
    print(f"{statistics.median(vals):.1f}")
EOF
stats() { "$HOST_PY" "$TMP/stats.py" "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
# Peak RSS in MiB (the highest of 3 runs) from GNU time's "Maximum resident set size", which counts the pages of
# a mapped file that the process touched as well as its heap.
peak_mib() {
    local kb best=0
    for _ in 1 2 3; do
        "$GNU_TIME" -v -o "$TMP/time.txt" "$@" >/dev/null 2>&1 || true
        kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$TMP/time.txt")
        [ "$kb" -gt "$best" ] && best=$kb
    done
    awk -v k="$best" 'BEGIN { printf "%.1f", k / 1024 }'
}
mib() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# ---- the files ----

"$HOST_PY" - "$TMP" "$HASH_MIB" <<'EOF'
import json, os, pickle, struct, sys
out, hash_mib = sys.argv[1], int(sys.argv[2])

def write(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)

write("floats.pkl", pickle.dumps([float(i) for i in range(5_000_000)], protocol=4))
write("dict.pkl", pickle.dumps({f"key{i}": (float(i), float(-i), float(i) / 2) for i in range(1_000_000)}, protocol=4))
write("tiny.pkl", pickle.dumps({"lr": 0.001, "epochs": 10, "name": "resnet"}, protocol=4))

class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))

write("evil.pkl", pickle.dumps(Payload(), protocol=4))

# One U8 tensor filling the file with random bytes behind a minimal header.
n = hash_mib << 20
header = json.dumps({"__metadata__": {"format": "pt"}, "weight": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
header += b" " * (-len(header) % 8)
with open(os.path.join(out, "big.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header)
    chunk = 16 << 20
    for left in range(n, 0, -chunk):
        f.write(os.urandom(min(chunk, left)))
EOF
F="$TMP/floats.pkl" D="$TMP/dict.pkl" T="$TMP/tiny.pkl" E="$TMP/evil.pkl" B="$TMP/big.safetensors"

# Both tools must agree on every file before anything is timed: clean ones pass, the os.system one is flagged.
for f in "$F" "$D" "$T"; do
    "$AIRLOCK" scan "$f" >"$TMP/out.txt" || die "airlock scan $f: exit $? (expected 0): $(head -c 400 "$TMP/out.txt")"
    "$PICKLESCAN" -p "$f" >"$TMP/out.txt" 2>&1 || die "picklescan -p $f: exit $? (expected 0): $(head -c 400 "$TMP/out.txt")"
    grep -q '^Infected files: 0' "$TMP/out.txt" || die "picklescan flagged $f: $(head -c 400 "$TMP/out.txt")"
done
set +e
"$AIRLOCK" scan "$E" >"$TMP/airlock-evil.txt"; A_RC=$?
"$PICKLESCAN" -p "$E" >"$TMP/picklescan-evil.txt" 2>&1; P_RC=$?
set -e
[ "$A_RC" -eq 1 ] && grep -q '^MALICIOUS' "$TMP/airlock-evil.txt" || die "airlock did not flag $E (exit $A_RC): $(cat "$TMP/airlock-evil.txt")"
[ "$P_RC" -eq 1 ] && grep -q "dangerous import 'posix system'" "$TMP/picklescan-evil.txt" || die "picklescan did not flag $E (exit $P_RC): $(cat "$TMP/picklescan-evil.txt")"
"$AIRLOCK" scan "$B" >"$TMP/out.txt" || die "airlock scan $B: exit $?: $(head -c 400 "$TMP/out.txt")"
A_SUM=$("$AIRLOCK" scan --format json "$B" | "$HOST_PY" -c 'import json, sys; print(json.load(sys.stdin)["target"]["sha256"])')
S_SUM=$(sha256sum "$B" | cut -d' ' -f1)
[ "$A_SUM" = "$S_SUM" ] || die "airlock's sha256 $A_SUM differs from sha256sum's $S_SUM"

PS_VERSION=$("$VENV_PY" -c 'import importlib.metadata as m; print(m.version("picklescan"))')
echo "## 5. Static scan: airlock scan vs picklescan"
echo
echo "- picklescan $PS_VERSION on $("$VENV_PY" --version) (venv in .build-bench/venv), $(sha256sum --version | head -1), GNU time $(dpkg-query -W -f='${Version}' time 2>/dev/null || echo '?')"
echo "- files, generated with pickle protocol 4: \`[float(i) for i in range(5_000_000)]\` ($(mib "$F") MiB),"
echo "  \`{f\"key{i}\": (float(i), float(-i), float(i) / 2) for i in range(1_000_000)}\` ($(mib "$D") MiB),"
echo "  \`{\"lr\": 0.001, \"epochs\": 10, \"name\": \"resnet\"}\` ($(stat -c %s "$T") B), and an \`os.system(\"echo pwned\")\` reduce ($(stat -c %s "$E") B)"
echo "- checked first: both tools pass the three clean files (exit 0) and flag the \`os.system\` one (exit 1:"
echo "  airlock \`$(head -1 "$TMP/airlock-evil.txt" | awk '{print $1}')\` with \`$(grep -o 'pickle.dangerous-import' "$TMP/airlock-evil.txt" | head -1)\`, picklescan \`$(grep -o "dangerous import '[^']*' FOUND" "$TMP/picklescan-evil.txt")\`)"
echo "- hyperfine -N, --warmup 1 --runs $SCAN_RUNS on the big files, --warmup 5 --runs $TINY_RUNS on the tiny one;"
echo "  peak RSS: the highest of 3 runs of \`/usr/bin/time -v\` (Maximum resident set size)"
echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

hf --warmup 1 --runs "$SCAN_RUNS" --export-json "$TMP/floats.json" "$AIRLOCK scan $F" "$PICKLESCAN -p $F"
hf --warmup 1 --runs "$SCAN_RUNS" --export-json "$TMP/dict.json" "$AIRLOCK scan $D" "$PICKLESCAN -p $D"
hf --warmup 5 --runs "$TINY_RUNS" --export-json "$TMP/tiny.json" "$AIRLOCK scan $T" "$PICKLESCAN -p $T"

echo "| file | tool | mean ms | median ms | stddev ms | min ms | peak RSS MiB |"
echo "|---|---|---:|---:|---:|---:|---:|"
for name in floats dict tiny; do
    case $name in floats) f=$F ;; dict) f=$D ;; tiny) f=$T ;; esac
    stats row "$TMP/$name.json" 0 "$(basename "$f") | airlock scan" "$(peak_mib "$AIRLOCK" scan "$f")"
    stats row "$TMP/$name.json" 1 "$(basename "$f") | picklescan -p" "$(peak_mib "$PICKLESCAN" -p "$f")"
done
echo
echo "| file | picklescan / airlock (means) | airlock's own \`staticMs\` (map + hash + parse + rules, median of 5) |"
echo "|---|---:|---:|"
for name in floats dict tiny; do
    case $name in floats) f=$F ;; dict) f=$D ;; tiny) f=$T ;; esac
    mapfile -t M < <(stats means "$TMP/$name.json")
    for i in 1 2 3 4 5; do "$AIRLOCK" scan --format json "$f" >"$TMP/static$i.json"; done
    echo "| $(basename "$f") | **$(ratio "${M[1]}" "${M[0]}")×** | $(stats static-ms "$TMP"/static?.json) ms |"
done
echo
echo "Targets: ≥ 20× (goal 50×) faster on the two big pickles with peak RSS < 64 MiB; the tiny file in < 0.25× picklescan's time."
echo "For scale: \`airlock --version\` peaks at $(peak_mib "$AIRLOCK" --version) MiB, \`$HOST_PY -c pass\` at $(peak_mib "$HOST_PY" -c pass) MiB."
echo

# ---- 6. hashing ----

echo "## 6. Hashing: airlock scan of a $(mib "$B") MiB safetensors file vs sha256sum"
echo
echo "\`airlock scan\` hashes every byte of every file (SHA-256, swift-crypto) and parses a safetensors header of"
echo "$(($(od -An -tu8 -N8 "$B"))) bytes, so on this file its whole-process time is hashing plus ~2 ms of start-up. The file was just written"
echo "and is in the page cache; one warm-up run each."
echo
hf --warmup 1 --runs "$SCAN_RUNS" --export-json "$TMP/hash.json" "$AIRLOCK scan $B" "sha256sum $B"
mapfile -t H < <(stats means "$TMP/hash.json")
echo "| command | mean ms | median ms | stddev ms | min ms | peak RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|"
stats row "$TMP/hash.json" 0 "airlock scan big.safetensors" "$(peak_mib "$AIRLOCK" scan "$B")"
stats row "$TMP/hash.json" 1 "sha256sum big.safetensors" "$(peak_mib sha256sum "$B")"
echo
echo "airlock / sha256sum (means): **$(awk -v a="${H[0]}" -v b="${H[1]}" 'BEGIN { printf "%.2f", a / b }')×** (target: ≤ 1.2×);"
echo "throughput: airlock $(awk -v ms="${H[0]}" -v m="$HASH_MIB" 'BEGIN { printf "%.0f", m / (ms / 1000) }') MiB/s, sha256sum $(awk -v ms="${H[1]}" -v m="$HASH_MIB" 'BEGIN { printf "%.0f", m / (ms / 1000) }') MiB/s."
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if grep -q 'Warning' "$TMP/hyperfine.log" 2>/dev/null; then
    echo
    echo "hyperfine warnings (counts): $(grep -o 'Warning: [^.(]*' "$TMP/hyperfine.log" | sort | uniq -c | sed 's/^ *//' | paste -sd ';' | sed 's/;/; /g')"
fi
