public import AirlockAnalysis
public import AirlockSandbox
public import AirlockTrace
public import AirlockSystem
internal import AirlockJSON

/// One detonation: the harness loading a file in the sandbox, and what the supervisor observed — the typed trace
/// (`result.trace`, with the exit, the observation and the limits hit) and how the loader ended (`outcome`).
///
/// `run` only runs and reads; the policy judges it afterwards (`DynamicRules`, `Verdict.decide`).
public struct Detonation: Sendable {
    /// The harness's command line inside the sandbox (`python3 /srv/NAME/serve.py`).
    public var argv: [String]
    /// The arguments its settings carried (`HarnessSettings`, `HarnessProtocol.arguments`).
    public var arguments: [String] = []
    /// The prefix of the harness's lines in this run (`HarnessSettings.linePrefix`).
    public var linePrefix: String
    /// The phases the harness was to announce, in order.
    public var phases: [HarnessPhase]
    /// What the sandbox run produced: the trace, the exit, captured output, the observation, the cgroup.
    public var result: SandboxResult
    /// How the loader ended, decided from `result`.
    public var outcome: HarnessOutcome
    /// Milliseconds from the request until the sandbox was gone.
    public var durationMs: Double
    /// The Python it loaded with, and the libraries it used (nil for the bare `python3 -I -S` with stand-ins).
    public var runtime: RuntimeSummary?
    /// The runtime's installed distributions by top-level module (empty without a runtime).
    var installed: [String: PythonRuntime.Distribution] = [:]
    /// Whether it ran in a warm sandbox (`WarmSandbox`): started before the model, handed it through a socket. The
    /// deadline and `durationMs` then count from the handoff.
    public var warm = false
    /// The world it ran in (`SandboxRequest.world`), with its planted credentials; nil: the profile as written.
    public var world: HostWorld? = nil

    /// Bytes of the harness's standard output and error kept in the report.
    static let outputTail = 4096

    /// Wraps a finished run; the outcome is read from it.
    public init(
        argv: [String], phases: [HarnessPhase], result: SandboxResult, durationMs: Double,
        runtime: PythonRuntime? = nil, linePrefix: String, arguments: [String] = []
    ) {
        self.argv = argv
        self.arguments = arguments
        self.linePrefix = linePrefix
        self.phases = phases
        self.result = result
        self.outcome = HarnessOutcome.read(result, phases: phases, prefix: linePrefix)
        self.durationMs = durationMs
        self.runtime = runtime.map { Detonation.runtimeSummary($0, result: result, prefix: linePrefix) }
        self.installed = runtime?.distributions ?? [:]
    }

    /// The runtime's part of the report: the start-up libraries from the first `runtime` line (printed before the
    /// model was touched), and what the harness said afterwards.
    static func runtimeSummary(_ runtime: PythonRuntime, result: SandboxResult, prefix: String) -> RuntimeSummary {
        var startup: [String] = []
        if let line = HarnessProtocol.first(.runtime, in: result.stderr, prefix: prefix),
            case .object(let members)? = try? JSON.parse(Array(line.utf8)),
            case .object(let libraries)? = members.first(where: { $0.0 == "libraries" })?.1
        {
            startup = libraries.map(\.0).sorted()
        }
        let lines = HarnessProtocol.lines(result.stderr, prefix: prefix)
        let list = { (kind: HarnessProtocol.Line) -> [String] in
            (HarnessProtocol.details(kind, in: lines).last ?? "").split(separator: ",").map(String.init)
                .filter(ConsumerPlan.isModuleName).prefix(100).map { $0 }
        }
        // The harness says `not-asked` at start-up when torch will not be asked: the first line is always its own.
        let weightsOnly = HarnessProtocol.first(.weightsOnly, in: result.stderr, prefix: prefix).map {
            String($0.prefix(300))
        }
        .flatMap { $0 == "not-asked" ? nil : $0 }
        return runtime.summary(
            startup: startup, loaded: list(.imported), standIns: list(.standIns), weightsOnly: weightsOnly)
    }

    /// The trace: every notified call, in the order the supervisor answered them.
    public var trace: [TraceEvent] { result.trace }

