internal import AirlockJSON
import AirlockSystem
internal import CSeccomp
#if canImport(Glibc)
    import Glibc
#endif

/// A profile's enforce-only part written as an OCI runtime-spec `linux.seccomp` object, the format Docker
/// (`--security-opt seccomp=FILE`) and Podman accept.
///
/// Every seccomp rule the kernel enforces on its own maps one to one. What only Airlock's supervisor can do has no
/// OCI form: a call the profile sends to the supervisor (`SCMP_ACT_NOTIFY`) is answered by `airlock.notify` rules
/// that read paths, socket families or signal targets from the caller's memory, or by the emulated network, or by
/// the launch rule (the first `execve`). Such a call is exported exactly when its answer does not depend on any of
/// that (one unconditional answer); otherwise it is **degraded** to a refusal (`fallback: .deny`, the default) or to
/// an allowance, and listed in `degraded`. docs/profiles.md, "Exporting to OCI", has the table.
public struct OCIExport: Sendable {
    /// What a notified call whose answer cannot be expressed becomes.
    public enum Fallback: String, Sendable, CaseIterable {
        /// Refused with the errno of the first refusing notify rule that names it (`EPERM` when none does).
        case deny
        /// Allowed, as if the supervisor had no policy for it.
        case allow
    }

    /// A system call whose Airlock answer has no exact OCI form.
    public struct DegradedCall: Sendable, Equatable {
        /// The system call.
        public var syscall: String
        /// The profile's rule that sent it to the supervisor (`syscalls[39]`).
        public var rule: String
        /// What the export does instead: `SCMP_ACT_ERRNO (EACCES)` or `SCMP_ACT_ALLOW`.
        public var exported: String
        /// Which of Airlock's decisions were lost (`airlock.notify[2] (paths)`, `launch`, …).
        public var reasons: [String]
    }

    /// The OCI document, pretty-printed, ending in a newline.
    public let document: [UInt8]
    /// Notified calls that were degraded, in profile order.
    public let degraded: [DegradedCall]
    /// Things the profile does that no OCI profile can say, whatever the calls (one sentence each).
    public let notExpressible: [String]
    /// A JSON document for people and tools: the degraded calls and `notExpressible` (`--explain`).
    public let explanation: [UInt8]

