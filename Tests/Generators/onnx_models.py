#!/usr/bin/python3
"""Writes ONNX models with the real onnx package of the Python that runs it (Debian's onnx 1.12 under
/usr/bin/python3, the current onnx under .build-deps/onnx), benign and hostile, each in a folder of its own as a
consumer receives it. Writes expectations.json: per model, the verdict a static scan must give, the rule that must
prove it, and whether onnx.load(load_external_data=True) of the folder reads a file outside it.

    PYTHON onnx_models.py OUTDIR [--secret PATH] [--detonation]

Nothing is run: the hostile models only name files (a secret the test owns, /etc/hostname) as external data.
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

OUT = sys.argv[1]
SECRET = sys.argv[sys.argv.index("--secret") + 1] if "--secret" in sys.argv else "/etc/hostname"
EXPECT = []


def expect(folder, verdict, rule=None, outside=False):
    EXPECT.append({"folder": folder, "file": "model.onnx", "verdict": verdict, "rule": rule, "outside": outside,
                   "onnx": onnx.__version__})


def folder(name):
    path = os.path.join(OUT, name)
    os.makedirs(path, exist_ok=True)
    return path


def external(name, location, offset=None, length=None, dims=(2,)):
    """A float tensor whose data onnx reads from `location` relative to the model's folder."""
    t = numpy_helper.from_array(np.zeros(dims, dtype=np.float32), name)
    set_external_data(t, location, offset, length)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    return t


def graph(nodes, initializers=(), name="g", sparse=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    return helper.make_graph(nodes, name, [x], [y], initializer=list(initializers), sparse_initializer=list(sparse))


def save(path, model):
    # Written as built: onnx.save would try to move tensors into files of its own.
    with open(os.path.join(path, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())


def model(g, **kw):
    m = helper.make_model(g, producer_name="airlock-tests", **kw)
    return m


def main():
    os.makedirs(OUT, exist_ok=True)
    add = helper.make_node("Add", ["x", "w"], ["y"])
    w = numpy_helper.from_array(np.array([1.0, 2.0], dtype=np.float32), "w")

    save(folder("clean"), model(graph([add], [w])))
    expect("clean", "clean")

    # External data next to the model, written by onnx itself.
    d = folder("external-inside")
    big = numpy_helper.from_array(np.arange(4096, dtype=np.float32)[:2].copy(), "w")
    m = model(graph([add], [big]))
    onnx.save_model(m, os.path.join(d, "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    expect("external-inside", "clean")

    # External data in a subfolder of the model's folder: still inside.
    d = folder("external-subfolder")
    os.makedirs(os.path.join(d, "weights"), exist_ok=True)
    with open(os.path.join(d, "weights", "w.data"), "wb") as f:
        f.write(np.array([1.0, 2.0], dtype=np.float32).tobytes())
    save(d, model(graph([add], [external("w", "weights/w.data", 0, 8)])))
    expect("external-subfolder", "clean")

    save(folder("external-dotdot"), model(graph([add], [external("w", "../../../../../../.." + SECRET, 0, 8)])))
    expect("external-dotdot", "malicious", "onnx.external-data-traversal", outside=True)

    save(folder("external-absolute"), model(graph([add], [external("w", SECRET, 0, 8)])))
    expect("external-absolute", "malicious", "onnx.external-data-traversal", outside=True)

    # A constant in the then-branch of an If: a subgraph's node attribute.
    const = helper.make_node("Constant", [], ["c"], value=external("c", "../secret.bin"))
    then_g = helper.make_graph([const], "then", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2])])
    cond = numpy_helper.from_array(np.array(True), "cond")
    if_node = helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=then_g)
    save(folder("external-subgraph"), model(graph([if_node], [cond])))
    expect("external-subgraph", "malicious", "onnx.external-data-traversal")

    # A model-local function whose Constant reads an absolute path (functions: IR >= 8).
    fconst = helper.make_node("Constant", [], ["k"], value=external("k", SECRET))
    fadd = helper.make_node("Add", ["a", "k"], ["b"])
    fn = helper.make_function("custom.fn", "AddK", ["a"], ["b"], [fconst, fadd],
                              [helper.make_opsetid("", 13)])
    call = helper.make_node("AddK", ["x"], ["y"], domain="custom.fn")
    save(folder("external-function"), model(graph([call]), functions=[fn],
                                            opset_imports=[helper.make_opsetid("", 13),
                                                           helper.make_opsetid("custom.fn", 1)]))
    expect("external-function", "malicious", "onnx.external-data-traversal")

    # A sparse initializer whose values are external.
    values = external("sv", "/etc/hostname", dims=(1,))
    indices = numpy_helper.from_array(np.array([0], dtype=np.int64), "si")
    sparse = helper.make_sparse_tensor(values, indices, [2])
    save(folder("external-sparse"), model(graph([add], [w], sparse=[sparse])))
    expect("external-sparse", "malicious", "onnx.external-data-traversal")

    # A training_info graph's initializer.
    tg = helper.make_graph([], "init", [], [], initializer=[external("t", "../t.bin")])
    m = model(graph([add], [w]))
    m.training_info.append(helper.make_training_info(tg, [], tg, []))
    save(folder("external-training"), m)
    expect("external-training", "malicious", "onnx.external-data-traversal")

    # A name inside the folder that is a symbolic link out of it.
    d = folder("external-symlink")
    os.symlink(SECRET, os.path.join(d, "w.data"))
    save(d, model(graph([add], [external("w", "w.data", 0, 8)])))
    expect("external-symlink", "malicious", "onnx.external-data-symlink", outside=True)

    d = folder("external-missing")
    save(d, model(graph([add], [external("w", "nothere.data", 0, 8)])))
    expect("external-missing", "suspicious", "onnx.external-data-missing")

    d = folder("external-out-of-file")
    with open(os.path.join(d, "w.data"), "wb") as f:
        f.write(b"\0" * 8)
    save(d, model(graph([add], [external("w", "w.data", 4096, 8)])))
    expect("external-out-of-file", "suspicious", "onnx.external-data-out-of-file")

    custom = helper.make_node("Evil", ["x"], ["y"], domain="com.example.ops")
    save(folder("custom-domain"), model(graph([custom]), opset_imports=[helper.make_opsetid("", 13),
                                                                        helper.make_opsetid("com.example.ops", 1)]))
    expect("custom-domain", "suspicious", "onnx.custom-domain")

    with open(os.path.join(OUT, "expectations.json"), "w") as f:
        json.dump(EXPECT, f, indent=1)


