"""Repositories with remote code (`trust_remote_code=True`), loaded as transformers loads them: format hf-remote-code.

MODEL is the repository's pack (`RepositoryPack`): its config files and Python modules, read
on the host and passed as a sealed descriptor. Here, inside the container:

- load: the pack is unpacked into a fresh folder of /tmp (the container's /tmp is its own tmpfs), as the repository a
  consumer downloaded. For each `auto_map` reference of config.json and tokenizer_config.json, the class is imported
  with transformers' own `get_class_from_dynamic_module` when transformers is installed; otherwise with the same
  mechanics written here: the module and its relative imports copied into the module cache package
  `transformers_modules.model` (HF_MODULES_CACHE, on sys.path), imported, the class taken from it. Then the config
  is built from config.json: `from_pretrained` of the AutoConfig class (`cls(**config)` without transformers, which
  is what `PretrainedConfig.from_dict` does).
- probe (`construct`): the model classes constructed from the config (`_from_config` with transformers, as
  `AutoModel.from_config` does; `cls(config)` otherwise), tokenizers with `from_pretrained(the repository)`, as
  `from_pretrained` would without weights. The loader then uses the first model like any loaded one (forward).

References are checked again here: only `module.ClassName` with identifiers is imported; `repo--module.Class`
(another repository), absolute or otherwise odd names are skipped, so no file outside the unpacked repository is
ever addressed. The repository's code runs in this process: everything it does is the model's, and what the
caller sees decides.
"""
import importlib
import json
import os
import struct
import sys

from model_consumers import real

MAGIC = b"MODEL-REPO-1\n"
ROOT = "/tmp/tmp" + os.urandom(4).hex()
REPOSITORY = ROOT + "/model"
MODULES = ROOT + "/modules"
PACKAGE = "transformers_modules"
MAX_FILES = 256
MAX_BYTES = 48 << 20
# Weights, packed when they fit (RepositoryPack.weightSuffixes): from_pretrained loads them in the probe phase.
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")


def configs(names):
    """The configs whose auto_map transformers reads: config.json, then every other `*_config.json` (tokenizer,
    processor, image processor, feature extractor …), as RepositoryExamination recognises them."""
    return ["config.json"] + sorted(n for n in names if n.endswith("_config.json") and n != "config.json")
# auto_map keys whose classes are not models: built from the config or from the repository, not constructed.
CONFIG_KEY = "AutoConfig"
FROM_REPOSITORY = ("AutoTokenizer", "AutoProcessor", "AutoImageProcessor", "AutoFeatureExtractor",
                   "AutoVideoProcessor")
# Libraries whose mechanics the loader stood in for (merged into the loader's `stand-ins` line).
STAND_INS_USED = set()


def prepare():
    """Before start-up imports transformers: its caches in the container's /tmp, and no network, token or telemetry
    (transformers would otherwise try the Hub, and be blamed for it)."""
    home = ROOT + "/home"
    os.environ.update({
        "HF_HOME": home, "HF_HUB_CACHE": home + "/hub", "HF_MODULES_CACHE": MODULES, "HF_TOKEN_PATH": home + "/token",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1", "DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    })


def identifier(text):
    return isinstance(text, str) and 0 < len(text) <= 100 and text.isascii() and text.isidentifier()


def file_name(name):
    """What RepositoryPack.eligible accepts: ASCII letters, digits, _ - and . (not first, no ..), a known suffix."""
    if not (0 < len(name) <= 128) or name[0] in ".-" or ".." in name:
        return False
    if not name.endswith((".py", ".json", ".txt", ".model") + WEIGHTS):
        return False
    return all(c.isascii() and (c.isalnum() or c in "_-.") for c in name)


def unpack(f):
    """The pack's files written into REPOSITORY, each created new (never through a link)."""
    data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES or not data.startswith(MAGIC):
        raise ValueError("not a repository pack")
    os.makedirs(REPOSITORY, mode=0o700)
    pos, names = len(MAGIC), []
    while pos < len(data):
        if len(names) >= MAX_FILES:
            raise ValueError("too many files in the pack")
        (n,) = struct.unpack("<H", data[pos:pos + 2])
        name = data[pos + 2:pos + 2 + n].decode("ascii")
        (size,) = struct.unpack("<I", data[pos + 2 + n:pos + 6 + n])
        body = data[pos + 6 + n:pos + 6 + n + size]
        if len(body) != size or not file_name(name) or name in names:
            raise ValueError(f"bad pack entry {name!r}")
        write_new(REPOSITORY + "/" + name, body)
        names.append(name)
        pos += 6 + n + size
    return names


def write_new(path, body):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(body)


