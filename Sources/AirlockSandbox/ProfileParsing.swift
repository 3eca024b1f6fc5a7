#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Any JSON value; used to check a profile's keys before typed decoding, so a misspelt field is an error.
enum JSONValue: Decodable {
    case object([String: JSONValue]), array([JSONValue]), string(String), number(Double), bool(Bool), null

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? c.decode(Double.self) {
            self = .number(n)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }
}

/// The keys a profile may hold, by position.
enum ProfileSchema {
    private static let root: Set = [
        "$comment", "comment", "defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls", "airlock",
        "flags",
    ]
    private static let syscall: Set = ["names", "action", "errnoRet", "args", "comment", "includes", "excludes"]
    private static let arg: Set = ["index", "value", "valueTwo", "op"]
    private static let airlock: Set = [
        "$comment", "hostname", "user", "cwd", "env", "mounts", "limits", "recordRefused", "notify", "notifyDefault",
    ]
    private static let user: Set = ["uid", "gid", "hostUid", "hostGid"]
    private static let mount: Set = [
        "type", "source", "destination", "target", "contents", "size", "mode", "optional", "comment",
    ]
    private static let limits: Set = [
        "addressSpaceBytes", "cpuSeconds", "openFiles", "processes", "fileSizeBytes", "timeoutSeconds",
        "outputBytes", "traceEvents",
    ]
    private static let notify: Set = [
        "id", "syscalls", "paths", "pathsOutside", "access", "families", "signalTargets", "action", "errno",
        "comment",
    ]

    static func check(_ value: JSONValue) throws(SandboxError) {
        guard case .object(let top) = value else { throw SandboxError(.profile, "the profile must be a JSON object") }
        try keys(top, root, "")
        if case .array(let rules)? = top["syscalls"] {
            for (i, rule) in rules.enumerated() {
                guard case .object(let r) = rule else { continue }
                try keys(r, syscall, "syscalls[\(i)]")
                for field in ["includes", "excludes"] {
                    if case .object(let o)? = r[field], !o.isEmpty {
                        throw SandboxError(.profile, "field syscalls[\(i)].\(field): not supported by Airlock")
                    }
                }
                if case .array(let args)? = r["args"] {
                    for (j, a) in args.enumerated() {
                        if case .object(let o) = a { try keys(o, arg, "syscalls[\(i)].args[\(j)]") }
                    }
                }
            }
        }
        guard case .object(let section)? = top["airlock"] else { return }
        try keys(section, airlock, "airlock")
        if case .object(let u)? = section["user"] { try keys(u, user, "airlock.user") }
        if case .object(let l)? = section["limits"] { try keys(l, limits, "airlock.limits") }
        if case .array(let ms)? = section["mounts"] {
            for (i, m) in ms.enumerated() {
                if case .object(let o) = m { try keys(o, mount, "airlock.mounts[\(i)]") }
            }
        }
        if case .array(let ns)? = section["notify"] {
            for (i, n) in ns.enumerated() {
                if case .object(let o) = n { try keys(o, notify, "airlock.notify[\(i)]") }
            }
        }
    }

