#!/usr/bin/env python3
"""Writes the seed corpora of `make fuzz` into Tests/Fuzz/Corpus/<target>/ (or the directory given).

Seeds come from the test generators (pickles.py, models.py, zips.py) and from a few hand-made files below that reach
what the generators do not (NumPy v2/v3 headers, GGUF arrays, ONNX subgraphs, small ZIP bombs, JSON edge cases).
Python 3 standard library only; like the generators it only WRITES bytes, and every payload is harmless
(`touch /tmp/airlock-pickle-test`). Files over 64 KiB are left out (`-max_len=65536`). Files already in a corpus
folder that this script does not write (inputs kept from fuzzing runs, named by their SHA-1, and `regress-*`) are
kept. Usage: seeds.py [CORPUS_DIR]
"""
import json
import os
import pickle
import struct
import sys
import tempfile
import time
import zipfile
import warnings
import zlib

warnings.filterwarnings("ignore", "Duplicate name")

HERE = os.path.dirname(os.path.abspath(__file__))
GENERATORS = os.path.join(HERE, "..", "Generators")
sys.path.insert(0, GENERATORS)
import models  # noqa: E402

MAX = 64 << 10
TARGETS = ["pickle", "zip", "safetensors", "numpy", "gguf", "onnx", "json", "format"]


def by_suffix(name):
    """The parser targets a generated file seeds, from its name (the format target gets every file)."""
    if name.endswith((".pkl", ".joblib")) or name in ("legacy.pt", "legacy_evil.pt"):
        return ["pickle"]
    if name.endswith((".zip", ".pt", ".pth", ".npz", ".keras", ".bin")):
        return ["zip"]
    if name.endswith(".safetensors"):
        return ["safetensors"]
    if name.endswith(".npy"):
        return ["numpy"]
    if name.endswith(".gguf"):
        return ["gguf"]
    if name.endswith(".onnx"):
        return ["onnx"]
    if name.endswith(".json"):
        return ["json"]
    return []


# --- hand-made seeds ----------------------------------------------------------------------------------------------

def npy_header(version, header):
    if version == 1:
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<I", len(header)) + header


def numpy_seeds():
    def pad(text, prefix):
        total = prefix + len(text) + 1
        return (text + " " * ((64 - total % 64) % 64) + "\n").encode()
    yield "v2_structured.npy", npy_header(2, pad("{'descr': [('a', '<i4'), ('b', '<f8', (2,))], 'fortran_order': False, 'shape': (1,), }", 12)) + bytes(20)
    yield "v3_utf8_field.npy", npy_header(3, pad("{'descr': [('\u00e9t\u00e9', '<u2')], 'fortran_order': True, 'shape': (2, 1), }", 12)) + bytes(4)
    yield "scalar_be.npy", npy_header(1, pad("{'descr': '>f4', 'fortran_order': False, 'shape': (), }", 10)) + bytes(4)
    yield "empty_shape.npy", npy_header(1, pad("{'descr': '<c16', 'fortran_order': False, 'shape': (0, 3), }", 10))
    yield "strings.npy", npy_header(1, pad("{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }", 10)) + bytes(24)
    obj = pickle.dumps([1, "two", (3.0, b"four")], protocol=3)
    yield "object_list.npy", npy_header(1, pad("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }", 10)) + obj
    yield "nested_struct.npy", npy_header(1, pad("{'descr': [('x', [('y', '|u1', (2, 2))]), ('', '|V4')], 'fortran_order': False, 'shape': (1,), }", 10)) + bytes(8)


def safetensors_seeds():
    yield "metadata.safetensors", models.safetensors(
        {"__metadata__": {"format": "pt", "note": "caf\u00e9"}, "a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
         "b": {"dtype": "F8_E4M3", "shape": [0], "data_offsets": [8, 8]}}, bytes(8))
    yield "many_dtypes.safetensors", models.safetensors(
        {name: {"dtype": name, "shape": [1], "data_offsets": [i * 8, i * 8 + size]}
         for i, (name, size) in enumerate([("BOOL", 1), ("U8", 1), ("I16", 2), ("F32", 4), ("F64", 8), ("I64", 8)])},
        bytes(48))
    yield "padded_header.safetensors", struct.pack("<Q", 40) + b'{"x":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}'[:40] + b"\x00"


