import AirlockSystem
internal import AirlockJSON
import AirlockTrace
#if canImport(Glibc)
    import Glibc
#endif

// MARK: - The profile as written

/// The profile's fields as written, read from the JSON tree with every key checked against the keys its position
/// allows (a misspelt field is an error naming it, not a silent default). Values are checked in `Profile(raw:)`.
struct RawProfile {
    struct Rule {
        struct Arg {
            var index: Int
            var value: UInt64
            var valueTwo: UInt64?
            var op: String

            /// Kept, not rebuilt for each of the profile's conditions: building a set hashes every key.
            private static let keys: Set<String> = ["index", "value", "valueTwo", "op"]

            init(_ f: JSONField) throws(SandboxError) {
                let o = try f.object(allowed: Arg.keys)
                index = try RawProfile.required(o, "index", f).integer()
                value = try RawProfile.required(o, "value", f).integer()
                valueTwo = try o["valueTwo"]?.integer()
                op = try RawProfile.required(o, "op", f).string()
            }
        }
        var names: [String]
        var action: String
        var errnoRet: Int32?
        var args: [Arg]?

        /// Kept, not rebuilt for each of the profile's rules.
        private static let keys: Set<String> = [
            "names", "action", "errnoRet", "args", "comment", "includes", "excludes",
        ]

        init(_ f: JSONField) throws(SandboxError) {
            let o = try f.object(allowed: Rule.keys)
            for key in ["includes", "excludes"] {
                if let v = o[key], !v.isEmptyObject {
                    throw SandboxError(.profile, "field \(v.path): not supported by Airlock")
                }
            }
            names = try RawProfile.required(o, "names", f).strings()
            action = try RawProfile.required(o, "action", f).string()
            errnoRet = try o["errnoRet"]?.integer()
            if let list = o["args"] {
                var args: [Arg] = []
                for item in try list.array() { args.append(try Arg(item)) }
                self.args = args
            }
        }
    }

    struct Section {
        struct User {
            var uid: UInt32?, gid: UInt32?, hostUid: UInt32?, hostGid: UInt32?

            init(_ f: JSONField) throws(SandboxError) {
                let o = try f.object(allowed: ["uid", "gid", "hostUid", "hostGid"])
                uid = try o["uid"]?.integer()
                gid = try o["gid"]?.integer()
                hostUid = try o["hostUid"]?.integer()
                hostGid = try o["hostGid"]?.integer()
            }
        }
        struct Mount {
            var type: String
            var source: String?
            var destination: String
            var target: String?
            var contents: String?
            var size: UInt64?
            var mode: String?
            var optional: Bool?

            /// Kept, not rebuilt for each of the profile's mounts.
            private static let keys: Set<String> = [
                "type", "source", "destination", "target", "contents", "size", "mode", "optional", "comment",
            ]

            init(_ f: JSONField) throws(SandboxError) {
                let o = try f.object(allowed: Mount.keys)
                type = try RawProfile.required(o, "type", f).string()
                source = try o["source"]?.string()
                destination = try RawProfile.required(o, "destination", f).string()
                target = try o["target"]?.string()
                contents = try o["contents"]?.string()
                size = try o["size"]?.integer()
                mode = try o["mode"]?.string()
                optional = try o["optional"]?.bool()
            }
        }
        struct Limits {
            var addressSpaceBytes: UInt64?, cpuSeconds: UInt64?, openFiles: UInt64?, processes: UInt64?
            var fileSizeBytes: UInt64?, timeoutSeconds: Double?, outputBytes: Int?, traceEvents: Int?
            var traceBytes: Int?
            var memoryBytes: UInt64?, inotifyInstances: UInt64?, inotifyWatches: UInt64?, messageQueueBytes: UInt64?
            var pendingSignals: UInt64?, lockedMemoryBytes: UInt64?, modelCopyBytes: UInt64?