    private static func keys(_ object: [String: JSONValue], _ allowed: Set<String>, _ path: String) throws(SandboxError) {
        for key in object.keys.sorted() where !allowed.contains(key) {
            let field = path.isEmpty ? key : "\(path).\(key)"
            throw SandboxError(.profile, "field \(field): unknown field (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ p: [any CodingKey]) -> String {
            var s = ""
            for k in p {
                if let i = k.intValue { s += "[\(i)]" } else { s += s.isEmpty ? k.stringValue : ".\(k.stringValue)" }
            }
            return s.isEmpty ? "(top level)" : s
        }
        switch error {
        case .typeMismatch(let type, let ctx): return "field \(path(ctx.codingPath)): expected \(type)"
        case .valueNotFound(let type, let ctx): return "field \(path(ctx.codingPath)): expected \(type), found null"
        case .keyNotFound(let key, let ctx):
            return "field \(path(ctx.codingPath + [key])): required"
        case .dataCorrupted(let ctx): return "field \(path(ctx.codingPath)): \(ctx.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}

// MARK: - The profile as written

struct RawProfile: Decodable {
    struct Rule: Decodable {
        struct Arg: Decodable {
            var index: Int
            var value: UInt64
            var valueTwo: UInt64?
            var op: String
        }
        var names: [String]
        var action: String
        var errnoRet: Int32?
        var args: [Arg]?
    }
    struct Section: Decodable {
        struct User: Decodable { var uid: UInt32?, gid: UInt32?, hostUid: UInt32?, hostGid: UInt32? }
        struct Mount: Decodable {
            var type: String
            var source: String?
            var destination: String
            var target: String?
            var contents: String?
            var size: UInt64?
            var mode: String?
            var optional: Bool?
        }
        struct Limits: Decodable {
            var addressSpaceBytes: UInt64?, cpuSeconds: UInt64?, openFiles: UInt64?, processes: UInt64?
            var fileSizeBytes: UInt64?, timeoutSeconds: Double?, outputBytes: Int?, traceEvents: Int?
        }
        struct Notify: Decodable {
            var id: String
            var syscalls: [String]
            var paths: [String]?
            var pathsOutside: [String]?
            var access: String?
            var families: [String]?
            var signalTargets: [String]?
            var action: String
            var errno: String?
        }
        var hostname: String?
        var user: User?
        var cwd: String?
        var env: [String: String]?
        var mounts: [Mount]?
        var limits: Limits?
        var recordRefused: Bool?
        var notify: [Notify]?
        var notifyDefault: String?
    }
    var defaultAction: String
    var defaultErrnoRet: Int32?
    var architectures: [String]?
    var syscalls: [Rule]?
    var airlock: Section?
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
        if defaultAction == .notify { throw SandboxError(.profile, "field defaultAction: SCMP_ACT_NOTIFY as the default would notify every call") }

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
            guard (1...4095).contains(errno) else { throw SandboxError(.profile, "field \(field): errnoRet must be 1–4095") }
            return .errno(errno)
        case "SCMP_ACT_KILL_PROCESS": return .killProcess
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": return .killThread
        case "SCMP_ACT_LOG": return .log
        case "SCMP_ACT_NOTIFY": return .notify
        case "SCMP_ACT_TRAP", "SCMP_ACT_TRACE":
            throw SandboxError(.profile, "field \(field): \(name) is not supported (a ptracer or SIGSYS handler would be part of the sandbox)")
        default:
            throw SandboxError(.profile, "field \(field): unknown action '\(name)'")
        }
    }
}

extension SandboxSettings {
    init(raw: RawProfile.Section) throws(SandboxError) {
        hostname = raw.hostname ?? "airlock"
        guard !hostname.isEmpty, hostname.utf8.count <= 64, hostname.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }) else {
            throw SandboxError(.profile, "field airlock.hostname: 1–64 letters, digits, '-' or '.'")
        }
        let u = raw.user
        user = UserMapping(uid: u?.uid ?? 1000, gid: u?.gid ?? 1000, hostUid: u?.hostUid ?? 65534, hostGid: u?.hostGid ?? 65534)
        if user.hostUid == 0 || user.hostGid == 0 {
            throw SandboxError(.profile, "field airlock.user.hostUid/hostGid: must not be 0 (root)")
        }
        cwd = raw.cwd ?? "/"
        guard cwd.hasPrefix("/") else { throw SandboxError(.profile, "field airlock.cwd: must be an absolute path") }
        environment = (raw.env ?? ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"])
            .sorted { $0.key < $1.key }
        for (k, v) in environment where k.isEmpty || k.contains("=") || k.utf8.contains(0) || v.utf8.contains(0) {
            throw SandboxError(.profile, "field airlock.env.\(k): names may not be empty or hold '=' or NUL")
        }

        var mounts: [MountSpec] = []
        var devCount = 0
        for (i, m) in (raw.mounts ?? []).enumerated() {
            let field = "airlock.mounts[\(i)]"
            guard let kind = MountSpec.Kind(rawValue: m.type) else {
                throw SandboxError(.profile, "field \(field).type: '\(m.type)' is not one of \(MountSpec.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
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
                guard let t = m.target, !t.isEmpty else { throw SandboxError(.profile, "field \(field).target: a symlink needs a target") }
            case .file:
                guard m.contents != nil else { throw SandboxError(.profile, "field \(field).contents: a file needs contents") }
            case .dev:
                devCount += 1
                if devCount > 1 { throw SandboxError(.profile, "field \(field): only one dev mount") }
            case .tmpfs, .proc, .dir:
                break
            }
            if m.size != nil && kind != .tmpfs { throw SandboxError(.profile, "field \(field).size: only for tmpfs") }
            // tmpfs reads size=0 as "no limit": a bound is always meant.
            if m.size == 0 { throw SandboxError(.profile, "field \(field).size: must be greater than 0") }
            mounts.append(MountSpec(
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
            traceEvents: l?.traceEvents ?? 10_000
        )
        guard limits.timeoutSeconds > 0, limits.timeoutSeconds <= 86_400 else {
            throw SandboxError(.profile, "field airlock.limits.timeoutSeconds: must be in (0, 86400]")
        }
        guard limits.outputBytes >= 0, limits.traceEvents >= 0 else {
            throw SandboxError(.profile, "field airlock.limits: outputBytes and traceEvents must not be negative")
        }
        guard limits.processes >= 2, limits.openFiles >= 8 else {
            throw SandboxError(.profile, "field airlock.limits: processes must be ≥ 2 and openFiles ≥ 8")
        }
        recordRefused = raw.recordRefused ?? true

        var rules: [NotifyRule] = []
        for (i, n) in (raw.notify ?? []).enumerated() {
            let field = "airlock.notify[\(i)]"
            guard let action = NotifyRule.Action(rawValue: n.action) else {
                throw SandboxError(.profile, "field \(field).action: expected allow, deny or kill")
            }
            var access: NotifyRule.Access? = nil
            if let a = n.access {
                guard let v = NotifyRule.Access(rawValue: a) else { throw SandboxError(.profile, "field \(field).access: expected read or write") }
                access = v
            }
            var errnoValue = EPERM
            if let e = n.errno {
                guard let v = ErrnoName.value(e) else { throw SandboxError(.profile, "field \(field).errno: unknown errno name '\(e)'") }
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
            rules.append(NotifyRule(
                id: n.id, syscalls: n.syscalls, paths: n.paths, pathsOutside: n.pathsOutside, access: access,
                families: n.families, signalTargets: targets, action: action, errno: errnoValue
            ))
        }
        notify = rules
        guard let d = NotifyRule.Action(rawValue: raw.notifyDefault ?? "allow") else {
            throw SandboxError(.profile, "field airlock.notifyDefault: expected allow, deny or kill")
        }
        notifyDefault = d
    }

    /// Normalises an absolute sandbox path; `..` is refused rather than resolved.
    static func sandboxPath(_ path: String, field: String) throws(SandboxError) -> String {
        guard path.hasPrefix("/") else { throw SandboxError(.profile, "field \(field): must be an absolute path") }
        let parts = path.split(separator: "/").filter { $0 != "." }
        if parts.contains("..") { throw SandboxError(.profile, "field \(field): must not contain '..'") }
        if path.utf8.contains(0) || path.utf8.count >= 1024 { throw SandboxError(.profile, "field \(field): invalid path") }
        return "/" + parts.joined(separator: "/")
    }
}
