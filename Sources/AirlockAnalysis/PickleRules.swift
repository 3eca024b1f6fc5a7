/// What Airlock knows about the Python globals a pickle can import.
///
/// An **allowlist** of globals that model files need and that cannot run code by themselves (torch's rebuild
/// functions and storage types, `collections.OrderedDict`, NumPy's array reconstruction, …), and a **denylist** for
/// the unambiguous code-execution, process, network and file-system cases. Everything on neither list is *unknown*:
/// never silently clean — it makes the file at least suspicious, with the names as evidence. The lists are data,
/// matched on the full `module.name` (dotted protocol-4 names included) and on the module alone.
public enum PickleRules {
    /// How a global is classified.
    public enum Class: Sendable, Equatable {
        /// Known and needed by model files.
        case safe
        /// Runs code, starts processes, opens connections or files, or builds such calls: the reason, and whether
        /// it is unambiguous (`critical`) or a building block that has no business in a model (`high`).
        case dangerous(String, critical: Bool)
        /// On neither list.
        case unknown
    }

    /// Classifies `module.name`.
    public static func classify(module: String, name: String) -> Class {
        let full = "\(module).\(name)"
        if safeGlobals.contains(full) { return .safe }
        if safeModulePrefixes.contains(where: { module == $0 }) && safeNamesInModules.contains(name) { return .safe }
        if let reason = dangerousGlobals[full] { return .dangerous(reason, critical: !highGlobals.contains(full)) }
        // Dotted protocol-4 names: module "builtins", name "getattr.__call__" is still builtins.getattr.
        let firstName = name.split(separator: ".").first.map(String.init) ?? name
        let short = "\(module).\(firstName)"
        if let reason = dangerousGlobals[short] { return .dangerous(reason, critical: !highGlobals.contains(short)) }
        let root = module.split(separator: ".").first.map(String.init) ?? module
        for candidate in [module, root] {
            if let reason = dangerousModules[candidate] {
                return .dangerous(reason, critical: !highModules.contains(candidate))
            }
        }
        return .unknown
    }

    /// Globals model files need, none of which can run code on its own. Arguments that name other globals are
    /// checked as imports of their own.
    static let safeGlobals: Set<String> = [
        // Python built-ins and containers
        "collections.OrderedDict", "collections.defaultdict", "collections.deque", "collections.Counter",
        "builtins.set", "builtins.frozenset", "builtins.bytearray", "builtins.slice", "builtins.complex",
        "builtins.int", "builtins.float", "builtins.bool", "builtins.str", "builtins.bytes", "builtins.list",
        "builtins.dict", "builtins.tuple", "builtins.object", "builtins.range",
        "__builtin__.set", "__builtin__.frozenset", "__builtin__.bytearray", "__builtin__.slice",
        "__builtin__.complex", "__builtin__.object",
        "copyreg._reconstructor", "copy_reg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__",
        "_codecs.encode", "codecs.encode",
        "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta", "datetime.timezone",
        "decimal.Decimal", "fractions.Fraction", "uuid.UUID", "pathlib.PosixPath", "pathlib.PurePosixPath",
        "argparse.Namespace", "types.SimpleNamespace", "enum.Enum",
        // PyTorch: what torch.load(weights_only=True) accepts
        "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
        "torch._utils._rebuild_qtensor", "torch._utils._rebuild_sparse_tensor",
        "torch._utils._rebuild_device_tensor_from_numpy", "torch._utils._rebuild_meta_tensor_no_storage",
        "torch._utils._rebuild_wrapper_subclass", "torch._utils._rebuild_nested_tensor",
        "torch._utils._rebuild_xla_tensor", "torch._utils._rebuild_mps_tensor",
        "torch._tensor._rebuild_from_type", "torch._tensor._rebuild_from_type_v2",
        "torch.nn.parameter.Parameter", "torch.nn.parameter.Buffer", "torch.Size", "torch.device", "torch.dtype",
        "torch.storage.UntypedStorage", "torch.storage.TypedStorage", "torch.storage._StorageBase",
        "torch.serialization._get_layout", "torch.per_tensor_affine", "torch.per_channel_affine",
        "torch.strided", "torch.sparse_coo", "torch.sparse_csr", "torch._C._nn.gelu",
        // NumPy reconstruction
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.ndarray", "numpy.dtype",
        "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer", "numpy.ma.core._mareconstruct",
        "numpy.dtypes.Float64DType", "numpy.dtypes.Float32DType", "numpy.dtypes.Float16DType",
        "numpy.dtypes.Int64DType", "numpy.dtypes.Int32DType", "numpy.dtypes.Int8DType", "numpy.dtypes.UInt8DType",
        "numpy.dtypes.BoolDType",
        // joblib's wrappers around NumPy arrays
        "joblib.numpy_pickle.NumpyArrayWrapper", "joblib.numpy_pickle_compat.NDArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
    ]

