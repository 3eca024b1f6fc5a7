internal import AirlockJSON
import AirlockSystem
internal import CSandbox
internal import CSeccomp
#if canImport(Glibc)
    import Glibc
#endif

/// An Airlock profile made from an OCI runtime-spec `linux.seccomp` object (a Docker or Podman seccomp profile, or
/// `airlock profile export --format oci` output) and the `airlock` section of an existing profile.
///
/// The seccomp part is taken as the OCI file says, checked as strictly as a profile (unknown keys, actions, operators,
/// architectures and system calls are errors naming the field); the sandbox's shape (mounts, limits, ids,
/// environment, cgroup) comes from the other profile. Nothing is notified, so the other profile's `notify` rules are
/// not taken; every call the OCI file does not name gets its `defaultAction` (`allowedInKernel` lists them). The
/// result is compiled before it is returned, so a profile this returns is one `airlock exec --profile` accepts.
public struct OCIImport: Sendable {
    /// The new profile's JSON, pretty-printed.
    public let document: [UInt8]
    /// What was taken differently from the OCI file (dropped ABIs, rules that apply only with capabilities, …).
    public let notes: [String]

    /// Bounds on an OCI document, far above any real profile (Docker's default has about 60 rules and 400 names).
    static let maxBytes = 4 << 20
    static let maxRules = 4096
    static let maxNamesPerRule = 1024
    static let maxNames = 8192
    static let maxConditions = 128
    static let maxConditionalRulesPerCall = 32
    static let maxArchitectures = 32

    /// Every architecture the OCI runtime spec names.
    static let ociArchitectures: Set<String> = [
        "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS",
        "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32",
        "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
        "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K",
        "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
    ]

    /// Imports `oci` (the OCI file's bytes, named `ociName` in errors) with the `airlock` section of `base` (the
    /// other profile's bytes, named `baseName`). `recordRefused` is the new profile's `airlock.recordRefused`.
    public init(oci: [UInt8], ociName: String, base: [UInt8], baseName: String, recordRefused: Bool = true)
        throws(SandboxError)
    {
        guard oci.count <= OCIImport.maxBytes else {
            throw SandboxError(.profile, "\(ociName): larger than \(OCIImport.maxBytes) bytes")
        }
        var notes: [String] = []
        let seccomp: [(String, JSON)]
        do {
            // An OCI seccomp object nests four levels deep (rule, args, condition); 16 is generous.
            let tree = try JSON.parse(oci, maxDepth: 16)
            seccomp = try OCIImport.seccompMembers(JSONField(value: tree, path: ""), notes: &notes)
        } catch let error as SandboxError {
            throw SandboxError(.profile, "\(ociName): \(error.message)")
        } catch {
            throw SandboxError(.profile, "\(ociName): \(error)")
        }
        let section: [(String, JSON)]
        do {
            let tree = try JSON.parse(base)
            guard case .object(let top) = tree else { throw SandboxError(.profile, "expected a profile object") }
            var kept: [(String, JSON)] = []
            if case .object(let members)? = top.first(where: { $0.0 == "airlock" })?.1 {
                // notify rules would name calls nothing sends to the supervisor now; allowedInKernel is recomputed.
                let dropped: Set = ["notify", "notifyDefault", "recordRefused", "allowedInKernel", "$comment"]
                kept = members.filter { !dropped.contains($0.0) }
            }
            section = kept
        } catch let error as SandboxError {
            throw SandboxError(.profile, "\(baseName): \(error.message)")
        } catch {
            throw SandboxError(.profile, "\(baseName): \(error)")
        }

        // Every call the OCI file does not name gets defaultAction, as under a runtime: Airlock would otherwise refuse
        // it as undecided.
        var named: Set<String> = []
        for case ("syscalls", .array(let rules)) in seccomp {
            for case .object(let members) in rules {
                for case ("names", .array(let names)) in members {
                    for case .string(let n) in names { named.insert(n) }
                }
            }
        }
        let rest = SyscallTable.native.names.map(\.name).filter { !named.contains($0) }
        var airlock = section
        airlock.append(("recordRefused", .bool(recordRefused)))
        airlock.append(("notify", .array([])))
        airlock.append(("notifyDefault", .string("deny")))
        airlock.append(("allowedInKernel", .array(rest.map(JSON.string))))
        let document = JSON.object(
            [
                (
                    "$comment",
                    .string(
                        "Made by airlock profile import from \(ociName) (seccomp) and \(baseName) (the airlock section)."
                    )
                )
            ] + seccomp + [("airlock", .object(airlock))])
        let bytes = Array((document.pretty() + "\n").utf8)
        // Checked and compiled now: an error names the OCI file's field, not a later exec's.
        let profile = try Profile(json: bytes, name: ociName)
        _ = try SeccompProgram(profile: profile)
        self.document = bytes
        self.notes = notes
    }

