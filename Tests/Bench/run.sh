#!/usr/bin/env bash
# Airlock benchmarks, run by `make bench` (which builds .build/release/airlock and installs bubblewrap, hyperfine
# and gcc first). Prints a markdown summary; docs/benchmarks.md records a run of it.
#
#   0. the start-up budget, in Tests/Bench/startup.sh (run first): `airlock --version` ≤ 1.5 ms and `airlock exec --
#      /bin/true` ≤ 1.5× bubblewrap, a FAIL line for a missed budget, and then `make bench` exits 1 after the rest.
#   1. start-up: `airlock exec -- /bin/true` against bubblewrap over the same read-only view, and plain /bin/true;
#      then where airlock's start-up time goes (runs that stop at successive phases).
#   2. one notified system call (a supervisor round trip) against unnotified ones, from a small C program run on
#      the host and inside `airlock exec`.
#   3. Python start: `python3 -I -S -c pass` under airlock, under bubblewrap and on the host.
#   4. a sandbox run from a process that keeps its profile and compiled filter (the daemon's shape), timed by
#      .build/release/airlock-bench, against bubblewrap's whole run.
#   5-6. static analysis: `airlock scan` against picklescan and sha256sum, in Tests/Bench/scan.sh (run at the end;
#      BENCH_SCAN=0 skips it, its own knobs are described there).
#   7. detonation: `airlock probe` (static analysis + loading the model in the sandbox + verdict) against picklescan,
#      and where the probe's time goes, in Tests/Bench/probe.sh (run after scan.sh; BENCH_PROBE=0 skips it, its own
#      knobs are described there).
#   8. the daemon: requests per second and p50/p90/p99 latency through `airlockd` at 1, 2 and 16 concurrent clients,
#      for safetensors (static path) and a small PyTorch file (detonation), in Tests/Bench/daemon.sh (run after
#      probe.sh; BENCH_DAEMON=0 skips it, its own knobs are described there).
#   9. provenance and intake: `airlock manifest` hashing a 2 GiB folder and a 2 GiB file against sha256sum (one core
#      and two), its peak RSS, and models per minute through `airlock intake --once` for 50 small safetensors and 50
#      small PyTorch files at 1 and 2 workers, in Tests/Bench/provenance.sh (run after daemon.sh;
#      BENCH_PROVENANCE=0 skips it, its own knobs are described there).
#  9b. large checkpoints and the digest cache: `airlock scan` of a 20-repository Hugging Face cache (about 4 GB)
#      cold and warm against picklescan and sha256sum, and peak memory, in Tests/Bench/hfcache.sh (run after
#      provenance.sh; BENCH_HFCACHE=0 skips it; about 5 minutes, most of it writing the tree).
#  10. a flood of refused execs with control bytes in argv (issue 11, class 4): a 5 s-deadline probe, locally and
#      through airlockd: wall time, report size, supervisor peak RSS, in Tests/Bench/flood.sh (BENCH_FLOOD=0 skips
#      it, its own knobs are described there).
#  10b. the timing tell (issue 15): an open of an existing and of a missing file, a stat and a Unix connect, on the
#      host and inside `airlock exec`, in Tests/Bench/timing.sh (BENCH_TIMING=0 skips it).
#  11. the consumer's Python (issue 13): a cold `airlock probe` of a torch state_dict against the consumer's own
#      cold `torch.load` (≤ 1.3×), the same through airlockd's warm sandboxes at 1 and 4 clients (p50 ≤ 0.1× the
#      consumer's cold load), and a scikit-learn forest's probe time and memory, in Tests/Bench/runtime.sh (run last;
#      BENCH_RUNTIME=0 skips it; a missed budget makes `make bench` exit 1).
#  12. a probe's worlds (issue 15): the cost of each extra world, cold and through airlockd's warm sandboxes, for a
#      torch state_dict, a scikit-learn forest and a plain pickle, and the default's probe time, in
#      Tests/Bench/worlds.sh (run before runtime.sh; BENCH_WORLDS=0 skips it; about 3 minutes).
#  13. back-pressure (issue 16): p50/p99 of static-only requests while detonations saturate the workers, and 150
#      concurrent CLI clients answered with no busy reaching the user, in Tests/Bench/backpressure.sh (run after
#      worlds.sh; BENCH_BACKPRESSURE=0 skips it).
#
# Knobs (environment): BENCH_RUNS (hyperfine runs per command, default 200), BENCH_WARMUP (default 20),
# BENCH_SYSCALLS (loop iterations of the C program, default 20000), BENCH_REPEAT (runs of the C program per
# place, median kept, default 3). Takes about 12 s on 2 cores with the defaults, plus the build, plus about 2 minutes
# for scan.sh, 1 minute for probe.sh, 1 minute for daemon.sh and 2 minutes for provenance.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$(pwd)
AIRLOCK="$REPO/.build/release/airlock"
INPROC="$REPO/.build/release/airlock-bench"
RUNS=${BENCH_RUNS:-200}
WARMUP=${BENCH_WARMUP:-20}
N=${BENCH_SYSCALLS:-20000}
REPEAT=${BENCH_REPEAT:-3}
HOST_PY=/usr/bin/python3

