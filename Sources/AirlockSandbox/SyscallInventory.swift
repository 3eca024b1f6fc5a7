import AirlockSystem
internal import CSeccomp

/// Every system call this machine's ABI has (as libseccomp knows it) with what a profile does with it: the
/// profile's inventory, as docs/profiles.md prints it for the shipped profile.
public struct SyscallInventory: Sendable {
    /// One system call's treatment.
    public struct Entry: Sendable, Equatable {
        /// The name.
        public var name: String
        /// Its number on this machine's ABI.
        public var number: Int32
        /// `allowed`, `notified`, `refused`, `killed`, `conditional` (some argument values are refused or notified,
        /// the rest allowed) or `undecided` (refused with ENOSYS).
        public var treatment: String
        /// What exactly: the errno, the conditions, the notify rules that can answer it, and whether the supervisor
        /// performs it when allowed.
        public var detail: String
    }

    /// The entries, in number order.
    public let entries: [Entry]
    /// Numbers above this one are refused with ENOSYS (`unknown-syscall`).
    public let highest: Int32

    /// The inventory of `profile` on this machine.
    public init(profile: Profile) {
        let undecided = Set(SeccompProgram.undecided(profile))
        let allowed = Set(profile.sandbox.allowedInKernel)
        var entries: [Entry] = []
        for (name, number) in SyscallTable.native.names {
            let rules = profile.syscalls.filter { $0.names.contains(name) }
            let notifyIds = profile.sandbox.notify.filter { $0.syscalls.contains(name) }.map(\.id)
            let performed = CallEmulator.performed.contains(name)
            func notified() -> String {
                var text =
                    notifyIds.isEmpty
                    ? "answered by notifyDefault (\(profile.sandbox.notifyDefault.rawValue))"
                    : "rules " + notifyIds.joined(separator: ", ")
                text += performed ? "; performed by the supervisor when allowed" : "; continued when allowed"
                return text
            }
            if undecided.contains(name) {
                entries.append(Entry(name: name, number: number, treatment: "undecided", detail: "ENOSYS"))
                continue
            }
            if rules.isEmpty {
                entries.append(
                    Entry(
                        name: name, number: number, treatment: allowed.contains(name) ? "allowed" : "undecided",
                        detail: allowed.contains(name) ? "" : "ENOSYS"
                    ))
                continue
            }
            let parts = rules.map { rule -> String in
                let what: String
                switch rule.action {
                case .notify: what = "notified (\(notified()))"
                case .errno(let e): what = "refused \(Errno(e).name)"
                case .killProcess: what = "kills the process"
                case .killThread: what = "kills the thread (and the process)"
                case .allow: what = "allowed"
                case .log: what = "allowed and logged"
                }
                let when = rule.args.map(SyscallInventory.describe).joined(separator: " and ")
                return when.isEmpty ? what : "\(what) when \(when)"
            }
            let conditional = rules.allSatisfy { !$0.args.isEmpty }
            let treatment: String
            if conditional {
                treatment = "conditional"
            } else {
                switch rules.first(where: { $0.args.isEmpty })!.action {
                case .notify: treatment = "notified"
                case .errno: treatment = "refused"
                case .killProcess, .killThread: treatment = "killed"
                case .allow, .log: treatment = "allowed"
                }
            }
            entries.append(
                Entry(name: name, number: number, treatment: treatment, detail: parts.joined(separator: "; ")))
        }
        self.entries = entries
        highest = SyscallTable.native.highest
    }

    static func describe(_ c: ArgumentCondition) -> String {
        let arg = "arg\(c.index)"
        switch c.op {
        case .equal: return "\(arg) == \(SyscallDecoder.hex(c.value))"
        case .notEqual: return "\(arg) != \(SyscallDecoder.hex(c.value))"
        case .lessThan: return "\(arg) < \(SyscallDecoder.hex(c.value))"
        case .lessOrEqual: return "\(arg) <= \(SyscallDecoder.hex(c.value))"
        case .greaterThan: return "\(arg) > \(SyscallDecoder.hex(c.value))"
        case .greaterOrEqual: return "\(arg) >= \(SyscallDecoder.hex(c.value))"
        case .maskedEqual: return "\(arg) & \(SyscallDecoder.hex(c.value)) == \(SyscallDecoder.hex(c.valueTwo))"
        }
    }

    /// The inventory as a Markdown table, with a summary line per treatment.
    public func markdown(architecture: String) -> String {
        var counts: [String: Int] = [:]
        for e in entries { counts[e.treatment, default: 0] += 1 }
        var out =
            "Architecture \(architecture), libseccomp's table: \(entries.count) system calls, numbers 0–\(highest). "
        out += ["allowed", "notified", "conditional", "refused", "killed", "undecided"]
            .compactMap { t in counts[t].map { "\($0) \(t)" } }.joined(separator: ", ")
        out += ". Any number above \(highest) is refused with ENOSYS (`unknown-syscall`).\n\n"
        out += "| nr | system call | treatment | detail |\n|---:|---|---|---|\n"
        for e in entries {
            out +=
                "| \(e.number) | `\(e.name)` | \(e.treatment) | \(e.detail.split(separator: "|", omittingEmptySubsequences: false).joined(separator: "\\|")) |\n"
        }
        return out
    }
}
