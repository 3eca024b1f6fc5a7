"""Loads a model the way its consumer would, and touches the loaded object as the service does.

    python3 serve.py        (serve.py imports this module and calls main)

The settings arrive as one JSON object on descriptor SETTINGS_FD, read and closed before anything else runs:
    {"arguments": [FORMAT, "fd:N", ...], "markers": {"load": PATH, "probe": PATH, "end": PATH}, "prefix": TEXT}
ARGUMENTS are FORMAT MODEL [--no-probe] [--consumer NAME] [--compression NAME] [--import MODULE,...], or
`--wait fd:N [--import MODULE,...]` (a warm start, see wait_for_model).

MODEL is `fd:N`, an open descriptor of the model, or a path. FORMAT is what the caller decided from the content:
pickle, joblib, pytorch-zip, pytorch-legacy, numpy, npz, gguf (a model with a chat template: model_templates.py),
keras and hdf5 (Keras models: model_keras.py), onnx (with `--folder fd:N --name NAME`, model_onnx.py); or
hf-remote-code, a repository with remote code packed by the caller (model_remote.py). `--consumer` says which
library's loader reads a plain pickle (pickle, pandas, dill, cloudpickle), from the modules it imports; `--import`
names the consumer's libraries to import during start-up, before the model is touched, so that their start-up
(threads, semaphores, /proc reads) is the runtime's and not the model's.

The loader tells the caller where it is (startup -> load -> probe -> end) by opening the MARKERS paths the settings
name, which do not exist; every event after one is attributed to that phase. Everything that happens in `load`,
`probe` and `end` belongs to the model. `end` says the loader returned: the caller then looks, from outside, at what
the model left running (threads, processes, timers) and keeps watching for a while if anything is.

Loading uses the real libraries: torch.load(weights_only=False) or torch.jit.load, joblib.load, numpy.load(
allow_pickle=True), pickle.load, pandas.read_pickle, dill.load, cloudpickle.load. Only when a library is missing
from the environment do small stand-ins replace the handful of allowlisted rebuild functions, so benign models load
completely; the report says which stand-ins answered. Every other global resolves for real. This file is mounted
read-only; it never writes outside /tmp.

How it ends. The model runs in this process and can forge or suppress anything it prints, so the caller decides
from what it sees itself: the `end` marker, announced by this process's main thread, in phase order; the exit
status; the processes and this process's threads and timer handlers. Lines starting with PREFIX only add detail:
    0  loaded (and probed); the last stdout line is `PREFIX loaded TYPE`; before it, stderr says
       `PREFIX left-behind threads=N` when the model left threads running
Detail lines on stderr: `runtime JSON` (before `load`: the interpreter and the libraries imported at start-up),
`weights-only accepted|refused …|unsupported` (before torch.load(weights_only=False) runs), `template-sandbox
accepted|refused|raised KEY …` (a GGUF chat template in Jinja's sandbox, before it is rendered without it),
`keras-safe-mode accepted|refused|raised TYPE: MESSAGE` (keras.saving.load_model with safe_mode=True, before the unsafe
load), `imported A,B` and `stand-ins A,B` (after the loader returned; the model could have printed them too).
    2  usage error
    3  loading raised an exception; the last stderr line is `PREFIX load-error TYPE: MESSAGE`
    4  loading ran out of a resource (MemoryError, RecursionError, no more processes); stderr says which
Anything else (another exit code, a signal, the deadline) means the model ended or stopped the process itself.
"""
import atexit
import gc
import io
import os
import pickle
import struct
import sys
import time

import _signal  # the builtin module: `signal` would build its enums at every start-up (~0.6 ms)

import model_keras
import model_onnx
import model_remote
import model_templates
from model_consumers import (REAL, accepts_keyword, configure, imported_libraries, preimport, quick_exit, real, use,
                               version_of)

