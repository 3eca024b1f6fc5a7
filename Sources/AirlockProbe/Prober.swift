public import AirlockAnalysis
public import AirlockFormats
public import AirlockSandbox
internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// Everything a probe needs besides the file: the sandbox profile (and its compiled filter), the verdict policy,
/// the loader harness and the deadline.
public struct ProbeOptions: Sendable {
    /// The sandbox profile.
    public var profile: Profile
    /// The filter compiled from `profile`, kept by long-lived callers; compiled once per probe otherwise.
    public var program: SeccompProgram?
    /// How the trace becomes findings.
    public var policy: VerdictPolicy
    /// Host directory holding `serve.py`, mounted read-only at `HarnessSettings.appDirectory`.
    public var harnessDirectory: String
    /// Wall-clock deadline of a detonation in seconds; the profile's when nil.
    public var timeoutSeconds: Double?
    /// Whether the harness touches the loaded object (the `probe` phase).
    public var probePhase: Bool
    /// The Python the harness loads with: the consumer's environment, mounted read-only; nil for the profile's
    /// `python3 -I -S` with the stand-ins alone (no site-packages).
    public var runtime: PythonRuntime?
    /// Bounds of the static analysis.
    public var budget: ScanBudget
    /// Seconds the static analysis of one file may take, from its start (`ScanDeadline`): past them it stops and the
    /// report is an error (`timeout`); nil: no deadline (`budget.deadline` still applies).
    public var staticTimeoutSeconds: Double? = nil
    /// Stops the static analysis (report error `cancelled`) and keeps any detonation from starting once set
    /// (airlockd: the client left).
    public var cancellation: Cancellation? = nil

    /// The static analysis's budget for one file starting now: `budget` with a fresh deadline of
    /// `staticTimeoutSeconds` and `cancellation`, when either is set.
    public func fileBudget() -> ScanBudget {
        guard staticTimeoutSeconds != nil || cancellation != nil else { return budget }
        var fresh = budget
        fresh.deadline = ScanDeadline(seconds: staticTimeoutSeconds, cancellation: cancellation)
        return fresh
    }
    /// Where detonations may find a warm sandbox of their runtime (airlockd's pool); nil: every detonation starts its
    /// own sandbox.
    public var warmStart: (any WarmStartSource)?
    /// The host each detonation's sandbox pretends to be; nil: a world drawn afresh for each (`world(for:)`).
    public var world: HostWorld? = nil
    /// Whether detonations run in a drawn world at all (`airlock exec`'s profile-as-written is the other way).
    public var drawsWorld = true
    /// How many worlds to detonate in, at most (`--worlds`, 1 to `WorldCatalog.maximum`): 1 is a single
    /// detonation.
    public var worlds = 1
    /// Seconds all the worlds' detonations together may take (`--world-budget`); nil: twice one detonation's deadline.
    public var worldBudgetSeconds: Double? = nil
    /// The worlds to choose from, in order; nil: `WorldCatalog.candidates`.
    public var worldCandidates: [DetonationWorld]? = nil
    /// Where each sandbox's host uid and gid come from (`SandboxRequest.identities`): airlockd's allocator; nil (the
    /// CLI) for the profile's.
    public var identities: (any SandboxIdentitySource)? = nil

    /// Creates options.
    public init(
        profile: Profile, program: SeccompProgram? = nil, policy: VerdictPolicy, harnessDirectory: String,
        timeoutSeconds: Double? = nil, probePhase: Bool = true, runtime: PythonRuntime? = nil,
        budget: ScanBudget = .standard
    ) {
        self.profile = profile
        self.program = program
        self.policy = policy
        self.harnessDirectory = harnessDirectory
        self.timeoutSeconds = timeoutSeconds
        self.probePhase = probePhase
        self.runtime = runtime
        self.budget = budget
    }

    /// The world a detonation runs in: `world` when set, else a fresh draw sized by the profile's file-size limit;
    /// nil when `drawsWorld` is off.
    public func drawWorld() -> HostWorld? {
        guard drawsWorld else { return nil }
        if let world { return world }
        var drawn = HostWorld.draw(fileBytes: profile.sandbox.limits.fileSizeBytes)
        if plantsCredentials { Honeytokens.plant(in: &drawn) }
        return drawn
    }

    /// Whether a drawn world gets credentials planted (`Honeytokens.plant(in:)`): unique per detonation, a read of
    /// one is `dynamic.secrets`, one seen leaving is `dynamic.exfiltration`.
    public var plantsCredentials = true

    /// The interpreter command inside the sandbox, before the harness path.
    public var interpreter: [String] { runtime?.arguments ?? ["python3", "-I", "-S"] }
    /// The interpreter command a detonation runs the harness with, as a service runs its script: no `-I` (a
    /// payload reads `sys.flags`), the environment cleaned instead (`Detonation.disguise`); `-S` without a runtime.
    public var serviceInterpreter: [String] { runtime.map { [$0.interpreter] } ?? ["python3", "-S"] }

