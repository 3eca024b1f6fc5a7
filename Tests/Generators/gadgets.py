#!/usr/bin/python3
"""Writes gadget pickles for Airlock's pickle import rules, plus manifest.json saying what each should be judged.

    gadgets.py OUTDIR

Python 3 standard library (and NumPy, for the benign samples) only. This script only WRITES bytes: the gadget pickles
are written opcode by opcode, so it imports none of the modules they name, and it never unpickles anything. Every
call's arguments are harmless strings ('true', '/tmp/airlock-gadget-test', '127.0.0.1').

Samples:
- one per denylist entry of Sources/AirlockAnalysis/PickleImportList.swift, read from the Swift file: a call to the
  entry (or to an attribute of it, for a module) with a harmless argument, at protocols 0 (GLOBAL) and 4
  (STACK_GLOBAL, the name split at its last dot), expected at the entry's severity;
- one per allowlist entry, the global imported alone (no call), expected clean;
- bypass attempts (Python 2 aliases, dotted chains, `__dict__`, trailing dots, case, submodules), with the severity
  they must get;
- real pickles of benign objects made with pickle.dumps, expected clean.
"""

import collections
import collections.abc
import datetime
import decimal
import fractions
import json
import os
import pickle
import re
import struct
import sys
import __future__

HERE = os.path.dirname(os.path.abspath(__file__))
LIST = os.path.join(HERE, "..", "..", "Sources", "AirlockAnalysis", "PickleImportList.swift")
ENTRY = re.compile(r'^\s*\.(safe|critical|high)\("([^"]+)",')
ARG = "/tmp/airlock-gadget-test"


def unicode4(s):
    b = s.encode("utf-8")
    return pickle.SHORT_BINUNICODE + bytes([len(b)]) + b if len(b) < 256 else pickle.BINUNICODE + struct.pack("<I", len(b)) + b


def call_p4(module, name, args=(ARG,), call=True):
    """Protocol 4: STACK_GLOBAL with memoized strings, then REDUCE on a tuple of strings."""
    out = b"\x80\x04" + unicode4(module) + pickle.MEMOIZE + unicode4(name) + pickle.MEMOIZE + pickle.STACK_GLOBAL
    out += pickle.MEMOIZE
    if call:
        out += pickle.MARK + b"".join(unicode4(a) for a in args) + pickle.TUPLE + pickle.REDUCE
    return out + pickle.STOP


def call_p0(module, name, args=(ARG,), call=True):
    """Protocol 0: GLOBAL 'module\\nname\\n', then REDUCE on a tuple of text strings."""
    out = pickle.GLOBAL + module.encode("utf-8") + b"\n" + name.encode("utf-8") + b"\n"
    if call:
        out += pickle.MARK
        for a in args:
            out += pickle.UNICODE + a.encode("raw-unicode-escape") + b"\n"
        out += pickle.TUPLE + pickle.REDUCE
    return out + pickle.STOP