def gguf_seeds():
    def s(t):
        b = t.encode()
        return struct.pack("<Q", len(b)) + b

    def kv(key, vtype, payload):
        return s(key) + struct.pack("<I", vtype) + payload
    kvs = [
        kv("general.architecture", 8, s("llama")),
        kv("general.alignment", 4, struct.pack("<I", 64)),
        kv("u8", 0, b"\x01"), kv("i8", 1, b"\xff"), kv("u16", 2, b"\x01\x00"), kv("i16", 3, b"\xff\xff"),
        kv("f32", 6, struct.pack("<f", 1.5)), kv("bool", 7, b"\x01"), kv("u64", 10, struct.pack("<Q", 7)),
        kv("i64", 11, struct.pack("<q", -7)), kv("f64", 12, struct.pack("<d", 2.5)),
        kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + s("a") + s("b") + s("{{ bos_token }}")),
        kv("tokenizer.chat_template", 8, s("{% for m in messages %}{{ m.content }}{% endfor %}")),
        kv("nested", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 4, 2) + struct.pack("<II", 1, 2)),
    ]
    tensors = [s("t0") + struct.pack("<I", 2) + struct.pack("<QQ", 4, 2) + struct.pack("<I", 0) + struct.pack("<Q", 0),
               s("t1") + struct.pack("<I", 1) + struct.pack("<Q", 32) + struct.pack("<I", 2) + struct.pack("<Q", 64)]
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + b"".join(tensors)
    head += bytes((64 - len(head) % 64) % 64)
    yield "v3_all_types.gguf", head + bytes(64 + 18)
    v2 = b"GGUF" + struct.pack("<IQQ", 2, 0, 1) + kv("general.architecture", 8, s("gpt2"))
    yield "v2_no_tensors.gguf", v2 + bytes((32 - len(v2) % 32) % 32)


def onnx_seeds():
    f = models.field
    yield "external.onnx", models.onnx(location="weights.bin")
    yield "custom_domain.onnx", models.onnx(domain="com.example.custom")
    # An If node whose then-branch (attribute of type GRAPH) holds another graph; a function (field 25) too.
    inner = f(1, f(1, b"a") + f(2, b"b") + f(4, b"Identity")) + f(2, b"then")
    attr = f(1, b"then_branch") + f(6, inner) + f(20, value=5)
    node = f(1, b"c") + f(2, b"d") + f(4, b"If") + f(5, attr)
    graph = f(1, node) + f(2, b"outer")
    function = f(1, b"fn") + f(4, b"x") + f(5, b"y") + f(7, f(1, b"x") + f(2, b"y") + f(4, b"Relu")) + f(10, b"local")
    yield "subgraph.onnx", f(1, value=9) + f(2, b"seed") + f(8, f(1, b"") + f(2, value=18)) + f(7, graph) + f(25, function)


def zip_seeds():
    import io

    def make(build, **kw):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", **kw) as z:
            build(z)
        return buf.getvalue()
    yield "small_bomb.zip", make(lambda z: z.writestr("archive/data.pkl", bytes(8 << 20)), compression=zipfile.ZIP_DEFLATED)
    yield "duplicate_names.zip", make(lambda z: [z.writestr("archive/data.pkl", pickle.dumps(n, protocol=2)) for n in range(3)])
    yield "comment_prefix.zip", b"#!/bin/sh\nexit 0\n" + make(lambda z: (z.writestr("a", b"a"), setattr(z, "comment", b"note")))
    yield "nested.zip", make(lambda z: z.writestr("inner.zip", make(lambda y: y.writestr("x/data.pkl", pickle.dumps({"k": 1}, protocol=2)))))
    yield "bzip2_member.zip", make(lambda z: z.writestr("b.txt", b"b" * 100), compression=zipfile.ZIP_BZIP2)
    yield "npz_members.zip", make(lambda z: (z.writestr("a.npy", next(numpy_seeds())[1]), z.writestr("b.npy", b"\x93NUMPY")))
    encrypted = bytearray(make(lambda z: z.writestr("enc", b"secret")))
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        at = encrypted.find(sig)
        flags_at = at + (6 if sig == b"PK\x03\x04" else 8)
        encrypted[flags_at] |= 1
    yield "encrypted_flag.zip", bytes(encrypted)


def pickle_seeds():
    value = {"ints": [0, -1, 255, 65535, 2 ** 31, -2 ** 63, 2 ** 100], "float": 1.5, "bytes": b"\x00\xff",
             "text": "caf\u00e9 \\u0000 \n", "tuple": (1, (2, (3,))), "set": {1, 2}, "frozen": frozenset({"a"}),
             "none": None, "bools": [True, False], "bytearray": bytearray(b"ba")}
    for proto in range(0, 6):
        yield "builtins_p%d.pkl" % proto, pickle.dumps(value, protocol=proto)
    shared = [1, 2]
    yield "memo_shared.pkl", pickle.dumps([shared, shared, {"s": shared}], protocol=4)
    yield "nested_bytes.pkl", pickle.dumps({"inner": pickle.dumps(["harmless"], protocol=2)}, protocol=2)


