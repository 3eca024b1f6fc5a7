#!/usr/bin/env bash
# A Hugging Face hub cache of 20 repositories (Tests/Bench/hfcache_gen.py: a 1.5 GB and a 1.0 GB PyTorch zip
# state_dict, a 1.0 GB safetensors, 17 small repositories; about 4.1 GB), scanned by `airlock scan` cold (page cache
# dropped, digest cache empty) and warm (page cache and digest cache full), against picklescan over the same tree and
# against reading and hashing the same bytes at disk speed (`cat >/dev/null`, `sha256sum`). Run by Tests/Bench/run.sh
# (BENCH_HFCACHE=0 skips it there); docs/benchmarks.md, "Large checkpoints and the digest cache", records a run.
#
# Knobs: BENCH_HF_DIR (parent of the scratch tree, default /var/tmp: not /tmp, which may be tmpfs), BENCH_HF_SCALE
# (multiplies the big checkpoints, default 1.0), BENCH_HF_RUNS (runs per warm measurement, median kept, default 3),
# BENCH_HF_KEEP=1 keeps the tree afterwards, BENCH_HF_TREE=DIR reuses a tree hfcache_gen.py wrote into DIR. Dropping the page cache needs root; without it the cold rows are left out.
#
# What is scanned: `hub/`. When airlock follows the snapshots' links to the blobs, the snapshot files are analysed as
# models; until then it reports them as `folder.symlink` without reading them, and the blobs are what is read
# instead: scanning hub/ reads them as the files of each blobs/ folder, every byte the snapshots point to. The script
# says which case it saw, from the output.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$(pwd)
AIRLOCK=${AIRLOCK:-$REPO/.build/release/airlock}
PICKLESCAN=${PICKLESCAN:-$REPO/.build-bench/venv/bin/picklescan}
RUNS=${BENCH_HF_RUNS:-3}
SCALE=${BENCH_HF_SCALE:-1.0}
PARENT=${BENCH_HF_DIR:-/var/tmp}
WORK=$PARENT/airlock-hfcache-$$
CACHE=$WORK/digests
HUB=$WORK/tree/hub

die() { echo "hfcache: $*" >&2; exit 1; }
[ -x "$AIRLOCK" ] || die "build first: make build (needs $AIRLOCK)"
[ -x "$PICKLESCAN" ] || die "install picklescan first: make bench-deps"
[ -x /usr/bin/time ] || die "needs GNU time (/usr/bin/time): make bench-deps"
avail=$(df -Pk "$PARENT" | awk 'NR == 2 { print $4 }')
[ "$avail" -gt $((6 * 1024 * 1024)) ] || die "needs 6 GiB free under $PARENT"
[ "${BENCH_HF_KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT

mkdir -p "$WORK"
if [ -n "${BENCH_HF_TREE:-}" ]; then
    HUB=$BENCH_HF_TREE/hub  # a tree hfcache_gen.py wrote earlier: reused, never deleted
else
    echo "generating the hub cache under $WORK (scale $SCALE) ..." >&2
    /usr/bin/python3 "$REPO/Tests/Bench/hfcache_gen.py" "$WORK/tree" "$SCALE"
fi
BYTES=$(find "$HUB" -path '*/blobs/*' -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }')

# What airlock must be given to read every blob: hub/ once snapshot links are followed, else the blobs folders.
probe=$(AIRLOCK_DIGEST_CACHE=off "$AIRLOCK" scan --format json "$HUB" 2>/dev/null || true)
if printf '%s\n' "$probe" | grep '/snapshots/' | grep -q '"format":"pytorch-zip"'; then
    TARGETS=("$HUB")
    WHAT="hub/ (snapshot links followed)"
else
    # hub/ still reads every blob, as a file of its repository's blobs/ folder, in one folder scan (the hashing
    # threads work across repositories); the snapshots' links are reported, not followed.
    TARGETS=("$HUB")
    WHAT="hub/ (snapshot links not followed on this build: every blob read in blobs/)"
fi

# Entries are remembered only for files unchanged for the settle time (docs/formats.md, "Digest cache"): wait
# until the newest blob has settled, as an hour-old download would have.
settle=$(($(cat /proc/sys/vm/dirty_expire_centisecs 2>/dev/null || echo 3000) / 100 + 11))
newest=$(find "$HUB" -path '*/blobs/*' -type f -printf '%C@\n' | sort -n | tail -1 | cut -d. -f1)
wait_s=$((newest + settle - $(date +%s)))
if [ "$wait_s" -gt 0 ]; then
    echo "waiting ${wait_s}s for the files to settle ..." >&2
    sleep "$wait_s"
fi

can_drop=0
if [ "$(id -u)" = 0 ] && [ -w /proc/sys/vm/drop_caches ]; then can_drop=1; fi
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# seconds of wall time of "$@" (stdout discarded)
seconds() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || true
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l | xargs printf '%.3f'
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
warm() {  # median of RUNS
    for _ in $(seq "$RUNS"); do seconds "$@"; done | median
}
peak_mib() {  # peak RSS in MiB of one run of "$@"
    /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }'
}

