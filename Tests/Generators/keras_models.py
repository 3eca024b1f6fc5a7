#!/usr/bin/env python3
"""Writes Keras models for Airlock's Keras tests, plus expectations.json (path, verdict `airlock scan` must give,
rules, and `codeNames`: names the Lambda's code must be reported with).

- `.keras` (Keras 3 zip: config.json, metadata.json, model.weights.h5) with a Lambda whose function is Keras 3's
  `{"class_name": "__lambda__", "config": {"code": base64(marshal.dumps(code))}}`;
- legacy HDF5 `.h5` written with h5py: the root group's `model_config` attribute (Keras 2's JSON, the Lambda's
  function as `func_dump`'s `[base64, defaults, closure]`), as a variable-length string and as a fixed-length one;
- benign and TFOpLambda / custom-object variants.

The code objects are compiled here and marshalled, never run. Payloads are harmless (`touch CANARY`).

    keras_models.py OUTDIR [--canary PATH] [--port N]
"""
import base64
import json
import marshal
import os
import sys
import zipfile

EXPECT = []


def expect(path, verdict, rules=(), code_names=()):
    EXPECT.append({"path": path, "verdict": verdict, "rules": list(rules), "codeNames": list(code_names)})


def code_of(source):
    return compile(source, "<lambda>", "eval").co_consts[0]


def dense(name="dense"):
    return {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
            "config": {"name": name, "units": 2, "activation": "linear"}}


def lambda3(code):
    return {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
            "config": {"name": "lambda", "function": {"class_name": "__lambda__", "config": {
                "code": base64.b64encode(marshal.dumps(code)).decode(), "defaults": None, "closure": None}},
                "arguments": {}}}


def sequential3(layers):
    return {"module": "keras", "class_name": "Sequential", "registered_name": None,
            "config": {"name": "sequential", "layers": layers}}


def python_json(config):
    """JSON only Python's json reads: a NaN note in every object, the class names spelled with \\u escapes."""
    def walk(node):
        if isinstance(node, dict):
            node["note"] = float("nan")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(config)
    return json.dumps(config).replace('"Lambda"', '"\\u004cambda"').replace('"__lambda__"', '"\\u005f_lambda__"')


def keras_zip(path, config, text=None, encoding="utf-8"):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.6.0", "date_saved": "2024-10-01@00:00:00"}))
        z.writestr("config.json", (text if text is not None else json.dumps(config)).encode(encoding))
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(64))


def lambda2(code):
    raw = base64.encodebytes(marshal.dumps(code)).decode("ascii")  # Keras 2's func_dump: with newlines
    return {"class_name": "Lambda", "config": {"name": "lambda", "trainable": True, "dtype": "float32",
                                               "function": [raw, None, None], "function_type": "lambda",
                                               "module": "__main__", "output_shape": None,
                                               "output_shape_type": "raw", "output_shape_module": None,
                                               "arguments": {}}}


def sequential2(layers):
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}


def h5(path, config, fixed=False, compact=False, text=None):
    import h5py
    import numpy as np
    with h5py.File(path, "w") as f:
        if text is None:
            text = json.dumps(config, separators=(",", ":") if compact else None)
        if fixed:
            f.attrs.create("model_config", np.bytes_(text.encode()))
        else:
            f.attrs["model_config"] = text
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        g = f.create_group("model_weights")
        g.create_dataset("dense/kernel:0", data=np.zeros((2, 2), dtype="float32"))


