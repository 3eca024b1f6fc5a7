public import AirlockAnalysis
public import AirlockNames
internal import AirlockFormats
internal import AirlockJSON
internal import AirlockSandbox
internal import AirlockSystem
internal import AirlockTrace

/// A repository with remote code (`auto_map` in its `config.json` or `tokenizer_config.json`), detonated once as
/// transformers loads it with `trust_remote_code=True`: its files packed (`RepositoryPack`) and passed into the
/// sandbox, the harness (`hf-remote-code`) copies the modules into a module cache and imports the named classes and
/// builds the config in `load`, and constructs the model (and tokenizer) from it in `probe`, as `from_pretrained`
/// would without weights. With the runtime's transformers when it is installed, otherwise with the same mechanics
/// written in the harness (said in the report).
///
/// The findings go on the reports of the files the detonation ran: the configs that declare the `auto_map`, and
/// the modules transformers would import for it (the named modules and their relative imports). The config
/// (`config.json` first) also carries the trace, the trace lines and the `detonation` member; the modules' dynamic
/// findings say where the trace is (`traceIn`). Other Python files of the folder were not run and keep their
/// static finding.
public enum RemoteCodeDetonation {
    /// The rule of the info finding that says how the repository was detonated.
    public static let detonatedRule = "probe.remote-code"
    /// The static rules a harmless detonation lowers.
    public static let loweredRules: Set<String> = ["hf.remote-code", "hf.python-module"]

    /// The examiner `ModelWalk` calls for each repository with remote code (`Prober.probe(paths:)`, airlockd, intake
    /// here). `detonating` wraps the sandbox run: airlockd reads the repository's files with the client's identity
    /// (the walk's) and runs the sandbox with its own.
    public static func examiner(
        options: ProbeOptions, detonating: @escaping (() -> Void) -> Void = { $0() }
    ) -> RepositoryExaminer {
        { dirfd, display, configs in
            examine(dirfd: dirfd, display: display, configs: configs, options: options, detonating: detonating)
        }
    }

    /// Detonates the repository open as `dirfd` (shown as `display`) whose configs `configs` have an `auto_map`; nil
    /// when no reference names a module of the repository (the static findings then say everything).
    public static func examine(
        dirfd: Int32, display: String, configs: [FileName], options: ProbeOptions,
        detonating: (() -> Void) -> Void = { $0() }
    ) -> RepositoryExamination? {
        // Nobody waits for the answer any more (airlockd: the client hung up): no sandbox is started. The walk
        // (`FolderScanner.scan`) asks its meter before each repository too and names those it left out.
        if options.cancellation?.isCancelled == true { return nil }
        let pack = RepositoryPack.read(dirfd: dirfd)
        // The maps as packed: what the harness reads is what is judged here.
        var maps: [(config: String, map: AutoMap)] = []
        for config in configs.map(\.escaped) {
            guard let bytes = pack.file(config), let tree = try? JSON.parse(bytes, maxDepth: 128, dialect: .python),
                let map = AutoMap(config: tree)
            else { continue }
            maps.append((config, map))
        }
        let references = maps.flatMap(\.map.references)
        let roots = maps.flatMap(\.map.modules)
        guard !roots.isEmpty else { return nil }
        let modules = Set(pack.modulesNeeded(roots).map { $0 + ".py" })
        let declaring = Set(maps.map(\.config))
        let holder = declaring.contains("config.json") ? "config.json" : maps[0].config
        let holderPath = display + "/" + holder
        let mechanics =
            options.runtime?.distribution(of: "transformers").map { "transformers \($0.version)" }
            ?? "the harness's stand-in for transformers' mechanics (transformers is not installed in the runtime)"
        let started = StaticScanner.now()
        var ran: Result<Detonation, SandboxError> = .failure(SandboxError(.supervisor, "the detonation did not run"))
        detonating {
            do throws(SandboxError) {
                let file = try pack.memoryFile()
                defer { file.close() }
                let plan = ConsumerPlan(format: .hfRemoteCode, modules: [], runtime: options.runtime)
                ran = .success(
                    try Detonation.run(fd: file.rawValue, format: .hfRemoteCode, plan: plan, options: options))
            } catch {
                ran = .failure(error)
            }
        }
        let detonation: Detonation
        switch ran {
        case .success(let d):
            detonation = d
        case .failure(let error):
            let failed = StaticScanner.ms(since: started)
            return RepositoryExamination { name, report in
                guard name.escaped == holder else { return }
                report.timings.append(("detonationMs", failed))
                report.add([], error: ("detonation", "the sandbox could not run the repository's code: \(error)"))
            }
        }
        let judged = StaticScanner.now()
        let policy = options.policy
        let stopped = detonation.stoppedBeforeModel(policy)
        let dynamic = stopped ? [] : DynamicRules.findings(detonation, policy: policy)
        // What the supervisor saw imported: every module the auto_map needs opened from the module cache in `load`
        // (transformers and the stand-in mechanics both import from `transformers_modules`). A module the harness
        // never reached (a config it does not read, a reference it skipped) was not observed, and nothing is lowered.
        let imported = Set(
            detonation.trace.filter { $0.phase == HarnessPhase.load.rawValue && $0.action == .allowed }
                .compactMap(\.args.path).filter { $0.contains("/transformers_modules/") }
                .compactMap { $0.split(separator: "/").last.map(String.init) })
        let unobserved = modules.filter { !imported.contains($0) }.sorted()
        let truncated = maps.contains { $0.map.truncated }
        let harmless =
            !stopped && detonation.outcome.outcome == nil && detonation.outcome.phase == .end
            && detonation.phases.contains(.probe) && references.allSatisfy { $0.problem == nil }
            && !dynamic.contains { $0.severity > .info && $0.rule != policy.startup.finding }
            && unobserved.isEmpty && !truncated && detonation.result.traceDropped == 0
        var described = describe(
            references: references, modules: modules.sorted(), pack: pack, mechanics: mechanics,
            probed: detonation.phases.contains(.probe))
        if !unobserved.isEmpty {
            described.message +=
                "; not seen imported (nothing is lowered): \(unobserved.prefix(8).joined(separator: ", "))"
            described.evidence.details.append(("notImported", unobserved.prefix(32).joined(separator: " ")))
        }
        if truncated {
            described.message +=
                "; the auto_map holds more than \(AutoMap.maxReferences) references: the rest were not judged"
        }
        let verdictMs = StaticScanner.ms(since: judged)
        return RepositoryExamination { name, report in
            let text = name.escaped
            guard declaring.contains(text) || modules.contains(text) else { return }
            if text == holder {
                report.trace = detonation.trace
                report.traceLines = detonation.traceLines(policy: policy)
                report.detonation = detonation.summary
                report.timings +=
                    [("detonationMs", detonation.durationMs)] + detonation.phaseTimings + [("verdictMs", verdictMs)]
            }
            if stopped {
                guard text == holder else { return }
                let stderr = Detonation.tail(detonation.result.stderr, 300)
                let why = detonation.outcome.detail ?? "unknown"
                report.add(
                    [described],
                    error: (
                        "detonation", "the loader stopped before importing the repository's code (\(why)): \(stderr)"
                    ))
                return
            }
            if harmless {
                report.findings = lower(
                    report.findings, mechanics: mechanics, detonation: holderPath, withheld: pack.withheldWeights)
            }
            let own = text == holder ? dynamic : dynamic.map { withTraceIn($0, holderPath) }
            report.add(own + (text == holder ? [described] : []))
        }
    }

