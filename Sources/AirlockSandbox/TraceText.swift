public import AirlockTrace

/// Renders trace events for people.
public enum TraceText {
    /// One line of details for an event: the path, the argv, the address, the signal…
    public static func details(_ a: TraceArguments) -> String {
        var parts: [String] = []
        if let argv = a.argv {
            parts.append(argv.map(quote).joined(separator: " ") + (a.argvTruncated == true ? " …" : ""))
            if let p = a.path, p != argv.first { parts.insert(p, at: 0) }
        } else if let p = a.path {
            parts.append(a.path2.map { "\(p) ← \($0)" } ?? p)
        }
        if let f = a.family {
            var s = f
            if let t = a.socketType { s += "/\(t)" }
            if let addr = a.address { s += " \(f == "inet6" ? "[\(addr)]" : addr)" }
            if let port = a.port { s += ":\(port)" }
            parts.append(s)
        }
        if let t = a.target { parts.append("pid \(t)") }
        if let s = a.signal { parts.append(s) }
        if let f = a.flags { parts.append(f) }
        if let m = a.mode { parts.append("mode \(m)") }
        if let raw = a.raw { parts.append(raw.joined(separator: " ")) }
        if let u = a.unreadable { parts.append("(unreadable: \(u))") }
        if let t = a.truncated { parts.append("(shortened: \(t.joined(separator: ", ")))") }
        return parts.joined(separator: "  ")
    }

    /// A table of events with a header line.
    public static func table(_ events: [TraceEvent], dropped: Int = 0) -> String {
        var lines = ["  SEQ    TIME ms    PID  SYSCALL            ACTION            DETAILS"]
        for e in events {
            let ms = Double(e.timeNs) / 1e6
            let action = e.errno.map { "\(e.action.rawValue) \($0)" } ?? e.action.rawValue
            let phase = e.phase.map { "[\($0)] " } ?? ""
            lines.append(
                pad(String(e.seq), 5, left: true) + "  " + pad(format(ms), 9, left: true) + "  "
                    + pad(String(e.pid), 5, left: true) + "  " + pad(e.syscall, 17) + "  " + pad(action, 16) + "  "
                    + phase + details(e.args)
            )
        }
        if dropped > 0 { lines.append("  … \(dropped) more events answered but not kept (trace limit)") }
        return lines.joined(separator: "\n")
    }

    /// Nanoseconds as milliseconds with three decimals.
    public static func milliseconds(_ ns: UInt64) -> String { format(Double(ns) / 1e6) }

    static func format(_ ms: Double) -> String {
        let hundredths = Int((ms * 1000).rounded())
        return "\(hundredths / 1000).\(pad(String(hundredths % 1000), 3, left: true, fill: "0"))"
    }

    static func pad(_ s: String, _ width: Int, left: Bool = false, fill: Character = " ") -> String {
        guard s.count < width else { return s }
        let padding = String(repeating: fill, count: width - s.count)
        return left ? padding + s : s + padding
    }

    /// Shell-style quoting for display; control characters escaped, long arguments cut.
    static func quote(_ s: String) -> String {
        var text = ""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\n": text += "\\n"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f:
                text += "\\x" + pad(String(scalar.value, radix: 16), 2, left: true, fill: "0")
            default: text.unicodeScalars.append(scalar)
            }
        }
        if text.count > 160 { text = String(text.prefix(160)) + "…" }
        if !text.isEmpty && text.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:,+@%…".contains($0) }) {
            return text
        }
        return "'" + text.replacing("'", with: "'\\''") + "'"
    }
}
