#!/usr/bin/env python3
"""Writes Hugging Face repositories with remote code (`auto_map`) for Airlock's remote-code detonation tests, one
folder each, and expectations.json: for each repository, the verdict `airlock probe` must give its config, the
dynamic finding that must prove it (if any) and its phase.

    remote_code.py OUTDIR --canary PATH --port N

Standard library only; nothing here imports the modules it writes. The models use real torch when loaded (as
remote-code models do); their payloads are harmless outside the sandbox too: they connect to the test's loopback
port and touch the canary file.
"""
import json
import os
import sys

EXPECT = []


def expect(name, verdict, dynamic=None, phase=None, observed_harmless=False, rules=()):
    EXPECT.append({"repo": name, "verdict": verdict, "dynamic": dynamic, "phase": phase,
                   "observedHarmless": observed_harmless, "rules": list(rules)})


def payload(canary, port, indent=""):
    lines = [
        "import os, socket",
        "try:",
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=1).close()",
        "except OSError:",
        "    pass",
        f"os.system('touch {canary}')",
    ]
    return "".join(indent + line + "\n" for line in lines)


CONFIG = '''\
class TinyConfig:
    """A PretrainedConfig-like config: keyword arguments become attributes."""
    model_type = "tiny"

    def __init__(self, hidden_size=4, layers=1, **kwargs):
{init}        self.hidden_size = hidden_size
        self.layers = layers
        for key, value in kwargs.items():
            setattr(self, key, value)
'''

LAYERS = '''\
import torch


class TinyBlock(torch.nn.Module):
    def __init__(self, size):
        super().__init__()
        self.linear = torch.nn.Linear(size, size)

    def forward(self, x):
        return torch.relu(self.linear(x))
'''

MODELING = '''\
{top}import torch

from .configuration_tiny import TinyConfig
from .layers_tiny import TinyBlock


class TinyModel(torch.nn.Module):
    config_class = TinyConfig

    def __init__(self, config):
        super().__init__()
{init}        self.config = config
        self.blocks = torch.nn.ModuleList([TinyBlock(config.hidden_size) for _ in range(config.layers)])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x
'''

SCRIPT = '''\
"""Converts original checkpoints (not imported when the model is loaded)."""
import sys

if __name__ == "__main__":
    print("usage: convert_tiny.py CHECKPOINT", file=sys.stderr)
'''

TOKENIZER = '''\
{top}import json
import os


class TinyTokenizer:
    """A tokenizer whose vocabulary is one word per line of vocab.txt."""

    def __init__(self, vocab):
{init}        self.vocab = {{word: i for i, word in enumerate(vocab)}}

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        with open(os.path.join(path, "tokenizer_config.json")) as f:
            json.load(f)
        with open(os.path.join(path, "vocab.txt")) as f:
            return cls(f.read().split())

    def __call__(self, text):
        return [self.vocab.get(word, 0) for word in str(text).split()]
'''


def write(root, name, files):
    folder = os.path.join(root, name)
    os.makedirs(folder)
    for file, content in files.items():
        mode = "w" if isinstance(content, str) else "wb"
        with open(os.path.join(folder, file), mode) as f:
            f.write(content if not isinstance(content, dict) else json.dumps(content, indent=2))


FROM_PRETRAINED = '''
    @classmethod
    def from_pretrained(cls, path, *args, **kwargs):
{payload}        return cls(TinyConfig())
'''

WEIGHTS_READER = '''
def calibrate(config):
    """Reads calibration code shipped in the weights' metadata: only where the weights are."""
    import json, os, struct
    try:
        with open(os.path.join(getattr(config, "_name_or_path", "") or "", "model.safetensors"), "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            code = json.loads(f.read(n))["__metadata__"]["calibration"]
    except (OSError, KeyError, ValueError):
        return
    exec(compile(code, "calibration", "exec"), {{}})
'''