    /// The harness directory found beside the profiles (`harness/serve.py` in the profile directories).
    public static func locateHarness() -> String? {
        ProfileLocator.locate("harness/serve.py").map { String($0.dropLast("/serve.py".count)) }
    }
}

/// `airlock probe`: static analysis, then — for formats whose loading can run code — a detonation: the file is
/// loaded by the harness as its consumer would load it, inside the sandbox, and what the loading tried becomes
/// findings with `source: dynamic`. One report per file with the trace and the time spent in each stage.
///
/// The path reads one way: the walk (`ModelWalk`) → the static analysis (`StaticScanner.scan(fd:)`) → the harness
/// format it decides (`HarnessFormat`) → `Detonation.run` (the typed trace and outcome) → `Verdict.decide` → the
/// report. Detonations block the calling thread (see `Sandbox.run`): call from a dedicated thread.
public enum Prober {
    /// Probes files and folders (recursively, in name order, as `airlock scan` walks them); one report per file. A
    /// folder holding a repository with remote code is also detonated as a whole (`RemoteCodeDetonation`).
    /// `folderBudget` bounds each folder's walk (`FolderBudget`).
    public static func probe(
        paths: [String], options: ProbeOptions, folderBudget: FolderBudget = .local, report: (Report) -> Void
    ) {
        // Files hashed ahead of their analysis stop at the same deadline as the analysis would.
        var budget = folderBudget
        if budget.fileSeconds == nil { budget.fileSeconds = options.staticTimeoutSeconds }
        ModelWalk.walk(
            paths: paths, examine: { probe(fd: $0, path: $1, options: options) },
            repository: RemoteCodeDetonation.examiner(options: options), budget: budget, report: report)
    }

    /// Probes one file.
    public static func probe(file path: String, options: ProbeOptions) -> Report {
        let fd: FileDescriptor
        do throws(SystemCallError) {
            fd = try FileDescriptor.open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK)
        } catch {
            let target = ReportTarget(path: path, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
            return Report(target: target, findings: [], error: ("io", "cannot open \(path): \(error.errnoValue.text)"))
        }
        return fd.closeAfter { file in
            ModelWalk.examineNamed(file.rawValue, path, path: path) { probe(fd: $0, path: $1, options: options) }
        }
    }

    /// Probes the file open as `fd` (`path` names it in the report). The static analysis and the detonation see the
    /// same file: the sandbox mounts it through the descriptor, never by looking the path up again.
    public static func probe(fd: Int32, path: String, options: ProbeOptions) -> Report {
        let report: Report
        let format: HarnessFormat
        let compression: String?
        switch staticStage(fd: fd, path: path, options: options) {
        case .answered(let answer): return answer
        case .detonate(let r, let f, let c): (report, format, compression) = (r, f, c)
        }
        // Nobody waits for the answer any more (airlockd: the client left): no sandbox is started for it.
        if options.cancellation?.isCancelled == true || options.budget.deadline?.cancellation?.isCancelled == true {
            var cancelled = report
            cancelled.error = (
                "cancelled", "the probe of \(path) was cancelled before its detonation (its client left): not analysed"
            )
            cancelled.add([])
            return cancelled
        }
        let plan = ConsumerPlan(
            format: format, modules: report.modules, runtime: options.runtime, compression: compression)
        let staticReport = report
        return WorldRun.detonate(report: report, options: options) { (options) throws(SandboxError) in
            if format == .onnx {
                let onnx = try ONNXDetonation.run(
                    fd: fd, path: path, report: staticReport, plan: plan, options: options)
                return (onnx.detonation, [onnx.note])
            }
            let detonation = try Detonation.run(
                fd: fd, format: format, plan: plan, options: options,
                fileName: path.split(separator: "/").last.map(String.init))
            return (detonation, [])
        }
    }

    /// What the static analysis of a probe decided: the whole answer, or a detonation of the harness format.
    enum StaticStage {
        case answered(Report)
        case detonate(Report, HarnessFormat, String?)
    }

    /// The static part of `probe(fd:path:options:)`, the one place that decides whether a file is detonated.
    static func staticStage(fd: Int32, path: String, options: ProbeOptions) -> StaticStage {
        var report = StaticScanner.scan(fd: fd, path: path, budget: options.fileBudget())
        if report.error != nil { return .answered(report) }
        guard let (format, compression) = harnessFormat(report, runtime: options.runtime),
            format != .onnx || ONNXDetonation.hasRuntime(options)
        else {
            report.add([staticOnly(report, runtime: options.runtime)])
            return .answered(report)
        }
        // A descriptor without its folder (airlockd's single file): the loader could not find the external data,
        // and a load that fails for that says nothing about the model.
        if format == .onnx, !report.externalData.isEmpty, ModelFolder.current == nil {
            report.add([ONNXDetonation.withoutFolder()])
            return .answered(report)
        }
        return .detonate(report, format, compression)
    }

