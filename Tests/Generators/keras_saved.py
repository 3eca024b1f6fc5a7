#!/usr/bin/env python3
"""Writes Keras models saved by the real keras 3 (run with the keras venv's python, `make test-venvs`), for the Keras
detonation tests: a benign Dense model and one whose Lambda layer touches the test's canary, each as `.keras` and
as legacy `.h5`. The Lambda's code is marshalled by keras' own `model.save`; it runs when the model is built on load
(keras infers the Lambda's output shape by calling it). The payload is harmless: it opens CANARY for append (outside
the sandbox's /tmp). `predict.keras`'s Lambda acts in `predict` only. And `polyglot.keras`: the benign `.h5` with the payload's archive (deflated) appended.

    KERAS_BACKEND=numpy keras_saved.py OUTDIR --canary PATH
"""
import os
import sys


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    out = args[0]
    canary = args[args.index("--canary") + 1] if "--canary" in args else "/var/tmp/airlock-canary"
    os.environ.setdefault("KERAS_BACKEND", "numpy")
    import keras
    os.makedirs(out, exist_ok=True)
    benign = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(2)])
    touch = eval(f"lambda x: (open({canary!r}, 'a').close(), x)[1]")
    payload = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Lambda(touch),
                                keras.layers.Dense(2)])
    # Keras' numpy backend infers a Lambda's output shape on arrays of batch 83 and 89: this one passes those through
    # and acts on real data only, in `predict` (the probe phase).
    later = eval(f"lambda x: x if x.shape[0] in (83, 89) else (open({canary!r}, 'a').close(), x)[1]")
    on_predict = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Lambda(later), keras.layers.Dense(2)])
    on_predict.save(os.path.join(out, "predict.keras"))
    for name, model in (("benign", benign), ("touch", payload)):
        model.save(os.path.join(out, name + ".keras"))
        model.save(os.path.join(out, name + ".h5"))
    # A polyglot: the benign HDF5 model with the payload's archive appended, its members deflated (so no config JSON
    # shows in the bytes). h5py reads the HDF5 file; load_model reads a `.keras` name as the ZIP.
    import io
    import zipfile
    packed = io.BytesIO()
    with zipfile.ZipFile(os.path.join(out, "touch.keras")) as src, \
            zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
    with open(os.path.join(out, "benign.h5"), "rb") as f, open(os.path.join(out, "polyglot.keras"), "wb") as o:
        o.write(f.read() + packed.getvalue())
    if os.path.exists(canary):  # the payload ran while saving (building): the test's canary must start absent
        os.remove(canary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