    /// The static `hf.remote-code` and `hf.python-module` findings, lowered to `low` with what was observed: the
    /// code still runs with the consumer's rights whenever the model is loaded, and one harmless run in the sandbox
    /// is not a proof (code that recognises the sandbox, or waits for an input, looks the same), so the finding stays
    /// visible; but it no longer makes the repository `suspicious`.
    ///
    /// When weights were too big to pass (`withheld`), code that reads them never ran in the sandbox: the finding
    /// is lowered to `medium` only, and says so (the repository stays `suspicious`, as its code was only partly seen).
    static func lower(
        _ findings: [Finding], mechanics: String, detonation: String, withheld: [String] = []
    ) -> [Finding] {
        findings.map { finding in
            guard loweredRules.contains(finding.rule), finding.source == .static, finding.severity == .high else {
                return finding
            }
            var lowered = finding
            lowered.severity = withheld.isEmpty ? .low : .medium
            let what =
                finding.rule == "hf.remote-code"
                ? "the config maps model classes to code in the repository (auto_map)"
                : "Python module that transformers imports for the repository's auto_map classes"
            lowered.message =
                "\(what): it runs with the consumer's rights whenever the model is loaded with trust_remote_code=True. "
                + "Observed harmless: imported, its config built and its model constructed in the sandbox with "
                + "\(mechanics), nothing refused (code that recognises the sandbox or waits for an input would look the same)"
            if !withheld.isEmpty {
                lowered.message +=
                    "; but the weights (\(withheld.prefix(4).joined(separator: ", "))) were too big to pass into the sandbox, so code that reads them was not exercised"
                lowered.evidence.details.append(("weightsNotPassed", withheld.prefix(8).joined(separator: " ")))
            }
            lowered.evidence.details += [
                ("resolvedBy", "detonation"), ("mechanics", mechanics), ("detonation", detonation),
            ]
            return lowered
        }
    }

    /// A dynamic finding on a module's report: the trace it names is in the config's report.
    static func withTraceIn(_ finding: Finding, _ path: String) -> Finding {
        var f = finding
        f.evidence.details.append(("traceIn", path))
        return f
    }

    /// The info finding on the config: how the repository was detonated.
    static func describe(
        references: [AutoMap.Reference], modules: [String], pack: RepositoryPack, mechanics: String, probed: Bool
    ) -> Finding {
        let classes = references.filter { $0.problem == nil }.map { "\($0.key): \($0.text)" }
        var message =
            "repository code detonated as transformers loads it with trust_remote_code=True, with \(mechanics): "
            + "modules \(modules.joined(separator: ", ")) copied into a module cache and imported, the config built"
        message +=
            probed ? ", the model constructed from it in the probe phase" : " (no probe phase: nothing constructed)"
        var details: [(String, String)] = [("mechanics", mechanics), ("packed", String(pack.files.count))]
        for (name, reason) in pack.left.prefix(8) { details.append(("notPassed:" + name, reason)) }
        return Finding(
            rule: detonatedRule, severity: .info, source: .dynamic, message: message,
            evidence: Evidence(args: classes, details: details))
    }
}