    /// Loads the file open as `fd` with the harness as `format`, in the sandbox `options` describe. The sandbox
    /// receives the file through the descriptor, never by looking its path up again.
    ///
    /// With `options.warmStart`, a ready warm sandbox of the same runtime whose start-up the plan covers is used when
    /// there is one (`WarmSandbox`);
    /// otherwise, or when it could not take the model, a sandbox is started for this file alone (cold).
    ///
    /// `folder` (an ONNX model's external files, `ONNXFolderPack`) is passed as a second descriptor, with the model's
    /// file name `name`; such a detonation always starts cold. So does one in a `world` (`SandboxRequest.world`: the
    /// host persona, the clock).
    public static func run(
        fd: Int32, format: HarnessFormat, plan: ConsumerPlan? = nil, options: ProbeOptions,
        folder: FileDescriptor? = nil, name: String? = nil, fileName: String? = nil, placing: Bool = true,
        world: HostWorld? = nil
    ) throws(SandboxError) -> Detonation {
        let plan = plan ?? ConsumerPlan(format: format, modules: [], runtime: options.runtime)
        if folder == nil, name == nil, world == nil,
            let warm = options.warmStart?.take(for: options, plan: plan),
            let detonation = try warm.detonate(fd: fd, format: format, plan: plan, options: options)
        {
            return detonation
        }
        let started = StaticScanner.now()
        let phases = HarnessPhase.sequence(probe: options.probePhase)
        let settings = HarnessSettings.draw(avoiding: options.runtime?.trees ?? [])
        let argv = options.serviceInterpreter + [settings.entryPoint]
        let model = try ModelSeal.passableDescriptor(
            FileDescriptor(fd), profile: options.profile, identities: options.identities)
        defer { model.close() }
        // The model at ~/models/NAME when its loader opens a path (ModelPlacement); else descriptor 6.
        let world = world ?? options.drawWorld()
        let home = world?.user.home ?? options.profile.sandbox.environment.last { $0.0 == "HOME" }?.1 ?? "/tmp"
        let placed = placing ? try ModelPlacement.place(model, format: format, name: fileName, home: home) : nil
        var arguments = HarnessProtocol.arguments(
            format: format, descriptor: HarnessSettings.descriptor + 1, probe: options.probePhase,
            consumer: plan.consumer, imports: plan.imports, compression: plan.compression,
            folder: folder.map { _ in HarnessSettings.descriptor + 2 }, name: name)
        if let placed { arguments[1] = placed.path }
        let config = try settings.descriptor(arguments: arguments)
        defer { config.close() }
        var passed = [config] + (placed == nil ? [model] : [])
        if let folder {
            let sealed = try ModelSeal.passableDescriptor(
                folder, profile: options.profile, identities: options.identities)
            passed.append(sealed)
        }
        defer { for extra in passed.dropFirst(placed == nil ? 2 : 1) { extra.close() } }
        var trees = (options.runtime?.trees ?? []) + [settings.appDirectory]
        if let placed { trees.append(String(placed.path[..<placed.path.lastIndex(of: "/")!])) }
        var request = SandboxRequest(
            argv: argv, profile: options.profile, timeoutSeconds: options.timeoutSeconds,
            extraMounts: try mounts(options, settings: settings) + (placed.map { [$0.mount] } ?? []),
            phases: phases.map(\.rawValue), passedFDs: passed, observation: observation(options), runtimeTrees: trees)
        request.phaseMarkers = settings.phaseMarkers
        // The interpreter's and its libraries' start-up: counted, not listed (its refusals are listed).
        request.quietPhase = HarnessPhase.startup.rawValue
        request.world = world
        request.identities = options.identities
        disguise(&request)
        let result: SandboxResult
        do throws(SandboxError) {
            result = try Sandbox.run(request, program: options.program)
        } catch  where placed != nil && error.kind == .setup {
            // The file did not fit where the world keeps the home: the model by its descriptor, as before.
            return try run(
                fd: fd, format: format, plan: plan, options: options, folder: folder, name: name, placing: false,
                world: world)
        }
        var detonation = Detonation(
            argv: argv, phases: phases, result: result, durationMs: StaticScanner.ms(since: started),
            runtime: options.runtime, linePrefix: settings.linePrefix, arguments: arguments)
        detonation.world = request.world
        return detonation
    }

