public import AirlockFormats
public import AirlockJSON

/// The file a report is about.
public struct ReportTarget: Sendable {
    /// The path as given.
    public var path: String
    /// Size in bytes.
    public var size: Int
    /// SHA-256 of the whole file, lower-case hex.
    public var sha256: String?
    /// The format decided from the content (`pytorch-zip`, `safetensors`, …).
    public var format: String

    /// Creates a target.
    public init(path: String, size: Int, sha256: String?, format: String) {
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.format = format
    }
}

/// One report per file: the JSON contract of design.md (schema version 1).
public struct Report: Sendable {
    /// The file.
    public var target: ReportTarget
    /// The verdict, derived from the findings (or `error`).
    public var verdict: Verdict
    /// What was found, most severe first.
    public var findings: [Finding]
    /// Trace events of a detonation, already in their JSON form (empty for a static scan).
    public var trace: [JSON]
    /// Milliseconds spent per stage (`staticMs`, `detonationMs`).
    public var timings: [(String, Double)]
    /// Why the file could not be analysed, when it could not.
    public var error: (code: String, message: String)?
    /// How the detonation ran (harness, exit, captured output), when there was one.
    public var detonation: JSON?
    /// Trace lines worth a person's attention (refusals, phases), shown by `text()` under the findings.
    public var traceLines: [String] = []

    /// Creates a report; the verdict is computed from the findings unless there is an error.
    public init(target: ReportTarget, findings: [Finding], trace: [JSON] = [], timings: [(String, Double)] = [], error: (code: String, message: String)? = nil) {
        self.target = target
        self.findings = findings.sorted { $0.severity > $1.severity }
        self.trace = trace
        self.timings = timings
        self.error = error
        verdict = Report.verdict(for: findings, error: error != nil)
    }

    /// Adds findings (folder-level ones, a detonation's) and decides the verdict again.
    public mutating func add(_ more: [Finding], error: (code: String, message: String)? = nil) {
        findings = (findings + more).sorted { $0.severity > $1.severity }
        if let error { self.error = error }
        verdict = Report.verdict(for: findings, error: self.error != nil)
    }

    /// `error` when the analysis failed and nothing found says more than that; otherwise by the findings.
    static func verdict(for findings: [Finding], error: Bool) -> Verdict {
        error && findings.allSatisfy({ $0.severity < .medium }) ? .error : verdict(for: findings)
    }

    /// `malicious` when any finding is critical; `suspicious` when any is high or medium; otherwise `clean`.
    public static func verdict(for findings: [Finding]) -> Verdict {
        let worst = findings.map(\.severity).max() ?? .info
        switch worst {
        case .critical: return .malicious
        case .high, .medium: return .suspicious
        case .low, .info: return .clean
        }
    }

    /// The report as one JSON object.
    public var json: JSON {
        var target: [(String, JSON)] = [("path", .string(self.target.path)), ("size", .int(self.target.size))]
        target.append(("sha256", .optional(self.target.sha256)))
        target.append(("format", .string(self.target.format)))
        return .object([
            ("schemaVersion", .int(1)),
            ("target", .object(target)),
            ("verdict", .string(verdict.rawValue)),
            ("findings", .array(findings.map(\.json))),
            ("trace", .array(trace)),
            ("timings", .object(timings.map { ($0.0, .double(($0.1 * 1000).rounded() / 1000)) })),
        ] + (detonation.map { [("detonation", $0)] } ?? []) + [
            ("error", error.map { .object([("code", .string($0.code)), ("message", .string($0.message))]) } ?? .null),
        ])
    }

    /// Text for people: the verdict first, then the findings that matter (all of them with `verbose`).
    public func text(verbose: Bool = false) -> String {
        var lines: [String] = []
        var header = "\(verdict.rawValue.uppercased())  \(target.path)  (\(target.format), \(Report.size(target.size))"
        if let sha = target.sha256 { header += ", sha256 \(sha.prefix(16))…" }
        header += ")"
        lines.append(header)
        if let error { lines.append("  error: \(error.message)") }
        let shown = verbose ? findings : findings.filter { $0.severity >= .low }
        for f in shown {
            var line = "  \(f.severity.rawValue.padding(8))  \(f.rule)"
            var place: [String] = []
            if let m = f.evidence.member { place.append(m) }
            if let o = f.evidence.offset { place.append("@\(o)") }
            if !place.isEmpty { line += "  [\(place.joined(separator: " "))]" }
            lines.append(line)
            lines.append("            \(f.message)")
            if let args = f.evidence.args, !args.isEmpty {
                lines.append("            args: \(args.joined(separator: ", "))")
            }
        }
        let hidden = findings.count - shown.count
        if hidden > 0 { lines.append("  (\(hidden) informational finding\(hidden == 1 ? "" : "s") not shown; --verbose shows them)") }
        if findings.isEmpty && error == nil { lines.append("  no findings") }
        if !traceLines.isEmpty {
            lines.append("  trace:")
            lines += traceLines.map { "    " + $0 }
        }
        return lines.joined(separator: "\n")
    }

    static func size(_ bytes: Int) -> String {
        if bytes < 1024 { return "\(bytes) B" }
        let units = ["KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes) / 1024
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return "\((value * 10).rounded() / 10) \(units[unit])"
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

extension Finding {
    /// The finding as the report's JSON writes it.
    public var json: JSON {
        .object([
            ("rule", .string(rule)), ("severity", .string(severity.rawValue)), ("source", .string(source.rawValue)),
            ("message", .string(message)), ("evidence", evidence.json),
        ])
    }
}

extension Evidence {
    /// The evidence fields that are set, as a JSON object.
    public var json: JSON {
        var m: [(String, JSON)] = []
        if let offset { m.append(("offset", .int(offset))) }
        if let member { m.append(("member", .string(member))) }
        if let global { m.append(("global", .string(global))) }
        if let args { m.append(("args", .array(args.map(JSON.string)))) }
        if let seq { m.append(("seq", .array(seq.map(JSON.int)))) }
        for (k, v) in details { m.append((k, .string(v))) }
        return .object(m)
    }
}
