#!/usr/bin/python3
"""Writes pickles as the real libraries write them (joblib.dump, pickle.dumps of NumPy scalars and arrays, protocols
2-5), and hostile variants spliced from them, for Tests/AirlockFormatsTests/PickleRealTests.swift.

    /usr/bin/python3 real_pickles.py OUTDIR

Needs Debian's python3-numpy, python3-joblib and python3-sklearn. Nothing is ever unpickled here. Payloads are
harmless: `os.system('touch /tmp/airlock-pickle-test')` written as opcodes, never run.

manifest.json lists, per file: `name`, `file`, `kind`:
  clean    - a real file: the scan must reach its end with no observation and no finding-worthy import;
             `nested` = how many object arrays (nested pickles) it holds
  payload  - os.system must be among the imports (nested ones included)
  observe  - `observation` must be among the observations (nested ones included)
and `joblib` (scan as a joblib file) and `observation` when it applies.
"""
import io
import json
import os
import pickle
import re
import struct
import sys

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
MANIFEST = []
CANARY = "/tmp/airlock-pickle-test"
# Stack-neutral protocol-0 opcodes: push os.system('touch ...'), call it, pop the result.
PAYLOAD = b"cos\nsystem\n(S'touch " + CANARY.encode() + b"'\ntR0"
MARKER = b"AIRLOCK-ARRAY-1!" * 4


def write(name, data, kind, joblib_file=False, **extra):
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(data)
    MANIFEST.append(dict(name=name, file=name, kind=kind, joblib=joblib_file, **extra))


def dump(obj, **kw):
    b = io.BytesIO()
    joblib.dump(obj, b, **kw)
    return b.getvalue()


def splice(data, at, insert):
    return data[:at] + insert + data[at:]


rng = np.random.default_rng(1234)

# --- real joblib files -------------------------------------------------------------------------------------------
X = rng.normal(size=(60, 4))
y = (X[:, 0] > 0).astype(int)
forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
pipe = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]).fit(X, y)
for proto in (2, 3, 4, 5):
    write(f"forest-p{proto}.joblib", dump(forest, protocol=proto), "clean", True, nested=0)
    write(f"pipeline-p{proto}.joblib", dump(pipe, protocol=proto), "clean", True, nested=0)

dtypes = ["?", "i1", "u1", "<i2", ">i2", "<i4", ">u4", "<i8", ">i8", "<f2", ">f4", "<f8", ">f8", "g", "<c8", ">c16",
          "G", "M8[s]", "<m8[ns]", "S7", "<U5", ">U3", "V6", [("a", "<i2"), ("b", ">f8")], ("<f8", (2, 3))]
arrays = {}
for i, dt in enumerate(dtypes):
    d = np.dtype(dt)
    a = np.zeros((3, 4), dtype=d)
    raw = a.view(np.uint8).reshape(-1)
    raw[:] = np.frombuffer(rng.bytes(raw.size), dtype=np.uint8)
    arrays[f"a{i}"] = a
arrays["fortran"] = np.asfortranarray(rng.normal(size=(5, 7)))
arrays["zero-d"] = np.array(3.5)
arrays["empty"] = np.zeros((0, 4))
arrays["empty-obj"] = np.empty((0,), dtype=object)
arrays["big"] = rng.normal(size=(300, 50))
for proto in (0, 1, 2, 3, 4, 5):
    write(f"dtypes-p{proto}.joblib", dump(arrays, protocol=proto), "clean", True, nested=1)
objects = {"o": np.array([1, "two", 3.0, None, (4, 5)], dtype=object), "x": np.arange(10),
           "p": np.array([{"k": [1, 2]}, b"\x80\x02"], dtype=object)}
for proto in (0, 1, 2, 4, 5):
    write(f"objects-p{proto}.joblib", dump(objects, protocol=proto), "clean", True, nested=2)
# Pre-1.2 joblib wrote no alignment byte: the attribute is simply absent.
old = dump({"a": np.arange(5.0)}, protocol=2)
m = re.search(rb"X\x1b\x00\x00\x00numpy_array_alignment_bytesq.K\x10ub", old, re.S)
pad_at = m.end()
old = old[:m.start()] + b"ub" + old[pad_at + 1 + old[pad_at]:]
write("no-alignment.joblib", old, "clean", True, nested=0)


class Unseekable(io.RawIOBase):
    """A file joblib cannot tell() on: it then writes `numpy_array_alignment_bytes: None` and no padding."""

    def __init__(self):
        self.data = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.data += b
        return len(b)

    def tell(self):
        raise io.UnsupportedOperation("tell")


for proto in (2, 4):
    u = Unseekable()
    joblib.dump({"a": np.arange(5.0), "b": np.ones((2, 2), dtype=">i4")}, u, protocol=proto)
    write(f"unaligned-p{proto}.joblib", bytes(u.data), "clean", True, nested=0)

# --- hostile joblib files ----------------------------------------------------------------------------------------
two = {"first": np.frombuffer(MARKER, dtype=np.uint8).copy(), "second": np.arange(6.0)}
for proto in (2, 4):
    base = dump(two, protocol=proto)
    end_first = base.index(MARKER) + len(MARKER)
    write(f"after-first-p{proto}.joblib", splice(base, end_first, PAYLOAD), "payload", True)
    last = dump({"only": np.frombuffer(MARKER, dtype=np.uint8).copy()}, protocol=proto)
    end_last = last.index(MARKER) + len(MARKER)
    write(f"after-last-p{proto}.joblib", splice(last, end_last, PAYLOAD), "payload", True)
    obj = dump({"o": np.array([1, "x"], dtype=object)}, protocol=proto)
    inner = obj.index(b"\x80\x02cnumpy.core.multiarray\n_reconstruct") + 2
    write(f"inside-object-p{proto}.joblib", splice(obj, inner, PAYLOAD), "payload", True)