    /// The probe's answer when the static analysis alone is the whole of it (the same decision `probe(fd:path:options:)`
    /// takes, never a weaker one); nil when the file must be detonated. airlockd's static lane answers with this and
    /// hands the nil cases to its detonation lane, which probes the file from the start.
    public static func probeWithoutSandbox(fd: Int32, path: String, options: ProbeOptions) -> Report? {
        if case .answered(let report) = staticStage(fd: fd, path: path, options: options) { return report }
        return nil
    }

    /// The harness format for the file the static report is about, when loading it can run code and the harness can
    /// load it; nil otherwise.
    /// load it; nil otherwise. A compressed file is loaded by the library that reads that compression by itself:
    /// `joblib.load` (which sniffs zlib, gzip, bzip2, xz, lzma, lz4 and ZF), or `pandas.read_pickle` told the
    /// compression (the second value) for a pickle of pandas objects or in zstd. Nested compressions and compressed
    /// NumPy files are loaded by nobody directly: static only. Keras models are loaded only by a `runtime` that has
    /// keras (the consumer's own; there is no stand-in for it).
    static func harnessFormat(_ report: Report, runtime: PythonRuntime? = nil) -> (HarnessFormat, String?)? {
        let format = FileFormat(rawValue: report.target.format) ?? .unknown
        guard let chain = report.target.compression else {
            // Only object arrays carry a pickle; numeric arrays are data.
            // An HDF5 file that is also a Keras archive: keras reads a `.keras` name as the archive.
            let harness = HarnessFormat(
                report.kerasArchive ? .keras : format, objectArrays: report.objectArrays,
                chatTemplate: report.chatTemplate,
                kerasModel: report.kerasModel, keras: runtime?.distribution(of: "keras") != nil)
            return harness.map { ($0, nil) }
        }
        guard let compression = Compression(rawValue: chain) else { return nil }
        switch format {
        case .joblib:
            // joblib does not read zstd; pandas.read_pickle does, and unpickles what joblib wrote until its arrays.
            if compression.joblibReads { return (.joblib, nil) }
            return compression.pandasName.map { (.pickle, $0) }
        case .pickle:
            let tops = Set(report.modules.map(ConsumerPlan.topLevel))
            if let pandas = compression.pandasName,
                HarnessConsumer.of(modules: tops) == .pandas || !compression.joblibReads
            {
                return (.pickle, pandas)
            }
            return compression.joblibReads ? (.joblib, nil) : nil
        default:
            return nil
        }
    }

    /// The info finding that says why no detonation ran.
    static func staticOnly(_ report: Report, runtime: PythonRuntime? = nil) -> Finding {
        let format = FileFormat(rawValue: report.target.format) ?? .unknown
        var reason: String
        switch format {
        case .gguf:
            reason =
                "gguf carries tensors and metadata only, and this file has no chat template: loading it runs no code, so the static analysis is the whole answer"
        case .safetensors:
            reason =
                "\(format.rawValue) carries tensors and metadata only: loading it runs no code, so the static analysis is the whole answer"
        case .numpy, .npz:
            reason =
                "numeric arrays only (no object dtype): numpy loads them without unpickling, so the static analysis is the whole answer"
        case .onnx:
            reason =
                "ONNX graphs are data; what could run (custom operators, external files) is judged statically: the consumer's Python has neither onnx nor onnxruntime to load it with in the sandbox"
        case .keras, .hdf5:
            if format == .hdf5 && !report.kerasModel {
                reason =
                    "an HDF5 file without a Keras model config: h5py reads it as data, so the static analysis is the whole answer"
            } else if let runtime {
                reason =
                    "keras is not installed in the runtime \(runtime.interpreter) (`--python`): the model is not loaded, and its serialized functions and custom objects are judged statically"
            } else {
                reason =
                    "no Python environment with keras was given (`--python`): the model is not loaded, and its serialized functions and custom objects are judged statically"
            }
        case .zip:
            reason = "a plain ZIP archive is not loaded as a model; its members were analysed statically"
        case .tar, .sevenZip:
            reason = "a \(format.rawValue) archive is not loaded as a model; its members were analysed statically"
        default:
            reason = "no loader for \(format.rawValue): static analysis only"
        }
        if let compression = report.target.compression {
            reason =
                "no loader reads \(format.rawValue) content compressed as \(compression) by itself: static analysis only"
        }
        return Finding(
            rule: "probe.static-only", severity: .info, message: reason,
            evidence: Evidence(details: [("format", format.rawValue)]))
    }
}
