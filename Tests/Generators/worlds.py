#!/usr/bin/env python3
"""Writes pickles for the tests of a probe's worlds (docs/probe.md, "Worlds"): payloads that act only in some worlds,
and benign or merely faulty files that must come out the same in every world.

    worlds.py OUTDIR --canary PATH --port N

Python 3 standard library only; nothing is unpickled here. Each payload only touches the canary (through /bin/sh,
which the sandbox refuses) or connects to the test's loopback port, and only when its gate is open.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pickles  # noqa: E402
from pickles import Call, Global  # noqa: E402


def run(code):
    return pickles.assemble(Call(Global("builtins", "exec"), (code,)), 2)[0]


def gated(condition, canary):
    """A payload that starts a shell touching the canary when `condition` (Python source) holds, and otherwise
    leaves a plain dict, as a benign file would."""
    return run(
        "import os\n"
        f"if {condition}:\n"
        f"    os.system('touch {canary}')\n"
        "result = {'weights': [0.5, 0.25]}\n")


def main():
    out = sys.argv[1]
    args = dict(zip(sys.argv[2::2], sys.argv[3::2]))
    canary, port = args["--canary"], int(args["--port"])
    os.makedirs(out, exist_ok=True)
    files = {
        # Acts only on a GPU host: CUDA's variable, set in the GPU worlds.
        "gpu_gated.pkl": gated("os.environ.get('CUDA_VISIBLE_DEVICES')", canary),
        # Acts only where the deployment says production: the variable the tests' third world alone sets.
        "stage_gated.pkl": gated("os.environ.get('DEPLOY_STAGE') == 'production'", canary),
        # Acts everywhere: connects to the test's port.
        "always.pkl": run(
            "import socket\n"
            "s = socket.socket()\n"
            "try:\n"
            f"    s.connect(('127.0.0.1', {port}))\n"
            "except OSError:\n"
            "    pass\n"),
        # Spins only on a GPU host: a world whose deadline the budget shortened ends it.
        "gpu_spin.pkl": run(
            "import os, time\n"
            "end = time.monotonic() + 120\n"
            "while os.environ.get('CUDA_VISIBLE_DEVICES') and time.monotonic() < end:\n"
            "    pass\n"),
        # Fails to load in every world (int('x')): the same finding in each.
        "fails.pkl": pickles.assemble(Call(Global("builtins", "int"), ("not a number",)), 2)[0],
        # A plain benign pickle.
        "benign.pkl": pickles.assemble(Call(Global("collections", "OrderedDict"), ()), 2)[0],
    }
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
