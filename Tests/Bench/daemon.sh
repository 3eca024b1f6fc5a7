#!/usr/bin/env bash
# Daemon benchmarks, run by `make bench` through Tests/Bench/run.sh (or alone: `bash Tests/Bench/daemon.sh` after
# `make build`). Prints a markdown summary; docs/benchmarks.md records a run of it.
#
#   8. requests per second and latency through `airlockd` at 1, 2 and 16 concurrent clients, for
#      - `model.safetensors` from Tests/Generators/models.py, probed: the static path (safetensors runs no code, so
#        the report is the static analysis plus a `probe.static-only` note; target p50 under 5 ms);
#      - `big.safetensors`, BENCH_DAEMON_BIG_MIB MiB (default 64) of random F32 weights written here: the same static
#        path, where the time is mostly SHA-256 over the whole file (the report carries the file's hash);
#      - `benign.pt` from the same generator, probed: static analysis and a detonation (python3 loads it in the
#        sandbox);
#      - `status`, which the daemon's I/O thread answers at once: the round trip of the client and the socket alone,
#        for reference.
#      The load generator is Tests/Bench/daemon_load.py: N threads, each with its own connection and its own
#      descriptor of the file, each sending its requests one after another (descriptor attached as SCM_RIGHTS) and
#      timing each from the send to the last byte of the reply. Every reply must be ok with the expected verdict
#      (clean), and the detonation outcome must be `loaded` (benign.pt) or absent (safetensors), or the script stops.
#      Checked first: `evil.pt` from the generator probes malicious through the daemon, with the detonation's
#      `dynamic.exec` finding.
#
# The daemon runs as `airlockd --socket PATH --max-concurrent W --queue 256`, W = the number of CPUs, and is started
# afresh for every row, so that its own latency figures (`status`: received → reply ready, including the wait for a
# worker) cover that row only.
#
# Knobs (environment): BENCH_DAEMON_WORKERS (--max-concurrent, default `nproc`), BENCH_DAEMON_CLIENTS (default
# "1 2 16"), requests per row, split evenly among the clients: BENCH_DAEMON_STATIC (safetensors, default 3200),
# BENCH_DAEMON_DETONATE (benign.pt, default 640), BENCH_DAEMON_STATUS (default 3200), BENCH_DAEMON_BIG
# (big.safetensors, default 192); BENCH_DAEMON_BIG_MIB (its size, default 64; 0 leaves the row out);
# BENCH_DAEMON_WARMUP (warm-up requests per client, not timed, default 3). Takes about 45 s on 2 cores with the
# defaults.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LOAD="$REPO/Tests/Bench/daemon_load.py"
WORKERS=${BENCH_DAEMON_WORKERS:-$(nproc)}
CLIENTS=${BENCH_DAEMON_CLIENTS:-1 2 16}
N_STATIC=${BENCH_DAEMON_STATIC:-3200}
N_DETONATE=${BENCH_DAEMON_DETONATE:-640}
N_STATUS=${BENCH_DAEMON_STATUS:-3200}
N_BIG=${BENCH_DAEMON_BIG:-192}
BIG_MIB=${BENCH_DAEMON_BIG_MIB:-64}
WARMUP=${BENCH_DAEMON_WARMUP:-3}

[ -x "$AIRLOCKD" ] || die "$AIRLOCKD is missing: run 'make build' (or 'make bench')"
[ -x "$HOST_PY" ] || die "$HOST_PY is missing (apt-get install python3)"
"$HOST_PY" -c 'import socket, sys; sys.exit(not hasattr(socket, "send_fds"))' || die "$HOST_PY has no socket.send_fds (Python 3.9+ needed)"
require_harness_bytecode

TMP=$(mktemp -d "${TMPDIR:-/tmp}/airlock-daemon-bench.XXXXXX")
SOCK="$TMP/airlockd.sock"
DAEMON_PID=
stop_daemon() {
    if [ -n "$DAEMON_PID" ]; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
        DAEMON_PID=
    fi
}
trap 'stop_daemon; rm -rf "$TMP"' EXIT

