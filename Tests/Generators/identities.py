"""Pickles for the per-sandbox identity tests (SandboxIdentityTests): models that spend what the kernel counts per
host uid, and models that notice when a neighbour did. Harmless: the only 'payload' is an exec of /bin/true, the sign
a checker leaves when it found its budget spent; nothing leaves the sandbox.

Usage: identities.py OUT_DIR. Writes:
  noop.pkl        does nothing (a detonation as short as one can be).
  spin.pkl        busy-waits 6 s (by the monotonic clock, not a sleep a world could skip), then returns.
  pipe_hog.pkl    grows its pipes to 1 MiB each until the kernel refuses (fs.pipe-user-pages-soft, per host uid),
                  makes a few more, and holds them 10 s.
  pipe_check.pkl  for 8 s, makes a fresh pipe every 50 ms; if one is smaller than the default 64 KiB (its uid's pipe
                  budget is spent), execs /bin/true at once.
  fork_hog.pkl    forks until fork fails (children wait 10 s), then holds 10 s.
  fork_check.pkl  for 8 s, forks a child that exits at once, every 50 ms; if a fork fails, execs /bin/true.
Standard library only; nothing is unpickled here."""
import os
import struct
import sys


def exec_pickle(code):
    # protocol 2: GLOBAL builtins.exec, a tuple of one string, REDUCE.
    data = code.encode()
    return b"\x80\x02cbuiltins\nexec\nX" + struct.pack("<I", len(data)) + data + b"\x85R."


def hold(seconds):
    return ("import time\n"
            "_t = time.monotonic()\n"
            "while time.monotonic() - _t < %d:\n"
            "    pass\n") % seconds


SPIN = hold(6)

PIPE_HOG = ("import fcntl, os\n"
            "_keep = []\n"
            "for _ in range(100):\n"
            "    _r, _w = os.pipe()\n"
            "    _keep.append((_r, _w))\n"
            "    try:\n"
            "        fcntl.fcntl(_w, 1031, 1 << 20)\n"  # F_SETPIPE_SZ
            "    except OSError:\n"
            "        break\n"
            "for _ in range(4):\n"
            "    _keep.append(os.pipe())\n") + hold(10)

PIPE_CHECK = ("import fcntl, os, time\n"
              "_t = time.monotonic()\n"
              "while time.monotonic() - _t < 8:\n"
              "    _r, _w = os.pipe()\n"
              "    _size = fcntl.fcntl(_w, 1032)\n"  # F_GETPIPE_SZ
              "    os.close(_r)\n"
              "    os.close(_w)\n"
              "    if _size < 65536:\n"
              "        os.execv('/bin/true', ['true'])\n"
              "    _n = time.monotonic()\n"
              "    while time.monotonic() - _n < 0.05:\n"
              "        pass\n")

FORK_HOG = ("import os, time\n"
            "for _ in range(100000):\n"
            "    try:\n"
            "        _pid = os.fork()\n"
            "    except OSError:\n"
            "        break\n"
            "    if _pid == 0:\n"
            "        _t = time.monotonic()\n"
            "        while time.monotonic() - _t < 10:\n"
            "            time.sleep(0.5)\n"
            "        os._exit(0)\n") + hold(10)

FORK_CHECK = ("import os, time\n"
              "_t = time.monotonic()\n"
              "while time.monotonic() - _t < 8:\n"
              "    try:\n"
              "        _pid = os.fork()\n"
              "    except OSError:\n"
              "        os.execv('/bin/true', ['true'])\n"
              "    if _pid == 0:\n"
              "        os._exit(0)\n"
              "    os.waitpid(_pid, 0)\n"
              "    _n = time.monotonic()\n"
              "    while time.monotonic() - _n < 0.05:\n"
              "        pass\n")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, code in (("noop.pkl", "_x = 1\n"), ("spin.pkl", SPIN), ("pipe_hog.pkl", PIPE_HOG), ("pipe_check.pkl", PIPE_CHECK),
                       ("fork_hog.pkl", FORK_HOG), ("fork_check.pkl", FORK_CHECK)):
        with open(os.path.join(out, name), "wb") as f:
            f.write(exec_pickle(code))


if __name__ == "__main__":
    main()
