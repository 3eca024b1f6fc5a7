#!/usr/bin/env bash
# The timing tell (issue 15): what a payload measures to tell the sandbox from a host. A small C program times N
# iterations each of an open of an existing file (/etc/ld.so.cache), an open of a missing one, a stat, and a connect
# of a Unix socket to a missing path, on the host and inside `airlock exec` with the default profile; the median of
# BENCH_REPEAT runs per place. Run by Tests/Bench/run.sh (BENCH_TIMING=0 skips it); knobs: BENCH_TIMING_CALLS
# (iterations, default 5000), BENCH_REPEAT (default 3), AIRLOCK (the binary, default .build/release/airlock).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
AIRLOCK=${AIRLOCK_BIN:-$AIRLOCK}
N=${BENCH_TIMING_CALLS:-5000}
REPEAT=${BENCH_REPEAT:-3}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/bin"
cat >"$TMP/timing.c" <<'EOF'
/* Times N iterations of each call a sandbox-aware payload would time; prints "name ns-per-call". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 5000;
    if (n <= 0) return 1;
    struct stat st;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strcpy(addr.sun_path, "/tmp/.missing-socket");
    double t[5];
    t[0] = now_ns();
    for (long i = 0; i < n; i++) {
        int fd = open("/etc/ld.so.cache", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) close(fd);
    }
    t[1] = now_ns();
    for (long i = 0; i < n; i++) (void)open("/usr/lib/.missing-file", O_RDONLY | O_CLOEXEC);
    t[2] = now_ns();
    for (long i = 0; i < n; i++) (void)stat("/etc/ld.so.cache", &st);
    t[3] = now_ns();
    for (long i = 0; i < n; i++) {
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        (void)connect(s, (struct sockaddr *)&addr, sizeof addr);
        close(s);
    }
    t[4] = now_ns();
    printf("open_existing %.1f\nopen_missing %.1f\nstat %.1f\nconnect_unix %.1f\n", (t[1] - t[0]) / n,
           (t[2] - t[1]) / n, (t[3] - t[2]) / n, (t[4] - t[3]) / n);
    return 0;
}
EOF
gcc -O2 -Wall -o "$TMP/bin/timing" "$TMP/timing.c"
for r in $(seq 1 "$REPEAT"); do
    "$TMP/bin/timing" "$N" >"$TMP/host$r.txt"
    "$AIRLOCK" exec --format json --ro-bind "$TMP/bin:/bench" -- /bench/timing "$N" >"$TMP/sandbox$r.json" || true
done
"$HOST_PY" - "$TMP" "$REPEAT" "$N" <<'EOF'
import json, statistics, sys
tmp, repeat, n = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def parse(text):
    return {k: float(v) for k, v in (line.split() for line in text.splitlines() if line.strip())}
host = [parse(open(f"{tmp}/host{r}.txt").read()) for r in range(1, repeat + 1)]
box = [parse(json.load(open(f"{tmp}/sandbox{r}.json"))["stdout"]) for r in range(1, repeat + 1)]
print("## Timing tell: one call, host vs sandbox")
print()
print(f"`Tests/Bench/timing.sh`: {n} calls of each, median of {repeat} runs; inside: `airlock exec` with the default profile.")
print()
print("| call | host µs | sandbox µs | ratio |")
print("|---|---|---|---|")
for key, label in [("open_existing", "open of an existing file"), ("open_missing", "open of a missing file"),
                   ("stat", "stat"), ("connect_unix", "socket + connect (Unix, missing path) + close")]:
    h = statistics.median(x[key] for x in host) / 1000
    s = statistics.median(x[key] for x in box) / 1000
    print(f"| {label} | {h:.2f} | {s:.2f} | {s / h:.1f}× |")
EOF
