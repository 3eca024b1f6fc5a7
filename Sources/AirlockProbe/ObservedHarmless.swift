public import AirlockAnalysis
internal import AirlockTrace
internal import AirlockFormats

/// What a detonation with the consumer's real libraries settles that the static analysis could not: an import on
/// neither list (`pickle.unknown-import`, medium), such as `sklearn.ensemble._forest.RandomForestClassifier`, is
/// resolved as observed harmless when
/// - the runtime is the consumer's (`PythonRuntime`), and the import's top-level module is an installed
///   distribution there that the stand-ins did not answer for;
/// - the loader returned and the probe phase used the object: the supervisor saw every phase marker in order, and the
///   harness did not stop with an error, a deadline, a crash or exhausted resources;
/// - nothing in the model's phases was refused or left running: no dynamic finding above `info` but the start-up's
///   own (`dynamic.startup-refused`, the runtime's and not the model's).
///
/// The finding stays in the report, as `info`, with the library and version that loaded it. An import on the
/// denylist (`pickle.dangerous-import`, `pickle.dangerous-call`) is never resolved this way, nor is any other
/// static finding.
enum ObservedHarmless {
    /// The static rule this resolves.
    static let rule = "pickle.unknown-import"
    /// TorchScript's compiled classes (`__torch__.…`) are resolved by `torch.jit.load`, not imported.
    static let libraryOf = ["__torch__": "torch"]

    /// `findings` with the unknown imports `detonation` observed harmless lowered to `info`; unchanged otherwise.
    static func resolve(
        _ findings: [Finding], detonation: Detonation, dynamic: [Finding], policy: VerdictPolicy, probePhase: Bool
    ) -> [Finding] {
        guard let runtime = detonation.runtime, probePhase, detonation.outcome.outcome == nil,
            detonation.outcome.phase == .end,
            detonation.phases.contains(.probe),
            !dynamic.contains(where: { $0.severity > .info && $0.rule != policy.startup.finding })
        else { return findings }
        return findings.map { finding in
            guard finding.rule == rule, finding.source == .static, finding.severity == .medium,
                let global = finding.evidence.global
            else { return finding }
            let top = String(global.split(separator: ".", maxSplits: 1).first ?? "")
            let module = libraryOf[top] ?? top
            guard !runtime.standIns.contains(module),
                let library = runtime.libraries.first(where: { $0.module == module && $0.version != nil })
                    ?? detonation.distribution(module)
            else { return finding }
            let name = "\(library.distribution ?? module) \(library.version ?? "")"
            var resolved = finding
            resolved.severity = .info
            resolved.message +=
                "; observed harmless: the real \(name) loaded it and the probe used the object, with nothing refused"
            resolved.evidence.details += [("resolvedBy", "detonation"), ("library", name)]
            return resolved
        }
    }
}

extension Detonation {
    /// The runtime's entry for an installed distribution providing `module`, when the runtime has one.
    func distribution(_ module: String) -> RuntimeSummary.Library? {
        guard let d = installed[module] else { return nil }
        return RuntimeSummary.Library(module: module, distribution: d.name, version: d.version, when: "installed")
    }
}