            init(_ f: JSONField) throws(SandboxError) {
                let o = try f.object(allowed: [
                    "addressSpaceBytes", "cpuSeconds", "openFiles", "processes", "fileSizeBytes", "timeoutSeconds",
                    "outputBytes", "traceEvents", "traceBytes", "memoryBytes", "inotifyInstances", "inotifyWatches",
                    "messageQueueBytes", "pendingSignals", "lockedMemoryBytes", "modelCopyBytes",
                ])
                memoryBytes = try o["memoryBytes"]?.integer()
                inotifyInstances = try o["inotifyInstances"]?.integer()
                inotifyWatches = try o["inotifyWatches"]?.integer()
                messageQueueBytes = try o["messageQueueBytes"]?.integer()
                pendingSignals = try o["pendingSignals"]?.integer()
                lockedMemoryBytes = try o["lockedMemoryBytes"]?.integer()
                modelCopyBytes = try o["modelCopyBytes"]?.integer()
                addressSpaceBytes = try o["addressSpaceBytes"]?.integer()
                cpuSeconds = try o["cpuSeconds"]?.integer()
                openFiles = try o["openFiles"]?.integer()
                processes = try o["processes"]?.integer()
                fileSizeBytes = try o["fileSizeBytes"]?.integer()
                timeoutSeconds = try o["timeoutSeconds"]?.double()
                outputBytes = try o["outputBytes"]?.integer()
                traceEvents = try o["traceEvents"]?.integer()
                traceBytes = try o["traceBytes"]?.integer()
            }
        }
        struct Notify {
            var id: String
            var syscalls: [String]
            var paths: [String]?
            var pathsOutside: [String]?
            var access: String?
            var families: [String]?
            var signalTargets: [String]?
            var setIdMode: Bool?
            var action: String
            var errno: String?

            /// Kept, not rebuilt for each of the profile's notify rules.
            private static let keys: Set<String> = [
                "id", "syscalls", "paths", "pathsOutside", "access", "families", "signalTargets", "setIdMode",
                "action", "errno", "comment",
            ]

            init(_ f: JSONField) throws(SandboxError) {
                let o = try f.object(allowed: Notify.keys)
                setIdMode = try o["setIdMode"]?.bool()
                id = try RawProfile.required(o, "id", f).string()
                syscalls = try RawProfile.required(o, "syscalls", f).strings()
                paths = try o["paths"]?.strings()
                pathsOutside = try o["pathsOutside"]?.strings()
                access = try o["access"]?.string()
                families = try o["families"]?.strings()
                signalTargets = try o["signalTargets"]?.strings()
                action = try RawProfile.required(o, "action", f).string()
                errno = try o["errno"]?.string()
            }
        }
        var hostname: String?
        var user: User?
        var cwd: String?
        var env: [(String, String)]?
        var mounts: [Mount]?
        var limits: Limits?
        var recordRefused: Bool?
        var notify: [Notify]?
        var notifyDefault: String?
        var allowedInKernel: [String]?
        var cgroup: String?

        init() {}

        init(_ f: JSONField) throws(SandboxError) {
            let o = try f.object(allowed: [
                "$comment", "hostname", "user", "cwd", "env", "mounts", "limits", "recordRefused", "notify",
                "notifyDefault", "allowedInKernel", "cgroup",
            ])
            allowedInKernel = try o["allowedInKernel"]?.strings()
            cgroup = try o["cgroup"]?.string()
            hostname = try o["hostname"]?.string()
            if let u = o["user"] { user = try User(u) }
            cwd = try o["cwd"]?.string()
            env = try o["env"]?.stringMap()
            if let list = o["mounts"] {
                var mounts: [Mount] = []
                for item in try list.array() { mounts.append(try Mount(item)) }
                self.mounts = mounts
            }
            if let l = o["limits"] { limits = try Limits(l) }
            recordRefused = try o["recordRefused"]?.bool()
            if let list = o["notify"] {
                var rules: [Notify] = []
                for item in try list.array() { rules.append(try Notify(item)) }
                notify = rules
            }
            notifyDefault = try o["notifyDefault"]?.string()
        }
    }

    var defaultAction: String
    var defaultErrnoRet: Int32?
    var architectures: [String]?
    var syscalls: [Rule]?
    var airlock: Section?

    init(_ f: JSONField) throws(SandboxError) {
        let o = try f.object(allowed: [
            "$comment", "comment", "defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls",
            "airlock", "flags",
        ])
        defaultAction = try RawProfile.required(o, "defaultAction", f).string()
        defaultErrnoRet = try o["defaultErrnoRet"]?.integer()
        architectures = try o["architectures"]?.strings()
        if let list = o["syscalls"] {
            var rules: [Rule] = []
            for item in try list.array() { rules.append(try Rule(item)) }
            syscalls = rules
        }
        if let section = o["airlock"] { airlock = try Section(section) }
    }

    static func required(_ o: [String: JSONField], _ key: String, _ parent: JSONField) throws(SandboxError) -> JSONField
    {
        guard let v = o[key] else {
            throw SandboxError(.profile, "field \(parent.path.isEmpty ? key : "\(parent.path).\(key)"): required")
        }
        return v
    }
}

