import AirlockSandbox
import AirlockTrace

/// `airlock exec`'s default view of a trace: what was tried, grouped. Each kind of call — system call, answer and
/// details (the path, the argv, the address) — is shown once with how often it came, in the order first seen: the
/// refused ones (denied or killed) first, then the allowed ones (a program started, a connection made); allowed
/// opens, which a Python start-up makes by the dozen, are only counted. Raw register values are left out (they would
/// keep alike calls apart); `--trace full` shows every event with them.
enum TraceSummary {
    /// Kinds shown of each of refused and allowed calls; the rest are counted on one line (the trace itself is bounded
    /// by the profile).
    static let maxKinds = 40

    /// Allowed calls that are counted, not listed.
    static let countedOnly: Set<String> = ["open", "openat", "openat2", "creat"]

    /// Calls grouped by kind, in the order first seen.
    struct Groups {
        var kinds: [(key: String, count: Int)] = []
        var index: [String: Int] = [:]

        mutating func add(_ key: String) {
            if let i = index[key] {
                kinds[i].count += 1
            } else {
                index[key] = kinds.count
                kinds.append((key, 1))
            }
        }

        func lines(_ label: String) -> String {
            var out = ""
            for (key, count) in kinds.prefix(maxKinds) {
                out += "  \(label)  " + pad("\(count) ×", 5, left: true) + " " + key + "\n"
            }
            if kinds.count > maxKinds {
                let rest = kinds.dropFirst(maxKinds).reduce(0) { $0 + $1.count }
                out += "  \(label)  … \(rest) more calls of \(kinds.count - maxKinds) more kinds (--trace full)\n"
            }
            return out
        }
    }

    /// The summary's lines, each ending in a newline.
    static func text(_ events: [TraceEvent], dropped: Int) -> String {
        var refused = Groups()
        var allowed = Groups()
        var counted = Groups()
        for event in events {
            if event.action == .allowed && countedOnly.contains(event.syscall) {
                counted.add(event.syscall)
                continue
            }
            var operands = event.args
            operands.raw = nil
            let details = TraceText.details(operands)
            if event.action == .allowed {
                allowed.add(details.isEmpty ? event.syscall : pad(event.syscall, 14) + " " + details)
                continue
            }
            let answer = event.errno.map { "\(event.action.rawValue) \($0)" } ?? event.action.rawValue
            refused.add(pad(event.syscall, 14) + " " + (details.isEmpty ? answer : pad(answer, 15) + " " + details))
        }
        var out = refused.kinds.isEmpty ? "  refused  nothing\n" : refused.lines("refused")
        out += allowed.lines("allowed")
        if !counted.kinds.isEmpty {
            out += "  allowed  " + counted.kinds.map { "\($0.count) × \($0.key)" }.joined(separator: ", ") + "\n"
        }
        if dropped > 0 { out += "  … \(dropped) more events answered but not kept (trace limit)\n" }
        return out
    }

    private static func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
        guard s.count < width else { return s }
        let padding = String(repeating: " ", count: width - s.count)
        return left ? padding + s : s + padding
    }
}
