#!/usr/bin/env python3
"""Writes models for the warm-start tests (Tests/AirlockDaemonTests/WarmStartTests.swift): PyTorch ZIPs whose
data.pkl holds a tensor (so their plan imports torch, as a warm torch sandbox needs) and a payload.

    warm.py OUTDIR --canary PATH --port N

leave_state.pt tries to leave state for the next model: a file in /tmp, an environment variable, an attribute on the
torch module, a thread and a process. check_state.pt looks for each and starts a program (`dynamic.exec`) only if it
finds any; leave_then_check.pt does both in one load, which shows the check fires when the state is there.
system.pt runs the canary command; sleep_short.pt and sleep_long.pt sleep 1.5 s and 30 s while loading.
Python 3 standard library only; nothing is unpickled here.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pickles  # noqa: E402
from detonations import pkl, run, tensor, torch_zip  # noqa: E402
from pickles import Call, Global  # noqa: E402

LEAVE = """
import os, sys, threading, time
open('/tmp/airlock-warm-marker', 'w').close()
os.environ['AIRLOCK_WARM_MARK'] = '1'
torch = sys.modules.get('torch')
if torch is not None:
    torch.airlock_warm_mark = True
threading.Thread(target=time.sleep, args=(30,), name='airlock-warm-thread', daemon=True).start()
if os.fork() == 0:
    time.sleep(30)
    os._exit(0)
"""

CHECK = """
import os, sys, threading
seen = []
if os.path.exists('/tmp/airlock-warm-marker'):
    seen.append('marker')
if os.environ.get('AIRLOCK_WARM_MARK'):
    seen.append('environment')
torch = sys.modules.get('torch')
if torch is not None and getattr(torch, 'airlock_warm_mark', False):
    seen.append('torch')
if any(t.name == 'airlock-warm-thread' for t in threading.enumerate()):
    seen.append('thread')
if [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid())]:
    seen.append('process')
if seen:
    os.system('true ' + ','.join(seen))
"""


def model(path, *payloads):
    entries = {"w": tensor("0", (2, 2))}
    for i, payload in enumerate(payloads):
        entries[f"p{i}"] = payload
    torch_zip(path, pkl(entries), 1)


def main(out):
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)  # noqa: E731
    model(p("leave_state.pt"), run(LEAVE))
    model(p("check_state.pt"), run(CHECK))
    model(p("leave_then_check.pt"), run(LEAVE), run(CHECK))
    model(p("system.pt"), Call(Global("os", "system"), (pickles.CMD,)))
    model(p("sleep_short.pt"), run("import time\ntime.sleep(1.5)\n"))
    model(p("sleep_long.pt"), run("import time\ntime.sleep(30)\n"))


if __name__ == "__main__":
    args = sys.argv[1:]
    out = args[0]
    if "--canary" in args:
        pickles.retarget(args[args.index("--canary") + 1], int(args[args.index("--port") + 1]))
    main(out)