    /// The seccomp members of the new profile, in Airlock's form, from the OCI object.
    static func seccompMembers(_ f: JSONField, notes: inout [String]) throws(SandboxError) -> [(String, JSON)] {
        let o = try f.object(allowed: [
            "defaultAction", "defaultErrnoRet", "architectures", "archMap", "flags", "listenerPath",
            "listenerMetadata", "syscalls", "$comment", "comment",
        ])
        if let listener = o["listenerPath"], (try? listener.string()) != "" {
            throw SandboxError(
                .profile,
                "field listenerPath: an outside seccomp listener is not supported (Airlock's supervisor is the listener)"
            )
        }
        if let flags = o["flags"], !(try flags.strings()).isEmpty {
            notes.append("flags \(try flags.strings().joined(separator: ", ")) not taken: Airlock sets its own")
        }
        var members: [(String, JSON)] = []
        let defaultAction = try required(o, "defaultAction", f).string()
        _ = try Profile.action(defaultAction, errno: EPERM, field: "defaultAction")
        members.append(("defaultAction", .string(defaultAction)))
        let defaultErrno: Int32 = try o["defaultErrnoRet"]?.integer() ?? EPERM
        guard (1...4095).contains(defaultErrno) else {
            throw SandboxError(.profile, "field defaultErrnoRet: must be 1–4095")
        }
        members.append(("defaultErrnoRet", .int(defaultErrno)))

        var arches: [String] = []
        var listed = try o["architectures"]?.strings() ?? []
        if let map = o["archMap"] {
            for entry in try map.array() {
                let e = try entry.object(allowed: ["architecture", "subArchitectures"])
                listed.append(try required(e, "architecture", entry).string())
                // Docker writes `"subArchitectures": null` for an ABI without any.
                var subs: [String] = []
                if let field = e["subArchitectures"], field.value != .null { subs = try field.strings() }
                if !subs.isEmpty { notes.append("subArchitectures \(subs.joined(separator: ", ")) dropped") }
            }
        }
        guard listed.count <= maxArchitectures else {
            throw SandboxError(.profile, "field architectures: more than \(maxArchitectures)")
        }
        for arch in listed {
            guard ociArchitectures.contains(arch) else {
                throw SandboxError(.profile, "field architectures: unknown architecture '\(arch)'")
            }
            if Profile.knownArchitectures.contains(arch) {
                if !arches.contains(arch) { arches.append(arch) }
            } else {
                notes.append(
                    "architecture \(arch) dropped: a call through any ABI but the native one kills the process")
            }
        }
        // An OCI profile without architectures applies to the runtime's native ABI.
        if listed.isEmpty { arches = Array(Profile.knownArchitectures.sorted()) }
        members.append(("architectures", .array(arches.map(JSON.string))))

        var rules: [JSON] = []
        let list = try o["syscalls"]?.array() ?? []
        guard list.count <= maxRules else {
            throw SandboxError(.profile, "field syscalls: more than \(maxRules) rules")
        }
        var total = 0
        var conditions = 0
        var conditionalRules: [String: Int] = [:]
        for item in list {
            guard let rule = try importedRule(item, defaultErrno: defaultErrno, notes: &notes) else { continue }
            guard case .object(let m) = rule, case .array(let names)? = m.first?.1 else { continue }
            // Each name is a libseccomp rule to compile; Docker's default profile has about 400.
            total += names.count
            guard total <= maxNames else {
                throw SandboxError(.profile, "field syscalls: more than \(maxNames) names in all")
            }
            // libseccomp's compilation grows far faster than linearly with conditional rules (a few hundred random
            // ones took minutes): bounded well above real profiles (Docker's default has a few dozen conditions).
            if case .array(let args)? = m.first(where: { $0.0 == "args" })?.1 {
                conditions += args.count * names.count
                for case .string(let name) in names {
                    conditionalRules[name, default: 0] += 1
                    guard conditionalRules[name, default: 0] <= maxConditionalRulesPerCall else {
                        throw SandboxError(
                            .profile,
                            "field \(item.path): more than \(maxConditionalRulesPerCall) rules with args for '\(name)'")
                    }
                }
                guard conditions <= maxConditions else {
                    throw SandboxError(
                        .profile, "field \(item.path): more than \(maxConditions) argument conditions in all")
                }
            }
            rules.append(rule)
        }
        members.append(("syscalls", .array(rules)))
        return members
    }

