/// How the harness loads one file in a given runtime: which library's loader reads it (`HarnessConsumer`) and which
/// of the consumer's libraries it imports during start-up, before the model is touched.
///
/// Importing torch, scikit-learn or pandas opens thousands of files, starts thread pools, creates `/dev/shm`
/// semaphores and asks `uname`: that is the library's start-up, which an inference service does once before it
/// loads any model. Done in `startup`, none of it is blamed on the model; left to `load`, all of it would be.
///
/// Only modules of `libraries` are imported at start-up, and only when the runtime has them installed: the names
/// come from the model's own pickles, and importing an arbitrary module it names (one whose import has side effects)
/// during start-up would let it act where nothing is judged.
public struct ConsumerPlan: Sendable, Equatable {
    /// The loader of a plain pickle.
    public var consumer: HarnessConsumer
    /// Modules to import at start-up, in order.
    public var imports: [String]
    /// The compression pandas is told to read the pickle with (`gzip`, `bz2`, `xz`, `zstd`), for a compressed
    /// pickle only pandas reads (`Prober.harnessFormat`); nil otherwise.
    public var compression: String?

    /// Libraries whose import is an inference service's start-up (their top-level module names).
    public static let libraries: Set<String> = [
        "torch", "numpy", "scipy", "sklearn", "joblib", "pandas", "xgboost", "lightgbm", "catboost", "dill",
        "cloudpickle", "transformers", "tokenizers", "safetensors", "statsmodels", "skops", "onnx", "onnxruntime",
        "keras", "jinja2", "jax", "jaxlib", "h5py", "tensorflow", "ml_dtypes",
    ]
    /// transformers' modules that loading a repository with remote code uses, imported lazily by transformers
    /// itself: imported at start-up so that their imports (huggingface_hub, safetensors, torch's submodules) are not
    /// blamed on the repository's code.
    static let transformersModules = [
        "transformers.dynamic_module_utils", "transformers.configuration_utils", "transformers.modeling_utils",
    ]
    /// Most modules imported at start-up.
    public static let maxImports = 64

    /// The plan for a file of `format` whose pickles import `modules`, loaded with `runtime`.
    /// `compression` (pandas' name for it) makes a pickle's consumer pandas, the one library that reads it.
    public init(format: HarnessFormat, modules: Set<String>, runtime: PythonRuntime?, compression: String? = nil) {
        let tops = Set(modules.map(ConsumerPlan.topLevel))
        consumer = format == .pickle ? HarnessConsumer.of(modules: tops) : .pickle
        self.compression = format == .pickle ? compression : nil
        if self.compression != nil { consumer = .pandas }
        var wanted: [String]
        switch format {
        case .pytorchZip, .pytorchLegacy: wanted = ["torch"]
        case .joblib: wanted = ["numpy", "joblib"]
        case .numpy, .npz: wanted = ["numpy"]
        case .pickle: wanted = consumer == .pickle ? [] : [consumer.rawValue]
        case .hfRemoteCode: wanted = ["torch", "transformers"] + ConsumerPlan.transformersModules
        case .gguf: wanted = ["jinja2", "jinja2.sandbox"]
        // keras imports its backend (jax for the numpy and jax backends, else tensorflow or torch) and h5py.
        case .keras, .hdf5: wanted = ["numpy", "h5py", "jax", "keras"]
        case .onnx: wanted = ["numpy", "onnx", "onnxruntime"]
        }
        wanted += modules.filter(ConsumerPlan.importableAtStartup).sorted()
        var seen = Set<String>()
        imports = wanted.filter { m in
            let top = ConsumerPlan.topLevel(m)
            guard ConsumerPlan.libraries.contains(top), runtime?.distribution(of: top) != nil else { return false }
            return seen.insert(m).inserted
        }
        imports = Array(imports.prefix(ConsumerPlan.maxImports))
    }

    /// The start-ups a warm sandbox of `runtime` may have (`WarmSandbox`): each a list of libraries it imports before
    /// it knows its model, kept only when the runtime has all of them. A warm sandbox serves a detonation only when
    /// its libraries are among the plan's own (`serves`), so that it imports nothing a cold start would not: its
    /// start-up, trace and report are then those of a cold detonation. PyTorch files and pickles of torch objects;
    /// scikit-learn models saved with joblib.
    public static func templates(runtime: PythonRuntime?) -> [[String]] {
        guard let runtime else { return [] }
        return [["torch"], ["numpy", "joblib", "sklearn"]].filter {
            $0.allSatisfy { runtime.distribution(of: $0) != nil }
        }
    }

    /// Whether a warm sandbox whose start-up imported `template` can load a file with this plan: every library it
    /// imported is one the plan imports too (a module of it, whose import imports the package first).
    public func serves(template: [String]) -> Bool {
        let tops = Set(imports.map(ConsumerPlan.topLevel))
        return template.allSatisfy { tops.contains(ConsumerPlan.topLevel($0)) }
    }

    static func topLevel(_ module: String) -> String {
        String(module.split(separator: ".", maxSplits: 1).first ?? Substring(module))
    }

    /// Module components never imported at start-up: a package's `__main__` runs a program on the harness's own
    /// command line, and test suites start processes and servers.
    static let neverAtStartup: Set<String> = ["__main__", "tests", "test", "testing", "conftest", "_testing"]

    /// Whether `module` may be imported during start-up (besides being a consumer library's).
    static func importableAtStartup(_ module: String) -> Bool {
        isModuleName(module)
            && !module.split(separator: ".").contains { neverAtStartup.contains(String($0)) || $0.hasPrefix("test_") }
    }

    /// A dotted name of identifiers (`sklearn.ensemble._forest`): nothing else reaches the harness's command line.
    static func isModuleName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 200 else { return false }
        return name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { part in
            guard let first = part.unicodeScalars.first,
                first == "_" || (first.isASCII && first.properties.isAlphabetic)
            else { return false }
            return part.unicodeScalars.allSatisfy {
                $0 == "_" || ($0.isASCII && $0.properties.isAlphabetic) || ("0"..."9").contains($0)
            }
        }
    }
}