start_daemon() {
    "$AIRLOCKD" --socket "$SOCK" --max-concurrent "$WORKERS" --queue 256 2>>"$TMP/airlockd.log" &
    DAEMON_PID=$!
    for _ in $(seq 1 200); do
        if [ -S "$SOCK" ] && "$HOST_PY" "$LOAD" --socket "$SOCK" --method status --clients 1 --requests 1 --warmup 0 >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$DAEMON_PID" 2>/dev/null || die "airlockd exited at start: $(tail -5 "$TMP/airlockd.log")"
        sleep 0.05
    done
    die "airlockd did not answer on $SOCK within 10 s: $(tail -5 "$TMP/airlockd.log")"
}

# CPU time of the daemon and its reaped children (the sandboxes), in clock ticks: utime + stime + cutime + cstime.
daemon_cpu() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$DAEMON_PID/stat"; }
# The whole machine's CPU time, in ticks: "total idle" (idle includes iowait) from /proc/stat.
machine_cpu() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $5 + $6 }' /proc/stat; }

# The daemon's own view of the row just run: latency quantiles (received → reply ready) and request counts.
daemon_status() {
    "$HOST_PY" - "$SOCK" <<'EOF'
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = b'{"airlock":1,"id":1,"method":"status"}'
s.sendall(struct.pack(">I", len(body)) + body)
def rd(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit("airlockd closed the connection")
        b += c
    return b
st = json.loads(rd(struct.unpack(">I", rd(4))[0]))["status"]
print(json.dumps(st))
EOF
}

"$HOST_PY" "$REPO/Tests/Generators/models.py" "$TMP/gen" >/dev/null
S="$TMP/gen/model.safetensors" B="$TMP/gen/benign.pt" E="$TMP/gen/evil.pt" BIG="$TMP/big.safetensors"
if [ "$BIG_MIB" -gt 0 ]; then
    "$HOST_PY" - "$BIG" "$BIG_MIB" <<'EOF'
import json, random, struct, sys
n = int(sys.argv[2]) << 20
h = json.dumps({"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [n // 4], "data_offsets": [0, n]}}).encode()
h += b" " * (-(8 + len(h)) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + random.Random(0).randbytes(n))
EOF
fi

# ---- correctness first ----

start_daemon
"$HOST_PY" "$LOAD" --socket "$SOCK" --method probe --file "$E" --expect malicious --rule dynamic.exec \
    --clients 1 --requests 1 --warmup 0 >/dev/null || die "evil.pt did not probe malicious (with dynamic.exec) through airlockd"
stop_daemon

# ---- timing ----

echo "## 8. Daemon: airlockd"
echo
echo "- \`airlockd --socket PATH --max-concurrent $WORKERS --queue 256\` (restarted for every row), $(nproc) CPUs"
echo "- load generator: Tests/Bench/daemon_load.py on \`$HOST_PY\` ($("$HOST_PY" --version 2>&1 | cut -d' ' -f2)): N threads, each with"
echo "  its own connection and descriptor, sending its requests one after another; latency per request from the send to"
echo "  the last byte of the reply; $WARMUP warm-up requests per client first, not timed"
echo "- files: \`model.safetensors\` ($(stat -c %s "$S") B) and \`benign.pt\` ($(stat -c %s "$B") B) from Tests/Generators/models.py;"
if [ "$BIG_MIB" -gt 0 ]; then echo "  \`big.safetensors\` ($BIG_MIB MiB of random F32) written here;"; fi
echo "  safetensors take the static path (no detonation), benign.pt static analysis + detonation"
echo "- every reply checked: ok, verdict clean, detonation outcome \`loaded\` (benign.pt) or none (safetensors);"
echo "  \`evil.pt\` checked first to probe malicious with \`dynamic.exec\`"
echo "- \`status\`: answered by the daemon's I/O thread, no worker: the client's and the socket's own round trip"
echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

ROWS="$TMP/rows.jsonl"
: >"$ROWS"
# row LABEL TOTAL ARGS...: one row, TOTAL requests split among the clients, for each client count.
row() {
    local label=$1 total=$2 c per
    shift 2
    for c in $CLIENTS; do
        per=$(( (total + c - 1) / c ))
        start_daemon
        cpu0=$(daemon_cpu)
        read -r tot0 idle0 < <(machine_cpu)
        "$HOST_PY" "$LOAD" --socket "$SOCK" --label "$label" --clients "$c" --requests "$per" --warmup "$WARMUP" "$@" \
            >"$TMP/row.json" || die "$label at $c clients failed (airlockd log: $(tail -3 "$TMP/airlockd.log"))"
        cpu1=$(daemon_cpu)
        read -r tot1 idle1 < <(machine_cpu)
        "$HOST_PY" - "$TMP/row.json" "$(daemon_status)" "$((cpu1 - cpu0))" "$((c * (per + WARMUP)))" \
            "$((tot1 - tot0))" "$((idle1 - idle0))" >>"$ROWS" <<'EOF'
import json, os, sys
r = json.load(open(sys.argv[1]))
st = json.loads(sys.argv[2])
r["daemonCpuMs"] = int(sys.argv[3]) / os.sysconf("SC_CLK_TCK") * 1e3 / int(sys.argv[4])
r["busy"] = 100 * (1 - int(sys.argv[6]) / max(1, int(sys.argv[5])))
r["daemon"] = st["latencyMs"]
r["daemonRequests"] = st["requests"]
r["refused"] = st["refused"]
print(json.dumps(r))
EOF
        stop_daemon
    done
}
row status "$N_STATUS" --method status
row "model.safetensors" "$N_STATIC" --method probe --file "$S" --rule probe.static-only --outcome none
if [ "$BIG_MIB" -gt 0 ]; then
    row "big.safetensors ($BIG_MIB MiB)" "$N_BIG" --method probe --file "$BIG" --rule probe.static-only --outcome none
fi
row "benign.pt" "$N_DETONATE" --method probe --file "$B" --outcome loaded

"$HOST_PY" - "$ROWS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| file | clients | requests | rps | p50 ms | p90 ms | p99 ms | max ms | daemon p50 ms | daemon p99 ms | daemon CPU ms/req | client CPU ms/req | machine busy |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
last = None
for r in rows:
    file, _, size = r["label"].partition(" ")
    name = "" if r["label"] == last else ("`status` (no file: client + socket)" if file == "status" else f"`{file}` {size}".rstrip())
    last = r["label"]
    d = r["daemon"]
    dm = (f"{d['p50']:.2f}", f"{d['p99']:.2f}") if d["samples"] else ("–", "–")
    print(f"| {name} | {r['clients']} | {r['requests']} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p90']:.2f} | {r['p99']:.2f} "
          f"| {r['max']:.2f} | {dm[0]} | {dm[1]} | {r['daemonCpuMs']:.2f} | {r['clientCpuMs']:.2f} | {r['busy']:.0f}% |")
    if r["refused"]:
        sys.exit(f"airlockd refused requests in row {r['label']} × {r['clients']}: {r['refused']}")
by_file = {}
for r in rows:
    if "safetensors" in r["label"]:
        by_file.setdefault(r["label"], []).append(r)
if by_file:
    print()
    print("Target, p50 under 5 ms for safetensors (static path):")
    for label, rs in by_file.items():
        ok = all(r["p50"] < 5 for r in rs)
        print(f"`{label.split()[0]}` p50 " + " / ".join(f"{r['p50']:.2f}" for r in rs)
              + f" ms at {' / '.join(str(r['clients']) for r in rs)} clients: **{'met' if ok else 'not met'}**"
              + ("" if ok or " " not in label else f" ({label.split(' ', 1)[1].strip('()')}: mostly SHA-256 of the whole file)") + ";")
EOF
echo
echo "daemon p50/p99: the daemon's own latency (\`status\` \`latencyMs\`: from the request's arrival to its reply being"
echo "ready, including the wait for a worker), over the row's requests and its warm-up. daemon CPU: user + system time"
echo "of airlockd and its reaped children (the sandboxes and the python3 they run), /proc/PID/stat, over the row and its"
echo "warm-up, per request (resolution: one clock tick, 10 ms, over the row). client CPU: the load generator's own, over"
echo "the measured requests. $(nproc) CPUs give at most $(nproc)000 CPU ms per second to share between the two. machine"
echo "busy: all CPUs' non-idle time over the row and its warm-up (/proc/stat), whoever used it: other processes, and"
echo "kernel work done outside the daemon (deferred namespace teardown in kernel threads), count too."
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
