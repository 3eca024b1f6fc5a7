public import AirlockAnalysis
public import AirlockFormats
internal import AirlockJSON
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
    /// Host directory holding `load.py`, mounted read-only at `/airlock/harness`.
    public var harnessDirectory: String
    /// Wall-clock deadline of a detonation in seconds; the profile's when nil.
    public var timeoutSeconds: Double?
    /// Whether the harness touches the loaded object (the `probe` phase).
    public var probePhase: Bool
    /// The interpreter command inside the sandbox, before the harness path.
    public var interpreter: [String]
    /// Bounds of the static analysis.
    public var budget: ScanBudget

    /// Creates options.
    public init(
        profile: Profile, program: SeccompProgram? = nil, policy: VerdictPolicy, harnessDirectory: String,
        timeoutSeconds: Double? = nil, probePhase: Bool = true, interpreter: [String] = ["python3", "-I", "-S"],
        budget: ScanBudget = .standard
    ) {
        self.profile = profile
        self.program = program
        self.policy = policy
        self.harnessDirectory = harnessDirectory
        self.timeoutSeconds = timeoutSeconds
        self.probePhase = probePhase
        self.interpreter = interpreter
        self.budget = budget
    }

    /// The harness directory found beside the profiles (`harness/load.py` in the profile directories).
    public static func locateHarness() -> String? {
        ProfileLocator.locate("harness/load.py").map { String($0.dropLast("/load.py".count)) }
    }
}

/// `airlock probe`: static analysis, then — for formats whose loading can run code — a detonation: the file is
/// loaded by the harness as its consumer would load it, inside the sandbox, and what the loading tried becomes
/// findings with `source: dynamic`. One report per file with the trace and the time spent in each stage.
///
/// Detonations block the calling thread (see `Sandbox.run`): call from a dedicated thread.
public enum Prober {
    /// Phases the harness announces, in order. `end` says the loader returned; what the model left running is then
    /// observed by the supervisor (`SandboxObservation`).
    public static let phases = ["startup", "load", "probe", "end"]

    /// The phases of a detonation with or without the probe phase: the harness announces `probe` only when asked to
    /// touch the object, and an `end` that skips a phase was not announced by the harness (`HarnessOutcome`).
    static func phases(probe: Bool) -> [String] { probe ? phases : phases.filter { $0 != "probe" } }
    /// Bytes of the harness's standard output and error kept in the report.
    static let outputTail = 4096

    /// Probes files and folders (recursively, in name order, as `airlock scan` walks them); one report per file.
    public static func probe(paths: [String], options: ProbeOptions, report: (Report) -> Void) {
        StaticScanner.scan(paths: paths, budget: options.budget, file: { probe(fd: $0, path: $1, options: options) }, report: report)
    }

    /// Probes one file.
    public static func probe(file path: String, options: ProbeOptions) -> Report {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else {
            let target = ReportTarget(path: path, size: 0, sha256: nil, format: FileFormat.unknown.rawValue)
            return Report(target: target, findings: [], error: ("io", "cannot open \(path): \(String(cString: strerror(errno)))"))
        }
        defer { close(fd) }
        return probe(fd: fd, path: path, options: options)
    }

    /// Probes the file open as `fd` (`path` names it in the report). The static analysis and the detonation see the
    /// same file: the sandbox mounts it through the descriptor, never by looking the path up again.
    public static func probe(fd: Int32, path: String, options: ProbeOptions) -> Report {
        var report = StaticScanner.scan(fd: fd, path: path, budget: options.budget)
        if report.error != nil { return report }
        guard let format = harnessFormat(report) else {
            report.add([staticOnly(report)])
            return report
        }
        detonate(fd: fd, format: format, into: &report, options: options)
        return report
    }

    /// The harness's name for the format when loading it can run code and the harness can load it; nil otherwise.
    static func harnessFormat(_ report: Report) -> String? {
        switch FileFormat(rawValue: report.target.format) ?? .unknown {
        case .pickle, .joblib, .pytorchZip, .pytorchLegacy:
            return report.target.format
        case .numpy, .npz:
            // Only object arrays carry a pickle; numeric arrays are data.
            return report.findings.contains { $0.rule == "numpy.object-dtype" } ? report.target.format : nil
        default:
            return nil
        }
    }

