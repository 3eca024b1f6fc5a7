#!/usr/bin/python3
"""Writes TorchScript archives with the real torch.jit (Debian's torch): scripted and traced modules, one whose
forward reads a file with torch.from_file, and archives edited afterwards as an attacker edits them (a custom
operator, a __torch__ class the code does not define, from_file spelled across a line continuation). Writes
expectations.json: per file, the static verdict and the rule that must prove it.

    /usr/bin/python3 torchscript_models.py OUTDIR [--secret PATH]

Nothing is loaded here; the payloads only read the secret the test names (a honey file in the sandbox).
"""
import json
import os
import sys
import zipfile

import torch

OUT = sys.argv[1]
SECRET = sys.argv[sys.argv.index("--secret") + 1] if "--secret" in sys.argv else "/root/.aws/credentials"
EXPECT = []


def expect(name, verdict, rule=None):
    EXPECT.append({"file": name, "verdict": verdict, "rule": rule})


class ReadsFile(torch.nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x):
        t = torch.from_file(self.path, size=4, dtype=torch.uint8)
        return x + t.sum()


class Plain(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x) + 1


def rewrite(source, target, edit):
    """Copies the archive `source` to `target`, passing every member's name and bytes through `edit`."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info.filename)))


def code(name, data, old, new):
    return data.replace(old, new) if "/code/" in name and name.endswith(".py") else data


def main():
    os.makedirs(OUT, exist_ok=True)
    p = lambda n: os.path.join(OUT, n)
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.ReLU())), p("scripted.pt"))
    expect("scripted.pt", "clean")
    torch.jit.save(torch.jit.trace(torch.nn.Linear(4, 2), torch.zeros(1, 4)), p("traced.pt"))
    expect("traced.pt", "clean")
    torch.jit.save(torch.jit.script(Plain()), p("plain.pt"))
    expect("plain.pt", "clean")

    # Scripted from real source: forward reads the secret (the path is an attribute, not a literal in the code).
    torch.jit.save(torch.jit.script(ReadsFile(SECRET)), p("from_file.pt"))
    expect("from_file.pt", "malicious", "torchscript.dangerous-op")

    rewrite(p("plain.pt"), p("custom_op.pt"),
            lambda n, d: code(n, d, b"torch.relu(x)", b"torch.ops.airlock_evil.run(x)"))
    expect("custom_op.pt", "suspicious", "torchscript.custom-op")

    rewrite(p("plain.pt"), p("continued_from_file.pt"),
            lambda n, d: code(n, d, b"torch.relu(x)",
                              b"torch.\\\n      from_file(\"" + SECRET.encode() + b"\", None, 4, dtype=0)"))
    expect("continued_from_file.pt", "malicious", "torchscript.dangerous-op")

    # data.pkl names a __torch__ class that the code does not define: TorchScript could not resolve it, and it is
    # no longer vouched for.
    rewrite(p("plain.pt"), p("undefined_class.pt"),
            lambda n, d: d.replace(b"__torch__\nPlain\n", b"__torch__\nPlainX\n") if n.endswith("data.pkl") else d)
    expect("undefined_class.pt", "suspicious", "pickle.unknown-import")

    with open(os.path.join(OUT, "expectations.json"), "w") as f:
        json.dump(EXPECT, f, indent=1)


main()
