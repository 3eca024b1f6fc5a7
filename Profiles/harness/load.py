"""Airlock's loader harness: loads a model the way its consumer would, inside the sandbox.

    python3 -I -S load.py FORMAT MODEL [--no-probe]

FORMAT is what `airlock scan` decided from the content: pickle, joblib, pytorch-zip, pytorch-legacy, numpy, npz.
The harness announces its phases to the supervisor (startup -> load -> probe) by opening marker paths; the opens are
notified system calls, so every event after one is attributed to that phase. Everything that happens in `load` and
`probe` belongs to the model.

When torch (or numpy, joblib) is not installed in the sandbox, small stand-ins replace the handful of allowlisted
rebuild functions so benign models load completely. Every other global resolves for real: that is where a payload
acts, and where the sandbox sees it. This file is mounted read-only; it never writes outside /tmp.

How it ends (read by `airlock probe`; the model runs in this process and could forge any of it, which can only make
its own report look worse or as if it did nothing, never hide what the sandbox recorded):
    0  loaded (and probed); the last stdout line is `airlock-harness: loaded TYPE`; before it, stderr says
       `airlock-harness: left-behind threads=N processes=M` when the model left threads or processes running
    2  usage error
    3  loading raised an exception; the last stderr line is `airlock-harness: load-error TYPE: MESSAGE`
    4  loading ran out of a resource (MemoryError, RecursionError, no more processes); stderr says which
Anything else (another exit code, a signal, the deadline) means the model ended or stopped the process itself.
"""
import io
import os
import pickle
import struct
import sys
import time
import zipfile

PHASE_PREFIX = "/.airlock/phase/"


def announce(phase):
    try:
        open(PHASE_PREFIX + phase, "rb")
    except OSError:
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


# Globals that the stand-ins answer when the real library is missing. Only names Airlock's allowlist accepts.
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


class HarnessUnpickler(pickle.Unpickler):
    """pickle.Unpickler as consumers use it; stand-ins only for allowlisted rebuild names whose module is missing."""

    def __init__(self, file, storages=None):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            if (module, name) in STAND_INS:
                return STAND_INS[(module, name)]
            if module in ("torch", "torch.storage") and name in STORAGE_NAMES:
                return StandInStorage
            raise

    def persistent_load(self, pid):
        # torch: ('storage', storage_type, key, location, numel); the bytes are read as PyTorch reads them.
        if isinstance(pid, tuple) and pid and pid[0] == "storage" and self.storages is not None:
            return self.storages(str(pid[2]))
        return StandInStorage(pid)


def load_pickle(path):
    with open(path, "rb") as f:
        return HarnessUnpickler(f).load()


def load_torch_zip(path):
    # Like PyTorch's reader: the central directory, the first `<prefix>/data.pkl`, storages from `<prefix>/data/<key>`.
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        data = next(n for n in names if n == "data.pkl" or n.endswith("/data.pkl"))
        prefix = data[: -len("data.pkl")]
        storages = lambda key: StandInStorage(len(z.read(prefix + "data/" + key)))  # noqa: E731
        return HarnessUnpickler(io.BytesIO(z.read(data)), storages).load()


def load_torch_legacy(path):
    # The legacy format: magic number, protocol version, system info, the object, then storage keys and bytes.
    with open(path, "rb") as f:
        for _ in range(3):
            HarnessUnpickler(f).load()
        obj = HarnessUnpickler(f, lambda key: StandInStorage(key)).load()
        HarnessUnpickler(f).load()
        return obj


def load_numpy(path):
    try:
        import numpy
        return numpy.load(path, allow_pickle=True)
    except ImportError:
        pass
    with open(path, "rb") as f:
        return load_numpy_stream(f)


def load_numpy_stream(f):
    # numpy.load(allow_pickle=True) on an object array unpickles what follows the header.
    magic = f.read(8)
    (length,) = struct.unpack("<H" if magic[6] == 1 else "<I", f.read(2 if magic[6] == 1 else 4))
    header = f.read(length).decode("latin1")
    if "'O'" in header or "|O" in header:
        return HarnessUnpickler(f).load()
    return header


def load_npz(path):
    try:
        import numpy
        return numpy.load(path, allow_pickle=True)  # members load on access: the probe phase touches every one
    except ImportError:
        pass
    # Without numpy: each `.npy` member as numpy.load would read it, through the central directory.
    out = {}
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.endswith(".npy"):
                out[name] = load_numpy_stream(io.BytesIO(z.read(name)))
    return out


LOADERS = {
    "pickle": load_pickle,
    "joblib": load_pickle,
    "pytorch-zip": load_torch_zip,
    "pytorch-legacy": load_torch_legacy,
    "numpy": load_numpy,
    "npz": load_npz,
}


CANARY_INPUT = [0.25, -0.5, 1.0, 2.0]


def touch(obj, depth=0, seen=None):
    """The probe phase: what a consumer does next with the object — attribute access, iteration, repr."""
    seen = seen if seen is not None else set()
    if depth > 3 or id(obj) in seen or len(seen) > 10_000:
        return
    seen.add(id(obj))
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


LINGER_SECONDS = 2.0


def running_others():
    """Threads of this process besides the main one, and live processes of the sandbox besides PID 1 and this one."""
    me = os.getpid()
    try:
        threads = len(os.listdir(f"/proc/{me}/task")) - 1
    except OSError:
        threads = 0
    processes = 0
    try:
        pids = [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) not in (1, me)]
    except OSError:
        pids = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):  # exited, not yet reaped: nothing left to run
            processes += 1
    return threads, processes


def left_behind():
    """What the model left running once loaded. A consumer's long-lived process would keep it, so wait a little while
    (a delayed payload then acts where the sandbox sees it) and report what was there."""
    threads, processes = running_others()
    if threads == 0 and processes == 0:
        return None
    deadline = time.monotonic() + LINGER_SECONDS
    while time.monotonic() < deadline and running_others() != (0, 0):
        time.sleep(0.05)
    return f"threads={threads} processes={processes}"


def attempt(fn, *args):
    try:
        return fn(*args)
    except Exception:
        return None


def fail(code, kind, error):
    message = str(error).replace("\n", " ")[:300]
    sys.stdout.flush()
    print(f"airlock-harness: {kind} {type(error).__name__}: {message}", file=sys.stderr, flush=True)
    return code


def main(argv):
    if len(argv) < 3 or argv[1] not in LOADERS:
        print(f"usage: load.py {{{'|'.join(LOADERS)}}} MODEL [--no-probe]", file=sys.stderr)
        return 2
    loader, path, probe = LOADERS[argv[1]], argv[2], "--no-probe" not in argv[3:]
    announce("load")
    try:
        obj = loader(path)
    except (MemoryError, RecursionError) as e:
        return fail(4, "resource-exhausted", e)
    except BlockingIOError as e:  # fork or thread creation hit the process limit
        return fail(4, "resource-exhausted", e)
    except BaseException as e:  # SystemExit and KeyboardInterrupt from the model too: the load did not return
        return fail(3, "load-error", e)
    if probe:
        announce("probe")
        try:
            touch(obj)
            call_like_a_consumer(obj)
        except (MemoryError, RecursionError) as e:
            return fail(4, "resource-exhausted", e)
        except BaseException as e:
            return fail(3, "probe-error", e)
    lingering = left_behind()
    if lingering:
        print(f"airlock-harness: left-behind {lingering}", file=sys.stderr, flush=True)
    print(f"airlock-harness: loaded {type(obj).__name__}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
