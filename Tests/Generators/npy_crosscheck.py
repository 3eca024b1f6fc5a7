#!/usr/bin/env python3
"""Writes .npy files with numpy itself, for NumPyTests' optional cross-check.

    python3 Tests/Generators/npy_crosscheck.py /tmp/npy-samples
    AIRLOCK_NPY_SAMPLES=/tmp/npy-samples swift test --filter NumPy

Needs numpy; the test suite does not (it builds its samples by hand). Files named object*.npy hold object arrays.
"""
import os
import sys

import numpy as np

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/npy-samples"
os.makedirs(out, exist_ok=True)
samples = {
    "f4_matrix": np.arange(12, dtype="<f4").reshape(3, 4),
    "f8_scalar": np.array(3.5),
    "bool": np.array([True, False]),
    "i8_empty": np.zeros((0, 3), dtype="<i8"),
    "u2_big_endian": np.arange(6, dtype=">u2").reshape(2, 3),
    "fortran": np.asfortranarray(np.arange(6, dtype="<i4").reshape(2, 3)),
    "f2": np.ones(5, dtype="<f2"),
    "c16": np.ones(2, dtype="<c16"),
    "longdouble": np.ones(2, dtype=np.longdouble),
    "unicode": np.array(["ab", "cde"]),
    "bytes": np.array([b"ab", b"cde"]),
    "datetime": np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[ns]"),
    "timedelta": np.array([1, 2], dtype="timedelta64[25s]"),
    "void": np.zeros(2, dtype="V7"),
    "structured": np.zeros(3, dtype=[("id", "<i4"), ("pos", "<f8", (3,)), ("name", "U4")]),
    "aligned": np.zeros(2, dtype=np.dtype([("a", "u1"), ("b", "<f8")], align=True)),
    "nested": np.zeros(2, dtype=[("a", [("x", "<f4"), ("y", "<f4")], (2,)), ("b", "u1")]),
    "titled": np.zeros(2, dtype=np.dtype({"names": ["a"], "formats": ["<i2"], "titles": ["A title"]})),
    "unicode_field": np.zeros(1, dtype=[("é", "<i4")]),
    "object": np.array([1, "two", None], dtype=object),
    "object_structured": np.zeros(2, dtype=[("a", "<f4"), ("b", "O")]),
}
for name, arr in samples.items():
    np.save(os.path.join(out, name + ".npy"), arr, allow_pickle=True)
# Explicit format versions.
with open(os.path.join(out, "v2.npy"), "wb") as f:
    np.lib.format.write_array(f, np.arange(4, dtype="<f8"), version=(2, 0))
with open(os.path.join(out, "v3_unicode_field.npy"), "wb") as f:
    np.lib.format.write_array(f, np.zeros(1, dtype=[("é", "<i4")]), version=(3, 0))
print(out, len(os.listdir(out)), "files")
