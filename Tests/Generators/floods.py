#!/usr/bin/env python3
"""Writes models that flood the supervisor, for Airlock's trace-budget tests and benchmark (issue 11, class 4).

    floods.py OUTDIR [--seconds N]

exec_flood.pkl: a pickle whose payload, for N seconds (default 120: longer than any deadline it is probed with),
loops refused program starts, each carrying about 80 KiB of control bytes in argv (six bytes each once
JSON-escaped): `os.execv` with 20 arguments of 4000 bytes, and every 64th round `os.system` with one 64 KiB command.
Unbounded, one detonation of it grew a report to a gigabyte and airlockd past its memory.

import_flood.pt: a ZIP of 3000 pickles with 300 distinct unknown imports each (900,000 static findings).

output_flood.pkl: eight processes writing to standard output as fast as they can for N seconds.

Python 3 standard library only; nothing is unpickled here. The payload acts only in a user namespace that maps
one id (the sandbox's), so loading it anywhere else does nothing; inside the sandbox every program start is refused.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pickles  # noqa: E402
from pickles import Call, Global  # noqa: E402

FLOOD = """\
import os, socket, time
if open('/proc/self/uid_map').read().split()[2:3] == ['1']:
    junk = ''.join(chr(1 + i %% 31) for i in range(4000))
    argv = ['sh'] + [junk] * 20
    command = 'true ' + (junk * 17)[:65536]
    end = time.monotonic() + %d
    rounds = 0
    while time.monotonic() < end:
        rounds += 1
        try:
            os.execv('/bin/sh', argv)
        except OSError:
            pass
        if rounds %% 64 == 0:
            os.system(command)
"""


# Eight processes writing to standard output as fast as they can: the supervisor reads and drops what is past its
# bound, and must still reach its deadline while they write.
OUTPUT = """\
import os, socket, time
if open('/proc/self/uid_map').read().split()[2:3] == ['1']:
    end = time.monotonic() + %d
    for _ in range(3):
        os.fork()
    block = b'\\x01' * 65536
    while time.monotonic() < end:
        os.write(1, block)
"""


def import_flood(path, members=3000, imports=300):
    """A PyTorch-style ZIP of `members` pickles, each importing `imports` distinct unknown globals: 900,000 static
    findings from a 19 MB file (nothing here runs; the imports name modules that do not exist)."""
    import zipfile
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for i in range(members):
            body = b"".join(b"c" + f"flood{i}_{j}\nname{j}\n".encode() + b"0" for j in range(imports))
            z.writestr(f"model/p{i}.pkl", b"\x80\x02" + body + b"N.")


def main(out, seconds):
    os.makedirs(out, exist_ok=True)
    import_flood(os.path.join(out, "import_flood.pt"))
    for name, code in (("exec_flood.pkl", FLOOD), ("output_flood.pkl", OUTPUT)):
        payload = Call(Global("builtins", "exec"), (code % seconds,))
        with open(os.path.join(out, name), "wb") as f:
            f.write(pickles.assemble(payload, 4)[0])


if __name__ == "__main__":
    args = sys.argv[1:]
    seconds = 120
    if len(args) == 3 and args[1] == "--seconds":
        seconds = int(args[2])
    elif len(args) != 1:
        sys.exit("usage: floods.py OUTDIR [--seconds N]")
    main(args[0], seconds)