# The descriptor the settings arrive on (read and closed by settings()).
SETTINGS_FD = 5
# The paths whose opens announce a phase, and the prefix of detail lines: per run, from the settings.
MARKERS = {}
# A warm container: `--wait fd:N` names the socket its one request arrives on; READY says start-up is over.
WAIT_OPTION = "--wait"
READY = b"R"
LINE_PREFIX = ""
# The loader the pickle format is read with (`--consumer`): pickle, pandas, dill or cloudpickle.
CONSUMER = "pickle"
CONSUMERS = ("pickle", "pandas", "dill", "cloudpickle")
# The compression a compressed pickle is read with (`--compression`, pandas' names): pandas infers it from a path's
# extension, never from an open file, so the caller says it.
COMPRESSIONS = ("gzip", "bz2", "xz", "zstd")
COMPRESSION = None
# Libraries the stand-ins answered for because the real one was missing.
STAND_INS_USED = set()


def say(kind, detail):
    """One line for the caller on stderr (only detail: the model could print the same)."""
    sys.stdout.flush()
    print(f"{LINE_PREFIX}{kind} {detail}", file=sys.stderr, flush=True)


def announce(phase):
    try:
        open(MARKERS[phase], "rb")
    except (OSError, KeyError):
        pass


# --- stand-ins for what torch, numpy and joblib would provide --------------------------------------------------------

class StandInTensor:
    """What torch._utils._rebuild_tensor* returns when torch is absent: shape and storage, no arithmetic."""

    def __init__(self, storage=None, offset=0, size=(), stride=(), *rest):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size or ()), tuple(stride or ())

    def __repr__(self):
        return f"StandInTensor(size={self.size})"


def _rebuild_tensor(storage, offset, size, stride, *rest):
    return StandInTensor(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *rest):
    return data


class StandInStorage:
    """A storage, an array or a dtype when their library is absent: keeps what it was built from."""

    def __init__(self, *args):
        self.args = args

    def __setstate__(self, state):  # ndarray and dtype pickles BUILD with a tuple
        self.state = state


class StandInArrayWrapper:
    """joblib.numpy_pickle.NumpyArrayWrapper: the array bytes follow in the stream; the stand-in keeps its state."""

    def __setstate__(self, state):
        self.state = state


def _reconstruct(*args):
    return StandInStorage(*args)


# Globals that the stand-ins answer when the real library is missing. Only names the allowlist accepts.
STAND_INS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.nn.parameter", "Parameter"): _rebuild_parameter,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): StandInStorage,
    ("numpy", "dtype"): StandInStorage,
    ("numpy.core.multiarray", "scalar"): _reconstruct,
    ("numpy._core.multiarray", "scalar"): _reconstruct,
    ("joblib.numpy_pickle", "NumpyArrayWrapper"): StandInArrayWrapper,
}
STORAGE_NAMES = {"FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
                 "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage", "UntypedStorage", "TypedStorage"}


class ModelUnpickler(pickle.Unpickler):
    """pickle.Unpickler as consumers use it; stand-ins only for allowlisted rebuild names whose module is missing."""

    def __init__(self, file, storages=None):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            if (module, name) in STAND_INS:
                STAND_INS_USED.add(module.split(".", 1)[0])
                return STAND_INS[(module, name)]
            if module in ("torch", "torch.storage") and name in STORAGE_NAMES:
                STAND_INS_USED.add("torch")
                return StandInStorage
            raise

    def persistent_load(self, pid):
        # torch: ('storage', storage_type, key, location, numel); `storages` locates the record (torch would read it).
        if isinstance(pid, tuple) and pid and pid[0] == "storage":
            if self.storages is not None:
                return self.storages(str(pid[2]))
            made = zero_storage(pid)
            if made is not None:
                return made
        return StandInStorage(pid)


