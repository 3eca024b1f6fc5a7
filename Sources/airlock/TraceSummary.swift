import AirlockSandbox
import AirlockTrace

/// `airlock exec`'s default view of a trace: what was tried, grouped. Each refused call (denied or killed) is shown
/// once per kind — system call, answer and details (the path, the argv, the address) — with how often it came, in
/// the order first seen (raw register values are left out: `--trace full` has them); allowed calls are counted by system call on one line. `--trace full` shows every event.
enum TraceSummary {
    /// Kinds of refused call shown; the rest are counted on one line (the trace itself is bounded by the profile).
    static let maxRefusedKinds = 40

    /// The summary's lines, each ending in a newline.
    static func text(_ events: [TraceEvent], dropped: Int) -> String {
        var refused: [(key: String, count: Int)] = []
        var index: [String: Int] = [:]
        var allowed: [(syscall: String, count: Int)] = []
        var allowedIndex: [String: Int] = [:]
        for event in events {
            if event.action == .allowed {
                if let i = allowedIndex[event.syscall] {
                    allowed[i].count += 1
                } else {
                    allowedIndex[event.syscall] = allowed.count
                    allowed.append((event.syscall, 1))
                }
                continue
            }
            let answer = event.errno.map { "\(event.action.rawValue) \($0)" } ?? event.action.rawValue
            // Raw register values (pointers, for calls without decoded operands) would keep alike calls apart.
            var operands = event.args
            operands.raw = nil
            let details = TraceText.details(operands)
            let key = pad(event.syscall, 14) + " " + (details.isEmpty ? answer : pad(answer, 15) + " " + details)
            if let i = index[key] {
                refused[i].count += 1
            } else {
                index[key] = refused.count
                refused.append((key, 1))
            }
        }
        var out = ""
        if refused.isEmpty { out += "  refused  nothing\n" }
        for (key, count) in refused.prefix(maxRefusedKinds) {
            out += "  refused  " + pad("\(count) ×", 5, left: true) + " " + key + "\n"
        }
        if refused.count > maxRefusedKinds {
            let rest = refused.dropFirst(maxRefusedKinds).reduce(0) { $0 + $1.count }
            out += "  refused  … \(rest) more calls of \(refused.count - maxRefusedKinds) more kinds (--trace full)\n"
        }
        if !allowed.isEmpty {
            out += "  allowed  " + allowed.map { "\($0.count) × \($0.syscall)" }.joined(separator: ", ") + "\n"
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
