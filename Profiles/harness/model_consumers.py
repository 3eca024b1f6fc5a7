"""The consumer's own libraries, as an inference process uses them: imported before the model is touched, then
asked to load the file the way their users load it, then used on a canary input.

Everything here runs inside the container, with the Python environment the service's environment named, mounted
read-only. Nothing here decides anything: the caller judges from what it observes.
"""
import importlib
import os
import sys

# What an inference service sets so that native thread pools stay at one thread: BLAS, OpenMP and tokenizers would
# otherwise start threads at import and keep them, and the model would be blamed for them.
SINGLE_THREADED = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS")

# Top-level libraries imported so far (name -> module), by `preimport` and by the loaders that need them.
REAL = {}


def configure():
    for name in SINGLE_THREADED:
        os.environ.setdefault(name, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.dont_write_bytecode = True


def version_of(module):
    v = getattr(module, "__version__", None)
    return v if isinstance(v, str) else None


def preimport(names):
    """Imports each module (and so its package), in order, before the model's bytes are touched: what a service
    imports at start-up is the runtime's behaviour, not the model's. Returns {top-level: version} of what imported
    and {name: error} of what did not."""
    loaded, missing = {}, {}
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as e:  # a broken install raises anything; SystemExit too
            missing[name] = f"{type(e).__name__}: {str(e)[:200]}"
            continue
        top = name.split(".", 1)[0]
        module = sys.modules.get(top)
        if module is not None:
            REAL[top] = module
            loaded[top] = version_of(module)
    torch = REAL.get("torch")
    if torch is not None:
        try:
            torch.set_num_threads(1)
        except Exception:
            pass
    return loaded, missing


def quick_exit():
    """Makes the process's end cost what Python's own finalization costs, once the runtime's libraries are in.

    gc.freeze(): what start-up created (tens of thousands of the libraries' objects) moves to the collector's
    permanent generation, so the collections at the interpreter's exit look at what the model and the loader made,
    not at every module of torch again (0.3-0.7 s per run with torch otherwise). Then a C-level exit handler, on_exit
    (glibc), that calls _exit(status): exit() runs handlers last-registered first, so after Python's finalization is
    complete (atexit handlers, thread joins, module teardown, finalizers, flushed streams), and after any handler the
    model's native code registered later, it skips the C++ destructors of the libraries loaded at start-up (torch's
    operator registry alone is 0.1 s). Where either is missing, the process ends the ordinary way."""
    import gc
    gc.freeze()
    if not REAL:
        return
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.on_exit(ctypes.cast(libc._exit, ctypes.c_void_p), None)
    except Exception:
        pass


def real(name):
    """The real library `name` when it imported at start-up, else None (the stand-ins answer)."""
    return REAL.get(name)


def accepts_keyword(function, name):
    try:
        import inspect
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


# --- the probe phase: a consumer's first call ---------------------------------------------------------------------

ESTIMATOR_METHODS = ("predict", "transform", "predict_proba", "decision_function", "score_samples")


def is_estimator(obj):
    return not isinstance(obj, type) and any(callable(getattr(type(obj), m, None)) for m in ESTIMATOR_METHODS)


def feature_count(obj):
    for attribute in ("n_features_in_", "n_features_", "_n_features"):
        n = getattr(obj, attribute, None)
        if isinstance(n, int) and 0 < n <= 100_000:
            return n
    method = getattr(obj, "num_feature", None)  # lightgbm.Booster, xgboost.Booster
    if callable(method):
        try:
            n = method()
            if isinstance(n, int) and 0 < n <= 100_000:
                return n
        except Exception:
            pass
    return 4


def estimator_inputs(obj):
    """Two rows of 0.5 with as many columns as the estimator was fitted on, as an array, a DataFrame with its
    feature names when it kept them, or lists without numpy."""
    n = feature_count(obj)
    numpy = real("numpy")
    rows = numpy.full((2, n), 0.5) if numpy is not None else [[0.5] * n, [0.5] * n]
    inputs = [rows]
    names = getattr(obj, "feature_names_in_", None)
    pandas = real("pandas")
    if pandas is not None and names is not None:
        try:
            inputs.insert(0, pandas.DataFrame(rows, columns=list(names)))
        except Exception:
            pass
    xgboost = sys.modules.get("xgboost")
    if xgboost is not None and type(obj).__name__ == "Booster" and type(obj).__module__.startswith("xgboost"):
        try:
            inputs.insert(0, xgboost.DMatrix(rows))
        except Exception:
            pass
    return inputs


def use_estimator(obj):
    """predict (else transform, …) on canary rows: the first method that accepts an input is the consumer's call.
    Errors are the library's answer to an input it did not expect, not the model's doing."""
    for X in estimator_inputs(obj):
        for name in ESTIMATOR_METHODS:
            method = getattr(obj, name, None)
            if not callable(method):
                continue
            try:
                method(X)
                return True
            except Exception:
                continue
    return False


def module_inputs(torch, module):
    """Canary inputs for a torch module, from its first weight's shape: (1, in) for a linear layer, (1, C, 16, 16)
    and (1, C, 16) for convolutions, token ids for an embedding, then small defaults."""
    shapes = []
    try:
        first = next((p for p in module.parameters() if p.dim() >= 2), None)
    except Exception:
        first = None
    if first is not None:
        inner = int(first.shape[1])
        if first.dim() == 2:
            shapes += [torch.full((1, inner), 0.5), torch.zeros((1, 4), dtype=torch.long)]
        elif first.dim() == 3:
            shapes.append(torch.full((1, inner, 16), 0.5))
        elif first.dim() == 4:
            shapes.append(torch.full((1, inner, 16, 16), 0.5))
    shapes += [torch.full((1, 4), 0.5), torch.zeros((1, 4), dtype=torch.long)]
    return shapes


def use_module(torch, module):
    """eval(), then forward on canary inputs without gradients, as an inference service calls a model."""
    try:
        module.eval()
    except Exception:
        pass
    with torch.no_grad():
        for x in module_inputs(torch, module):
            try:
                module(x)
                return True
            except Exception:
                continue
    return False


def use(obj):
    """The consumer's first use of a loaded model: forward for torch modules, predict for Keras models (on inputs of
    their own shapes), predict/transform for estimators.
    Returns whether the object was one of those (else the loader's generic calls apply)."""
    torch = real("torch")
    if torch is not None:
        try:
            if isinstance(obj, torch.nn.Module) or isinstance(obj, torch.jit.ScriptModule):
                use_module(torch, obj)
                return True
        except AttributeError:
            pass
    keras = real("keras")
    if keras is not None:
        import model_keras  # predict on inputs shaped from the model's own (before the estimators' guesses)
        if model_keras.use(keras, obj):
            return True
    if is_estimator(obj):
        use_estimator(obj)
        return True
    return False


def imported_libraries(before):
    """Top-level modules imported since `before` that are not the standard library's."""
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    now = {name.split(".", 1)[0] for name in list(sys.modules)}
    return sorted(n for n in now - before if n not in stdlib and not n.startswith("_") and n != "model_loader")