def zero_storage(pid):
    """A torch pickle's storage reference outside a torch archive (a data.pkl on its own): with the real torch, a
    storage of the type and size it names, zero-filled, so that the tensors it rebuilds are real ones (the bytes
    are not in the file). None when torch is missing or the reference is not one torch writes."""
    torch = real("torch")
    if torch is None or len(pid) < 5 or not isinstance(pid[4], int) or not 0 <= pid[4] <= 1 << 24:
        return None
    storage_type = pid[1]
    if not (isinstance(storage_type, type) and storage_type.__module__.startswith("torch")):
        return None
    try:
        return storage_type(pid[4])
    except Exception:
        return None


def load_pickle(f):
    """pickle.load, or the loader the pickle's own imports say its consumer uses: pandas.read_pickle for pandas
    objects, dill.load and cloudpickle.load for theirs. The stand-in unpickler only when the library is missing."""
    library = real(CONSUMER) if CONSUMER in ("pandas", "dill", "cloudpickle") else None
    if CONSUMER == "pandas" and library is not None:
        return library.read_pickle(f, compression=COMPRESSION) if COMPRESSION else library.read_pickle(f)
    if COMPRESSION:
        f = decompressed(f)
    if library is not None:
        return library.load(f)
    return ModelUnpickler(f).load()


def decompressed(f):
    """The standard library's reader of COMPRESSION over f, when pandas is missing (zstd has none: the load fails)."""
    import bz2
    import gzip
    import lzma
    readers = {"gzip": lambda: gzip.GzipFile(fileobj=f), "bz2": lambda: bz2.BZ2File(f), "xz": lambda: lzma.LZMAFile(f)}
    if COMPRESSION not in readers:
        raise ValueError(f"no reader for {COMPRESSION} without pandas")
    return readers[COMPRESSION]()


def load_joblib(f):
    joblib = real("joblib")
    if joblib is not None:
        return joblib.load(f)
    STAND_INS_USED.add("joblib")
    return ModelUnpickler(f).load()