scan() { AIRLOCK_DIGEST_CACHE="$CACHE" "$AIRLOCK" scan --format json "${TARGETS[@]}"; }
scan_nocache() { AIRLOCK_DIGEST_CACHE=off "$AIRLOCK" scan --format json "${TARGETS[@]}"; }
scan_serial() { AIRLOCK_HASH_THREADS=0 AIRLOCK_DIGEST_CACHE=off "$AIRLOCK" scan --format json "${TARGETS[@]}"; }
picklescan_hub() { "$PICKLESCAN" -p "$HUB"; }
blobs() { find "$HUB" -path '*/blobs/*' -type f -print0 | sort -z; }
cat_all() { blobs | xargs -0 cat >/dev/null; }
sha_all() { blobs | xargs -0 sha256sum; }
sha_all_2() { blobs | xargs -0 -n 1 -P 2 sha256sum; }

# The reports are the same with and without the cache, serial and parallel (timings left out).
strip() { sed -E 's/"timings":\{[^}]*\}//'; }
a=$(scan_serial | strip | sha256sum)
b=$(scan_nocache | strip | sha256sum)
rm -rf "$CACHE"
c=$(scan | strip | sha256sum)
d=$(scan | strip | sha256sum)
[ "$a" = "$b" ] && [ "$b" = "$c" ] && [ "$c" = "$d" ] || die "reports differ between serial, parallel and cached scans"
entries=$(find "$CACHE" -type f ! -name '.tmp-*' | wc -l)

row() { printf '| %s | %s |\n' "$1" "$2"; }
echo
echo "### Hugging Face cache: $(find "$HUB" -mindepth 1 -maxdepth 1 | wc -l) repositories, $(echo "$BYTES / 1000000000" | bc -l | xargs printf '%.2f') GB of blobs"
echo
echo "airlock scans $WHAT; picklescan scans hub/. $entries digest cache entries after a scan. Load average at start: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| measurement | seconds |"
echo "|---|---:|"
if [ "$can_drop" = 1 ]; then
    rm -rf "$CACHE"; drop; c_air=$(seconds scan); row "cold: airlock scan (digest cache empty, hashing ahead)" "$c_air"
    drop; c_ser=$(seconds scan_serial); row "cold: airlock scan, hashing serially (AIRLOCK_HASH_THREADS=0), no cache" "$c_ser"
    drop; c_cat=$(seconds cat_all); row "cold: cat >/dev/null (disk speed)" "$c_cat"
    drop; c_sha=$(seconds sha_all); row "cold: sha256sum, one process" "$c_sha"
    drop; c_sha2=$(seconds sha_all_2); row "cold: sha256sum, two at a time" "$c_sha2"
    drop; c_pick=$(seconds picklescan_hub); row "cold: picklescan -p hub/" "$c_pick"
    drop; c_hit=$(seconds scan); row "cold page cache, digest cache full: airlock scan" "$c_hit"
fi
scan >/dev/null 2>&1 || true
w_air=$(warm scan); row "warm: airlock scan (page cache + digest cache)" "$w_air"
w_nc=$(warm scan_nocache); row "warm: airlock scan --no-digest-cache equivalent (AIRLOCK_DIGEST_CACHE=off), hashing ahead" "$w_nc"
w_ser=$(warm scan_serial); row "warm: airlock scan, no cache, hashing serially" "$w_ser"
w_pick=$(warm picklescan_hub); row "warm: picklescan -p hub/" "$w_pick"
w_sha=$(warm sha_all); row "warm: sha256sum, one process" "$w_sha"
echo
echo "| peak RSS | MiB |"
echo "|---|---:|"
# /usr/bin/time runs programs, not shell functions: the commands are spelled out.
row "airlock scan, digest cache full" "$(peak_mib env AIRLOCK_DIGEST_CACHE="$CACHE" "$AIRLOCK" scan --format json "${TARGETS[@]}")"
row "airlock scan, no cache (hashing every byte)" \
    "$(peak_mib env AIRLOCK_DIGEST_CACHE=off "$AIRLOCK" scan --format json "${TARGETS[@]}")"
row "picklescan -p hub/" "$(peak_mib "$PICKLESCAN" -p "$HUB")"
echo
ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
echo "| goal | measured | met? |"
echo "|---|---:|---|"
r=$(ratio "$w_air" "$w_pick")
printf '| warm: airlock ≤ 1.0× picklescan | %s× | %s |\n' "$r" "$(echo "$r <= 1.0" | bc -l | sed 's/1/yes/;s/0/no/')"
if [ "$can_drop" = 1 ]; then
    best=$(printf '%s\n%s\n' "$c_cat" "$c_sha2" | sort -n | head -1)
    r=$(ratio "$c_air" "$c_sha")
    printf '| cold: airlock ≤ 1.2× hashing at disk speed (sha256sum) | %s× | %s |\n' "$r" \
        "$(echo "$r <= 1.2" | bc -l | sed 's/1/yes/;s/0/no/')"
    printf '| cold: airlock against the faster of cat and two sha256sum at a time | %s× | - |\n' "$(ratio "$c_air" "$best")"
fi