die() { echo "bench: $*" >&2; exit 1; }
[ -x "$AIRLOCK" ] || die "$AIRLOCK is missing: run 'make build' (or 'make bench')"
[ -x "$INPROC" ] || die "$INPROC is missing: run 'make build' (or 'make bench')"
for tool in hyperfine bwrap gcc; do
    command -v "$tool" >/dev/null || die "$tool is missing: run 'make bench-deps' (or 'make bench')"
done
[ -x "$HOST_PY" ] || die "$HOST_PY is missing (apt-get install python3)"

HF_VERSION=$(hyperfine --version | awk '{print $2}')
HF=(hyperfine --style none --warmup "$WARMUP" --runs "$RUNS")
hf() { "${HF[@]}" "$@" 2>>"$TMP/hyperfine.log"; }
if hyperfine --help 2>&1 | grep -q -- '--shell'; then
    HF+=(-N)  # no intermediate shell: hyperfine >= 1.13
else
    echo "bench: hyperfine $HF_VERSION has no -N; times include a shell start" >&2
fi

TMP=$(mktemp -d /tmp/airlock-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# The read-only view of Airlock's default profile, for bubblewrap (common.sh).
BWRAP=$(source "$REPO/Tests/Bench/common.sh" && echo "$BWRAP_VIEW")

# ---- helpers ----

cat >"$TMP/stats.py" <<'EOF'
import json, statistics, sys

def rows(path):
    for r in json.load(open(path))["results"]:
        t = r["times"]
        yield r["command"], statistics.mean(t) * 1e3, statistics.median(t) * 1e3, statistics.stdev(t) * 1e3, min(t) * 1e3

mode = sys.argv[1]
if mode == "table":  # table JSON LABEL...
    labels = sys.argv[3:]
    print("| command | mean ms | median ms | stddev ms | min ms |")
    print("|---|---:|---:|---:|---:|")
    for label, (_, mean, med, sd, mn) in zip(labels, rows(sys.argv[2])):
        print(f"| {label} | {mean:.2f} | {med:.2f} | {sd:.2f} | {mn:.2f} |")
elif mode == "means":  # means JSON: one mean (ms) per line
    for _, mean, *_ in rows(sys.argv[2]):
        print(f"{mean:.3f}")
elif mode == "medians":
    for _, _, med, *_ in rows(sys.argv[2]):
        print(f"{med:.3f}")
elif mode == "airlock-stdout":  # airlock-stdout FILE: the command's stdout from `airlock exec --format json`
    d = json.load(open(sys.argv[2]))
    if d.get("exitCode") != 0:
        sys.exit(f"airlock run failed: {json.dumps(d)[:400]}")
    sys.stdout.write(d["stdout"])
elif mode == "airlock-timing":  # airlock-timing FILE...: mean ms from sandbox start to the launch execve, and to the end
    execs, ends, counts = [], [], []
    for f in sys.argv[2:]:
        d = json.load(open(f))
        launch = [e for e in d["trace"] if e.get("rule") == "launch"] or d["trace"][:1]
        execs.append(launch[0]["timeNs"] / 1e6)
        ends.append(d["durationMs"])
        counts.append(len(d["trace"]) + d["traceDropped"])
    print(f"{statistics.median(execs):.3f} {statistics.median(ends):.3f} {statistics.median(counts):.0f}")
elif mode == "median-of":  # median-of KEY FILE...: median of "KEY value" lines across files
    key, vals = sys.argv[2], []
    for f in sys.argv[3:]:
        for line in open(f):
            k, _, v = line.partition(" ")
            if k == key:
                vals.append(float(v))
    print(f"{statistics.median(vals):.1f}")
elif mode == "profile-variants":  # profile-variants DEFAULT OUTDIR
    import platform
    p = json.load(open(sys.argv[2]))
    out = sys.argv[3]
    native = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}[platform.machine()]
    a = json.loads(json.dumps(p))
    a["architectures"] = [x for x in p["architectures"] if x != native] or ["SCMP_ARCH_X86"]
    json.dump(a, open(f"{out}/stop-after-parse.json", "w"), indent=2)
    b = json.loads(json.dumps(p))
    b["airlock"]["mounts"].append({"type": "bind", "source": "/nonexistent-airlock-bench", "destination": "/x"})
    json.dump(b, open(f"{out}/stop-after-compile.json", "w"), indent=2)
    c = json.loads(json.dumps(p))
    c["airlock"]["notify"] = [r for r in p["airlock"]["notify"] if "openat" not in r["syscalls"]]
    json.dump(c, open(f"{out}/no-open-rules.json", "w"), indent=2)
    removed = [r for r in p["airlock"]["notify"] if "openat" in r["syscalls"]]
    print(sum(len(r.get("paths", [])) + len(r.get("pathsOutside", [])) for r in removed))
