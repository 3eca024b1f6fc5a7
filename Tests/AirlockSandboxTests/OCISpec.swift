import Foundation

/// The OCI runtime-spec's `linux.seccomp` object (config-linux.md, "Seccomp"; schema/config-linux.json and
/// defs-linux.json of runtime-spec 1.2), checked by hand: the schema files are not installed here (Debian's
/// golang-github-opencontainers-specs-dev ships them). Written from the spec's definitions, stricter where the
/// schema is loose (required keys, no extra keys), so a document that passes here passes the schema.
enum OCISpec {
    static let actions: Set = [
        "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
    ]
    static let operators: Set = [
        "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
    ]
    static let architectures: Set = [
        "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
    ]

    /// What in `object` the spec does not allow; empty when it conforms.
    static func problems(_ object: [String: Any]) -> [String] {
        var out: [String] = []
        let top: Set = [
            "defaultAction", "defaultErrnoRet", "architectures", "flags", "listenerPath",
            "listenerMetadata", "syscalls",
        ]
        for key in object.keys where !top.contains(key) { out.append("unknown key \(key)") }
        if !actions.contains(object["defaultAction"] as? String ?? "") { out.append("defaultAction") }
        if let e = object["defaultErrnoRet"], !isUInt32(e) { out.append("defaultErrnoRet") }
        if let arches = object["architectures"] {
            guard let list = arches as? [String], list.allSatisfy(architectures.contains) else {
                out.append("architectures")
                return out
            }
        }
        if let list = object["syscalls"] {
            guard let rules = list as? [[String: Any]] else { return out + ["syscalls"] }
            for (i, rule) in rules.enumerated() {
                for key in rule.keys where !["names", "action", "errnoRet", "args"].contains(key) {
                    out.append("syscalls[\(i)].\(key)")
                }
                let names = rule["names"] as? [String] ?? []
                if names.isEmpty || names.contains(where: \.isEmpty) { out.append("syscalls[\(i)].names") }
                if !actions.contains(rule["action"] as? String ?? "") { out.append("syscalls[\(i)].action") }
                if let e = rule["errnoRet"], !isUInt32(e) { out.append("syscalls[\(i)].errnoRet") }
                guard let args = rule["args"] else { continue }
                guard let conditions = args as? [[String: Any]] else {
                    out.append("syscalls[\(i)].args")
                    continue
                }
                for (j, a) in conditions.enumerated() {
                    let at = "syscalls[\(i)].args[\(j)]"
                    for key in a.keys where !["index", "value", "valueTwo", "op"].contains(key) {
                        out.append("\(at).\(key)")
                    }
                    if !(a["index"].map(isUInt32) ?? false) { out.append("\(at).index") }
                    if !(a["value"].map(isUInt64) ?? false) { out.append("\(at).value") }
                    if let v = a["valueTwo"], !isUInt64(v) { out.append("\(at).valueTwo") }
                    if !operators.contains(a["op"] as? String ?? "") { out.append("\(at).op") }
                }
            }
        }
        return out
    }

    static func isUInt32(_ v: Any) -> Bool {
        guard let n = v as? NSNumber else { return false }
        return n.int64Value >= 0 && n.int64Value <= Int64(UInt32.max) && n.doubleValue == n.doubleValue.rounded()
    }

    static func isUInt64(_ v: Any) -> Bool {
        guard let n = v as? NSNumber else { return false }
        return n.doubleValue >= 0 && n.doubleValue == n.doubleValue.rounded()
    }
}
