public import AirlockFormats

/// The phases the loader harness announces, in order (`Profiles/harness/airlock_harness.py`, `announce`).
///
/// `startup` is where every detonation begins (the interpreter and its imports); the harness announces `load` before
/// it opens the model, `probe` before it touches the loaded object (only when asked to), and `end` once the loader
/// returned: what the model left running is then observed by the supervisor (`SandboxObservation`). The verdict
/// policy's `modelPhases` are named from these; `HarnessContractTests` reads the harness and checks they agree.
public enum HarnessPhase: String, Sendable, CaseIterable, Comparable {
    case startup, load, probe, end

    /// The phases of a detonation with or without the probe phase, in order: the harness announces `probe` only when
    /// asked to touch the object, and an `end` that skips a phase was not announced by the harness (`HarnessOutcome`).
    public static func sequence(probe: Bool) -> [HarnessPhase] { probe ? allCases : allCases.filter { $0 != .probe } }

    public static func < (a: HarnessPhase, b: HarnessPhase) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// The formats the harness can load, by the names its `LOADERS` table uses (the report's format names).
public enum HarnessFormat: String, Sendable, CaseIterable {
    case pickle, joblib
    case pytorchZip = "pytorch-zip"
    case pytorchLegacy = "pytorch-legacy"
    case numpy, npz
    /// A repository with remote code (`auto_map`), passed as a `RepositoryPack`: its modules imported, its config
    /// built and its model constructed as transformers does with `trust_remote_code=True`. Never a file's format.
    case hfRemoteCode = "hf-remote-code"
    /// A GGUF model with a chat template: the template read from the file inside the sandbox and rendered with the
    /// consumer's Jinja2, sandboxed as transformers renders it, then unsandboxed as llama-cpp-python did
    /// (CVE-2024-34359) (`Profiles/harness/airlock_templates.py`).
    case gguf
    /// A Keras 3 `.keras` archive, loaded by the consumer's keras with `keras.saving.load_model`, in safe mode first
    /// (`Profiles/harness/airlock_keras.py`). Only for a runtime that has keras (`Prober.harnessFormat`).
    case keras
    /// A legacy Keras HDF5 model (an HDF5 file with a `model_config`), loaded as `keras` files are.
    case hdf5
    /// An ONNX model, loaded from a private folder of the sandbox's `/tmp` under its own name, beside the external
    /// files of its folder (`ONNXFolderPack`): `onnx.load(load_external_data=True)`, then an onnxruntime session and
    /// one run, with whichever of the two the runtime has.
    case onnx

    /// The harness format for a file of `format`, when loading it can run code and the harness can load it: pickles
    /// in every wrapping, and NumPy files only when an array has the object dtype (`objectArrays`), since numeric
    /// arrays are data numpy reads without unpickling; GGUF files only when they carry a chat template
    /// (`chatTemplate`), which consumers render with Jinja; Keras models only when `keras` says the runtime has
    /// keras, and HDF5 files only when they name a Keras model config (`kerasModel`).
    public init?(
        _ format: FileFormat, objectArrays: Bool, chatTemplate: Bool = false, kerasModel: Bool = false,
        keras: Bool = false
    ) {
        switch format {
        case .pickle: self = .pickle
        case .joblib: self = .joblib
        case .pytorchZip: self = .pytorchZip
        case .pytorchLegacy: self = .pytorchLegacy
        case .numpy where objectArrays: self = .numpy
        case .npz where objectArrays: self = .npz
        case .gguf where chatTemplate: self = .gguf
        case .keras where keras: self = .keras
        case .hdf5 where keras && kerasModel: self = .hdf5
        case .onnx: self = .onnx
        default: return nil
        }
    }
}

/// How the supervisor and the loader harness talk besides the phase markers: the command line it is given, the
/// lines it prints and the exit codes it ends with. Each string here is written once; the harness writes the same
/// ones in Python, and `HarnessContractTests` fails when the two disagree.
public enum HarnessProtocol {
    /// Where the harness directory is mounted in the sandbox that describes a Python environment (`runtime.py`, no
    /// model involved); a detonation mounts it at `HarnessSettings.appDirectory`.
    public static let mountPoint = "/airlock/harness"
    /// The argument that asks the harness to skip the probe phase.
    public static let noProbeFlag = "--no-probe"
    /// The prefix of the model argument naming a passed descriptor (`fd:3`).
    public static let descriptorPrefix = "fd:"
    /// The script that describes a Python environment (`PythonRuntime`), inside the sandbox.
    public static let runtimeEntryPoint = mountPoint + "/runtime.py"
    /// The prefix of the one line `runtime.py` prints.
    public static let runtimeLinePrefix = "airlock-runtime: "
    /// The option naming the loader of a plain pickle (`HarnessConsumer`).
    public static let consumerOption = "--consumer"
    /// The option naming the compression pandas reads a compressed pickle with (`gzip`, `bz2`, `xz`, `zstd`):
    /// `read_pickle` infers it from a path's extension, never from an open file's.
    public static let compressionOption = "--compression"
    /// The option naming the libraries to import at start-up, comma-separated.
    public static let importOption = "--import"
    /// The option naming the descriptor of the model's folder (`ONNXFolderPack`), `fd:N`.
    public static let folderOption = "--folder"
    /// The option naming the model's file name in its folder.
    public static let nameOption = "--name"

