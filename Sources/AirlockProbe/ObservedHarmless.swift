public import AirlockAnalysis
internal import AirlockTrace
internal import AirlockFormats

/// What a detonation with the consumer's real libraries settles that the static analysis could not: an import on
/// neither list (`pickle.unknown-import`, medium), such as `sklearn.ensemble._forest.RandomForestClassifier`, is
/// resolved as observed harmless when
/// - the import names a class, or a library function known to rebuild data (`dataFunctions`): a plain function may
///   run code the file supplies, later, on an input the probe never sends;
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
                let global = finding.evidence.global, ObservedHarmless.isDataConstructor(global)
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

extension ObservedHarmless {
    /// Library functions known to rebuild data from their arguments (pandas' block and index rebuilders, TorchScript's
    /// list builders), besides classes. Any other function stays unresolved: a library function can run what the
    /// file gives it later, on an input the probe does not send (`torch.fx`'s `reduce_graph_module` executes source
    /// from the file, and a backdoor it installs stays quiet until its trigger), so running quietly proves nothing.
    static let dataFunctions: Set<String> = [
        "pandas._libs.internals._unpickle_block", "pandas.core.internals.blocks._unpickle_block",
        "pandas.core.indexes.base._new_Index", "pandas.core.indexes.period._new_PeriodIndex",
        "pandas._libs.tslibs.timestamps._unpickle_timestamp", "pandas._libs.tslibs.timedeltas._timedelta_unpickle",
        "pandas.core.arrays.categorical._recode_for_categories",
        "torch.jit._pickle.build_intlist", "torch.jit._pickle.build_doublelist", "torch.jit._pickle.build_boollist",
        "torch.jit._pickle.build_tensorlist", "torch.jit._pickle.build_tensor_from_id",
        "torch.jit._pickle.restore_type_tag",
    ]

    /// Whether `global` names a class (Python's convention: the last name starts with a capital, after leading
    /// underscores) or a known data rebuilder: only those are lowered. A class's construction is the library's
    /// code on the file's data; a plain callable may be a gadget that runs the file's code.
    static func isDataConstructor(_ global: String) -> Bool {
        if dataFunctions.contains(global) { return true }
        guard let last = global.split(separator: ".").last else { return false }
        return last.drop { $0 == "_" }.first.map { $0.isUppercase && $0.isASCII } ?? false
    }
}

extension Detonation {
    /// The runtime's entry for an installed distribution providing `module`, when the runtime has one.
    func distribution(_ module: String) -> RuntimeSummary.Library? {
        guard let d = installed[module] else { return nil }
        return RuntimeSummary.Library(module: module, distribution: d.name, version: d.version, when: "installed")
    }
}
