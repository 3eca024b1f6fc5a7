# Shared by the benchmark scripts (sourced, after `set -euo pipefail`): the repository's paths and tools, `die`, and
# the check that the loader harness's bytecode is current.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$(pwd)
AIRLOCK="$REPO/.build/release/airlock"
AIRLOCKD="$REPO/.build/release/airlockd"
PICKLESCAN="$REPO/.build-bench/venv/bin/picklescan"
VENV_PY="$REPO/.build-bench/venv/bin/python3"
HOST_PY=/usr/bin/python3
HARNESS_DIR="$REPO/Profiles/harness"

die() { echo "bench: $*" >&2; exit 1; }

# bubblewrap over the read-only view of Airlock's default profile, the baseline of the start-up rows: the same 7
# namespaces (user, mount, pid, net, ipc, uts, cgroup: --unshare-all), /usr and the merged-/usr symlinks, the loader
# cache, tmpfs /tmp, fresh /proc, minimal /dev. It does less than airlock: no seccomp filter, no supervisor, no
# rlimits, no cgroup, no /etc files, and the command keeps uid 0 and its capabilities inside the user namespace.
BWRAP_VIEW="bwrap --unshare-all --die-with-parent --new-session --ro-bind /usr /usr --symlink usr/bin /bin \
--symlink usr/sbin /sbin --symlink usr/lib /lib --symlink usr/lib64 /lib64 \
--ro-bind /etc/ld.so.cache /etc/ld.so.cache --tmpfs /tmp --proc /proc --dev /dev"

# Detonations import model_loader from its bytecode; a stale or missing cache would add its compilation to every
# detonation timed. (-B: the check writes no bytecode either.)
require_harness_bytecode() {
    local log
    log=$("$HOST_PY" -I -S -B -v -c "import sys; sys.path.insert(0, '$HARNESS_DIR'); import model_loader" 2>&1) ||
        die "model_loader does not import: $log"
    grep -q "^# code object from '$HARNESS_DIR/__pycache__/model_loader\." <<<"$log" ||
        die "$HARNESS_DIR/__pycache__ has no current bytecode for model_loader.py: run 'make build' (or 'make harness')"
}

# HF: hyperfine with WARMUP and RUNS ($1, $2), without an intermediate shell where hyperfine can (>= 1.13); `hf`
# runs it with its diagnostics appended to $TMP/hyperfine.log.
hyperfine_setup() {
    HF=(hyperfine --style none --warmup "$1" --runs "$2")
    if hyperfine --help 2>&1 | grep -q -- '--shell'; then
        HF+=(-N)
    else
        echo "bench: hyperfine $(hyperfine --version) has no -N; times include a shell start" >&2
    fi
}
hf() { "${HF[@]}" "$@" 2>>"$TMP/hyperfine.log"; }