/// Families a notify rule may name, with their `AF_*` values.
let addressFamilies: [String: Int32] = [
    "unix": 1, "inet": 2, "ax25": 3, "ipx": 4, "appletalk": 5, "x25": 9, "inet6": 10, "key": 15, "netlink": 16,
    "packet": 17, "rds": 21, "llc": 26, "can": 29, "tipc": 30, "bluetooth": 31, "alg": 38, "vsock": 40, "xdp": 44,
]

extension Profile {
    /// Every ABI name a profile may list. 32-bit ABIs are refused: the filter must not be bypassable through them.
    static let knownArchitectures: Set = ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"]

    init(raw: RawProfile, name: String) throws(SandboxError) {
        self.name = name
        let defaultErrno = raw.defaultErrnoRet ?? EPERM
        defaultAction = try Profile.action(raw.defaultAction, errno: defaultErrno, field: "defaultAction")
        if defaultAction == .notify {
            throw SandboxError(.profile, "field defaultAction: SCMP_ACT_NOTIFY as the default would notify every call")
        }

        architectures = raw.architectures ?? ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"]
        for (i, arch) in architectures.enumerated() where !Profile.knownArchitectures.contains(arch) {
            throw SandboxError(
                .profile,
                "field architectures[\(i)]: '\(arch)' is not accepted (only \(Profile.knownArchitectures.sorted().joined(separator: ", ")); 32-bit ABIs are refused)"
            )
        }

        var rules: [SyscallRule] = []
        for (i, rule) in (raw.syscalls ?? []).enumerated() {
            let field = "syscalls[\(i)]"
            if rule.names.isEmpty { throw SandboxError(.profile, "field \(field).names: empty") }
            let action = try Profile.action(rule.action, errno: rule.errnoRet ?? defaultErrno, field: "\(field).action")
            var conditions: [ArgumentCondition] = []
            for (j, a) in (rule.args ?? []).enumerated() {
                guard (0...5).contains(a.index) else {
                    throw SandboxError(.profile, "field \(field).args[\(j)].index: must be 0–5")
                }
                guard let op = ArgumentCondition.Operator(rawValue: a.op) else {
                    throw SandboxError(.profile, "field \(field).args[\(j)].op: unknown operator '\(a.op)'")
                }
                conditions.append(ArgumentCondition(index: a.index, value: a.value, valueTwo: a.valueTwo ?? 0, op: op))
            }
            rules.append(SyscallRule(names: rule.names, action: action, args: conditions, index: i))
        }
        syscalls = rules

        let section = raw.airlock ?? RawProfile.Section()
        sandbox = try SandboxSettings(raw: section)
    }

    static func action(_ name: String, errno: Int32, field: String) throws(SandboxError) -> SeccompAction {
        switch name {
        case "SCMP_ACT_ALLOW": return .allow
        case "SCMP_ACT_ERRNO":
            guard (1...4095).contains(errno) else {
                throw SandboxError(.profile, "field \(field): errnoRet must be 1–4095")
            }
            return .errno(errno)
        case "SCMP_ACT_KILL_PROCESS": return .killProcess
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": return .killThread
        case "SCMP_ACT_LOG": return .log
        case "SCMP_ACT_NOTIFY": return .notify
        case "SCMP_ACT_TRAP", "SCMP_ACT_TRACE":
            throw SandboxError(
                .profile,
                "field \(field): \(name) is not supported (a ptracer or SIGSYS handler would be part of the sandbox)")
        default:
            throw SandboxError(.profile, "field \(field): unknown action '\(name)'")
        }
    }
}