def read_config(name):
    try:
        with open(REPOSITORY + "/" + name, "rb") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def references(config):
    """[(key, module, class)] of an auto_map, as transformers reads it (the legacy tokenizer list is AutoTokenizer);
    references that are not `identifier.Identifier` are left out, and counted."""
    auto_map = config.get("auto_map")
    if isinstance(auto_map, (list, tuple)):
        pairs = [("AutoTokenizer", v) for v in auto_map]
    elif isinstance(auto_map, dict):
        pairs = []
        for key, value in auto_map.items():
            pairs += [(key, v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    else:
        return [], 0
    out, skipped = [], 0
    for key, text in pairs[:64]:
        if text is None:
            continue
        parts = text.split(".") if isinstance(text, str) and "--" not in text else []
        if len(parts) == 2 and identifier(parts[0]) and identifier(parts[1]):
            out.append((key, parts[0], parts[1]))
        else:
            skipped += 1
    return out, skipped


def relative_imports(module):
    """transformers.dynamic_module_utils.get_relative_imports of the module's file."""
    import re
    try:
        with open(f"{REPOSITORY}/{module}.py", encoding="utf-8") as f:
            content = f.read()
    except (OSError, ValueError):
        return []
    found = re.findall(r"^\s*import\s+\.(\S+)\s*$", content, flags=re.MULTILINE)
    found += re.findall(r"^\s*from\s+\.(\S+)\s+import", content, flags=re.MULTILINE)
    return sorted(set(m for m in found if identifier(m)))


def stand_in_class(module, name):
    """get_class_from_dynamic_module without transformers: init_hf_modules, create_dynamic_module, the module and
    its relative imports copied into the cache package (get_cached_module_file), then get_class_in_module."""
    package = f"{MODULES}/{PACKAGE}/model"
    if MODULES not in sys.path:
        os.makedirs(package, mode=0o700, exist_ok=True)
        for folder in (f"{MODULES}/{PACKAGE}", package):
            if not os.path.exists(folder + "/__init__.py"):
                write_new(folder + "/__init__.py", b"")
        sys.path.append(MODULES)
    pending, copied = [module], set()
    while pending:
        current = pending.pop()
        if current in copied:
            continue
        copied.add(current)
        target = f"{package}/{current}.py"
        if not os.path.exists(target):
            with open(f"{REPOSITORY}/{current}.py", "rb") as source:
                write_new(target, source.read())
        pending += relative_imports(current)
    importlib.invalidate_caches()
    return getattr(importlib.import_module(f"{PACKAGE}.model.{module}"), name)


class Repository:
    """What load returns: the classes imported, the config built, and how."""

    def __init__(self, transformers, classes, config, config_dict):
        self.transformers = transformers
        self.classes = classes  # [(key, class)]
        self.config = config
        self.config_dict = config_dict

    def __repr__(self):
        return f"Repository({[k for k, _ in self.classes]})"


class StandInConfig:
    """A config when the auto_map names no AutoConfig and transformers is absent: the config's members."""

    def __init__(self, **members):
        self.__dict__.update(members)

    def to_dict(self):
        return dict(self.__dict__)


def load(f):
    names = unpack(f)
    transformers = real("transformers")
    if transformers is not None:
        from transformers.dynamic_module_utils import get_class_from_dynamic_module

        def get_class(module, name):
            return get_class_from_dynamic_module(f"{module}.{name}", REPOSITORY)
    else:
        STAND_INS_USED.add("transformers")
        get_class = stand_in_class
    classes, config_dict = [], read_config("config.json") or {}
    for name in configs(names):
        config = read_config(name)
        if config is None:
            continue
        refs, _ = references(config)
        for key, module, class_name in refs:
            classes.append((key, get_class(module, class_name)))
    config_class = next((c for k, c in classes if k == CONFIG_KEY), None)
    if config_class is not None:
        if transformers is not None and callable(getattr(config_class, "from_pretrained", None)):
            config = config_class.from_pretrained(REPOSITORY)
        else:
            config = config_class(**config_dict)  # PretrainedConfig.from_dict
            try:
                config._name_or_path = REPOSITORY  # what from_pretrained records: code may read files beside it
            except Exception:
                pass
    elif transformers is not None and config_dict.get("model_type"):
        config = transformers.AutoConfig.for_model(**config_dict)
    else:
        config = StandInConfig(**config_dict)
    return Repository(transformers, classes, config, config_dict)


def build_model(cls, repository):
    """A model class as the consumer gets it: `from_pretrained(the repository)` first (the consumer's call: a class
    can override it, and it loads the weights when they were passed), then, when that fails (no weights), built
    from the config (`_from_config` with transformers, as `AutoModel.from_config` does; `cls(config)` otherwise)."""
    make = getattr(cls, "from_pretrained", None)
    if callable(make):
        try:
            return make(REPOSITORY, trust_remote_code=True) if repository.transformers is not None \
                else make(REPOSITORY)
        except Exception:
            pass
    make = getattr(cls, "_from_config", None) if repository.transformers is not None else None
    return make(repository.config) if callable(make) else cls(repository.config)


def construct(repository):
    """The probe phase of a repository: every model class constructed from the config, tokenizers and processors
    from the repository, each class once. Returns the first model (then used like any loaded model), else the first
    object built, else the config."""
    if not isinstance(repository, Repository):
        return repository
    built, done = [], set()
    for key, cls in repository.classes:
        if key == CONFIG_KEY or id(cls) in done:
            continue
        done.add(id(cls))
        if key in FROM_REPOSITORY:
            make = getattr(cls, "from_pretrained", None)
            obj = make(REPOSITORY) if callable(make) else cls()
            built.append((False, obj))
        else:
            built.append((True, build_model(cls, repository)))
    models = [obj for is_model, obj in built if is_model]
    return models[0] if models else built[0][1] if built else repository.config
