"""Sandbox-aware pickles: each looks for one tell of the loader that runs it, stays quiet when it finds one, and
only on what it takes for a real host runs its payload (`touch CANARY`, harmless, aimed at the test's bait).

    python3 sandbox_aware.py OUT --canary PATH --port N

Writes OUT/NAME.pkl for each gate in GATES plus `all.pkl` (every gate at once), and OUT/expectations.json listing
them. A gate's code is the check a payload would make; a sandbox that shows the tell gets a quiet `suspicious`.
"""
import json
import os
import pickle
import sys

# Each gate is an expression that is true where the payload believes it is watched.
GATES = {
    # The loader's modules.
    "modules": "any(w in m.lower() for m in sys.modules for w in ('airlock', 'harness'))",
    # A loader's command line: the script's name, a descriptor argument, options a service would not take.
    "argv": "any(w in ' '.join(sys.argv).lower() for w in ('airlock', 'harness', 'load.py', 'fd:', '--no-probe'))",
    # Isolated mode and friends: a service does not run with -I, -E or -s.
    "flags": "sys.flags.isolated or sys.flags.ignore_environment or sys.flags.no_user_site",
    # The descriptors' links.
    "fdlinks": "any(w in link(d).lower() for d in os.listdir('/proc/self/fd') for w in ('airlock', 'harness'))",
    # The model as an in-memory file rather than a file at a path, the way a consumer opens it.
    "modelpath": "any(link(d).startswith('/memfd:') or link(d).endswith('(deleted)') for d in os.listdir('/proc/self/fd'))",
    # The old marker directory and mount point.
    "paths": "os.path.exists('/.airlock') or os.path.exists('/airlock')",
    # The stack's file names, and the script's own text.
    "stack": "any(w in (f.f_code.co_filename + open(f.f_code.co_filename, errors='replace').read()).lower()"
             " for f in frames() for w in ('airlock', 'harness'))",
    # __main__'s names.
    "main": "any(w in k.lower() for k in vars(sys.modules['__main__']) for w in ('airlock', 'harness'))",
    # The mounts: a bind of the loader's folder shows its host source.
    "mountinfo": "'harness' in open('/proc/self/mountinfo').read().lower()",
    # The process's command line as the kernel has it.
    "cmdline": "any(w in open('/proc/self/cmdline', 'rb').read().lower() for w in (b'airlock', b'harness', b'-i'))",
}

PRELUDE = """
import os, sys
def frames():
    f = sys._getframe()
    while f is not None:
        if os.path.exists(f.f_code.co_filename):
            yield f
        f = f.f_back
def link(d):
    try:
        return os.readlink('/proc/self/fd/' + d)
    except OSError:
        return ''
"""


class Gated:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return exec, (self.code, {})


def payload(gate, canary):
    return (PRELUDE + f"watched = {gate}\n"
            f"if not watched:\n    os.system({('touch ' + canary)!r})\n")


def main():
    out = sys.argv[1]
    canary = sys.argv[sys.argv.index("--canary") + 1]
    os.makedirs(out, exist_ok=True)
    names = []
    for name, gate in GATES.items():
        with open(os.path.join(out, name + ".pkl"), "wb") as f:
            pickle.dump(Gated(payload(gate, canary)), f, protocol=2)
        names.append(name)
    everything = " or ".join(f"({g})" for g in GATES.values())
    with open(os.path.join(out, "all.pkl"), "wb") as f:
        pickle.dump(Gated(payload(everything, canary)), f, protocol=2)
    names.append("all")
    with open(os.path.join(out, "expectations.json"), "w") as f:
        json.dump(names, f)


if __name__ == "__main__":
    main()
