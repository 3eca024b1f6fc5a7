import AirlockTrace
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

    /// Glob match: `*` and `?` stay within one path segment, `**` crosses segments.
    static func matches(_ pattern: String, _ path: String) -> Bool {
        Glob(pattern).matches(path)
    }
}

/// A glob compiled once: path segments, where `**` stands for any number of segments (zero included, so `/dir/**`
/// also covers `/dir`), and `*` / `?` match within one segment.
///
/// Matching allocates nothing and is greedy with a single backtracking point per level, so it runs in
/// O(pattern × path) at worst: a hostile path cannot make it slow.
struct Glob: Sendable, Equatable {
    enum Segment: Sendable, Equatable {
        /// `**`
        case anySegments
        /// A segment without wildcards.
        case literal([UInt8])
        /// A segment with `*` or `?`.
        case wildcard([UInt8])
    }

    let segments: [Segment]

    init(_ pattern: String) {
        segments = pattern.utf8.split(separator: UInt8(ascii: "/")).map { part in
            let bytes = Array(part)
            if bytes == [UInt8(ascii: "*"), UInt8(ascii: "*")] { return .anySegments }
            if bytes.contains(UInt8(ascii: "*")) || bytes.contains(UInt8(ascii: "?")) { return .wildcard(bytes) }
            return .literal(bytes)
        }
    }

    func matches(_ path: String) -> Bool {
        var path = path
        return path.withUTF8 { matches($0) }
    }

    private static let slash = UInt8(ascii: "/")

    func matches(_ path: UnsafeBufferPointer<UInt8>) -> Bool {
        func skipSlashes(_ i: Int) -> Int {
            var i = i
            while i < path.count && path[i] == Glob.slash { i += 1 }
            return i
        }
        func segmentEnd(_ i: Int) -> Int {
            var i = i
            while i < path.count && path[i] != Glob.slash { i += 1 }
            return i
        }
        var pi = 0
        var si = skipSlashes(0)
        var starPi = -1
        var starSi = 0
        while true {
            if si >= path.count {
                while pi < segments.count && segments[pi] == .anySegments { pi += 1 }
                return pi == segments.count
            }
            let end = segmentEnd(si)
            if pi < segments.count {
                switch segments[pi] {
                case .anySegments:
                    starPi = pi
                    starSi = si
                    pi += 1
                    continue
                case .literal(let bytes):
                    if Glob.equal(bytes, path, si, end) {
                        pi += 1
                        si = skipSlashes(end)
                        continue
                    }
                case .wildcard(let bytes):
                    if Glob.segmentMatches(bytes, path, si, end) {
                        pi += 1
                        si = skipSlashes(end)
                        continue
                    }
                }
            }
            // Mismatch, or pattern used up with path left: let the last `**` take one more segment.
            guard starPi >= 0 else { return false }
            starSi = skipSlashes(segmentEnd(starSi))
            si = starSi
            pi = starPi + 1
        }
    }