EOF
stats() { "$HOST_PY" "$TMP/stats.py" "$@"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }

# Every compared command must work before it is timed.
"$AIRLOCK" exec -- /bin/true >/dev/null || die "airlock exec -- /bin/true failed"
$BWRAP /bin/true || die "bwrap failed over the default view (are user namespaces available?)"
"$AIRLOCK" exec -- "$HOST_PY" -I -S -c pass >/dev/null || die "airlock exec -- python3 failed"
$BWRAP "$HOST_PY" -I -S -c pass || die "bwrap python3 failed"

echo "# Airlock benchmarks"
echo
echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r)"
echo "- tools: $(hyperfine --version), $(bwrap --version), $(gcc --version | head -1)"
echo "- airlock $("$AIRLOCK" --version), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD -- Sources Profiles 2>/dev/null || echo ' (dirty)')"
echo "- hyperfine ${HF[*]:1}"
echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# ---- 0. the start-up budget (startup.sh): its verdict is the script's exit status, given after every section ----

STARTUP_OK=1
bash "$REPO/Tests/Bench/startup.sh" || STARTUP_OK=0
echo

# ---- 1. start-up ----

echo "## 1. Start-up: /bin/true"
echo
hf --export-json "$TMP/true.json" \
    "$AIRLOCK exec -- /bin/true" \
    "$BWRAP /bin/true" \
    "/bin/true"
stats table "$TMP/true.json" "airlock exec -- /bin/true" "bwrap (same view) /bin/true" "/bin/true (host)"
mapfile -t M < <(stats means "$TMP/true.json")
echo
echo "airlock / bubblewrap (means): **$(ratio "${M[0]}" "${M[1]}")×** (budget: ≤ 1.5×, checked by \"Start-up budget\" above); airlock − bubblewrap: $(minus "${M[0]}" "${M[1]}") ms"
echo

