"""ONNX models, loaded as a consumer loads them: format onnx.

MODEL is the model's descriptor; `--folder fd:N` (optional) the pack of the external-data files of its folder that
resolve inside it (`ONNXFolderPack`), read on the host by descriptor; `--name NAME` the
model's own file name. Here, inside the container:

- load: the pack is unpacked into a fresh folder of /tmp (the container's /tmp is its own tmpfs), the model copied
  there under its name (when it is too big for /tmp, read from its descriptor with the folder given as onnx.load and
  onnxruntime would take it from the path: `load_external_data_for_model(FOLDER)`, and the working folder), then,
  with whichever the runtime has,
  `onnx.load(path, load_external_data=True)` and `onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])`.
  Both are tried; when either refuses the model, loading raises its error (`load-error`): a refusal by the real
  loader is itself evidence. Locations that leave the folder were not packed, so the loader reads the real path
  inside the container, where the caller sees (and refuses) it.
- probe (`construct`): one `run` of the session on zero inputs shaped from the graph's inputs (unknown or symbolic
  dimensions 1; inputs of a type not built here skip the run). Standard ONNX operators cannot run code or touch files:
  the run is what a consumer does next, not a way in. Its errors are the runtime's answer to the input, not raised.
"""
import os
import struct

from model_consumers import real

MAGIC = b"MODEL-DIR-1\n"
ROOT = "/tmp/tmp" + os.urandom(4).hex()
FOLDER = ROOT + "/model"
MAX_FILES = 64
MAX_BYTES = 48 << 20
MAX_NAME = 1024
MAX_COMPONENTS = 32
# A model bigger than this is read from its descriptor instead of copied (the container's /tmp is small).
MAX_COPY = 16 << 20
MAX_ELEMENTS = 1 << 22
OPTIONS = {"folder": None, "name": "model.onnx"}
DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
          "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16", "tensor(int8)": "int8",
          "tensor(uint64)": "uint64", "tensor(uint32)": "uint32", "tensor(uint16)": "uint16",
          "tensor(uint8)": "uint8", "tensor(bool)": "bool"}


def plain_name(name):
    """What ONNXDetonation.modelName passes: ASCII letters, digits, _ - and . (not first), at most 128 bytes."""
    return 0 < len(name) <= 128 and name[0] not in ".-" and all(c.isascii() and (c.isalnum() or c in "_-.")
                                                                  for c in name)


def configure(argv):
    """`--folder fd:N` and `--name NAME` from the loader's command line; False when one is malformed."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if i + 1 < len(argv) else None
        if arg == "--folder":
            if value is None or not value.startswith("fd:") or not value[3:].isdigit():
                return False
            OPTIONS["folder"] = int(value[3:])
        elif arg == "--name":
            if value is None or not plain_name(value):
                return False
            OPTIONS["name"] = value
    return True


def parts(name):
    """The components of a packed name, or None when it is not one ONNXFolderPack writes."""
    if not (0 < len(name) <= MAX_NAME) or "\\" in name or "\0" in name or name.startswith("/"):
        return None
    split = name.split("/")
    if len(split) > MAX_COMPONENTS or any(p in ("", ".", "..") for p in split):
        return None
    return split


def create(path):
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def copy(src, dst, size):
    left = size
    while left > 0:
        chunk = src.read(min(left, 1 << 20))
        if not chunk:
            raise ValueError("the pack ends inside a file")
        os.write(dst, chunk)
        left -= len(chunk)


def unpack(fd):
    """The pack's files written below FOLDER, each created new (never through a link), folders made as needed."""
    f = os.fdopen(fd, "rb", closefd=False)
    f.seek(0)
    if f.read(len(MAGIC)) != MAGIC:
        raise ValueError("not an ONNX folder pack")
    total = 0
    for _ in range(MAX_FILES):
        head = f.read(2)
        if not head:
            return
        (n,) = struct.unpack("<H", head)
        name = f.read(n).decode("utf-8")
        (size,) = struct.unpack("<Q", f.read(8))
        total += size
        if name.endswith("/"):  # a folder a climbing location goes through (ONNXFolderPack.climbingFolder)
            split = parts(name[:-1])
            if split is None or size:
                raise ValueError(f"bad folder in the pack: {name[:100]!r}")
            folder = FOLDER
            for p in split:
                folder += "/" + p
                if not os.path.isdir(folder):
                    os.mkdir(folder, 0o700)
            continue
        split = parts(name)
        if split is None or total > MAX_BYTES:
            raise ValueError(f"bad file in the pack: {name[:100]!r}")
        folder = FOLDER
        for p in split[:-1]:
            folder += "/" + p
            if not os.path.isdir(folder):
                os.mkdir(folder, 0o700)
        out = create(folder + "/" + split[-1])
        try:
            copy(f, out, size)
        finally:
            os.close(out)
    if f.read(1):
        raise ValueError("too many files in the pack")


