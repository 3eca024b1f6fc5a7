"""Keras models, loaded as their consumers load them (the `keras` and `hdf5` loaders of model_loader).

A Keras 3 `.keras` archive or a legacy HDF5 `.h5` model is read by `keras.saving.load_model(path)`, which decides the
format from the path's extension and never reads an open file: the model's descriptor is given a name with the
right extension in the container's private /tmp: a copy of the passed descriptor's bytes (the ones the caller
analysed), made during start-up, before the `load` phase. A model larger than the container's /tmp (or its file size
limit) is read from the descriptor by the functions load_model calls once it has opened the path.

Keras needs a backend chosen before it is imported (`KERAS_BACKEND`; keras' own default, tensorflow, when unset):
the consumer's when the container's environment names one, else tensorflow when it is installed (keras' default),
else numpy (keras 3 imports jax for it). Then:

1. `load_model(path)` with the default `safe_mode=True`; a `keras-safe-mode accepted|refused|raised TYPE: MESSAGE`
   line says what it did (`refused`: keras' own refusal, which names safe_mode; `raised`: any other exception).
   Safe mode refuses Lambda layers' marshalled code in `.keras` archives, but it is no container: keras 3.3's legacy
   HDF5 reader ignores it and runs a Lambda, and keras before 3.9 imports any module a config names
   (CVE-2025-1550). Whatever it runs happens in the `load` phase, where the container sees it;
2. `load_model(path, safe_mode=False)`, as a consumer who trusts the file (or was told to) loads it;
3. in the probe phase (`predict`), `model.predict` on canary inputs shaped from `model.inputs` (unknown dimensions
   as 1); the library's exceptions on an input it did not expect are swallowed.
"""
import os

BACKENDS = ("tensorflow", "jax", "torch", "numpy")
SUFFIXES = {"keras": ".keras", "hdf5": ".h5"}
# The model's name in the container's private /tmp (`prepare`); None when it did not fit there (then the descriptor).
PATH = None
FORMAT = None
MAX_INPUTS = 16
MAX_ELEMENTS = 1 << 16


def backend():
    """The backend keras is imported with: the environment's, else tensorflow when installed, else numpy."""
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen in BACKENDS:
        return chosen
    try:
        import importlib.util
        if importlib.util.find_spec("tensorflow") is not None:
            return "tensorflow"
    except (ImportError, ValueError):
        pass
    return "numpy"


def prepare(model, fmt):
    """Start-up, before keras is imported and before the model is touched: the backend, and the model under a name
    with the extension load_model wants: a private copy of the passed descriptor's bytes in the container's /tmp (a
    link to `/proc/self/fd/N` is not followed: the caller performs the container's opens), or the path itself when
    it already has the extension. When the copy does not fit (the container's /tmp and file size), PATH stays None."""
    global PATH, FORMAT
    FORMAT = fmt
    os.environ["KERAS_BACKEND"] = backend()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    suffix = SUFFIXES[fmt]
    if not model.startswith("fd:") and model.endswith(suffix):
        PATH = model
        return
    import shutil
    import tempfile
    folder = tempfile.mkdtemp(prefix="keras-")
    PATH = os.path.join(folder, "model" + suffix)
    source = os.fdopen(int(model[3:]), "rb", closefd=False) if model.startswith("fd:") else open(model, "rb")
    try:
        with source, open(PATH, "xb", buffering=0) as copy:
            source.seek(0)
            shutil.copyfileobj(source, copy, 1 << 20)
    except OSError:  # EFBIG (Python ignores SIGXFSZ) or ENOSPC: the container's limits; load from the descriptor
        os.unlink(PATH)
        PATH = None


def first_line(error):
    text = str(error)
    return text.splitlines()[0][:200] if text else ""


def load(f, say, real):
    """load_model in safe mode (said on a `keras-safe-mode` line), then as a trusting consumer does."""
    keras = real("keras")
    if keras is None:
        raise ImportError("keras is not installed in this runtime: a Keras model is only analysed statically")
    if FORMAT is None:
        raise ValueError("the Keras loader was not prepared")
    try:
        load_model(keras, f, True)
        say("keras-safe-mode", "accepted")
    except Exception as e:  # keras' refusal names safe_mode; anything else is the load failing on its own
        answer = "refused" if "safe_mode" in str(e) else "raised"
        say("keras-safe-mode", f"{answer} {type(e).__name__}: {first_line(e)}")
    return load_model(keras, f, False)


def load_model(keras, f, safe_mode):
    """keras.saving.load_model(PATH, safe_mode=…); for a model too large for the private copy, what it calls once it
    has opened the path: saving_lib.load_model on the open file (`.keras`), or the legacy HDF5 reader on an
    h5py.File of it (which takes no safe_mode: keras 3.3 does not pass it on)."""
    if PATH is not None:
        return keras.saving.load_model(PATH, safe_mode=safe_mode)
    f.seek(0)
    if FORMAT == "keras":
        from keras.src.saving import saving_lib
        return saving_lib.load_model(f, safe_mode=safe_mode)
    import h5py
    from keras.src.legacy.saving import legacy_h5_format
    with h5py.File(f, "r") as h5:
        return legacy_h5_format.load_model_from_hdf5(h5)


def canary_inputs(model):
    """One array per model input, of its dtype and shape (unknown dimensions 1), filled with a small value; None
    when the inputs are unknown or too large."""
    import numpy
    try:
        inputs = list(model.inputs)
    except Exception:
        return None
    if not inputs or len(inputs) > MAX_INPUTS:
        return None
    arrays = []
    for tensor in inputs:
        shape = tuple(int(d) if isinstance(d, int) and d > 0 else 1 for d in tuple(tensor.shape))
        if len(shape) > 8 or int(numpy.prod(shape, dtype=numpy.int64)) > MAX_ELEMENTS:
            return None
        dtype = str(getattr(tensor, "dtype", "float32") or "float32")
        try:
            arrays.append(numpy.full(shape, 0.25 if "float" in dtype else 1, dtype=dtype))
        except (TypeError, ValueError):
            arrays.append(numpy.full(shape, 0.25, dtype="float32"))
    return arrays[0] if len(arrays) == 1 else arrays


def use(keras, model):
    """The consumer's first call: predict on canary inputs. Returns whether obj was a Keras model."""
    if not isinstance(model, keras.Model):
        return False
    x = canary_inputs(model)
    if x is not None:
        try:
            model.predict(x, verbose=0)
        except Exception:
            pass
    return True
