#!/usr/bin/python3
"""Writes models with the real libraries (torch, scikit-learn, joblib, pandas, numpy, dill), benign and malicious,
for `airlock probe --python`: what the consumer's own stack does with them. Writes expectations.json: per file, the
verdict, the dynamic finding that must prove a malicious one, whether the static unknown imports must come out
resolved as observed harmless, what torch's weights_only=True must have said, and a library the runtime must list.

    /usr/bin/python3 real_models.py OUTDIR --canary PATH --port N

Needs Debian's python3-torch, python3-sklearn, python3-joblib, python3-pandas, python3-numpy (`make deps`); dill
when installed. Nothing is loaded here. Payloads are harmless outside the sandbox too: they touch the canary file or
connect to the test's loopback port.
"""
import json
import os
import pickle
import sys

import joblib
import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

EXPECT = []


def expect(name, verdict, dynamic=None, resolved=False, weights_only=None, library=None, loaded=True):
    EXPECT.append({"file": name, "verdict": verdict, "dynamic": dynamic, "resolved": resolved,
                   "weightsOnlyAccepted": weights_only, "library": library, "loaded": loaded})


class Touch:
    """Unpickles to os.system('touch CANARY'): what a trojaned model runs when loaded."""

    def __init__(self, canary):
        self.canary = canary

    def __reduce__(self):
        return (os.system, (f"touch {self.canary}",))


class Fetch:
    """Unpickles to pandas.read_csv of a loopback URL: a gadget inside a library's own code (no denylisted name)."""

    def __init__(self, port):
        self.port = port

    def __reduce__(self):
        return (pd.read_csv, (f"http://127.0.0.1:{self.port}/weights.csv",))


def main(out, canary, port):
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)  # noqa: E731
    rng = np.random.default_rng(7)
    X = rng.random((60, 4))
    y = (X[:, 0] > 0.5).astype(int)

    # scikit-learn, benign: pickled as people pickle estimators.
    forest = RandomForestClassifier(n_estimators=4, random_state=0).fit(X, y)
    with open(p("forest.pkl"), "wb") as f:
        pickle.dump(forest, f)
    expect("forest.pkl", "clean", resolved=True, library="sklearn")
    pipeline = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y)
    with open(p("pipeline.pkl"), "wb") as f:
        pickle.dump(pipeline, f, protocol=5)
    expect("pipeline.pkl", "clean", resolved=True, library="sklearn")

    # pandas, benign, read back with pandas.read_pickle.
    pd.DataFrame({"feature": [0.1, 0.2, 0.3], "label": ["a", "b", "c"]}).to_pickle(p("frame.pkl"))
    expect("frame.pkl", "clean", resolved=True, library="pandas")

    # joblib: a payload after the first NumPy array (the array's raw bytes sit in the stream before it).
    joblib.dump({"weights": np.arange(64, dtype=np.float64), "hook": Touch(canary)}, p("after_array.joblib"))
    expect("after_array.joblib", "malicious", dynamic="dynamic.exec")

    # torch: a state_dict (weights_only accepts it), a whole module (it does not), TorchScript, and a trojan.
    torch.manual_seed(0)
    torch.save(torch.nn.Linear(4, 2).state_dict(), p("linear_state.pt"))
    expect("linear_state.pt", "clean", weights_only=True, library="torch")
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1)), p("module.pt"))
    expect("module.pt", "clean", resolved=True, weights_only=False, library="torch")
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.ReLU())), p("scripted.pt"))
    # TorchScript: data.pkl's __torch__ classes are vouched for statically by the archive's own code (no unknown imports).
    expect("scripted.pt", "clean", resolved=False, library="torch")
    torch.save({"state_dict": torch.nn.Linear(4, 2).state_dict(), "hook": Touch(canary)}, p("trojan.pt"))
    expect("trojan.pt", "malicious", dynamic="dynamic.exec", weights_only=False)

    # A gadget in a library's own code: pandas fetches a URL; unknown to the denylist, caught by behaviour.
    with open(p("fetch.pkl"), "wb") as f:
        pickle.dump(Fetch(port), f)
    expect("fetch.pkl", "malicious", dynamic="dynamic.network")

    # An estimator whose payload waits for the consumer's first predict().
    with open(p("late_predict.pkl"), "wb") as f:
        f.write(late_predict(canary))
    expect("late_predict.pkl", "malicious", dynamic="dynamic.exec")

    # Code objects for another Python version, as an old pickle of a function carries them: loading fails with
    # "bad marshal data"; the report says so with a finding, the harness does not crash.
    with open(p("other_python.pkl"), "wb") as f:
        f.write(other_python())
    expect("other_python.pkl", "malicious", dynamic="dynamic.load-failed", loaded=False)

    try:
        import dill
    except ImportError:
        dill = None
    if dill is not None:
        with open(p("dill_trojan.pkl"), "wb") as f:
            dill.dump({"model": [1.0, 2.0], "hook": Touch(canary)}, f)
        expect("dill_trojan.pkl", "malicious", dynamic="dynamic.exec")

    with open(os.path.join(out, "expectations.json"), "w") as f:
        json.dump(EXPECT, f, indent=1)


def other_python():
    """marshal.loads of a code object with Python 2.7's layout (type byte 'c', then 32-bit fields)."""
    import marshal  # noqa: F401  (named in the pickle, not called here)

    class Load:
        def __reduce__(self):
            return (marshal.loads, (b"c\x00\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00C\x00\x00\x00s\x04",))

    return pickle.dumps(Load(), protocol=2)


def late_predict(canary):
    """A pickle of a scikit-learn-looking object whose predict runs a program: nothing happens at load, only when
    the consumer calls it. Built by hand so that no class of this script is needed to load it."""
    code = ("import os\n"
            "class Model:\n"
            "    n_features_in_ = 4\n"
            "    def predict(self, X):\n"
            f"        os.system('touch {canary}')\n"
            "        return [0] * len(X)\n"
            "model = Model()\n")
    # dict.get(namespace, "model", exec(code, namespace)): the arguments are built first, so exec fills the namespace
    # and the object unpickled is the model itself, via the pickle protocol only.
    ns = {}

    class Exec:
        def __reduce__(self):
            return (exec, (code, ns))

    class Get:
        def __reduce__(self):
            return (dict.get, (ns, "model", Exec()))

    return pickle.dumps(Get(), protocol=2)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[args.index("--canary") + 1], int(args[args.index("--port") + 1]))
