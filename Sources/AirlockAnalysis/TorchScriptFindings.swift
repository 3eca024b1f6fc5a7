internal import AirlockFormats

/// TorchScript archives (`torch.jit.save`): the code members are read (`TorchScriptCode`) before the pickles, so the
/// `__torch__.…` classes that `data.pkl` names can be checked against the classes the archive's own code defines.
/// `torch.jit.load` unpickles with TorchScript's C++ unpickler, which resolves such names to compiled classes and
/// imports no Python; `torch.load` hands an archive with `constants.pkl` to `torch.jit.load`. A `__torch__` name the
/// code does not define stays an unknown import.
struct TorchScriptFindings {
    /// Whether torch reads the archive as TorchScript: `torch.load` does when it holds `constants.pkl`.
    static func isTorchScript(_ names: [String]) -> Bool {
        names.contains { $0 == "constants.pkl" || $0.hasSuffix("/constants.pkl") }
    }

    /// A TorchScript source member.
    static func isCode(_ name: String) -> Bool {
        (name.hasPrefix("code/") || name.contains("/code/")) && name.hasSuffix(".py")
    }

    /// Whether the archive is TorchScript (relaxes `__torch__` names) rather than only holding code members.
    let torchScript: Bool
    var classes: Set<String> = []
    var ops: Set<String> = []
    var members = 0

    init(torchScript: Bool) { self.torchScript = torchScript }

    /// Scans one code member.
    mutating func scan(_ data: ByteView, member: String) -> [Finding] {
        let report = TorchScriptCode.scan(data, member: member)
        members += 1
        if classes.count < 100_000 { classes.formUnion(report.classes) }
        if ops.count < TorchScriptCode.maxOps {
            ops.formUnion(report.ops)
            ops.formUnion(report.torchCalls.map { "aten::\($0)" })
        }
        return report.observations.map(ObservationRules.finding)
    }

    /// `findings` of a pickle member without the unknown imports TorchScript resolves itself.
    func filter(_ findings: [Finding]) -> [Finding] {
        guard torchScript else { return findings }
        return findings.filter { f in
            guard f.rule == "pickle.unknown-import", let g = f.evidence.global else { return true }
            if g.hasPrefix("__torch__.") { return !classes.contains(g) }
            return !TorchScriptFindings.unpicklerGlobals.contains(g)
        }
    }

    /// What TorchScript's unpickler builds itself (lists, tensors from the archive), none of it code.
    static let unpicklerGlobals: Set<String> = [
        "torch.jit._pickle.build_intlist", "torch.jit._pickle.build_doublelist", "torch.jit._pickle.build_boollist",
        "torch.jit._pickle.build_tensorlist", "torch.jit._pickle.build_tensor_from_id",
        "torch.jit._pickle.restore_type_tag",
    ]

    /// One informational finding naming the operators the code calls.
    var summary: Finding? {
        guard members > 0 else { return nil }
        let names = ops.sorted()
        return Finding(
            rule: "torchscript.code", severity: .info,
            message:
                "TorchScript code in \(members) member(s), run by torch.jit.load and forward; operators: \(names.prefix(40).joined(separator: ", "))\(names.count > 40 ? ", …" : "")",
            evidence: Evidence(details: [("members", String(members)), ("operators", String(names.count))]))
    }
}