def main():
    args = sys.argv[1:]
    out = args[0]
    canary = args[args.index("--canary") + 1] if "--canary" in args else "/tmp/airlock-keras-test"
    os.makedirs(out, exist_ok=True)
    payload = code_of(f"lambda x: __import__('os').system('touch {canary}') or x")
    harmless = code_of("lambda x: x * 2.0")
    keras_zip(f"{out}/lambda.keras", sequential3([dense(), lambda3(payload)]))
    expect("lambda.keras", "malicious", ["keras.lambda"], ["os", "system"])
    keras_zip(f"{out}/harmless_lambda.keras", sequential3([lambda3(harmless)]))
    expect("harmless_lambda.keras", "malicious", ["keras.lambda"])
    keras_zip(f"{out}/benign.keras", sequential3([dense(), dense("dense_1")]))
    expect("benign.keras", "clean")
    keras_zip(f"{out}/tfoplambda.keras", sequential3([dense(), {
        "module": "keras.layers", "class_name": "TFOpLambda",
        "config": {"name": "tf.io.write_file", "function": "io.write_file"}}]))
    expect("tfoplambda.keras", "suspicious", ["keras.code-layer"])
    keras_zip(f"{out}/custom.keras", sequential3([dense(), {
        "module": "mypackage.layers", "class_name": "Evil", "registered_name": "mypackage>Evil", "config": {}}]))
    expect("custom.keras", "suspicious", ["keras.custom-object"])
    # keras imports `module` and builds `class_name` from it (CVE-2025-1550): a denylisted pair is judged as a pickle's.
    keras_zip(f"{out}/dangerous_object.keras", sequential3([dense(), {
        "module": "builtins", "class_name": "exec", "config": {}}]))
    expect("dangerous_object.keras", "malicious", ["keras.dangerous-object"])
    keras_zip(f"{out}/dangerous_module.keras", sequential3([dense(), {
        "module": "subprocess", "class_name": "Popen", "config": {}}]))
    expect("dangerous_module.keras", "malicious", ["keras.dangerous-object"])
    h5(f"{out}/lambda.h5", sequential2([lambda2(payload)]))
    expect("lambda.h5", "malicious", ["keras.lambda"], ["os", "system"])
    h5(f"{out}/lambda_fixed.h5", sequential2([lambda2(payload)]), fixed=True)
    expect("lambda_fixed.h5", "malicious", ["keras.lambda"], ["os", "system"])
    h5(f"{out}/compact.h5", sequential2([lambda2(payload)]), compact=True)
    expect("compact.h5", "malicious", ["keras.lambda"], ["os", "system"])
    h5(f"{out}/benign.h5", sequential2([{"class_name": "Dense", "config": {"name": "dense", "units": 2}}]))
    expect("benign.h5", "clean")
    # Python's json reads what strict JSON refuses: NaN, escapes in names, duplicate keys (the last wins), UTF-16.
    keras_zip(f"{out}/nan.keras", None, text=python_json(sequential3([dense(), lambda3(payload)])))
    expect("nan.keras", "malicious", ["keras.lambda"], ["os", "system"])
    dup = json.dumps(sequential3([dense(), lambda3(payload)])).replace(
        '"class_name": "Lambda"', '"class_name": "Dense", "class_name": "Lambda"')
    keras_zip(f"{out}/duplicate.keras", None, text=dup)
    expect("duplicate.keras", "malicious", ["keras.lambda"], ["os", "system"])
    keras_zip(f"{out}/utf16.keras", sequential3([dense(), lambda3(payload)]), encoding="utf-16")
    expect("utf16.keras", "malicious", ["keras.lambda"], ["os", "system"])
    deep = sequential3([dense(), lambda3(payload)])
    deep["deep"] = json.loads("[" * 300 + "]" * 300)  # Python reads 300 levels; Airlock's parser stops at 256
    keras_zip(f"{out}/deep.keras", None, text=python_json(deep))
    expect("deep.keras", "malicious", ["keras.bad-config", "keras.lambda"])
    h5(f"{out}/nan.h5", None, text=python_json(sequential2([dense(), lambda2(payload)])))
    expect("nan.h5", "malicious", ["keras.lambda"], ["os", "system"])
    reordered = sequential2([lambda2(payload)])
    reordered = {"config": reordered["config"], "class_name": reordered["class_name"]}
    h5(f"{out}/reordered.h5", None, text=python_json(reordered))
    expect("reordered.h5", "malicious", ["keras.lambda"], ["os", "system"])
    broken = python_json(sequential2([lambda2(payload)]))
    h5(f"{out}/broken.h5", None, text=broken[: broken.index("function") + 40])
    expect("broken.h5", "malicious", ["keras.lambda"])
    h5(f"{out}/broken_function.h5", None, text='{"layers": [{"config": {"function_type": "lambda", "x": ')
    expect("broken_function.h5", "suspicious", ["keras.lambda-text"])
    h5(f"{out}/benign_nan.h5", None, text=python_json(sequential2([dense()])))
    expect("benign_nan.h5", "clean")
    with open(f"{out}/expectations.json", "w") as f:
        json.dump(EXPECT, f, indent=1)


if __name__ == "__main__":
    main()
