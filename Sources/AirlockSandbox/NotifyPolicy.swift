#if canImport(Glibc)
import Glibc
#endif

/// Paths as the policy sees them: lexically normalised, matched against globs.
enum PathMatcher {
    /// Collapses `//`, `.` and `..` without touching the file system.
    static func normalize(_ path: String) -> String {
        var out: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." {
                if !out.isEmpty { out.removeLast() }
                continue
            }
            out.append(part)
        }
        return "/" + out.joined(separator: "/")
    }

    /// Glob match: `*` and `?` stay within one path segment, `**` crosses segments. Linear in
    /// pattern × path (dynamic programming), so a hostile path cannot make it slow.
    static func matches(_ pattern: String, _ path: String) -> Bool {
        // "/dir/**" covers "/dir" itself too.
        if pattern.hasSuffix("/**") && path == String(pattern.dropLast(3)) { return true }
        let star = UInt8(ascii: "*"), slash = UInt8(ascii: "/"), any = UInt8(ascii: "?")
        let p = Array(pattern.utf8)
        let s = Array(path.utf8)
        // row[j]: the pattern consumed so far matches s[0..<j].
        var row = [Bool](repeating: false, count: s.count + 1)
        row[0] = true
        var i = 0
        while i < p.count {
            var next = [Bool](repeating: false, count: s.count + 1)
            if p[i] == star {
                let doubled = i + 1 < p.count && p[i + 1] == star
                for j in 0...s.count where row[j] || (j > 0 && next[j - 1] && (doubled || s[j - 1] != slash)) {
                    next[j] = true
                }
                i += doubled ? 2 : 1
            } else {
                for j in 0..<s.count where row[j] && (p[i] == s[j] || (p[i] == any && s[j] != slash)) {
                    next[j + 1] = true
                }
                i += 1
            }
            row = next
        }
        return row[s.count]
    }
}

/// The supervisor's decision for one notification.
struct Decision: Equatable {
    var action: TraceEvent.Action
    var errno: Int32
    var rule: String
}

/// Decides notified calls: profile refusals first, then the launch exec, then the notify rules in order.
struct NotifyPolicy {
    private let refusals: [String: [SyscallRule]]
    private let rules: [NotifyRule]
    private let fallback: NotifyRule.Action

    init(profile: Profile) {
        var refusals: [String: [SyscallRule]] = [:]
        for rule in profile.syscalls {
            switch rule.action {
            case .errno, .killProcess, .killThread:
                for name in rule.names { refusals[name, default: []].append(rule) }
            case .allow, .log, .notify:
                break
            }
        }
        self.refusals = refusals
        rules = profile.sandbox.notify
        fallback = profile.sandbox.notifyDefault
    }

    /// The profile rule that refuses this call outright, judged on register values only (no memory).
    func refusal(_ name: String, _ args: [UInt64]) -> Decision? {
        guard let candidates = refusals[name] else { return nil }
        for rule in candidates where rule.args.allSatisfy({ $0.matches(args[$0.index]) }) {
            switch rule.action {
            case .errno(let e): return Decision(action: .denied, errno: e, rule: "syscalls[\(rule.index)]")
            default: return Decision(action: .killed, errno: ENOSYS, rule: "syscalls[\(rule.index)]")
            }
        }
        return nil
    }

    /// The answer for a call the profile notifies, from its decoded arguments.
    func decide(_ name: String, _ args: [UInt64], _ decoded: TraceArguments) -> Decision {
        for rule in rules where rule.syscalls.contains(name) && matches(rule, name, args, decoded) {
            return Decision(action: NotifyPolicy.eventAction(rule.action), errno: rule.errno, rule: rule.id)
        }
        return Decision(action: NotifyPolicy.eventAction(fallback), errno: EPERM, rule: "default")
    }

    private static func eventAction(_ a: NotifyRule.Action) -> TraceEvent.Action {
        switch a {
        case .allow: .allowed
        case .deny: .denied
        case .kill: .killed
        }
    }

    private func matches(_ rule: NotifyRule, _ name: String, _ args: [UInt64], _ d: TraceArguments) -> Bool {
        let paths = [d.path, ["rename", "renameat", "renameat2", "link", "linkat"].contains(name) ? d.path2 : nil]
            .compactMap { $0 }
        if let globs = rule.paths {
            guard paths.contains(where: { p in globs.contains { PathMatcher.matches($0, p) } }) else { return false }
        }
        if let globs = rule.pathsOutside {
            guard paths.contains(where: { p in !globs.contains { PathMatcher.matches($0, p) } }) else { return false }
        }
        if let access = rule.access {
            let write: Bool
            switch name {
            case "open": write = SyscallDecoder.opensForWrite(args[1])
            case "openat": write = SyscallDecoder.opensForWrite(args[2])
            case "creat": write = true
            case "openat2": write = d.flags.map { $0.contains("O_WRONLY") || $0.contains("O_RDWR") || $0.contains("O_CREAT") || $0.contains("O_TRUNC") || $0.contains("O_APPEND") || $0.contains("O_TMPFILE") } ?? true
            default: write = false
            }
            guard (access == .write) == write else { return false }
        }
        if let families = rule.families {
            guard let f = d.family, families.contains(f) else { return false }
        }
        if let targets = rule.signalTargets {
            guard let t = d.target, targets.contains(NotifyPolicy.signalTarget(name, t)) else { return false }
        }
        return true
    }

    static func signalTarget(_ name: String, _ target: Int64) -> NotifyRule.SignalTarget {
        if name == "kill" {
            if target == -1 { return .all }
            if target <= 0 { return .group }
        }
        return target == 1 ? .initProcess : .process
    }
}