# Raw bytes that are opcodes, behind a wrapper that declares no bytes: joblib runs them.
hidden = dump({"h": np.frombuffer(PAYLOAD + b"N0", dtype=np.uint8).copy()}, protocol=4)
shape = b"K" + bytes([len(PAYLOAD) + 2]) + b"\x85"
assert hidden.count(shape) == 1
write("shape-shrunk.joblib", hidden.replace(shape, b"K\x00\x85"), "payload", True)
# Array bytes that are opcodes: joblib.load skips them, pickle.load of the same file runs them.
u = Unseekable()
joblib.dump({"h": np.frombuffer(PAYLOAD, dtype=np.uint8).copy()}, u, protocol=2)
write("pickle-load-runs-array.joblib", bytes(u.data), "payload", True)
# A wrapper made by calling the class (REDUCE runs __init__, which sets shape and dtype): joblib reads 5 array bytes
# after the BUILD, a BINBYTES header that a reader not skipping them would take the payload into.
made = (b"\x80\x02cjoblib.numpy_pickle\nNumpyArrayWrapper\n(cnumpy\nndarray\nK\x05\x85X\x01\x00\x00\x00C"
        b"cnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xff"
        b"J\xff\xff\xff\xffK\x00tb\x89NtR}b" + b"B" + struct.pack("<I", len(PAYLOAD)) + PAYLOAD + b".")
write("wrapper-called.joblib", made, "payload", True)
# A wrapper that declares more bytes than the file has.
big = dump({"b": np.arange(4.0)}, protocol=4)
write("shape-grown.joblib", big.replace(b"K\x04\x85", b"J\x00\x00\x00\x40\x85"), "observe", True,
      observation="pickle.truncated")
# A dtype whose state flags say it holds objects: joblib then reads a nested pickle, not raw bytes.
flagged = dump({"f": np.zeros(2)}, protocol=2)
state = b"K\x03X\x01\x00\x00\x00<q"
i = flagged.index(state)
j = flagged.index(b"K\x00t", i)
flagged = flagged[:j] + b"K?t" + flagged[j + 3:]
# Replace the padding and the 16 zero bytes with a nested pickle that carries the payload (object arrays have no
# padding: pickle.load starts right after the BUILD).
k = flagged.index(b"\x00" * 16, j)
pad = k
while flagged[pad - 1] == 0xFF:
    pad -= 1
pad -= 1
nested = b"\x80\x02" + PAYLOAD + b"N."
write("dtype-flags-object.joblib", flagged[:pad] + nested + flagged[k + 16:], "payload", True)

# --- NumPy scalars and arrays, every dtype, protocols 2-5 ---------------------------------------------------------
scalar_sets = {
    "f2-all": np.arange(65536, dtype=np.uint16).view(np.float16),
    "i2-all": np.arange(65536, dtype=np.uint16).view(np.int16),
}
for code in ["?", "i1", "u1", "u2", "i4", "u4", "i8", "u8", "f4", "f8", "g", "c8", "c16", "G", "M8[us]", "m8[s]",
             "S3", "U2"]:
    d = np.dtype(code)
    scalar_sets[code] = np.frombuffer(rng.bytes(d.itemsize * 1500), dtype=d)
for key, values in scalar_sets.items():
    safe = key.replace("[", "").replace("]", "")
    for proto in (2, 3, 4, 5):
        write(f"scalars-{safe}-p{proto}.pkl", pickle.dumps(list(values[:4096]), protocol=proto), "clean", nested=0)
        write(f"array-{safe}-p{proto}.pkl", pickle.dumps(values[:4096].copy(), protocol=proto), "clean", nested=0)

# --- frames --------------------------------------------------------------------------------------------------------
# SHORT_BINUNICODE of 28 bytes whose length byte ends a 3-byte frame: pickle.loads reads the string in place and
# stops; a file reader (torch.load, pickle.load of BytesIO) takes the string from after the frame, then runs the call.
frame = b"\x80\x04\x95" + struct.pack("<Q", 3) + b"\x8c\x1cA"
tail = b"x" * 27 + b".0" + PAYLOAD.replace(b"R0", b"R") + b"."
write("frame-straddle.pkl", frame + tail, "payload", observation="pickle.frame-divergence")
nested_frame = b"\x80\x04\x95" + struct.pack("<Q", 12) + b"\x95" + struct.pack("<Q", 2) + b"K\x01."
write("frame-in-frame.pkl", nested_frame, "observe", observation="pickle.frame-divergence")

# --- PROTO ----------------------------------------------------------------------------------------------------------
write("proto-twice.pkl", b"\x80\x02\x80\x03K\x01.", "observe", observation="pickle.proto-anomaly")
write("proto-late.pkl", b"K\x01\x80\x02.", "observe", observation="pickle.proto-anomaly")
write("proto-late-6.pkl", b"\x80\x02" + PAYLOAD + b"\x80\x06N.", "payload", observation="pickle.unsupported-protocol")

with open(os.path.join(OUT, "manifest.json"), "w") as f:
    json.dump(MANIFEST, f, indent=1)