    /// Modules whose listed names are safe (storage and dtype constants).
    static let safeModulePrefixes: [String] = ["torch"]
    static let safeNamesInModules: Set<String> = [
        "FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage",
        "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage", "ComplexFloatStorage", "ComplexDoubleStorage",
        "QUInt8Storage", "QInt8Storage", "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage",
        "Float8_e4m3fnStorage", "Float8_e5m2Storage",
        "float16", "float32", "float64", "bfloat16", "half", "float", "double", "int8", "int16", "int32", "int64",
        "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128", "long", "int", "short",
        "float8_e4m3fn", "float8_e5m2", "qint8", "quint8", "qint32", "contiguous_format", "channels_last",
        "preserve_format",
    ]

    /// Globals that run code or build calls that do, with the reason.
    static let dangerousGlobals: [String: String] = [
        "builtins.exec": "executes Python source", "builtins.eval": "evaluates Python source",
        "builtins.compile": "compiles Python source", "builtins.__import__": "imports any module",
        "builtins.getattr": "reaches any attribute (gadget)", "builtins.setattr": "sets any attribute",
        "builtins.delattr": "deletes attributes", "builtins.open": "opens files", "builtins.input": "reads input",
        "builtins.breakpoint": "starts a debugger", "builtins.globals": "reaches module globals",
        "builtins.locals": "reaches local variables", "builtins.vars": "reaches namespaces",
        "builtins.apply": "calls any callable", "builtins.execfile": "executes a file",
        "__builtin__.eval": "evaluates Python source", "__builtin__.exec": "executes Python source",
        "__builtin__.execfile": "executes a file", "__builtin__.__import__": "imports any module",
        "__builtin__.getattr": "reaches any attribute (gadget)", "__builtin__.open": "opens files",
        "__builtin__.file": "opens files", "__builtin__.compile": "compiles Python source",
        "operator.attrgetter": "reaches any attribute (gadget)",
        "operator.methodcaller": "calls any method (gadget)", "operator.itemgetter": "builds gadgets",
        "operator.getitem": "builds gadgets", "_operator.attrgetter": "reaches any attribute (gadget)",
        "_operator.methodcaller": "calls any method (gadget)",
        "functools.partial": "binds arguments to any callable (gadget)",
        "functools.reduce": "calls any callable (gadget)",
        "types.FunctionType": "builds a function from code", "types.CodeType": "builds code objects",
        "types.MethodType": "binds methods (gadget)", "types.ModuleType": "creates modules",
        "marshal.loads": "loads code objects", "marshal.load": "loads code objects",
        "pickle.loads": "loads a nested pickle", "pickle.load": "loads a nested pickle",
        "_pickle.loads": "loads a nested pickle", "cPickle.loads": "loads a nested pickle",
        "torch.load": "loads a nested pickle", "torch.storage._load_from_bytes": "loads a nested pickle",
        "numpy.load": "loads files (allow_pickle)", "numpy.testing._private.utils.runstring": "executes Python source",
        "logging.config.dictConfig": "calls factories named in a dict",
        "logging.config.fileConfig": "reads and runs a config",
        "logging.config.listen": "opens a socket that accepts configurations", "logging.config.valid_ident": "gadget",
        "logging.config._resolve": "imports any name",
        "pkgutil.resolve_name": "imports any name", "pydoc.locate": "imports any name",
        "inspect.getattr_static": "reaches any attribute", "sys.modules": "reaches every module",
        "torch.hub.load": "downloads and runs code", "torch.jit.load": "loads TorchScript",
        "torch.classes.load_library": "loads native code", "torch.ops.load_library": "loads native code",
        "site.main": "runs site initialisation", "site.addsitedir": "runs .pth files",
        "venv.create": "creates environments", "zipimport.zipimporter": "imports code from archives",
        "tempfile.mktemp": "file-system access",
        "pip.main": "installs packages", "pip._internal.main": "installs packages",
        "pip._internal.cli.main.main": "installs packages",
        "code.InteractiveConsole": "runs Python source", "code.InteractiveInterpreter": "runs Python source",
        "code.interact": "runs an interactive interpreter", "code.compile_command": "compiles Python source",
        // Code execution inside the ML libraries themselves: each runs source or code the file supplies.
        "torch.fx.graph_module.reduce_graph_module": "executes Python source the file supplies",
        "torch.fx.graph_module.reduce_package_graph_module": "executes Python source the file supplies",
        "torch.fx.graph_module.reduce_deploy_graph_module": "executes Python source the file supplies",
        "torch.fx.graph_module._forward_from_src": "executes Python source",
        "torch.fx.graph_module._exec_with_source": "executes Python source",
        "torch.fx.graph_module._format_import_block": "gadget",
        "torch.package.package_importer.PackageImporter":
            "imports code from a package", "torch.utils.cpp_extension.load_inline": "compiles and loads native code",
        "torch.utils.cpp_extension.load": "compiles and loads native code",
    ]