def place(f):
    """The model copied to FOLDER/NAME; None when it is too big for the container's /tmp (it is then read from its
    descriptor, `load_unplaced`)."""
    path = FOLDER + "/" + OPTIONS["name"]
    size = os.fstat(f.fileno()).st_size
    if size > MAX_COPY:
        return None
    f.seek(0)
    out = create(path)
    try:
        copy(f, out, size)
    finally:
        os.close(out)
    return path


class Loaded:
    """What the consumer holds after loading: the ModelProto and the inference session (either may be None)."""

    def __init__(self, model, session):
        self.model, self.session = model, session

    def __repr__(self):
        return f"Loaded(model={self.model is not None}, session={self.session is not None})"


def load(f):
    onnx, ort = real("onnx"), real("onnxruntime")
    if onnx is None and ort is None:
        raise ImportError("neither onnx nor onnxruntime is installed in the consumer's Python")
    os.makedirs(FOLDER, mode=0o700)
    if OPTIONS["folder"] is not None:
        unpack(OPTIONS["folder"])
    path = place(f)
    errors, model, session = [], None, None
    if onnx is not None:
        try:
            if path is not None:
                model = onnx.load(path, load_external_data=True)
            else:  # what onnx.load(path) does: the protobuf, then the external data from the model's folder
                f.seek(0)
                model = onnx.load_model_from_string(f.read())
                from onnx.external_data_helper import load_external_data_for_model
                load_external_data_for_model(model, FOLDER)
        except Exception as e:
            errors.append(e)
    if ort is not None:
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            if path is not None:
                session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
            else:  # from bytes, onnxruntime reads external data relative to the working folder
                f.seek(0)
                os.chdir(FOLDER)
                session = ort.InferenceSession(f.read(), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as e:
            errors.append(e)
    if errors:
        raise errors[0]
    return Loaded(model, session)


def zeros(numpy, arg):
    dtype = DTYPES.get(getattr(arg, "type", None))
    if dtype is None:
        return None
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in (getattr(arg, "shape", None) or [])]
    count = 1
    for d in shape:
        count *= d
    if count > MAX_ELEMENTS:
        return None
    return numpy.zeros(shape, dtype=dtype)


def construct(loaded):
    """One run of the session on zero inputs: InferenceRan, or NotRun and why."""
    numpy = real("numpy")
    session = getattr(loaded, "session", None)
    if session is None or numpy is None:
        return NotRun("no onnxruntime session")
    feeds = {}
    for arg in session.get_inputs():
        value = zeros(numpy, arg)
        if value is None:
            return NotRun(f"input {arg.name!r} of a type or size not built here")
        feeds[arg.name] = value
    try:
        outputs = session.run(None, feeds)
    except Exception as e:
        return NotRun(type(e).__name__)
    return InferenceRan(len(outputs))


class InferenceRan:
    """The probe phase's result when the session ran (`loaded InferenceRan` on stdout)."""

    def __init__(self, outputs):
        self.outputs = outputs


class NotRun:
    """The probe phase's result when there was no session to run, or it refused the zero inputs."""

    def __init__(self, why):
        self.why = why