    private static func equal(_ bytes: [UInt8], _ path: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Bool {
        guard end - start == bytes.count else { return false }
        for k in 0..<bytes.count where bytes[k] != path[start + k] { return false }
        return true
    }

    /// `*` (any run) and `?` (one byte) within one segment.
    private static func segmentMatches(_ p: [UInt8], _ s: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Bool
    {
        var pi = 0
        var si = start
        var star = -1
        var mark = start
        while si < end {
            if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == s[si]) && p[pi] != UInt8(ascii: "*") {
                pi += 1
                si += 1
            } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
                star = pi
                mark = si
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                si = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}

/// The supervisor's decision for one notification.
struct Decision: Equatable {
    var action: TraceEvent.Action
    var errno: Int32
    var rule: TraceRule
    /// Answered by the emulated network (a notify rule with action `emulate`): `action` is `allowed`, and `errno`
    /// is the rule's, for when there is no emulated network.
    var emulated = false
}

/// Decides notified calls: profile refusals first, then the launch exec, then the notify rules in order.
struct NotifyPolicy {
    /// A notify rule with its globs compiled.
    private struct CompiledRule {
        let rule: NotifyRule
        let paths: [Glob]?
        let pathsOutside: [Glob]?
    }

    private let refusals: [String: [SyscallRule]]
    private let rules: [CompiledRule]
    private let fallback: NotifyRule.Action
    /// System calls the profile does not decide (`SeccompProgram.undecided`): refused with ENOSYS.
    private let undecided: Set<String>
    /// `dir/**` of each runtime tree (`SandboxRequest.runtimeTrees`): reads below them never match a denying path
    /// rule.
    private let runtimeTrees: [Glob]
    /// The world's planted credentials (`HostWorld.honeytokens`): their files, the folders below the home that lead
    /// to them, and whether `/proc/PID/environ` holds one. Reading them is allowed and traced as `.honeytoken`.
    private let bait: Bait

    /// Where a world's honeytokens are, as the policy matches them.
    struct Bait {
        var files: Set<String> = []
        var folders: Set<String> = []
        var environ: [Glob] = []

        init(_ world: HostWorld? = nil) {
            guard let world else { return }
            files = Set(world.honeytokenFiles)
            let home = PathMatcher.normalize(world.user.home)
            for file in files {
                // A thief lists ~/.ssh before it reads a key: a folder it cannot list beside a key it can read would
                // be a tell. Only the folders below the home: the home itself is the world's business.
                var folder = Substring(file)
                while let slash = folder.lastIndex(of: "/"), slash > folder.startIndex {
                    folder = folder[..<slash]
                    guard folder.hasPrefix(home + "/") else { break }
                    folders.insert(String(folder))
                }
            }
            if world.honeytokensInEnvironment {
                // The caller's own environment only: the sandbox's PID 1 is a copy of the supervisor, and its
                // environ would be the host's. Other processes' stay refused by the profile.
                environ = [
                    Glob("/proc/self/environ"), Glob("/proc/thread-self/environ"), Glob("/proc/self/task/*/environ"),
                ]
            }
        }

        var isEmpty: Bool { files.isEmpty && environ.isEmpty }

        func contains(_ path: String) -> Bool {
            files.contains(path) || folders.contains(path) || environ.contains { $0.matches(path) }
        }
    }

    init(profile: Profile, runtimeTrees: [String] = [], world: HostWorld? = nil) {
        self.runtimeTrees = runtimeTrees.map { Glob(PathMatcher.normalize($0) + "/**") }
        bait = Bait(world)
        undecided = Set(SeccompProgram.undecided(profile))
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
        rules = profile.sandbox.notify.map {
            CompiledRule(rule: $0, paths: $0.paths?.map(Glob.init), pathsOutside: $0.pathsOutside?.map(Glob.init))
        }
        fallback = profile.sandbox.notifyDefault
    }

    /// The profile rule that refuses this call outright, judged on register values only (no memory).
    func refusal(_ name: String, _ args: [UInt64]) -> Decision? {
        if undecided.contains(name) { return Decision(action: .denied, errno: ENOSYS, rule: .undecided) }
        guard let candidates = refusals[name] else { return nil }
        for rule in candidates where rule.args.allSatisfy({ $0.matches(args[$0.index]) }) {
            switch rule.action {
            case .errno(let e): return Decision(action: .denied, errno: e, rule: .refused(index: rule.index))
            default: return Decision(action: .killed, errno: ENOSYS, rule: .refused(index: rule.index))
            }
        }
        return nil
    }

    /// The answer for a call the profile notifies, from its decoded arguments.
    func decide(_ name: String, _ args: [UInt64], _ decoded: TraceArguments) -> Decision {
        if !bait.isEmpty, let path = decoded.path, ["open", "openat", "openat2"].contains(name),
            !NotifyPolicy.opensForWrite(name, args, decoded), bait.contains(path)
        {
            // Before the profile's `secrets` rule: the thief must get the token to show what it does with it. Only
            // reads, and the path the kernel resolves is judged again (`CallEmulator`), so a bait name cannot be
            // bent to another file.
            return Decision(action: .allowed, errno: 0, rule: .honeytoken)
        }
        for compiled in rules where compiled.rule.syscalls.contains(name) && matches(compiled, name, args, decoded) {
            let rule = compiled.rule
            return Decision(
                action: NotifyPolicy.eventAction(rule.action), errno: rule.errno, rule: .notify(rule.id),
                emulated: rule.action == .emulate)
        }
        return Decision(action: NotifyPolicy.eventAction(fallback), errno: EPERM, rule: .notifyDefault)
    }

    private static func eventAction(_ a: NotifyRule.Action) -> TraceEvent.Action {
        switch a {
        case .allow, .emulate: .allowed
        case .deny: .denied
        case .kill: .killed
        }
    }

    /// Cheap conditions first (flags, families, targets), globs last.
    private func matches(_ compiled: CompiledRule, _ name: String, _ args: [UInt64], _ d: TraceArguments) -> Bool {
        let rule = compiled.rule
        if let access = rule.access {
            guard (access == .write) == NotifyPolicy.opensForWrite(name, args, d) else { return false }
        }
        if rule.setIdMode == true {
            guard NotifyPolicy.setsIdBits(name, args, d) else { return false }
        }
        if let families = rule.families {
            guard let f = d.family, families.contains(f) else { return false }
        }
        if let targets = rule.signalTargets {
            // An unknown target (a pidfd the supervisor could not name) counts as every target.
            if let t = d.target {
                guard targets.contains(NotifyPolicy.signalTarget(name, t)) else { return false }
            } else if name != "pidfd_send_signal" {
                return false
            }
        }
        if compiled.paths == nil && compiled.pathsOutside == nil { return true }
        let second = ["rename", "renameat", "renameat2", "link", "linkat"].contains(name) ? d.path2 : nil
        let paths = [d.path, second].compactMap { $0 }
        if let globs = compiled.paths {
            guard paths.contains(where: { p in globs.contains { $0.matches(p) } }) else { return false }
            if rule.action == .deny, !runtimeTrees.isEmpty, second == nil, let path = d.path,
                ["open", "openat", "openat2"].contains(name), !NotifyPolicy.opensForWrite(name, args, d),
                runtimeTrees.contains(where: { $0.matches(path) })
            {
                return false
            }
        }
        if let globs = compiled.pathsOutside {
            guard paths.contains(where: { p in !globs.contains { $0.matches(p) } }) else { return false }
        }
        return true
    }

    /// Whether an open call (or `creat`) opens for writing; false for every other call.
    static func opensForWrite(_ name: String, _ args: [UInt64], _ d: TraceArguments) -> Bool {
        switch name {
        case "open": SyscallDecoder.opensForWrite(args[1])
        case "openat": SyscallDecoder.opensForWrite(args[2])
        case "creat": true
        case "openat2": d.openHowWrites ?? true
        default: false
        }
    }

    /// Whether the call's mode asks for the set-user-ID or set-group-ID bit: a mode change, or an open that creates.
    static func setsIdBits(_ name: String, _ args: [UInt64], _ d: TraceArguments) -> Bool {
        let setId: UInt64 = 0o6000
        let creating = { (flags: UInt64) in Int32(truncatingIfNeeded: flags) & (O_CREAT | 0o20000000) != 0 }
        switch name {
        case "chmod": return args[1] & setId != 0
        case "fchmodat", "fchmodat2": return args[2] & setId != 0
        case "creat": return args[1] & setId != 0
        case "open": return creating(args[1]) && args[2] & setId != 0
        case "openat": return creating(args[2]) && args[3] & setId != 0
        // open_how was read once by the decoder: its mode is in the trace arguments (octal), present for creating opens.
        case "openat2": return d.mode.flatMap { UInt64($0, radix: 8) }.map { $0 & setId != 0 } ?? false
        default: return false
        }
    }

    static func signalTarget(_ name: String, _ target: Int64) -> NotifyRule.SignalTarget {
        if name == "kill" {
            if target == -1 { return .all }
            if target <= 0 { return .group }
        }
        return target == 1 ? .initProcess : .process
    }
}