    /// Exports `profile`. `allow` names degraded calls to allow whatever `fallback` says; a name in it that is not
    /// degraded is an error, so a typo does not pass unnoticed.
    public init(profile: Profile, fallback: Fallback = .deny, allow: Set<String> = []) throws(SandboxError) {
        var rules: [JSON] = []
        var degraded: [DegradedCall] = []
        let defaultKey = OCIExport.actionKey(profile.defaultAction)
        // Per name, the emitted rules' actions (unconditional, conditional) and where they came from, to refuse an
        // export that libseccomp would read differently (below).
        var plain: [String: (key: String, from: String)] = [:]
        var conditional: [String: [(key: String, from: String)]] = [:]
        // Rules left out because their action equals defaultAction (runtimes and libseccomp skip them), per name.
        var skipped: [String: String] = [:]
        func emit(_ names: [String], _ action: SeccompAction, _ args: [ArgumentCondition], from: String) {
            let key = OCIExport.actionKey(action)
            guard !names.isEmpty else { return }
            guard key != defaultKey else {
                for name in names where skipped[name] == nil { skipped[name] = from }
                return
            }
            rules.append(OCIExport.rule(names: names, action: action, args: args))
            for name in names {
                if args.isEmpty {
                    if plain[name] == nil { plain[name] = (key, from) }
                } else {
                    conditional[name, default: []].append((key, from))
                }
            }
        }
        // The calls Airlock refuses as undecided (neither in a rule nor in allowedInKernel) are refused by the kernel
        // with ENOSYS: exact on this ABI. First, as SeccompProgram adds them first.
        emit(SeccompProgram.undecided(profile), .errno(ENOSYS), [], from: "undecided")
        for rule in profile.syscalls {
            guard rule.action == .notify else {
                emit(rule.names, rule.action, rule.args, from: "syscalls[\(rule.index)]")
                continue
            }
            // Names answered alike stay together, in the rule's order.
            var groups: [(action: SeccompAction, names: [String])] = []
            for name in rule.names {
                let answer = OCIExport.answer(name, profile: profile)
                var action = answer.action
                if !answer.reasons.isEmpty {
                    if fallback == .allow || allow.contains(name) { action = .allow }
                    degraded.append(
                        DegradedCall(
                            syscall: name, rule: "syscalls[\(rule.index)]", exported: OCIExport.describe(action),
                            reasons: answer.reasons))
                }
                if let i = groups.firstIndex(where: { OCIExport.actionKey($0.action) == OCIExport.actionKey(action) }) {
                    groups[i].names.append(name)
                } else {
                    groups.append((action, [name]))
                }
            }
            for group in groups { emit(group.names, group.action, rule.args, from: "syscalls[\(rule.index)]") }
        }
        // libseccomp keeps only the unconditional rule of a call that also has conditional ones: in Airlock both may
        // be notifications the supervisor tells apart, exported they would silently lose the conditional refusal.
        for (name, unconditional) in plain.sorted(by: { $0.key < $1.key }) {
            for other in conditional[name] ?? [] where other.key != unconditional.key {
                throw SandboxError(
                    .profile,
                    "profile \(profile.name): '\(name)' cannot be exported: \(unconditional.from) becomes "
                        + "\(unconditional.key) for every call and \(other.from) \(other.key) for some, and libseccomp "
                        + "keeps only the rule without conditions (try --allow or --degrade)")
            }
        }
        // A refusal equal to a refusing defaultAction is left out, but in Airlock it is kept (as a notification with
        // recordRefused, answered by the first matching rule): another rule for the same call would then decide
        // calls Airlock refuses, typically allowing them.
        if !OCIExport.permits(profile.defaultAction) {
            for (name, from) in skipped.sorted(by: { $0.key < $1.key }) {
                guard let other = plain[name] ?? conditional[name]?.first else { continue }
                throw SandboxError(
                    .profile,
                    "profile \(profile.name): '\(name)' cannot be exported: \(from) refuses it like defaultAction, "
                        + "so an OCI runtime leaves that rule out and \(other.from) (\(other.key)) alone decides the "
                        + "calls both rules match (drop the rule that repeats defaultAction and narrow \(other.from))")
            }
        }
        let degradedNames = Set(degraded.map(\.syscall))
        for name in allow.sorted() where !degradedNames.contains(name) {
            throw SandboxError(
                .profile,
                "profile \(profile.name): '\(name)' is not a degraded call (degraded: "
                    + "\(degradedNames.sorted().joined(separator: ", ")))")
        }
        var top: [(String, JSON)] = [("defaultAction", .string(OCIExport.actionName(profile.defaultAction)))]
        if case .errno(let e) = profile.defaultAction { top.append(("defaultErrnoRet", .int(e))) }
        top.append(("architectures", .array(profile.architectures.map(JSON.string))))
        top.append(("syscalls", .array(rules)))
        document = Array((JSON.object(top).pretty() + "\n").utf8)
        self.degraded = degraded

        var lost = [
            "System-call numbers above the highest this machine's libseccomp knows (\(SyscallTable.native.highest)) "
                + "are refused with ENOSYS by Airlock; an OCI profile cannot name them, so the runtime gives them "
                + "defaultAction.",
            "The undecided calls are listed for this machine's ABI (\(SeccompProgram.archName(seccomp_arch_native()))); "
                + "calls that only the other listed ABI has get defaultAction there.",
            "Refused calls are not recorded: there is no supervisor, so no trace.",
            "Calls through an ABI not listed in architectures (32-bit, x32) kill the process in Airlock; under OCI "
                + "the runtime decides.",
        ]
        if profile.architectures.count < 2 { lost.remove(at: 1) }
        notExpressible = lost
        let calls = degraded.map { d in
            JSON.object([
                ("syscall", .string(d.syscall)), ("rule", .string(d.rule)), ("exported", .string(d.exported)),
                ("reasons", .array(d.reasons.map(JSON.string))),
            ])
        }
        explanation = Array(
            (JSON.object([
                ("profile", .string(profile.name)), ("format", .string("oci")),
                ("fallback", .string(fallback.rawValue)), ("allowed", .array(allow.sorted().map(JSON.string))),
                ("degraded", .array(calls)), ("notExpressible", .array(lost.map(JSON.string))),
            ]).pretty() + "\n").utf8)
    }