    /// The info finding that says why no detonation ran.
    static func staticOnly(_ report: Report) -> Finding {
        let format = FileFormat(rawValue: report.target.format) ?? .unknown
        let reason: String
        switch format {
        case .safetensors, .gguf:
            reason = "\(format.rawValue) carries tensors and metadata only: loading it runs no code, so the static analysis is the whole answer"
        case .numpy, .npz:
            reason = "numeric arrays only (no object dtype): numpy loads them without unpickling, so the static analysis is the whole answer"
        case .onnx:
            reason = "ONNX graphs are data; what could run (custom operators, external files) is judged statically, and no ONNX runtime is loaded in the sandbox"
        case .keras, .hdf5:
            reason = "no Keras runtime in the sandbox: serialized functions and custom objects are judged statically"
        case .zip:
            reason = "a plain ZIP archive is not loaded as a model; its members were analysed statically"
        default:
            reason = "no loader for \(format.rawValue): static analysis only"
        }
        return Finding(rule: "probe.static-only", severity: .info, message: reason,
                       evidence: Evidence(details: [("format", format.rawValue)]))
    }

    /// Runs the harness on the file in the sandbox and adds the dynamic findings, the trace and the timings.
    static func detonate(fd: Int32, format: String, into report: inout Report, options: ProbeOptions) {
        let started = StaticScanner.now()
        let modelFD = Sandbox.firstPassedFD
        var argv = options.interpreter + ["/airlock/harness/load.py", format, "fd:\(modelFD)"]
        if !options.probePhase { argv.append("--no-probe") }
        let result: SandboxResult
        do throws(SandboxError) {
            let model = try ModelSeal.passableDescriptor(FileDescriptor(fd), profile: options.profile)
            defer { model.close() }
            let mounts = [try MountSpec.readOnlyBind(host: options.harnessDirectory, sandbox: "/airlock/harness")]
            let observation = SandboxObservation(baselinePhase: "load", endPhase: "end",
                                                 windowSeconds: options.policy.observationSeconds)
            let request = SandboxRequest(argv: argv, profile: options.profile, timeoutSeconds: options.timeoutSeconds,
                                         extraMounts: mounts, phases: phases(probe: options.probePhase), passedFDs: [model],
                                         observation: observation)
            result = try Sandbox.run(request, program: options.program)
        } catch {
            report.timings.append(("detonationMs", StaticScanner.ms(since: started)))
            report.add([], error: ("detonation", "the sandbox could not run the loader: \(error)"))
            return
        }
        let detonationMs = StaticScanner.ms(since: started)
        let judged = StaticScanner.now()
        let outcome = HarnessOutcome.read(result, phases: phases(probe: options.probePhase))
        report.trace = result.trace.map(\.json)
        report.traceLines = traceLines(result, policy: options.policy)
        report.detonation = detonationJSON(result, argv: argv, outcome: outcome)
        if outcome.outcome != nil && !options.policy.modelPhases.contains(outcome.phase) {
            // The interpreter never reached the model: nothing was observed about it.
            report.add([], error: ("detonation", "the loader stopped before loading the model (\(outcome.detail ?? "unknown")): \(tail(result.stderr, 300))"))
        } else {
            report.add(DynamicRules.findings(result, outcome: outcome, policy: options.policy))
        }
        report.timings += [("detonationMs", detonationMs)] + phaseTimings(result)
        report.timings.append(("verdictMs", StaticScanner.ms(since: judged)))
    }

    /// Where the detonation's time went, from the trace's clock: sandbox set-up until the command started,
    /// interpreter start-up until `load`, loading until `probe`, and the rest until the end.
    static func phaseTimings(_ result: SandboxResult) -> [(String, Double)] {
        let ms = { (ns: UInt64) in Double(ns) / 1e6 }
        guard let launch = result.trace.first(where: { $0.rule == "launch" }) else { return [] }
        var out: [(String, Double)] = [("sandboxSetupMs", ms(launch.timeNs))]
        let load = result.trace.first { $0.rule == "phase" && $0.phase == "load" }
        let probe = result.trace.first { $0.rule == "phase" && $0.phase == "probe" }
        let finished = max(result.durationNs, launch.timeNs)
        // The work ends at the end marker (or the loader's exit); what follows is the supervisor's observation.
        let workEnd = min(max(result.observation?.workEndedNs ?? finished, launch.timeNs), finished)
        if let load {
            out.append(("startupMs", ms(load.timeNs - launch.timeNs)))
            let loadEnd = probe?.timeNs ?? workEnd
            out.append(("loadMs", ms(loadEnd >= load.timeNs ? loadEnd - load.timeNs : 0)))
        }
        if let probe { out.append(("probeMs", ms(workEnd >= probe.timeNs ? workEnd - probe.timeNs : 0))) }
        if result.observation?.workEndedNs != nil { out.append(("observationMs", ms(finished - workEnd))) }
        return out
    }