    /// What the interpreter must not be told by its environment, now that it runs as a service would (without `-I`):
    /// every `PYTHON*` variable goes, and `PYTHONDONTWRITEBYTECODE=1` (what service images set) keeps it from
    /// writing bytecode, in the profile's environment and in the world's.
    static func disguise(_ request: inout SandboxRequest) {
        let python = { (name: String) in name.hasPrefix("PYTHON") }
        request.profile.sandbox.environment.removeAll { python($0.0) }
        request.profile.sandbox.environment.append(("PYTHONDONTWRITEBYTECODE", "1"))
        if var world = request.world {
            world.environment.removeAll { python($0.name) }
            world.setEnvironment("PYTHONDONTWRITEBYTECODE", "1")
            request.world = world
        }
    }

    /// The runtime's environment and the harness, read-only: what every detonation's sandbox mounts besides the
    /// profile's.
    static func mounts(_ options: ProbeOptions, settings: HarnessSettings) throws(SandboxError) -> [MountSpec] {
        (options.runtime?.mounts ?? [])
            + (try HarnessFiles.mounts(from: options.harnessDirectory, at: settings.appDirectory))
    }

    /// What the supervisor watches once the loader's work ended: the threads and handlers the runtime had at `load`
    /// are its own; the window is the policy's.
    static func observation(_ options: ProbeOptions) -> SandboxObservation {
        SandboxObservation(
            baselinePhase: HarnessPhase.load.rawValue, endPhase: HarnessPhase.end.rawValue,
            windowSeconds: options.policy.observationSeconds)
    }

    /// Whether the loader stopped before the model's phases: nothing was observed about the model.
    func stoppedBeforeModel(_ policy: VerdictPolicy) -> Bool {
        outcome.outcome != nil && !policy.modelPhases.contains(outcome.phase)
    }

    /// Where the detonation's time went, from the trace's clock: sandbox set-up until the command started,
    /// interpreter start-up until `load`, loading until `probe`, and the rest until the end. A warm sandbox's
    /// start-up and wait before the handoff are `warmWaitMs`, and its `startupMs` runs from the handoff.
    var phaseTimings: [(String, Double)] {
        let ms = { (ns: UInt64) in Double(ns) / 1e6 }
        guard let launch = result.trace.first(where: { $0.rule == .launch }) else { return [] }
        var out: [(String, Double)] = [("sandboxSetupMs", ms(launch.timeNs))]
        let marker = { (p: HarnessPhase) in result.trace.first { $0.rule == .phase && $0.phase == p.rawValue } }
        let load = marker(.load), probe = marker(.probe)
        let finished = max(result.durationNs, launch.timeNs)
        // The work ends at the end marker (or the loader's exit); what follows is the supervisor's observation.
        let workEnd = min(max(result.observation?.workEndedNs ?? finished, launch.timeNs), finished)
        var started = launch.timeNs
        if warm, let released = result.releasedNs {
            started = min(max(released, launch.timeNs), finished)
            out.append(("warmWaitMs", ms(started - launch.timeNs)))
        }
        if let load {
            out.append(("startupMs", ms(load.timeNs >= started ? load.timeNs - started : 0)))
            let loadEnd = probe?.timeNs ?? workEnd
            out.append(("loadMs", ms(loadEnd >= load.timeNs ? loadEnd - load.timeNs : 0)))
        }
        if let probe { out.append(("probeMs", ms(workEnd >= probe.timeNs ? workEnd - probe.timeNs : 0))) }
        if result.observation?.workEndedNs != nil { out.append(("observationMs", ms(finished - workEnd))) }
        return out
    }