    /// How the supervisor answers a notified call `name` when its answer does not depend on what the call points
    /// at, and otherwise the first refusing answer it could give with the reasons it is not exact.
    static func answer(_ name: String, profile: Profile) -> (action: SeccompAction, reasons: [String]) {
        var answers: [(action: SeccompAction, emulated: Bool)] = []
        var reasons: [String] = []
        var decided = false
        for (i, rule) in profile.sandbox.notify.enumerated() where rule.syscalls.contains(name) {
            answers.append((OCIExport.kernelAction(rule.action, errno: rule.errno), rule.action == .emulate))
            if rule.action == .emulate { reasons.append("airlock.notify[\(i)] (emulate: the emulated network)") }
            let conditions = rule.conditionNames
            if conditions.isEmpty {
                decided = true
                break
            }
            reasons.append("airlock.notify[\(i)] (\(conditions.joined(separator: ", ")))")
        }
        if !decided {
            answers.append((OCIExport.kernelAction(profile.sandbox.notifyDefault, errno: EPERM), false))
        }
        if name == "execve" || name == "execveat", answers.contains(where: { $0.action != .allow }) {
            reasons.append("launch (Airlock allows the first exec, which starts the command)")
        }
        let kinds = Set(answers.map { OCIExport.actionKey($0.action) })
        let launch = reasons.contains { $0.hasPrefix("launch") }
        if kinds.count == 1 && !answers.contains(where: \.emulated) && !launch {
            return (answers[0].action, [])
        }
        // Refusals are mixed with allowances, or the network is emulated: the safe side is the first refusal's errno.
        let refusal = answers.first { if case .errno = $0.action { true } else { false } }
        return (refusal?.action ?? .errno(EPERM), reasons.isEmpty ? ["answers differ by argument"] : reasons)
    }

    /// A notify answer as the kernel action that has the same effect (emulate: a refusal with the rule's errno).
    static func kernelAction(_ action: NotifyRule.Action, errno: Int32) -> SeccompAction {
        switch action {
        case .allow: .allow
        case .deny, .emulate: .errno(errno)
        case .kill: .killProcess
        }
    }

    static func rule(names: [String], action: SeccompAction, args: [ArgumentCondition]) -> JSON {
        var members: [(String, JSON)] = [
            ("names", .array(names.map(JSON.string))), ("action", .string(actionName(action))),
        ]
        if case .errno(let e) = action { members.append(("errnoRet", .int(e))) }
        if !args.isEmpty {
            let conditions = args.map { a in
                JSON.object([
                    ("index", .int(a.index)), ("value", .int(a.value)), ("valueTwo", .int(a.valueTwo)),
                    ("op", .string(a.op.rawValue)),
                ])
            }
            members.append(("args", .array(conditions)))
        }
        return .object(members)
    }

    /// The OCI name of an action. Thread kills are `SCMP_ACT_KILL`, the name every runtime knows.
    static func actionName(_ action: SeccompAction) -> String {
        switch action {
        case .allow: "SCMP_ACT_ALLOW"
        case .errno: "SCMP_ACT_ERRNO"
        case .killProcess: "SCMP_ACT_KILL_PROCESS"
        case .killThread: "SCMP_ACT_KILL"
        case .log: "SCMP_ACT_LOG"
        case .notify: "SCMP_ACT_NOTIFY"
        }
    }

    /// An action with its errno, for comparing and grouping.
    static func actionKey(_ action: SeccompAction) -> String {
        if case .errno(let e) = action { return "SCMP_ACT_ERRNO/\(e)" }
        return actionName(action)
    }

    /// Whether `action` lets the call run (`SCMP_ACT_ALLOW`, `SCMP_ACT_LOG`).
    static func permits(_ action: SeccompAction) -> Bool {
        switch action {
        case .allow, .log: true
        default: false
        }
    }

    /// `SCMP_ACT_ERRNO (EACCES)`, `SCMP_ACT_ALLOW`.
    static func describe(_ action: SeccompAction) -> String {
        if case .errno(let e) = action { return "SCMP_ACT_ERRNO (\(Errno(e).name))" }
        return actionName(action)
    }
}

extension NotifyRule {
    /// The conditions this rule has, by field name; empty when it answers every call it names alike.
    var conditionNames: [String] {
        var names: [String] = []
        if paths != nil { names.append("paths") }
        if pathsOutside != nil { names.append("pathsOutside") }
        if access != nil { names.append("access") }
        if families != nil { names.append("families") }
        if signalTargets != nil { names.append("signalTargets") }
        if setIdMode != nil { names.append("setIdMode") }
        return names
    }
}