extension SandboxSettings {
    init(raw: RawProfile.Section) throws(SandboxError) {
        hostname = raw.hostname ?? "airlock"
        guard !hostname.isEmpty, hostname.utf8.count <= 64,
            hostname.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") })
        else {
            throw SandboxError(.profile, "field airlock.hostname: 1–64 letters, digits, '-' or '.'")
        }
        let u = raw.user
        user = UserMapping(
            uid: u?.uid ?? 1000, gid: u?.gid ?? 1000, hostUid: u?.hostUid ?? 65534, hostGid: u?.hostGid ?? 65534)
        if user.hostUid == 0 || user.hostGid == 0 {
            throw SandboxError(.profile, "field airlock.user.hostUid/hostGid: must not be 0 (root)")
        }
        cwd = raw.cwd ?? "/"
        guard cwd.hasPrefix("/") else { throw SandboxError(.profile, "field airlock.cwd: must be an absolute path") }
        environment = (raw.env ?? [("PATH", "/usr/local/bin:/usr/bin:/bin"), ("HOME", "/tmp"), ("LANG", "C.UTF-8")])
            .sorted { $0.0 < $1.0 }
        for (k, v) in environment where k.isEmpty || k.contains("=") || k.utf8.contains(0) || v.utf8.contains(0) {
            throw SandboxError(.profile, "field airlock.env.\(k): names may not be empty or hold '=' or NUL")
        }

        var mounts: [MountSpec] = []
        var devCount = 0
        for (i, m) in (raw.mounts ?? []).enumerated() {
            let field = "airlock.mounts[\(i)]"
            guard let kind = MountSpec.Kind(rawValue: m.type) else {
                throw SandboxError(
                    .profile,
                    "field \(field).type: '\(m.type)' is not one of \(MountSpec.Kind.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            let destination = try SandboxSettings.sandboxPath(m.destination, field: "\(field).destination")
            if destination == "/" { throw SandboxError(.profile, "field \(field).destination: cannot mount over /") }
            var mode: UInt32? = nil
            if let text = m.mode {
                guard let v = UInt32(text, radix: 8), v <= 0o7777 else {
                    throw SandboxError(.profile, "field \(field).mode: expected an octal string such as \"0755\"")
                }
                mode = v
            }
            switch kind {
            case .bind:
                guard let source = m.source, source.hasPrefix("/") else {
                    throw SandboxError(.profile, "field \(field).source: a bind mount needs an absolute host path")
                }
                if source.utf8.contains(0) { throw SandboxError(.profile, "field \(field).source: invalid path") }
            case .symlink:
                guard let t = m.target, !t.isEmpty else {
                    throw SandboxError(.profile, "field \(field).target: a symlink needs a target")
                }
            case .file:
                guard m.contents != nil else {
                    throw SandboxError(.profile, "field \(field).contents: a file needs contents")
                }
            case .dev:
                devCount += 1
                if devCount > 1 { throw SandboxError(.profile, "field \(field): only one dev mount") }
            case .tmpfs, .proc, .dir, .sysfs:
                break
            }
            if m.size != nil && kind != .tmpfs { throw SandboxError(.profile, "field \(field).size: only for tmpfs") }
            // tmpfs reads size=0 as "no limit": a bound is always meant.
            if m.size == 0 { throw SandboxError(.profile, "field \(field).size: must be greater than 0") }
            mounts.append(
                MountSpec(
                    kind: kind, source: m.source, destination: destination, target: m.target, contents: m.contents,
                    sizeBytes: m.size, mode: mode, optional: m.optional ?? false
                ))
        }
        if mounts.count > 200 { throw SandboxError(.profile, "field airlock.mounts: at most 200 entries") }
        self.mounts = mounts

        let l = raw.limits
        limits = Limits(
            addressSpaceBytes: l?.addressSpaceBytes ?? 4 << 30,
            cpuSeconds: l?.cpuSeconds ?? 60,
            openFiles: l?.openFiles ?? 256,
            processes: l?.processes ?? 64,
            fileSizeBytes: l?.fileSizeBytes ?? 64 << 20,
            timeoutSeconds: l?.timeoutSeconds ?? 30,
            outputBytes: l?.outputBytes ?? 1 << 20,
            traceEvents: l?.traceEvents ?? 10_000,
            traceBytes: l?.traceBytes ?? Limits.defaultTraceBytes
        )
        if let v = l?.memoryBytes { limits.memoryBytes = v }
        if let v = l?.inotifyInstances { limits.inotifyInstances = v }
        if let v = l?.inotifyWatches { limits.inotifyWatches = v }
        if let v = l?.messageQueueBytes { limits.messageQueueBytes = v }
        if let v = l?.pendingSignals { limits.pendingSignals = v }
        if let v = l?.lockedMemoryBytes { limits.lockedMemoryBytes = v }
        if let v = l?.modelCopyBytes { limits.modelCopyBytes = v }
        // Below this not even the interpreter starts; the kernel's own floor for a memory cgroup is far lower.
        guard limits.memoryBytes >= 16 << 20 else {
            throw SandboxError(.profile, "field airlock.limits.memoryBytes: at least 16 MiB (16777216)")
        }
        // The per-namespace counters are ints in the kernel.
        for (value, name) in [(limits.inotifyInstances, "inotifyInstances"), (limits.inotifyWatches, "inotifyWatches")]
        where value > UInt64(Int32.max) {
            throw SandboxError(.profile, "field airlock.limits.\(name): at most \(Int32.max)")
        }
        guard limits.timeoutSeconds > 0, limits.timeoutSeconds <= 86_400 else {
            throw SandboxError(.profile, "field airlock.limits.timeoutSeconds: must be in (0, 86400]")
        }
        guard limits.outputBytes >= 0, limits.traceEvents >= 0 else {
            throw SandboxError(.profile, "field airlock.limits: outputBytes and traceEvents must not be negative")
        }
        // The budget must hold the events every report relies on (the command's start, the phase announcements).
        guard limits.traceBytes >= 65536, limits.traceBytes <= 1 << 30 else {
            throw SandboxError(.profile, "field airlock.limits.traceBytes: must be from 65536 to 1073741824")
        }
        guard limits.processes >= 2, limits.openFiles >= 8 else {
            throw SandboxError(.profile, "field airlock.limits: processes must be ≥ 2 and openFiles ≥ 8")
        }
        recordRefused = raw.recordRefused ?? true

        var rules: [NotifyRule] = []
        for (i, n) in (raw.notify ?? []).enumerated() {
            let field = "airlock.notify[\(i)]"
            // The trace names the rule that decided by this id: one the supervisor uses itself, or `syscalls[N]`, would
            // read back as another rule (and the verdict policy would judge its refusals as that rule's).
            guard !TraceRule.isReserved(n.id) else {
                throw SandboxError(
                    .profile,
                    "field \(field).id: '\(n.id)' is reserved (the supervisor's own rules: "
                        + "\(TraceRule.reservedIDs.sorted().joined(separator: ", ")), and syscalls[N])")
            }
            guard let action = NotifyRule.Action(rawValue: n.action) else {
                throw SandboxError(.profile, "field \(field).action: expected allow, deny, kill or emulate")
            }
            if action == .emulate {
                let sockets: Set<String> = ["connect", "bind", "listen", "sendto", "sendmsg"]
                guard let families = n.families, !families.isEmpty,
                    families.allSatisfy({ $0 == "inet" || $0 == "inet6" }), n.syscalls.allSatisfy(sockets.contains)
                else {
                    throw SandboxError(
                        .profile,
                        "field \(field).action: emulate answers only connect, bind, listen, sendto and sendmsg on the "
                            + "families inet and inet6 (name them in syscalls and families)")
                }
            }
            var access: NotifyRule.Access? = nil
            if let a = n.access {
                guard let v = NotifyRule.Access(rawValue: a) else {
                    throw SandboxError(.profile, "field \(field).access: expected read or write")
                }
                access = v
            }
            var errnoValue = EPERM
            if let e = n.errno {
                guard let v = Errno(name: e)?.rawValue else {
                    throw SandboxError(.profile, "field \(field).errno: unknown errno name '\(e)'")
                }
                errnoValue = v
            }
            for fam in n.families ?? [] where addressFamilies[fam] == nil {
                throw SandboxError(.profile, "field \(field).families: unknown family '\(fam)'")
            }
            var targets: [NotifyRule.SignalTarget]? = nil
            if let t = n.signalTargets {
                targets = []
                for name in t {
                    guard let v = NotifyRule.SignalTarget(rawValue: name) else {
                        throw SandboxError(.profile, "field \(field).signalTargets: unknown target '\(name)'")
                    }
                    targets?.append(v)
                }
            }
            for glob in (n.paths ?? []) + (n.pathsOutside ?? []) where !glob.hasPrefix("/") && !glob.hasPrefix("**") {
                throw SandboxError(.profile, "field \(field).paths: '\(glob)' must be absolute or start with **")
            }
            rules.append(
                NotifyRule(
                    id: n.id, syscalls: n.syscalls, paths: n.paths, pathsOutside: n.pathsOutside, access: access,
                    families: n.families, signalTargets: targets, setIdMode: n.setIdMode, action: action,
                    errno: errnoValue
                ))
        }
        notify = rules
        guard let d = NotifyRule.Action(rawValue: raw.notifyDefault ?? "allow"), d != .emulate else {
            throw SandboxError(.profile, "field airlock.notifyDefault: expected allow, deny or kill")
        }
        notifyDefault = d
        allowedInKernel = raw.allowedInKernel ?? []
        guard let c = CgroupRequirement(rawValue: raw.cgroup ?? "optional") else {
            throw SandboxError(.profile, "field airlock.cgroup: expected required or optional")
        }
        cgroup = c
    }

    /// Normalises an absolute sandbox path; `..` is refused rather than resolved.
    static func sandboxPath(_ path: String, field: String) throws(SandboxError) -> String {
        guard path.hasPrefix("/") else { throw SandboxError(.profile, "field \(field): must be an absolute path") }
        let parts = path.split(separator: "/").filter { $0 != "." }
        if parts.contains("..") { throw SandboxError(.profile, "field \(field): must not contain '..'") }
        if path.utf8.contains(0) || path.utf8.count >= 1024 {
            throw SandboxError(.profile, "field \(field): invalid path")
        }
        return "/" + parts.joined(separator: "/")
    }
}