    /// Dangerous globals that are building blocks rather than code execution on their own.
    static let highGlobals: Set<String> = [
        "operator.itemgetter", "operator.getitem", "functools.partial", "functools.reduce", "types.MethodType",
        "types.ModuleType", "pickle.loads", "pickle.load", "_pickle.loads", "cPickle.loads", "torch.load",
        "torch.storage._load_from_bytes", "numpy.load", "inspect.getattr_static", "sys.modules",
        "builtins.globals", "builtins.locals", "builtins.vars", "builtins.input", "builtins.setattr",
        "builtins.delattr", "tempfile.mktemp", "logging.config.valid_ident", "venv.create", "site.addsitedir",
        // torch.fx's GraphModule pickles carry their forward as source: an honest traced model does this too, so
        // it is high (suspicious), not critical; the code is the file's, and the detonation shows what it does.
        "torch.fx.graph_module.reduce_graph_module", "torch.fx.graph_module.reduce_package_graph_module",
        "torch.fx.graph_module.reduce_deploy_graph_module", "torch.fx.graph_module._format_import_block",
    ]

    /// Modules whose globals are suspect but not code execution by themselves.
    static let highModules: Set<String> = [
        "builtins", "__builtin__", "sys", "gc", "inspect", "tempfile", "glob", "fileinput", "io", "_io",
        "pathlib", "platform", "signal", "resource", "threading", "_thread", "thread", "mmap", "sqlite3", "dbm",
        "ssl", "venv", "pkgutil", "pydoc",
    ]

    /// Modules any global of which is treated as dangerous, with the reason.
    static let dangerousModules: [String: String] = [
        "os": "process and file-system access", "posix": "process and file-system access",
        "nt": "process and file-system access", "subprocess": "starts processes", "pty": "starts processes",
        "commands": "runs shell commands", "popen2": "starts processes", "multiprocessing": "starts processes",
        "runpy": "runs modules", "timeit": "executes Python source", "cProfile": "executes Python source",
        "profile": "executes Python source", "pdb": "executes Python source", "bdb": "executes Python source",
        "trace": "executes Python source", "doctest": "executes Python source", "code": "runs Python source",
        "codeop": "compiles Python source", "importlib": "imports any module", "imp": "imports any module",
        "ctypes": "calls native code", "_ctypes": "calls native code", "cffi": "calls native code",
        "socket": "network access", "_socket": "network access", "ssl": "network access",
        "smtplib": "network access", "ftplib": "network access", "telnetlib": "network access",
        "poplib": "network access", "imaplib": "network access", "nntplib": "network access",
        "http": "network access", "urllib": "network access", "urllib2": "network access",
        "urllib3": "network access", "requests": "network access", "httpx": "network access",
        "aiohttp": "network access", "xmlrpc": "network access", "socketserver": "network access",
        "asyncio": "processes and network access", "webbrowser": "starts processes", "shutil": "file-system access",
        "tempfile": "file-system access", "glob": "file-system access", "fileinput": "file-system access",
        "io": "file-system access", "_io": "file-system access", "pathlib": "file-system access",
        "builtins": "built-in not known to be safe", "__builtin__": "built-in not known to be safe",
        "sys": "interpreter internals", "gc": "interpreter internals", "inspect": "interpreter internals",
        "dill": "unrestricted deserialisation", "cloudpickle": "unrestricted deserialisation",
        "pickle": "unrestricted deserialisation", "_pickle": "unrestricted deserialisation",
        "shelve": "unrestricted deserialisation", "marshal": "loads code objects",
        "pip": "installs packages", "setuptools": "runs build code", "distutils": "runs build code",
        "ensurepip": "installs packages", "venv": "creates environments", "platform": "runs commands (py2 popen)",
        "signal": "signal handling", "resource": "resource limits", "threading": "starts threads",
        "_thread": "starts threads", "thread": "starts threads", "mmap": "maps memory",
        "zipimport": "imports code from archives", "pkgutil": "imports any name", "pydoc": "imports any name",
        "sqlite3": "file-system access", "dbm": "file-system access",
    ]
}
