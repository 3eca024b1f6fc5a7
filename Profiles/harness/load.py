"""Airlock's loader harness, entry point: python3 -I -S load.py FORMAT MODEL [--no-probe].

The harness itself is the module airlock_harness beside this file, so that its bytecode can be compiled once
(`make build` runs `python3 -m compileall` on this directory) instead of on every detonation.
"""
import sys

sys.path.insert(0, __file__.rpartition("/")[0] or ".")
from airlock_harness import main  # noqa: E402

sys.exit(main(sys.argv))