def detonations():
    """`--detonation`: folders for the probe's detonations (no expectations file). `clean` (no external data),
    `external-inside` (external data in the folder, written by onnx), `climb` (a tensor in `weights/w.bin` and one
    whose location climbs out through `weights/` to SECRET: onnx 1.12 strips leading `../` only, so this one reads
    the real path), `dotdot` (leading `../` to SECRET), and `runs` (MatMul + Relu on an input with a symbolic batch
    dimension, weights external: inference runs on it), `big` (over 16 MiB, a bias external). Standard ONNX operators cannot run code or touch files."""
    os.makedirs(OUT, exist_ok=True)
    add = helper.make_node("Add", ["x", "w"], ["y"])
    w = numpy_helper.from_array(np.array([1.0, 2.0], dtype=np.float32), "w")
    save(folder("clean"), model(graph([add], [w])))

    d = folder("external-inside")
    onnx.save_model(model(graph([add], [w])), os.path.join(d, "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)

    climb = "weights/" + "../" * 12 + SECRET.lstrip("/")
    d = folder("climb")
    os.makedirs(os.path.join(d, "weights"), exist_ok=True)
    with open(os.path.join(d, "weights", "w.bin"), "wb") as f:
        f.write(np.array([1.0, 2.0], dtype=np.float32).tobytes())
    add2 = helper.make_node("Add", ["y0", "v"], ["y"])
    first = helper.make_node("Add", ["x", "w"], ["y0"])
    save(d, model(graph([first, add2], [external("w", "weights/w.bin", 0, 8), external("v", climb, 0, 8)])))

    d = folder("dotdot")
    save(d, model(graph([add], [external("w", "../" * 8 + SECRET.lstrip("/"), 0, 8)])))

    d = folder("runs")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    m = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "m")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "m"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
                          "runs", [x], [y], initializer=[m])
    onnx.save_model(helper.make_model(g, producer_name="airlock-tests", opset_imports=[helper.make_opsetid("", 13)]),
                    os.path.join(d, "model.onnx"), save_as_external_data=True, location="m.bin", size_threshold=0)

    # Bigger than the harness copies into the sandbox's /tmp (16 MiB): read from its descriptor, with its folder's
    # external file (a bias) all the same.
    d = folder("big")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2048])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2304])
    m = numpy_helper.from_array(np.full((2048, 2304), 0.5, dtype=np.float32), "m")
    with open(os.path.join(d, "b.bin"), "wb") as f:
        f.write(np.ones(2304, dtype=np.float32).tobytes())
    g = helper.make_graph([helper.make_node("MatMul", ["x", "m"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
                          "big", [x], [y], initializer=[m, external("b", "b.bin", 0, 2304 * 4, dims=(2304,))])
    save(d, helper.make_model(g, producer_name="airlock-tests", opset_imports=[helper.make_opsetid("", 13)]))


if "--detonation" in sys.argv:
    detonations()
else:
    main()