    /// The kinds of line the harness prints after `linePrefix`; the rest of the line is detail.
    public enum Line: String, Sendable, CaseIterable {
        /// The object loaded (stdout). Never read: the model could print it.
        case loaded
        /// The model left threads running (`left-behind threads=N`, stderr).
        case leftBehind = "left-behind"
        /// Loading raised an exception (`load-error TYPE: MESSAGE`).
        case loadError = "load-error"
        /// Touching the loaded object raised.
        case probeError = "probe-error"
        /// Loading ran out of memory, stack or processes.
        case resourceExhausted = "resource-exhausted"
        /// Start-up: the interpreter and the libraries imported before the model was touched (JSON; the first one is
        /// the harness's, printed before any of the model's code can run).
        case runtime
        /// What `torch.load(weights_only=True)` said of the file (the first one, printed before the unsafe load).
        case weightsOnly = "weights-only"
        /// The top-level libraries loading and probing imported (after the loader returned; detail only).
        case imported
        /// Libraries the stand-ins answered for (detail only).
        case standIns = "stand-ins"
        /// What Jinja's sandbox said of a GGUF chat template (`accepted|refused|raised KEY …`), printed before the
        /// template is rendered unsandboxed.
        case templateSandbox = "template-sandbox"
        /// What `keras.saving.load_model(safe_mode=True)` did with a Keras model (`accepted|refused|raised TYPE: MESSAGE`),
        /// printed before the model is loaded with `safe_mode=False`.
        case kerasSafeMode = "keras-safe-mode"

        /// The exit code the harness ends with after printing this line.
        public var exitCode: ExitCode {
            switch self {
            case .loaded, .leftBehind, .runtime, .weightsOnly, .imported, .standIns, .templateSandbox, .kerasSafeMode:
                .loaded
            case .loadError, .probeError: .raised
            case .resourceExhausted: .exhausted
            }
        }
    }

    /// The harness's exit codes.
    public enum ExitCode: Int32, Sendable, CaseIterable {
        /// Loaded (and probed).
        case loaded = 0
        /// The command line was wrong.
        case usage = 2
        /// Loading or probing raised an exception.
        case raised = 3
        /// Loading ran out of a resource.
        case exhausted = 4
    }

    /// The harness's arguments (its settings' `arguments`, `HarnessSettings`): the format and the model's
    /// descriptor, `--no-probe` unless the probe phase is wanted, the pickle's consumer when not plain pickle, the
    /// libraries to import at start-up, and for ONNX the folder's pack descriptor and the model's file name.
    public static func arguments(
        format: HarnessFormat, descriptor: Int32, probe: Bool, consumer: HarnessConsumer = .pickle,
        imports: [String] = [], compression: String? = nil, folder: Int32? = nil, name: String? = nil
    ) -> [String] {
        var out = [format.rawValue, descriptorPrefix + String(descriptor)]
        if !probe { out.append(noProbeFlag) }
        if consumer != .pickle { out += [consumerOption, consumer.rawValue] }
        if let compression { out += [compressionOption, compression] }
        if !imports.isEmpty { out += [importOption, imports.joined(separator: ",")] }
        if let folder { out += [folderOption, descriptorPrefix + String(folder)] }
        if let name { out += [nameOption, name] }
        return out
    }

    /// The details of the `kind` lines among `lines` (already stripped of `linePrefix`), in order.
    static func details(_ kind: Line, in lines: [String]) -> [String] {
        let head = kind.rawValue + " "
        return lines.filter { $0.hasPrefix(head) }.map { String($0.dropFirst(head.count)) }
    }

    /// Lines starting with `prefix` (the run's `HarnessSettings.linePrefix`), without it (the last 64 KiB of output
    /// at most). An empty prefix matches nothing.
    static func lines(_ bytes: [UInt8], prefix: String) -> [String] {
        guard !prefix.isEmpty else { return [] }
        return String(decoding: bytes.suffix(65536), as: UTF8.self).split(separator: "\n")
            .filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }

    /// The first `kind` line's detail in the first 64 KiB of output: the one printed before the model could print.
    static func first(_ kind: Line, in bytes: [UInt8], prefix: String) -> String? {
        guard !prefix.isEmpty else { return nil }
        let head = kind.rawValue + " "
        return String(decoding: bytes.prefix(65536), as: UTF8.self).split(separator: "\n")
            .first { $0.hasPrefix(prefix + head) }.map { String($0.dropFirst(prefix.count + head.count)) }
    }
}

/// Which library's loader reads a plain pickle: the one its consumer uses, decided from the modules the pickle
/// imports (pandas objects are read with `pandas.read_pickle`, which retries with its compatibility unpickler).
public enum HarnessConsumer: String, Sendable, CaseIterable {
    case pickle, pandas, dill, cloudpickle

    /// The consumer of a pickle importing `modules` (top-level names).
    public static func of(modules: Set<String>) -> HarnessConsumer {
        if modules.contains("pandas") { return .pandas }
        if modules.contains("dill") { return .dill }
        if modules.contains("cloudpickle") { return .cloudpickle }
        return .pickle
    }
}