    /// The command's start, phase changes and every refusal the policy counts, for people; at most 40 lines.
    func traceLines(policy: VerdictPolicy) -> [String] {
        let shown = result.trace.filter {
            $0.rule == .launch || $0.rule == .phase || $0.rule == .honeytoken
                || ($0.action != .allowed && DynamicRules.classify($0, policy: policy) != nil)
        }
        var lines = shown.prefix(40).map { e -> String in
            if e.rule == .phase {
                return "#\(e.seq)  \(TraceText.milliseconds(e.timeNs)) ms  ── phase \(e.phase ?? "?") ──"
            }
            var line =
                "#\(e.seq)  \(TraceText.milliseconds(e.timeNs)) ms  [\(e.phase ?? "-")]  pid \(e.pid)  \(e.syscall) \(TraceText.details(e.args))"
            line +=
                e.action == .allowed
                ? "  allowed" : "  \(e.action.rawValue) \(e.errno ?? "")  (\(e.rule?.description ?? "?"))"
            return line
        }
        if shown.count > 40 { lines.append("… \(shown.count - 40) more (--format json has the whole trace)") }
        let refused = result.trace.filter { $0.action != .allowed && $0.rule != .phase }.count
        let quiet = result.traceQuieted > 0 ? " (\(result.traceQuieted) allowed in start-up, not listed)" : ""
        lines.append(
            "\(result.trace.count + result.traceDropped + result.traceQuieted) notified calls\(quiet), \(refused) refused; "
                + ending)
        return lines
    }

    /// How the run ended, in words.
    var ending: String {
        let after = "\(TraceText.milliseconds(result.durationNs)) ms"
        if result.timedOut { return "deadline passed after \(after): killed" }
        if result.observation?.windowExpired == true {
            return "still running \(after) after the start, at the end of the observation window: killed"
        }
        if let signal = result.signal { return "killed by \(signal) after \(after)" }
        return "exit code \(result.exitCode ?? -1) after \(after)"
    }

    /// The `detonation` member of the report, typed (`DetonationSummary` writes it).
    var summary: DetonationSummary {
        DetonationSummary(
            argv: argv + arguments, outcome: outcome.outcome?.rawValue ?? "loaded",
            phaseReached: outcome.phase.rawValue,
            leftBehind: outcome.leftBehindSummary, observation: result.observation,
            exitCode: result.exitCode.map(Int.init), signal: result.signal, timedOut: result.timedOut,
            durationMs: (Double(result.durationNs - (warm ? min(result.releasedNs ?? 0, result.durationNs) : 0)) / 1e3)
                .rounded() / 1e3,
            stdoutTail: Detonation.tail(result.stdout, Detonation.outputTail),
            stderrTail: Detonation.tail(result.stderr, Detonation.outputTail), traceDropped: result.traceDropped,
            traceDroppedBytes: result.traceDroppedBytes, limitsHit: result.limitsHit, cgroup: result.cgroup,
            runtime: runtime, startupAllowed: result.traceQuieted, warm: warm,
            world: world.map { WorldSummary(name: $0.name, hostname: $0.hostname, user: $0.user.name) },
            network: networkAttempts,
            dnsQuestions: result.dnsQuestions.prefix(Detonation.maxReportedQuestions).map {
                DNSAsked(name: $0.name, type: $0.type, phase: $0.phase)
            })
    }

    /// Most network attempts and DNS questions a report lists.
    static let maxReportedAttempts = 128
    static let maxReportedQuestions = 256

    /// The emulated network's flows as the report shows them, with what the parsers name in their bytes.
    var networkAttempts: [NetworkAttempt] {
        result.network.prefix(Detonation.maxReportedAttempts).map { Detonation.attempt($0) }
    }

    static func attempt(_ e: NetworkExchange) -> NetworkAttempt {
        let http = NetworkProtocols.httpRequest(e.bytes)
        let tls = http == nil ? NetworkProtocols.tlsClientHello(e.bytes) : nil
        return NetworkAttempt(
            transport: e.transport.rawValue, name: e.name, address: e.address, port: Int(e.port), phase: e.phase,
            seq: e.seq, captured: e.bytes, dropped: e.droppedBytes, httpRequest: http?.requestLine,
            httpHost: http?.host, tlsServerName: tls?.serverName)
    }

    static func tail(_ bytes: [UInt8], _ n: Int) -> String {
        String(decoding: bytes.suffix(n), as: UTF8.self)
    }
}