    /// The command's start, phase changes and every refusal the policy counts, for people; at most 40 lines.
    static func traceLines(_ result: SandboxResult, policy: VerdictPolicy) -> [String] {
        let shown = result.trace.filter {
            $0.rule == "launch" || $0.rule == "phase" || ($0.action != .allowed && DynamicRules.classify($0, policy: policy) != nil)
        }
        var lines = shown.prefix(40).map { e -> String in
            if e.rule == "phase" { return "#\(e.seq)  \(TraceText.milliseconds(e.timeNs)) ms  ── phase \(e.phase ?? "?") ──" }
            var line = "#\(e.seq)  \(TraceText.milliseconds(e.timeNs)) ms  [\(e.phase ?? "-")]  pid \(e.pid)  \(e.syscall) \(TraceText.details(e.args))"
            line += e.action == .allowed ? "  allowed" : "  \(e.action.rawValue) \(e.errno ?? "")  (\(e.rule ?? "?"))"
            return line
        }
        if shown.count > 40 { lines.append("… \(shown.count - 40) more (--format json has the whole trace)") }
        let refused = result.trace.filter { $0.action != .allowed && $0.rule != "phase" }.count
        lines.append("\(result.trace.count + result.traceDropped) notified calls, \(refused) refused; " + ending(result))
        return lines
    }

    static func ending(_ result: SandboxResult) -> String {
        if result.timedOut { return "deadline passed after \(TraceText.milliseconds(result.durationNs)) ms: killed" }
        if result.observation?.windowExpired == true {
            return "still running \(TraceText.milliseconds(result.durationNs)) ms after the start, at the end of the observation window: killed"
        }
        if let signal = result.signal { return "killed by \(signal) after \(TraceText.milliseconds(result.durationNs)) ms" }
        return "exit code \(result.exitCode ?? -1) after \(TraceText.milliseconds(result.durationNs)) ms"
    }

    /// The `detonation` member of the report.
    static func detonationJSON(_ r: SandboxResult, argv: [String], outcome: HarnessOutcome) -> JSON {
        .object([
            ("argv", .array(argv.map(JSON.string))),
            ("outcome", .string(outcome.outcome?.rawValue ?? "loaded")),
            ("phaseReached", .string(outcome.phase)),
            ("leftBehind", .optional(outcome.leftBehindSummary)),
            ("observation", observationJSON(r.observation)),
            ("exitCode", r.exitCode.map(JSON.int) ?? .null),
            ("signal", .optional(r.signal)),
            ("timedOut", .bool(r.timedOut)),
            ("durationMs", .double((Double(r.durationNs) / 1e3).rounded() / 1e3)),
            ("stdoutTail", .string(tail(r.stdout, outputTail))),
            ("stderrTail", .string(tail(r.stderr, outputTail))),
            ("traceDropped", .int(r.traceDropped)),
            ("traceDroppedBytes", .int(r.traceDroppedBytes)),
            ("limitsHit", .array(r.limitsHit.map(\.json))),
            ("cgroup", r.cgroup.json),
        ])
    }

    /// What the supervisor saw running after the loader returned (or exited).
    static func observationJSON(_ o: ObservationReport?) -> JSON {
        guard let o else { return .null }
        let ms = { (ns: UInt64) in JSON.double((Double(ns) / 1e3).rounded() / 1e3) }
        return .object([
            ("endAnnouncedMs", o.endAnnouncedNs.map(ms) ?? .null),
            ("workEndedMs", o.workEndedNs.map(ms) ?? .null),
            ("windowExpired", .bool(o.windowExpired)),
            ("firedSignals", .array(o.firedSignals.map(JSON.string))),
            ("left", .array(o.left.map { item in
                .object([("kind", .string(item.kind.rawValue)), ("pid", .int(Int(item.pid))),
                         ("name", .string(item.name)), ("timeMs", ms(item.timeNs))])
            })),
            ("leftDropped", .int(o.leftDropped)),
        ])
    }

    static func tail(_ bytes: [UInt8], _ n: Int) -> String {
        String(decoding: bytes.suffix(n), as: UTF8.self)
    }
}