    /// One rule, checked, or nil when it would not apply to a sandbox (it needs a capability, another ABI or a newer
    /// kernel: Docker's `includes`).
    static func importedRule(_ f: JSONField, defaultErrno: Int32, notes: inout [String]) throws(SandboxError) -> JSON? {
        let o = try f.object(allowed: [
            "names", "name", "action", "errnoRet", "args", "comment", "includes", "excludes",
        ])
        if o["name"] != nil { throw SandboxError(.profile, "field \(f.path).name: use names (a list)") }
        let names = try required(o, "names", f).strings()
        guard !names.isEmpty, names.count <= maxNamesPerRule else {
            throw SandboxError(.profile, "field \(f.path).names: 1 to \(maxNamesPerRule) names")
        }
        var seen: Set<String> = []
        for name in names {
            guard seen.insert(name).inserted else {
                throw SandboxError(.profile, "field \(f.path).names: '\(name)' is listed twice")
            }
            guard seccomp_syscall_resolve_name(name) != airlock_nr_scmp_error() else {
                throw SandboxError(.profile, "field \(f.path).names: unknown system call '\(name)'")
            }
        }
        let action = try required(o, "action", f).string()
        if action == "SCMP_ACT_NOTIFY" {
            throw SandboxError(
                .profile,
                "field \(f.path).action: SCMP_ACT_NOTIFY needs notify rules an OCI file does not have; import it as a "
                    + "refusal or an allowance and add airlock.notify rules by hand")
        }
        let errnoRet: Int32? = try o["errnoRet"]?.integer()
        // OCI: a rule without errnoRet returns EPERM (Airlock would inherit defaultErrnoRet): written out.
        let errno = errnoRet ?? EPERM
        _ = try Profile.action(action, errno: errno, field: "\(f.path).action")
        var members: [(String, JSON)] = [("names", .array(names.map(JSON.string))), ("action", .string(action))]
        if action == "SCMP_ACT_ERRNO" { members.append(("errnoRet", .int(errno))) }
        if let args = o["args"] {
            let list = try args.array()
            guard list.count <= 6 else { throw SandboxError(.profile, "field \(args.path): at most 6 conditions") }
            var conditions: [JSON] = []
            for a in list {
                let c = try a.object(allowed: ["index", "value", "valueTwo", "op"])
                let index: Int = try required(c, "index", a).integer()
                guard (0...5).contains(index) else {
                    throw SandboxError(.profile, "field \(a.path).index: must be 0–5")
                }
                let value: UInt64 = try required(c, "value", a).integer()
                let valueTwo: UInt64 = try c["valueTwo"]?.integer() ?? 0
                let op = try required(c, "op", a).string()
                guard ArgumentCondition.Operator(rawValue: op) != nil else {
                    throw SandboxError(.profile, "field \(a.path).op: unknown operator '\(op)'")
                }
                conditions.append(
                    .object([
                        ("index", .int(index)), ("value", .int(value)), ("valueTwo", .int(valueTwo)),
                        ("op", .string(op)),
                    ]))
            }
            if !conditions.isEmpty { members.append(("args", .array(conditions))) }
        }
        guard try applies(o, f, notes: &notes) else { return nil }
        return .object(members)
    }

    /// Whether a rule with Docker's `includes` / `excludes` applies in an Airlock sandbox: it holds no capabilities,
    /// runs on this machine's ABI and kernel.
    static func applies(_ o: [String: JSONField], _ f: JSONField, notes: inout [String]) throws(SandboxError) -> Bool {
        let native = SeccompProgram.archName(seccomp_arch_native())
        var applies = true
        for key in ["includes", "excludes"] {
            guard let field = o[key] else { continue }
            let c = try field.object(allowed: ["caps", "arches", "minKernel"])
            let caps = try c["caps"]?.strings() ?? []
            let arches = (try c["arches"]?.strings() ?? []).map { OCIImport.archToken($0) }
            let minKernel = try c["minKernel"]?.string()
            if key == "includes" {
                if !caps.isEmpty { applies = false }
                if !arches.isEmpty && !arches.contains(native) { applies = false }
                if let minKernel {
                    guard let wanted = kernelVersion(minKernel) else {
                        throw SandboxError(.profile, "field \(field.path).minKernel: expected a version such as 5.8")
                    }
                    if runningKernel().lexicographicallyPrecedes(wanted) { applies = false }
                }
            } else {
                // Excluded when the container holds one of the caps (a sandbox holds none) or runs on a listed ABI.
                if !arches.isEmpty && arches.contains(native) { applies = false }
                if minKernel != nil {
                    throw SandboxError(.profile, "field \(field.path).minKernel: not meaningful in excludes")
                }
            }
        }
        if !applies {
            notes.append("\(f.path) dropped: its includes/excludes do not hold in a sandbox on this machine")
        }
        return applies
    }

    /// Docker writes arches as `amd64`, `arm64` or `SCMP_ARCH_*`.
    static func archToken(_ name: String) -> String {
        switch name {
        case "amd64", "x86_64": "SCMP_ARCH_X86_64"
        case "arm64", "aarch64": "SCMP_ARCH_AARCH64"
        default: name
        }
    }

    /// `5.8` → [5, 8]; nil unless one to three numbers.
    static func kernelVersion(_ text: String) -> [Int]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map { Int($0) }
        guard (1...3).contains(parts.count), parts.allSatisfy({ $0 != nil && $0! >= 0 && $0! < 100_000 }) else {
            return nil
        }
        return parts.map { $0! }
    }

    static func runningKernel() -> [Int] {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
    }

    static func required(_ o: [String: JSONField], _ key: String, _ parent: JSONField) throws(SandboxError)
        -> JSONField
    {
        try RawProfile.required(o, key, parent)
    }
}