def split(path):
    module, _, name = path.rpartition(".")
    return (module, name) if module else (path, "gadget")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    manifest = []

    def add(label, data, expect, what):
        file = "%04d.pkl" % len(manifest)
        with open(os.path.join(out, file), "wb") as f:
            f.write(data)
        manifest.append({"name": label, "file": file, "expect": expect, "global": what})

    entries = []
    with open(LIST, encoding="utf-8") as f:
        for line in f:
            m = ENTRY.match(line)
            if m:
                entries.append((m.group(1), m.group(2)))
    for kind, path in entries:
        if kind == "safe":
            module, name = split(path)
            add("safe " + path, call_p4(module, name, call=False), "clean", path)
            continue
        # A module entry is exercised through an attribute under it; a callable entry is called.
        module, name = split(path) if "." in path else (path, "gadget")
        add("%s p4 %s" % (kind, path), call_p4(module, name), kind, path)
        add("%s p0 %s" % (kind, path), call_p0(module, name), kind, path)

    bypasses = [
        # Python 2 names, mapped by _compat_pickle at protocols 0-2.
        ("__builtin__", "eval", "critical"), ("__builtin__", "getattr", "critical"),
        ("__builtin__", "reduce", "high"), ("__builtin__", "set", "clean"), ("copy_reg", "_reconstructor", "clean"),
        ("httplib", "HTTPConnection", "critical"), ("urllib2", "urlopen", "critical"),
        ("urllib", "urlretrieve", "critical"), ("commands", "getoutput", "critical"), ("cPickle", "loads", "critical"),
        ("SocketServer", "TCPServer", "critical"), ("SimpleHTTPServer", "test", "critical"),
        ("Tkinter", "Tcl", "critical"), ("thread", "start_new_thread", "high"),
        ("itertools", "imap", "high"), ("_socket", "fromfd", "critical"),
        # Dotted protocol-4 chains.
        ("builtins", "len.__self__.eval", "critical"), ("builtins", "__dict__.get", "critical"),
        ("collections", "OrderedDict.__init__.__globals__", "critical"),
        ("torch.nn.modules.module", "os.system", "critical"), ("numpy", "os.system", "critical"),
        ("mymodel.layers", "sys.modules.get", "critical"), ("mymodel", "subprocess.Popen", "critical"),
        ("logging", "FileHandler.__init__", "critical"), ("os.path", "join", "critical"),
        ("pathlib", "Path.write_text", "critical"), ("pathlib", "PosixPath.write_bytes", "critical"),
        ("numpy", "ndarray.tofile", "critical"), ("mymodel", "Net.system", "critical"),
        ("builtins", "getattr.__call__", "critical"), ("builtins", "object.__subclasses__", "critical"),
        # Submodules of denylisted modules.
        ("idlelib.pyshell", "ModifiedInterpreter.runcode", "critical"), ("idlelib.run", "Executive.runcode", "critical"),
        ("torch.utils.cpp_extension", "load_inline", "critical"), ("lib2to3.pgen2.grammar", "Grammar.loads", "critical"),
        ("pydoc", "pipepager", "critical"), ("pydoc", "tempfilepager", "critical"),
        ("test.support.script_helper", "assert_python_ok", "critical"), ("uuid", "_get_command_stdout", "critical"),
        ("_aix_support", "_read_cmd_output", "critical"), ("_osx_support", "_read_output", "critical"),
        ("logging.handlers", "SocketHandler", "critical"), ("http.client", "HTTPConnection", "critical"),
        ("_xxsubinterpreters", "run_string", "critical"), ("_interpreters", "run_string", "critical"),
        ("torch._inductor.codecache", "compile_file", "critical"), ("torch.utils.collect_env", "run", "critical"),
        ("torch.serialization", "load", "critical"), ("torch._dynamo.guards", "GuardBuilder.get", "critical"),
        ("numpy.testing._private.utils", "runstring", "critical"), ("asyncio.subprocess", "create_subprocess_shell", "critical"),
        ("ensurepip", "_run_pip", "critical"), ("multiprocessing.util", "spawnv_passfds", "critical"),
        ("torch.hub", "load", "critical"), ("torch.jit.unsupported_tensor_ops", "execWrapper", "critical"),
        ("a.b.__main__", "main", "high"), ("pkg", "__main__", "high"),
        # Trailing dots, white space, case.
        ("os.", "system", "critical"), ("os", "system.", "critical"), ("os", ".system", "critical"),
        ("os ", "system", "critical"), ("OS", "listdir", "high"), ("Subprocess", "Popen", "high"),
        ("Builtins", "Eval", "high"),
        # Names that are harmless.
        ("builtins", "len", "clean"), ("builtins", "abs", "clean"), ("__future__", "annotations", "clean"),
        ("collections.abc", "Mapping", "clean"), ("builtins", "ValueError", "clean"),
        ("sklearn.tree._classes", "DecisionTreeClassifier", "medium"),
        ("collections", "OrderedDict.fromkeys", "medium"),
    ]
    for module, name, expect in bypasses:
        call = expect not in ("clean",)
        add("bypass p4 %s.%s" % (module, name), call_p4(module, name, call=call), expect, module + "." + name)
        add("bypass p0 %s.%s" % (module, name), call_p0(module, name, call=call), expect, module + "." + name)

    # Real pickles of benign objects: whatever the pickler writes must be clean.
    import numpy
    import logging
    import pathlib
    import uuid

    benign = {
        "ordered dict": collections.OrderedDict(a=1), "defaultdict": collections.defaultdict(list),
        "deque": collections.deque([1]), "counter": collections.Counter("ab"), "set": {1, 2},
        "frozenset": frozenset([1]), "bytearray": bytearray(b"ab"), "slice": slice(1, 2), "complex": 1j,
        "ellipsis": Ellipsis, "len": len, "abs": abs, "future annotations": __future__.annotations,
        "abc mapping": collections.abc.Mapping, "value error": ValueError("x"),
        "datetime": datetime.datetime(2024, 1, 1), "timedelta": datetime.timedelta(1), "decimal": decimal.Decimal("1.5"),
        "fraction": fractions.Fraction(1, 3), "uuid": uuid.UUID(int=1), "path": pathlib.PurePosixPath("a/b"),
        "logger": logging.getLogger("airlock.test"), "ndarray": numpy.arange(3, dtype=numpy.float32),
        "numpy scalar": numpy.float64(1.5), "random state": numpy.random.RandomState(0),
        "generator": numpy.random.default_rng(0), "bytes": b"ab",
    }
    for label, obj in benign.items():
        for proto in (0, 2, 4):
            try:
                data = pickle.dumps(obj, protocol=proto)
            except Exception:
                continue
            # Protocols 0 and 1 rebuild plain classes with copyreg._reconstructor(cls, object, state): builtins.object
            # alone is inert (chains through it are judged), so those pickles are clean too.
            expect = "clean"
            add("benign p%d %s" % (proto, label), data, expect, label)

    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