def json_seeds():
    docs = [
        b'{"a":[1,-0,0.5e-10,1E+308,-12345678901234567890],"b":{"c":null,"d":true,"e":false}}',
        b'"\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/\\b\\f\\r"',
        b'[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]',
        b'  \r\n\t{ "key" : "value" , "k2" : [ ] , "k3" : { } }  ',
        "{\"utf8\":\"caf\u00e9 \u4e2d\u6587 \U0001f600\"}".encode(),
        b'{"dup":1,"dup":2}',
        b'[1,2,]',
        b'"\\ud800"',
        b'{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}',
    ]
    for i, doc in enumerate(docs):
        yield "edge_%02d.json" % i, doc


def packed_seeds():
    """Compressed streams, tar and a hand-made 7z (Copy folder, two files), for the format target: the static
    analysis decompresses and unpacks them (docs/formats.md, "Compressed and packed files")."""
    import bz2
    import gzip
    import io
    import lzma
    import tarfile
    sys.path.insert(0, os.path.join(HERE, "..", "Generators"))
    import packed_hostile
    body = pickle.dumps({"w": [1.0, 2.0], "n": "x"}, protocol=4)
    yield "gzip", gzip.compress(body, mtime=0)
    yield "zlib", zlib.compress(body)
    yield "bzip2", bz2.compress(body)
    yield "xz", lzma.compress(body)
    yield "lzma", lzma.compress(body, format=lzma.FORMAT_ALONE)
    yield "zf", b"ZF" + hex(len(body)).encode().ljust(19) + zlib.compress(body)
    t = io.BytesIO()
    with tarfile.open(fileobj=t, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("dir/" + "n" * 120 + ".pkl")
        info.size, info.mtime = len(body), 0
        tf.addfile(info, io.BytesIO(body))
    yield "tar", t.getvalue()
    yield "tar-gz", gzip.compress(t.getvalue(), mtime=0)
    data = b"hello" + body
    h = packed_hostile
    yield "7z-copy", h.seven_zip(data, h.copy_folder([5, len(body)]), h.files(["a.txt", "m.pkl"]), [len(data)])


HAND_MADE = {
    "numpy": numpy_seeds, "safetensors": safetensors_seeds, "gguf": gguf_seeds, "onnx": onnx_seeds,
    "zip": zip_seeds, "pickle": pickle_seeds, "json": json_seeds,
}
# Seeds of the format target alone (the other hand-made seeds go to their parser's target and to format).
FORMAT_ONLY = {"packed": packed_seeds}


def main(out):
    # ZIP members carry their write time (zipfile reads time.time()): pinned, so that the seeds do not change from
    # one run to the next.
    os.environ["TZ"] = "UTC"
    time.tzset()
    time.time = lambda: 1700000000.0
    seeds = {t: {} for t in TARGETS}
    with tempfile.TemporaryDirectory() as tmp:
        # In-process, so that the pinned clock applies to the generators too.
        real_argv, real_stdout = sys.argv, sys.stdout
        try:
            sys.stdout = open(os.devnull, "w")
            for gen in ("pickles", "models", "zips"):
                sys.argv = [gen + ".py", os.path.join(tmp, gen)]
                module = __import__(gen)
                module.main() if gen == "pickles" else module.main(os.path.join(tmp, gen))
        finally:
            sys.stdout.close()
            sys.argv, sys.stdout = real_argv, real_stdout
        for gen in ("pickles", "models", "zips"):
            for root, _, files in os.walk(os.path.join(tmp, gen)):
                for name in sorted(files):
                    with open(os.path.join(root, name), "rb") as fh:
                        data = fh.read()
                    if len(data) > MAX:
                        continue
                    seed = "%s-%s" % (gen, name)
                    for target in by_suffix(name) + ["format"]:
                        seeds[target][seed] = data
    for target, make in HAND_MADE.items():
        for name, data in make():
            assert len(data) <= MAX, name
            seeds[target]["hand-" + name] = data
            seeds["format"]["hand-" + name] = data
    for prefix, make in FORMAT_ONLY.items():
        for name, data in make():
            assert len(data) <= MAX, name
            seeds["format"]["hand-%s-%s" % (prefix, name)] = data
    for target, files in seeds.items():
        folder = os.path.join(out, target)
        os.makedirs(folder, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(folder, name), "wb") as fh:
                fh.write(data)
        print("%-12s %3d seeds, %6d bytes" % (target, len(files), sum(map(len, files.values()))))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "Corpus"))
