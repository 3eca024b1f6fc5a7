"""Sleeper pickles for the clock-world tests: each runs a harmless payload (os.system("true"), an exec the trace
shows) only after a date, or only once a 60-second sleep has passed, as a sleeper agent waits out a sandbox.

Usage: sleepers.py OUT_DIR NOT_BEFORE_EPOCH. Writes date.pkl (acts when time.time() >= NOT_BEFORE_EPOCH) and
delay.pkl (acts when a time.sleep(60) took at least 59 seconds by time.time() and time.monotonic()). Standard library
only; nothing is unpickled here."""
import os
import struct
import sys


def exec_pickle(code):
    # protocol 2: GLOBAL builtins.exec, a tuple of one string, REDUCE.
    data = code.encode()
    return (b"\x80\x02cbuiltins\nexec\nX" + struct.pack("<I", len(data)) + data + b"\x85R.")


def main():
    out, not_before = sys.argv[1], float(sys.argv[2])
    os.makedirs(out, exist_ok=True)
    date = ("import os, time\n"
            "if time.time() >= %r:\n"
            "    os.system('true')\n") % not_before
    delay = ("import os, time\n"
             "t, m = time.time(), time.monotonic()\n"
             "time.sleep(60)\n"
             "if time.time() - t >= 59 and time.monotonic() - m >= 59:\n"
             "    os.system('true')\n")
    for name, code in (("date.pkl", date), ("delay.pkl", delay)):
        with open("%s/%s" % (out, name), "wb") as f:
            f.write(exec_pickle(code))


if __name__ == "__main__":
    main()