def safetensors_with(metadata):
    """An empty safetensors file whose header carries `metadata`."""
    import struct
    header = json.dumps({"__metadata__": metadata}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


def model_repo(root, name, canary, port, where=None, auto_map=None, extra=None):
    p = payload(canary, port, "        ")
    if where == "broken":
        p = "        raise ValueError('this checkpoint needs a newer version of the code')\n"
    files = {
        "config.json": json.dumps({
            "architectures": ["TinyModel"], "model_type": "tiny", "hidden_size": 8, "layers": 2,
            "auto_map": auto_map or {"AutoConfig": "configuration_tiny.TinyConfig",
                                     "AutoModel": "modeling_tiny.TinyModel"},
        }, indent=2),
        "configuration_tiny.py": CONFIG.format(init=p if where == "config" else ""),
        "layers_tiny.py": LAYERS,
        "modeling_tiny.py": MODELING.format(top=payload(canary, port) if where == "import" else "",
                                            init=p if where in ("init", "broken") else "",),
        "convert_tiny.py": SCRIPT,
    }
    if where == "from_pretrained":
        files["modeling_tiny.py"] += FROM_PRETRAINED.format(payload=p)
    if where == "weights":
        files["modeling_tiny.py"] = (WEIGHTS_READER.format() + MODELING.format(top="", init="        calibrate(config)\n"))
        files["model.safetensors"] = safetensors_with({"calibration": payload(canary, port)})
    files.update(extra or {})
    write(root, name, files)


def tokenizer_repo(root, name, canary, port, where=None, legacy=False):
    auto_map = ["tokenization_tiny.TinyTokenizer", None] if legacy else {
        "AutoTokenizer": ["tokenization_tiny.TinyTokenizer", None]}
    files = {
        "tokenizer_config.json": json.dumps({"tokenizer_class": "TinyTokenizer", "auto_map": auto_map}, indent=2),
        "vocab.txt": "[PAD]\nhello\nworld\n",
        "tokenization_tiny.py": TOKENIZER.format(top=payload(canary, port) if where == "import" else "",
                                                 init=payload(canary, port, "        ") if where == "init" else ""),
    }
    write(root, name, files)


def main(argv):
    if len(argv) != 6 or argv[2] != "--canary" or argv[4] != "--port":
        print(__doc__, file=sys.stderr)
        return 2
    root, canary, port = argv[1], argv[3], int(argv[5])
    os.makedirs(root)

    model_repo(root, "benign", canary, port)
    expect("benign", "clean", observed_harmless=True)
    model_repo(root, "import_payload", canary, port, where="import")
    expect("import_payload", "malicious", "dynamic.exec", "load")
    model_repo(root, "init_payload", canary, port, where="init")
    expect("init_payload", "malicious", "dynamic.exec", "probe")
    model_repo(root, "config_payload", canary, port, where="config")
    expect("config_payload", "malicious", "dynamic.exec", "load")

    # Nothing harmful, but the model cannot be constructed: nothing was observed of its construction.
    model_repo(root, "construct_fails", canary, port, where="broken")
    expect("construct_fails", "suspicious", "dynamic.probe-failed", "probe")

    # auto_map entries that address files outside the repository: a module beside the repository's folder and an
    # absolute path in the bait's folder, both holding a payload. Neither may be imported; only the valid
    # AutoConfig entry is detonated.
    outside = os.path.dirname(canary)
    for folder in (root, outside):
        with open(os.path.join(folder, "evil_outside.py"), "w") as f:
            f.write(payload(canary, port) + "\n\nclass Evil:\n    pass\n")
    model_repo(root, "traversal", canary, port, auto_map={
        "AutoConfig": "configuration_tiny.TinyConfig",
        "AutoModel": "../evil_outside.Evil",
        "AutoModelForCausalLM": os.path.join(outside, "evil_outside") + ".Evil",
        "AutoModelForMaskedLM": "someone/other-repo--modeling_other.Other",
    })
    expect("traversal", "malicious", rules=["hf.auto-map-traversal", "hf.remote-code-external"])

    # Found by an adversarial review: code on paths the first harness did not walk.
    # An auto_map in another *_config.json (an image processor): imported when the processor is loaded.
    model_repo(root, "processor_payload", canary, port, extra={
        "preprocessor_config.json": json.dumps({"auto_map": {"AutoImageProcessor": "image_processing_tiny.TinyProc"}}),
        "image_processing_tiny.py": payload(canary, port) + "\n\nclass TinyProc:\n    pass\n",
    })
    expect("processor_payload", "malicious", "dynamic.exec", "load")
    # More references than are judged: the model class with the payload comes after the 64th, never constructed;
    # nothing may be lowered.
    many = {"AutoConfig": "configuration_tiny.TinyConfig"}
    many.update({f"Pad{i}": "configuration_tiny.TinyConfig" for i in range(64)})
    many["AutoModel"] = "modeling_tiny.TinyModel"
    model_repo(root, "many_references", canary, port, where="init", auto_map=many)
    expect("many_references", "suspicious")
    # The model class overrides from_pretrained, the consumer's call.
    model_repo(root, "from_pretrained_payload", canary, port, where="from_pretrained")
    expect("from_pretrained_payload", "malicious", "dynamic.exec", "probe")
    # The code runs what the weights' metadata holds: only with the weights beside the config (packed when small).
    model_repo(root, "weights_payload", canary, port, where="weights")
    expect("weights_payload", "malicious", "dynamic.exec", "probe")

    tokenizer_repo(root, "tokenizer_benign", canary, port)
    expect("tokenizer_benign", "clean", observed_harmless=True)
    tokenizer_repo(root, "tokenizer_payload", canary, port, where="init", legacy=True)
    expect("tokenizer_payload", "malicious", "dynamic.exec", "probe")

    with open(os.path.join(root, "expectations.json"), "w") as f:
        json.dump(EXPECT, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