echo "### Where airlock's start-up goes"
echo
echo "Runs that stop after successive phases (each fails on purpose, exit 125, right after the phase), and airlock's"
echo "own clock (\`--format json\`: the launch execve's \`timeNs\` and \`durationMs\`, both measured from just before clone)."
echo
OPEN_GLOBS=$(stats profile-variants "$REPO/Profiles/default.json" "$TMP")
# Each stop must happen where intended, or the differences below mean nothing.
stop_check() {
    local out
    out=$("$AIRLOCK" exec --profile "$1" -- /bin/true 2>&1 >/dev/null || true)
    grep -q -- "$2" <<<"$out" || die "airlock exec --profile $1 did not stop where expected ($2): $out"
}
stop_check "$TMP/nonexistent.json" "cannot open profile"
stop_check "$TMP/stop-after-parse.json" "architectures"
stop_check "$TMP/stop-after-compile.json" "nonexistent-airlock-bench"
hf -i --export-json "$TMP/phases.json" \
    "$AIRLOCK --version" \
    "$AIRLOCK exec --profile $TMP/nonexistent.json -- /bin/true" \
    "$AIRLOCK exec --profile $TMP/stop-after-parse.json -- /bin/true" \
    "$AIRLOCK exec --profile $TMP/stop-after-compile.json -- /bin/true" \
    "$AIRLOCK exec -- /bin/true"
mapfile -t P < <(stats medians "$TMP/phases.json")
mkdir -p "$TMP/clock"
for i in $(seq 1 20); do "$AIRLOCK" exec --format json -- /bin/true >"$TMP/clock/$i.json"; done
read -r EXEC_AT DONE_AT TRUE_NOTIFS < <(stats airlock-timing "$TMP"/clock/*.json)
echo "| phase | ms (median) | measured as |"
echo "|---|---:|---|"
echo "| Swift process start (\`--version\` is answered before ArgumentParser) | ${P[0]} | \`airlock --version\` |"
echo "| ArgumentParser, \`exec\` argument parsing, profile lookup | $(minus "${P[1]}" "${P[0]}") | \`--profile\` missing file − \`--version\` |"
echo "| profile JSON parse + validation | $(minus "${P[2]}" "${P[1]}") | profile whose \`architectures\` lacks this ABI − missing file |"
echo "| libseccomp compile + BPF export | $(minus "${P[3]}" "${P[2]}") | profile with a missing bind source − previous |"
echo "| clone (7 namespaces), id maps, mounts, pivot_root, caps, filter, until the launch execve | $EXEC_AT | airlock's clock, median of 20 |"
echo "| execve, $TRUE_NOTIFS notified calls, exit, namespace teardown, reaping | $(minus "$DONE_AT" "$EXEC_AT") | airlock's clock, median of 20 |"
echo "| residual: trace table, process exit, and the noise of differencing medians | $(minus "$(minus "${P[4]}" "${P[3]}")" "$DONE_AT") | full run − previous rows |"
echo "| **total** \`airlock exec -- /bin/true\` | ${P[4]} | |"
echo

# ---- 2. one notified system call ----

echo "## 2. Notified vs unnotified system calls"
echo
mkdir -p "$TMP/bin"
cat >"$TMP/syscalls.c" <<'EOF'
/* Times N iterations each of: openat+close of /dev/null (openat is notified under the default profile),
 * faccessat, fstat and getppid (not notified). Prints "name ns-per-iteration". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 20000;
    struct stat st;
    int fd0 = openat(AT_FDCWD, "/dev/null", O_RDONLY);
    if (fd0 < 0 || n <= 0) { perror("openat /dev/null"); return 1; }
    for (long i = 0; i < n / 10; i++) { int fd = openat(AT_FDCWD, "/dev/null", O_RDONLY); close(fd); } /* warm-up */
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        int fd = openat(AT_FDCWD, "/dev/null", O_RDONLY);
        if (fd < 0) { perror("openat /dev/null"); return 1; }
        close(fd);
    }
    double t1 = now_ns();
    for (long i = 0; i < n; i++) (void)faccessat(AT_FDCWD, "/dev/null", R_OK, 0);
    double t2 = now_ns();
    for (long i = 0; i < n; i++) (void)fstat(fd0, &st);
    double t3 = now_ns();
    for (long i = 0; i < n; i++) (void)syscall(SYS_getppid);
    double t4 = now_ns();
    printf("openat_close %.1f\nfaccessat %.1f\nfstat %.1f\ngetppid %.1f\n",
           (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n, (t4 - t3) / n);
    return 0;
}
EOF
gcc -O2 -Wall -o "$TMP/bin/syscalls" "$TMP/syscalls.c"
for r in $(seq 1 "$REPEAT"); do
    "$TMP/bin/syscalls" "$N" >"$TMP/host$r.txt"
    "$AIRLOCK" exec --format json --ro-bind "$TMP/bin:/bench" -- /bench/syscalls "$N" >"$TMP/sandbox$r.json"
    stats airlock-stdout "$TMP/sandbox$r.json" >"$TMP/sandbox$r.txt"
    "$AIRLOCK" exec --profile "$TMP/no-open-rules.json" --format json --ro-bind "$TMP/bin:/bench" -- /bench/syscalls "$N" >"$TMP/norules$r.json"
    stats airlock-stdout "$TMP/norules$r.json" >"$TMP/norules$r.txt"