class TorchZip:
    """A PyTorch ZIP read as PyTorchStreamReader reads it through miniz, not as Python's zipfile would: the end of
    central directory record (zip64 too), the central records, the archive's name taken from the first record's
    name, and a lookup that replays miniz's (records heap-sorted by name with ASCII case folded, then a binary
    search: with duplicate names it returns the record miniz returns). A member's bytes start after its local
    header's name and extra field. No CRC, flag or local-name checks, as in miniz's reader with PyTorch's settings."""

    def __init__(self, f):
        self.f = f
        f.seek(0, 2)
        size = f.tell()
        tail_len = min(size, 65535 + 22)
        f.seek(size - tail_len)
        tail = f.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            raise ValueError("not a ZIP archive: no end of central directory record")
        count, cd_size, cd_offset = struct.unpack("<HII", tail[at + 10:at + 20])
        if 0xFFFF == count or 0xFFFFFFFF in (cd_size, cd_offset):
            loc = tail.rfind(b"PK\x06\x07", 0, at)
            if loc < 0:
                raise ValueError("zip64 end of central directory locator missing")
            (z64,) = struct.unpack("<Q", tail[loc + 8:loc + 16])
            f.seek(z64)
            record = f.read(56)
            if len(record) < 56 or record[:4] != b"PK\x06\x06":
                raise ValueError("bad zip64 end of central directory record")
            count, cd_size, cd_offset = struct.unpack("<QQQ", record[32:56])
        if cd_offset + cd_size > size or count > cd_size // 46:
            raise ValueError("central directory out of bounds")
        f.seek(cd_offset)
        cd = f.read(cd_size)
        self.records = []  # (name, method, compressed size, size, local header offset)
        pos = 0
        for _ in range(count):
            if cd[pos:pos + 4] != b"PK\x01\x02" or pos + 46 > len(cd):
                raise ValueError("bad central directory record")
            method, csize, usize, n, e, c = struct.unpack("<H8xIIHHH", cd[pos + 10:pos + 34])
            (offset,) = struct.unpack("<I", cd[pos + 42:pos + 46])
            name = cd[pos + 46:pos + 46 + n]
            extra = cd[pos + 46 + n:pos + 46 + n + e]
            values = [v for v in (usize, csize, offset)]
            x = 0
            while x + 4 <= len(extra):  # zip64 extended information: the fields that are 0xFFFFFFFF, in order
                tag, length = struct.unpack("<HH", extra[x:x + 4])
                if tag == 1:
                    body, k = extra[x + 4:x + 4 + length], 0
                    for i, v in enumerate(values):
                        if v == 0xFFFFFFFF and k + 8 <= len(body):
                            (values[i],) = struct.unpack("<Q", body[k:k + 8])
                            k += 8
                x += 4 + length
            self.records.append((name, method, values[1], values[0], values[2]))
            pos += 46 + n + e + c
        self.order = self._heap_sorted([r[0] for r in self.records])
        first = self.records[0][0] if self.records else b""
        self.prefix = first.split(b"/", 1)[0] + b"/" if b"/" in first else b""

    @staticmethod
    def _less(a, b):
        return a.lower() < b.lower()  # bytes.lower folds ASCII only, as miniz does

    def _heap_sorted(self, names):
        idx = list(range(len(names)))

        def sift(root, end):
            while True:
                child = root * 2 + 1
                if child >= end:
                    return
                if child + 1 < end and self._less(names[idx[child]], names[idx[child + 1]]):
                    child += 1
                if not self._less(names[idx[root]], names[idx[child]]):
                    return
                idx[root], idx[child] = idx[child], idx[root]
                root = child

        size = len(idx)
        if size > 1:
            for start in range((size - 2) >> 1, -1, -1):
                sift(start, size)
            for end in range(size - 1, 0, -1):
                idx[end], idx[0] = idx[0], idx[end]
                sift(0, end)
        return idx

    def locate(self, name):
        query = (self.prefix + name.encode()).split(b"\0", 1)[0].lower()
        lo, hi = 0, len(self.order) - 1
        while lo <= hi:
            mid = (lo + hi) >> 1
            stored = self.records[self.order[mid]][0].lower()
            if stored == query:
                return self.records[self.order[mid]]
            if stored < query:
                lo = mid + 1
            else:
                hi = mid - 1
        raise KeyError(f"archive has no record {name!r}")

    def size(self, name):
        return self.locate(name)[3]

    def read(self, name):
        _, method, csize, usize, offset = self.locate(name)
        self.f.seek(offset)
        local = self.f.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise ValueError(f"bad local header for {name!r}")
        n, e = struct.unpack("<HH", local[26:30])
        self.f.seek(offset + 30 + n + e)
        data = self.f.read(csize)
        if method == 0:
            return data
        if method == 8:
            import zlib
            return zlib.decompressobj(-15).decompress(data, usize)
        raise ValueError(f"record {name!r} uses compression method {method}")


