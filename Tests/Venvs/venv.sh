#!/bin/bash
# venv.sh LINK PYTHON CHECK REQUIREMENT...
#
# Makes LINK (say .build-deps/onnx) a symbolic link to a Python virtual environment over PYTHON's site-packages with
# REQUIREMENTS installed from PyPI, in which `python3 -c CHECK` succeeds. The environment is kept in a cache shared by
# every clone and work tree on the machine, named by what goes into it (the interpreter's version and the requirements):
#
#   ${AIRLOCK_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock/venvs}/NAME-KEY
#
# so PyPI is asked once per machine and per requirement set, not once per clone, and a clone made while PyPI does not
# answer still finds it. An environment counts only when its making finished (the `.airlock-complete` mark, written
# last) and CHECK still passes; otherwise it is made again, under a lock, so two `make test` runs do not make it at once.
# A new requirement set gets a new folder; `rm -rf ~/.cache/airlock/venvs` forgets them all.
#
# Environment: CHECK runs with the caller's environment (KERAS_BACKEND=numpy, say, passed in front of the call).
# AIRLOCK_VENV_TRIES (5) is how many times pip is run before giving up.
set -euo pipefail

[ $# -ge 4 ] || { echo "usage: venv.sh LINK PYTHON CHECK REQUIREMENT..." >&2; exit 64; }
link=$1 python=$2 check=$3
shift 3
name=$(basename "$link")
cache=${AIRLOCK_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock/venvs}
version=$("$python" -c 'import sys; print(sys.version)')
key=$(printf '%s\n' "$python" "$version" "$@" | sha256sum | cut -c1-12)
env=$cache/$name-$key

usable() { [ -f "$1/.airlock-complete" ] && "$1/bin/python3" -c "$check" >/dev/null 2>&1; }

point() {
    mkdir -p "$(dirname "$link")"
    # An environment made in place by an earlier Makefile is replaced by the link.
    if [ -d "$link" ] && [ ! -L "$link" ]; then rm -rf "$link"; fi
    ln -sfn "$env" "$link"
}

if usable "$env"; then point; exit 0; fi

mkdir -p "$cache"
exec 9>"$cache/.$name.lock"
flock 9
if ! usable "$env"; then
    echo "venv.sh: making $env (${*})" >&2
    rm -rf "$env"
    "$python" -m venv --system-site-packages "$env"
    # pip asks PyPI; a name that does not resolve fails in seconds, so this waits about 4 minutes in all.
    tries=${AIRLOCK_VENV_TRIES:-5}
    for ((try = 1; ; try++)); do
        if "$env/bin/python3" -m pip install -q --disable-pip-version-check --retries 3 --timeout 60 "$@"; then break; fi
        if [ "$try" -ge "$tries" ]; then
            echo "venv.sh: PyPI did not answer, and $env was never made on this machine: the tests that load" \
                "models with ${*} need it. Run \`make test-venvs\` where PyPI answers." >&2
            rm -rf "$env"
            exit 1
        fi
        echo "venv.sh: PyPI did not answer; trying again in $((try * 20)) s" >&2
        sleep $((try * 20))
    done
    "$env/bin/python3" -c "$check" || { echo "venv.sh: $env was made but \`python3 -c '$check'\` fails" >&2; exit 1; }
    touch "$env/.airlock-complete"
fi
point