done
R_openat_close=$(stats median-of openat_close "$TMP"/norules*.txt)
echo "C program, $N iterations per loop (after $((N / 10)) warm-up openat+close), median of $REPEAT runs per place;"
echo "inside: \`airlock exec --ro-bind DIR:/bench -- /bench/syscalls $N\` with the default profile."
echo
echo "| per iteration | host ns | airlock ns | difference ns |"
echo "|---|---:|---:|---:|"
for key in openat_close faccessat fstat getppid; do
    h=$(stats median-of "$key" "$TMP"/host*.txt)
    s=$(stats median-of "$key" "$TMP"/sandbox*.txt)
    case $key in
        openat_close) label="openat + close (openat notified)" ;;
        *) label="$key (not notified)" ;;
    esac
    echo "| $label | $h | $s | $(minus "$s" "$h") |"
    eval "H_$key=$h S_$key=$s"
done
echo "| openat + close, profile without the openat path rules (\`secrets\`, \`write-outside-tmp\`) | $H_openat_close | $R_openat_close | $(minus "$R_openat_close" "$H_openat_close") |"
echo
echo "One supervisor round trip (notified openat − the same on the host): **$(awk -v a="$S_openat_close" -v b="$H_openat_close" 'BEGIN { printf "%.1f µs", (a - b) / 1000 }')**,"
echo "of which $(awk -v a="$S_openat_close" -v b="$R_openat_close" 'BEGIN { printf "%.1f µs", (a - b) / 1000 }') is the default profile's openat path rules ($OPEN_GLOBS globs) and $(awk -v a="$R_openat_close" -v b="$H_openat_close" 'BEGIN { printf "%.1f µs", (a - b) / 1000 }') the bare round trip with decoding;"
echo "the filter's cost on an unnotified call: $(minus "$S_getppid" "$H_getppid") ns (getppid) to $(minus "$S_faccessat" "$H_faccessat") ns (faccessat)."
echo

# ---- 3. Python start ----

echo "## 3. Start-up: python3 -I -S -c pass"
echo
hf --export-json "$TMP/python.json" \
    "$AIRLOCK exec -- $HOST_PY -I -S -c pass" \
    "$BWRAP $HOST_PY -I -S -c pass" \
    "$HOST_PY -I -S -c pass"