def load_torch(f, stand_in):
    """torch.load(weights_only=False), as a consumer who trusts the file calls it, or torch.jit.load for a
    TorchScript archive. First, whether torch.load(weights_only=True) on this torch accepts the file: said on a line
    printed before anything from the file runs, so the first such line is the loader's."""
    torch = real("torch")
    if torch is None:
        STAND_INS_USED.add("torch")
        return stand_in(f)
    keyword = accepts_keyword(torch.load, "weights_only")
    if torchscript(f):
        # torch.load(weights_only=True) hands a TorchScript archive to torch.jit.load, which runs its code: the
        # answer would say nothing about whether the file is data only.
        say("weights-only", "not-applicable TorchScript: torch.load passes it to torch.jit.load, which runs its code")
        f.seek(0)
        return torch.jit.load(f, map_location="cpu")
    f.seek(0)
    if keyword:
        try:
            torch.load(f, map_location="cpu", weights_only=True)
            say("weights-only", "accepted")
        except Exception as e:
            say("weights-only", f"refused {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
    else:
        say("weights-only", "unsupported")
    f.seek(0)
    return torch.load(f, map_location="cpu", **({"weights_only": False} if keyword else {}))


def torchscript(f):
    """Whether a PyTorch ZIP is a TorchScript archive (its records include `constants.pkl` and `code/`)."""
    try:
        names = [r[0] for r in TorchZip(f).records]
    except (ValueError, OSError, struct.error):
        return False
    return any(n.endswith(b"/constants.pkl") for n in names) and any(b"/code/" in n for n in names)


def load_torch_zip(f):
    return load_torch(f, load_torch_zip_stand_in)


def load_torch_legacy(f):
    return load_torch(f, load_torch_legacy_stand_in)


def load_torch_zip_stand_in(f):
    # torch.load: the records `<archive>/data.pkl`, and storages from `<archive>/data/<key>` through persistent_load.
    # The stand-in storage only notes the record's size; torch would read its bytes.
    z = TorchZip(f)
    storages = lambda key: StandInStorage(z.size("data/" + key))  # noqa: E731
    return ModelUnpickler(io.BytesIO(z.read("data.pkl")), storages).load()


def load_torch_legacy_stand_in(f):
    # The legacy format: magic number, protocol version, system info, the object, then storage keys and bytes.
    for _ in range(3):
        ModelUnpickler(f).load()
    obj = ModelUnpickler(f, lambda key: StandInStorage(key)).load()
    ModelUnpickler(f).load()
    return obj


def load_numpy(f):
    numpy = real("numpy")
    if numpy is not None:
        return numpy.load(f, allow_pickle=True)
    STAND_INS_USED.add("numpy")
    return load_numpy_stream(f)


def load_numpy_stream(f):
    # numpy.load(allow_pickle=True) on an object array unpickles what follows the header.
    magic = f.read(8)
    (length,) = struct.unpack("<H" if magic[6] == 1 else "<I", f.read(2 if magic[6] == 1 else 4))
    header = f.read(length).decode("latin1")
    if "'O'" in header or "|O" in header:
        return ModelUnpickler(f).load()
    return header


def load_npz(f):
    numpy = real("numpy")
    if numpy is not None:
        return numpy.load(f, allow_pickle=True)  # members load on access: the probe phase touches every one
    STAND_INS_USED.add("numpy")
    # Without numpy: each `.npy` member as numpy.load would read it, through Python's zipfile as numpy does.
    import zipfile
    out = {}
    with zipfile.ZipFile(f) as z:
        for name in z.namelist():
            if name.endswith(".npy"):
                out[name] = load_numpy_stream(io.BytesIO(z.read(name)))
    return out


LOADERS = {
    "pickle": load_pickle,
    "joblib": load_joblib,
    "pytorch-zip": load_torch_zip,
    "pytorch-legacy": load_torch_legacy,
    "numpy": load_numpy,
    "npz": load_npz,
    "hf-remote-code": model_remote.load,
    # A GGUF model's chat templates, rendered as transformers (restricted) and llama-cpp-python (unrestricted) do.
    "gguf": lambda f: model_templates.load(f, say, real),
    # Keras 3 `.keras` archives and legacy HDF5 models, by keras.saving.load_model (safe mode first).
    "keras": lambda f: model_keras.load(f, say, real),
    "hdf5": lambda f: model_keras.load(f, say, real),
    "onnx": model_onnx.load,
}
# Formats whose object is built in the probe phase from what loading returned, before it is used (a repository's
# model constructed from its config).
CONSTRUCTORS = {"hf-remote-code": model_remote.construct, "onnx": model_onnx.construct}


CANARY_INPUT = [0.25, -0.5, 1.0, 2.0]
PLAIN = (dict, list, tuple, set, frozenset, str, bytes, bytearray, int, float, complex, bool, type(None))


def touch(obj, depth=0, seen=None):
    """The probe phase: what a consumer does next with the object — attribute access, iteration, repr."""
    seen = seen if seen is not None else set()
    if depth > 3 or id(obj) in seen or len(seen) > 10_000:
        return
    seen.add(id(obj))
    if not isinstance(obj, PLAIN):  # the repr of a big plain container is all time and memory, and calls nothing new
        attempt(repr, obj)
    if isinstance(obj, dict) or hasattr(type(obj), "keys"):
        try:
            keys = list(obj.keys())[:1000]
        except Exception:
            keys = []
        for k in keys:
            touch(attempt(obj.__getitem__, k), depth + 1, seen)
    elif isinstance(obj, (list, tuple)):
        for v in list(obj)[:1000]:
            touch(v, depth + 1, seen)
    else:
        try:
            names = [n for n in dir(obj) if not n.startswith("__")][:100]
        except Exception:
            names = []
        for name in names:
            touch(attempt(getattr, obj, name), depth + 1, seen)


def call_like_a_consumer(obj):
    """A loaded model gets called on an input: call the object, and the values of a top-level mapping or sequence,
    when callable, with a canary input (then with none). Only these: calling every callable an attribute walk finds
    would run library functions no consumer calls, and blame the model for them."""
    candidates = [obj]
    if isinstance(obj, dict):
        candidates += list(obj.values())[:100]
    elif isinstance(obj, (list, tuple)):
        candidates += list(obj)[:100]
    for c in candidates:
        if callable(c) and not isinstance(c, type):
            for args in ((list(CANARY_INPUT),), ()):
                try:
                    c(*args)
                    break
                except TypeError:
                    continue
                except Exception:
                    break


LINGER_SECONDS = 10.0


def other_threads():
    """Threads of this process besides the main one (the caller counts them itself; this only decides whether
    to wait)."""
    try:
        return len(os.listdir(f"/proc/{os.getpid()}/task")) - 1
    except OSError:
        return 0


def settle(baseline=0):
    """Once the loader returned: make what the model scheduled for later happen now, while the container still watches.
    A pending alarm fires early, young unreachable objects are finalized, atexit handlers run, and the process stays while
    the model's threads run (up to LINGER_SECONDS; the caller's observation window ends it sooner). This only helps
    payloads show themselves: the model can patch any of it, and the caller's own observation does not depend on
    it. `baseline` threads are the runtime's own, started during start-up (onnxruntime's import starts one), as the
    caller counts them. Returns how many threads beyond those were left when it stopped waiting."""
    fired = False
    try:
        delay, interval = _signal.getitimer(_signal.ITIMER_REAL)
        if delay > 0:
            _signal.setitimer(_signal.ITIMER_REAL, 0.001, interval)
            fired = True
    except Exception:
        pass
    # The young generations hold what the load created; a full collection (0.5-0.7 ms, every module's objects) is
    # left to the interpreter's exit, which the caller observes as well.
    gc.collect(1)
    attempt(atexit._run_exitfuncs)
    if fired:
        time.sleep(0.01)  # the handler runs in this thread, between bytecodes
    threads = max(0, other_threads() - baseline)
    deadline = time.monotonic() + LINGER_SECONDS
    while threads and time.monotonic() < deadline:
        time.sleep(0.02)
        threads = max(0, other_threads() - baseline)
    return threads


def attempt(fn, *args):
    try:
        return fn(*args)
    except Exception:
        return None


def fail(code, kind, error):
    message = str(error).replace("\n", " ")[:300]
    sys.stdout.flush()
    print(f"{LINE_PREFIX}{kind} {type(error).__name__}: {message}", file=sys.stderr, flush=True)
    return code


def model_file(spec):
    """`fd:N`: the descriptor the caller passed (the file it analysed, read-only); anything else: a path."""
    if spec.startswith("fd:"):
        f = os.fdopen(int(spec[3:]), "rb", closefd=False)
        f.seek(0)
        return f
    return open(spec, "rb")


def options(argv):
    """FORMAT MODEL [--no-probe] [--consumer NAME] [--compression NAME] [--import MODULE,...]; None when the line is
    wrong."""
    global COMPRESSION
    if len(argv) < 3 or argv[1] not in LOADERS:
        return None
    rest, imports, consumer = argv[3:], [], "pickle"
    for i, arg in enumerate(rest):
        value = rest[i + 1] if i + 1 < len(rest) else None
        if arg == "--consumer":
            if value not in CONSUMERS:
                return None
            consumer = value
        elif arg == "--compression":
            if value not in COMPRESSIONS:
                return None
            COMPRESSION = value
        elif arg == "--import":
            if value is None:
                return None
            imports = [m for m in value.split(",") if m]
    return LOADERS[argv[1]], argv[2], "--no-probe" not in argv[3:], consumer, imports


def start(imports, torch_format):
    """Start-up, before the model's bytes are touched: single-threaded native pools, no bytecode writes, and the
    consumer's libraries imported. Says what imported (the first `runtime` line is printed before any of the model's
    code can run), and, unless torch will be asked about the file before the model's code can run, that it will not
    be: the first `weights-only` line is then always the loader's."""
    configure()
    loaded, missing = preimport(imports)
    # Every library imported at start-up: a warm container's template imported more than this run asked for.
    loaded.update((top, version_of(module)) for top, module in REAL.items() if top not in loaded)
    missing.update((name, error) for name, error in WARM_MISSING.items() if name not in missing)
    if not (torch_format and real("torch") is not None):
        say("weights-only", "not-asked")
    import json
    detail = {"python": sys.version.split()[0], "executable": sys.executable, "libraries": loaded,
              "missing": missing}
    say("runtime", json.dumps(detail, sort_keys=True))
    quick_exit()


# What a warm container's template could not import (said with the start-up's `runtime` line).
WARM_MISSING = {}


def wait_for_model(argv):
    """A warm container: `--wait fd:N [--import MODULE,...]`. Start-up as a cold run's (the consumer's libraries
    imported, in phase `startup`), then READY on the socket N, then one request: the loader's arguments as JSON
    ({"arguments": [FORMAT, "fd:N", ...]}, what a cold run's command line would say after serve.py) with the
    model's descriptor attached (SCM_RIGHTS). The descriptor takes the socket's number, so the socket is gone and the
    process is where a cold start with those arguments would be; then main() goes on exactly as it does cold. The
    container serves this one model and ends with it. Nothing is sent back: the caller reads the container from
    outside."""
    rest = argv[3:]
    malformed = rest and (len(rest) != 2 or rest[0] != "--import")
    if len(argv) < 3 or not argv[2].startswith("fd:") or not argv[2][3:].isdigit() or malformed:
        print(f"usage: serve.py {WAIT_OPTION} fd:N [--import MODULE,...]", file=sys.stderr)
        return 2
    channel = int(argv[2][3:])
    configure()
    _, missing = preimport([m for m in rest[1].split(",") if m] if rest else [])
    WARM_MISSING.update(missing)
    import json
    import _socket
    sock = _socket.socket(fileno=channel)
    try:
        os.write(channel, READY)
        data, ancillary, flags, _ = sock.recvmsg(65536, _socket.CMSG_SPACE(4 * 4))
    except OSError as e:
        print(f"{LINE_PREFIX}no request: {e}", file=sys.stderr, flush=True)
        return 2
    finally:
        sock.detach()
    received = []
    for level, kind, payload in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            received += struct.unpack(f"{len(payload) // 4}i", payload[:len(payload) // 4 * 4])
    try:
        arguments = json.loads(data)["arguments"] if data else None
    except (ValueError, KeyError, TypeError):
        arguments = None
    if len(received) != 1 or flags & _socket.MSG_CTRUNC or not isinstance(arguments, list) \
            or not all(isinstance(a, str) for a in arguments):
        for fd in received:
            attempt(os.close, fd)
        print(f"{LINE_PREFIX}no request (the socket closed, or the request was malformed)", file=sys.stderr,
              flush=True)
        return 2
    os.dup2(received[0], channel)
    os.close(received[0])
    return main(["serve.py"] + arguments)


def settings(fd=SETTINGS_FD):
    """The run's settings (see the module's doc): read whole from descriptor `fd` (at most 1 MiB), which is closed;
    the markers and the line prefix are set. The arguments, or None when the settings are missing or malformed."""
    global LINE_PREFIX
    chunks, size = [], 0
    try:
        while size < 1 << 20:
            chunk = os.pread(fd, 65536, size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None
    finally:
        attempt(os.close, fd)
    import json
    try:
        value = json.loads(b"".join(chunks))
        arguments, markers, prefix = value["arguments"], value["markers"], value["prefix"]
    except (ValueError, KeyError, TypeError):
        return None
    if not (isinstance(arguments, list) and all(isinstance(a, str) for a in arguments) and isinstance(prefix, str)
            and isinstance(markers, dict) and all(isinstance(v, str) for v in markers.values())):
        return None
    MARKERS.update(markers)
    LINE_PREFIX = prefix
    return arguments


def run():
    """The entry point (serve.py): the settings' arguments, as main() takes them."""
    arguments = settings()
    if arguments is None:
        print("usage: serve.py (the settings on descriptor %d were missing or malformed)" % SETTINGS_FD,
              file=sys.stderr)
        return 2
    return main(["serve.py"] + arguments)


def main(argv):
    global CONSUMER
    if len(argv) > 1 and argv[1] == WAIT_OPTION:
        return wait_for_model(argv)
    parsed = options(argv)
    if parsed is None:
        print(f"usage: serve.py {{{'|'.join(LOADERS)}}} MODEL [--no-probe] [--consumer {'|'.join(CONSUMERS)}] "
              f"[--compression {'|'.join(COMPRESSIONS)}] [--import MODULE,...]", file=sys.stderr)
        return 2
    loader, model, probe, CONSUMER, imports = parsed
    if argv[1] == "hf-remote-code":
        model_remote.prepare()
    if argv[1] in model_keras.SUFFIXES:
        try:
            model_keras.prepare(model, argv[1])
        except OSError as e:
            return fail(3, "load-error", e)
    if argv[1] == "onnx" and not model_onnx.configure(argv[3:]):
        print("usage: serve.py onnx MODEL [--folder fd:N] [--name NAME]", file=sys.stderr)
        return 2
    start(imports, loader in (load_torch_zip, load_torch_legacy))
    before = set(name.split(".", 1)[0] for name in list(sys.modules))
    baseline = other_threads()
    announce("load")
    try:
        with model_file(model) as f:
            obj = loader(f)
    except (MemoryError, RecursionError) as e:
        return fail(4, "resource-exhausted", e)
    except BlockingIOError as e:  # fork or thread creation hit the process limit
        return fail(4, "resource-exhausted", e)
    except BaseException as e:  # SystemExit and KeyboardInterrupt from the model too: the load did not return
        return fail(3, "load-error", e)
    if probe:
        announce("probe")
        try:
            obj = CONSTRUCTORS.get(argv[1], lambda o: o)(obj)
            touch(obj)
            if not use(obj):
                call_like_a_consumer(obj)
        except (MemoryError, RecursionError) as e:
            return fail(4, "resource-exhausted", e)
        except BaseException as e:
            return fail(3, "probe-error", e)
    loaded = type(obj).__name__
    announce("end")
    obj = None  # what only the loader held is finalized in settle()
    attempt(lambda: say("imported", ",".join(imported_libraries(before))))
    stand_ins = STAND_INS_USED | model_remote.STAND_INS_USED
    if stand_ins:
        say("stand-ins", ",".join(sorted(stand_ins)))
    try:
        threads = settle(baseline)
    except BaseException:  # a late payload's exception: the caller has seen what it did
        threads = max(0, other_threads() - baseline)
    if threads:
        print(f"{LINE_PREFIX}left-behind threads={threads}", file=sys.stderr, flush=True)
    print(f"{LINE_PREFIX}loaded {loaded}", flush=True)
    return 0