stats table "$TMP/python.json" "airlock exec -- python3 -I -S -c pass" "bwrap (same view) python3 -I -S -c pass" "python3 -I -S -c pass (host)"
mapfile -t Y < <(stats means "$TMP/python.json")
"$AIRLOCK" exec --format json -- "$HOST_PY" -I -S -c pass >"$TMP/py-trace.json"
read -r _ _ PY_NOTIFS < <(stats airlock-timing "$TMP/py-trace.json")
echo
echo "airlock / bubblewrap (means): **$(ratio "${Y[0]}" "${Y[1]}")×**; airlock − bubblewrap: $(minus "${Y[0]}" "${Y[1]}") ms;"
echo "python3 makes $PY_NOTIFS notified calls under the default profile."


# ---- 4. in-process runs ----

echo
echo "## 4. A sandbox run from a long-lived process"
echo
echo "\`airlock-bench Profiles/default.json $RUNS -- /bin/true\`: one process loads the profile, then times $RUNS runs"
echo "(after 10 warm-up runs, the two modes alternating) of clone → set-up → exec → supervision → teardown; \`kept-filter\` reuses the compiled"
echo "BPF program, as \`airlockd\` will, \`compile-each-run\` compiles it every time."
echo
echo "| mode | mean ms | median ms | p99 ms |"
echo "|---|---:|---:|---:|"
"$INPROC" "$REPO/Profiles/default.json" "$RUNS" -- /bin/true | while read -r mode mean median p99; do
    echo "| $mode | $mean | $median | $p99 |"
    if [ "$mode" = kept-filter ]; then echo "$mean" >"$TMP/inproc-mean"; fi
done
echo
echo "kept-filter run / bubblewrap whole run (means): **$(ratio "$(cat "$TMP/inproc-mean")" "${M[1]}")×**"

echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if grep -q 'Warning' "$TMP/hyperfine.log" 2>/dev/null; then
    echo
    echo "hyperfine warnings (counts): $(grep -o 'Warning: [^.(]*' "$TMP/hyperfine.log" | sort | uniq -c | sed 's/^ *//' | paste -sd ';' | sed 's/;/; /g')"
fi

if [ "${BENCH_SCAN:-1}" != 0 ]; then
    echo
    bash "$REPO/Tests/Bench/scan.sh"
fi

if [ "${BENCH_PROBE:-1}" != 0 ]; then
    echo
    bash "$REPO/Tests/Bench/probe.sh"
fi

if [ "${BENCH_DAEMON:-1}" != 0 ]; then
    echo
    bash "$REPO/Tests/Bench/daemon.sh"
fi

if [ "${BENCH_PROVENANCE:-1}" != 0 ]; then
    echo
    bash "$REPO/Tests/Bench/provenance.sh"
fi

if [ "${BENCH_HFCACHE:-1}" != 0 ]; then
    echo
    bash "$REPO/Tests/Bench/hfcache.sh"
fi

if [ "${BENCH_FLOOD:-1}" != 0 ]; then
    echo
    bash "$REPO/Tests/Bench/flood.sh"
fi

if [ "${BENCH_TIMING:-1}" != 0 ]; then
    echo
    bash "$REPO/Tests/Bench/timing.sh"
fi
if [ "${BENCH_WORLDS:-1}" != 0 ]; then
    echo
    bash "$REPO/Tests/Bench/worlds.sh"
fi
if [ "${BENCH_BACKPRESSURE:-1}" != 0 ]; then
    echo
    bash "$REPO/Tests/Bench/backpressure.sh"
fi

RUNTIME_OK=1
if [ "${BENCH_RUNTIME:-1}" != 0 ]; then
    echo
    bash "$REPO/Tests/Bench/runtime.sh" || RUNTIME_OK=0
fi

if [ "$RUNTIME_OK" = 0 ]; then
    echo
    echo "bench: a budget of the consumer's Python was missed (the FAIL line in \"The consumer's Python\" above)" >&2
fi
if [ "$STARTUP_OK" = 0 ]; then
    echo
    echo "bench: a start-up budget was missed (the FAIL line in \"Start-up budget\" above)" >&2
    exit 1
fi
[ "$RUNTIME_OK" = 1 ] || exit 1
