import AirlockNames
public import AirlockFormats
public import AirlockJSON
public import AirlockTrace

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
    /// The compressions the content is wrapped in, outermost first and joined by `+` (`gzip`, `gzip+xz`), when the
    /// file is a compressed stream that was decompressed and analysed; nil (absent from the JSON) otherwise.
    public var compression: String?
    /// Where the file came from when it is a file of a Hugging Face cache (`HubCache`).
    public var huggingface: HubOrigin?

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
    /// Trace events of a detonation (empty for a static scan).
    public var trace: [TraceEvent]
    /// Milliseconds spent per stage (`staticMs`, `detonationMs`).
    public var timings: [(String, Double)]
    /// Why the file could not be analysed, when it could not.
    public var error: (code: String, message: String)?
    /// How the detonation ran (harness, exit, captured output), when there was one.
    public var detonation: DetonationSummary?
    /// Trace lines worth a person's attention (refusals, phases), shown by `text()` under the findings.
    public var traceLines: [String] = []
    /// Whether a NumPy array of the file holds Python objects (numpy unpickles them when loading): set by the static
    /// analysis, read by the probe to choose the harness. Not part of the JSON.
    public var objectArrays = false
    /// The modules the file's pickles import (`sklearn.ensemble._forest`, `torch._utils`): set by the static analysis, read by the
    /// probe to choose the loader and what to import at start-up. Not part of the JSON.
    public var modules: Set<String> = []
    /// ONNX tensors whose data lives in other files: set by the static analysis, checked against the model's folder
    /// where the caller named it (`ONNXExternalFiles`). Not part of the JSON.
    public var externalData: [ONNXExternalReference] = []
    /// Whether the file is a GGUF model with a chat template (consumers render it with Jinja): set by the static
    /// analysis, read by the probe to choose the harness. Not part of the JSON.
    public var chatTemplate = false
    /// Whether the file is an HDF5 file naming a Keras model config (`model_config`), which keras' `load_model`
    /// reads: set by the static analysis, read by the probe to choose the harness. Not part of the JSON.
    public var kerasModel = false
    /// Whether the file is an HDF5 file that is also a ZIP archive holding a Keras model (keras reads a `.keras`
    /// name as the ZIP): the probe detonates that reading. Not part of the JSON.
    public var kerasArchive = false
    /// Findings left out by rule, past `maxFindings` (or when reports are fitted together); said in one finding.
    var omitted: [String: Int] = [:]

    /// Most findings one report lists. A file can hold far more (a ZIP of 3000 pickles with 300 unknown imports each
    /// gave 900,000 findings and a 220 MB report): the most severe are kept, the rest are counted by rule in one
    /// `report.findings-omitted` finding, and the verdict is that of them all.
    public static let maxFindings = 1000
    /// The rule of the finding that counts the findings left out.
    public static let omittedRule = "report.findings-omitted"

    /// Creates a report; the verdict is computed from the findings unless there is an error.
    public init(
        target: ReportTarget, findings: [Finding], trace: [TraceEvent] = [], timings: [(String, Double)] = [],
        error: (code: String, message: String)? = nil
    ) {
        self.target = target
        self.findings = findings.sorted { $0.severity > $1.severity }
        self.trace = trace
        self.timings = timings
        self.error = error
        verdict = Report.decide(findings, error: error)
        limitFindings(to: Report.maxFindings)
    }

    /// Adds findings (folder-level ones, a detonation's) and decides the verdict again.
    public mutating func add(_ more: [Finding], error: (code: String, message: String)? = nil) {
        findings = (findings.filter { $0.rule != Report.omittedRule } + more).sorted { $0.severity > $1.severity }
        if let error { self.error = error }
        verdict = Report.decide(findings, error: self.error)
        limitFindings(to: Report.maxFindings)
    }

    /// The verdict of these findings with this error. Work a deadline or a cancellation stopped (error code `timeout`
    /// or `cancelled`, `ScanDeadline.Stop`) saw only part of the file, up to a point the file itself can choose (a
    /// cheap high finding first, the payload behind work that outlasts the deadline): it is `malicious` when what was
    /// seen is critical, and `error` otherwise, never the `suspicious` a high finding alone would give an incomplete
    /// analysis (docs/formats.md, "Deadlines of static work").
    static func decide(_ findings: [Finding], error: (code: String, message: String)?) -> Verdict {
        if let code = error?.code, ScanDeadline.Stop(rawValue: code) != nil {
            return findings.contains { $0.severity == .critical } ? .malicious : .error
        }
        return Verdict.decide(findings: findings, analysed: error == nil)
    }

    /// Keeps the `count` most severe findings (they are sorted) and counts the rest by rule in one finding. The
    /// verdict, decided before, is unchanged: what is left out is never more severe than what is kept.
    mutating func limitFindings(to count: Int) {
        var kept = findings.filter { $0.rule != Report.omittedRule }
        if kept.count > count {
            for f in kept[count...] { omitted[f.rule, default: 0] += 1 }
            kept.removeSubrange(count...)
        }
        if !omitted.isEmpty {
            let total = omitted.values.reduce(0, +)
            let rules = omitted.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            let named = rules.prefix(10).map { "\($0.key) × \($0.value)" }.joined(separator: ", ")
            kept.append(
                Finding(
                    rule: Report.omittedRule, severity: .info, source: .static,
                    message:
                        "\(total) less severe findings left out to keep the report within its size (\(named)\(rules.count > 10 ? ", …" : ""))",
                    evidence: Evidence(
                        details: [("omitted", String(total))]
                            + rules.prefix(32).map { ("rule:\($0.key)", String($0.value)) })
                ))
        }
        findings = kept
    }

    /// The report as one JSON object.
    public var json: JSON {
        var target: [(String, JSON)] = [("path", .string(self.target.path)), ("size", .int(self.target.size))]
        target.append(("sha256", .optional(self.target.sha256)))
        target.append(("format", .string(self.target.format)))
        if let compression = self.target.compression { target.append(("compression", .string(compression))) }
        if let origin = self.target.huggingface { target.append(("huggingface", origin.json)) }
        return .object(
            [
                ("schemaVersion", .int(1)),
                ("target", .object(target)),
                ("verdict", .string(verdict.rawValue)),
                ("findings", .array(findings.map(\.json))),
                ("trace", .array(trace.map(\.json))),
                ("timings", .object(timings.map { ($0.0, .double(($0.1 * 1000).rounded() / 1000)) })),
            ] + (detonation.map { [("detonation", $0.json)] } ?? []) + [
                (
                    "error",
                    error.map { .object([("code", .string($0.code)), ("message", .string($0.message))]) } ?? .null
                )
            ])
    }

    /// Text for people: the verdict first, then the findings that matter (all of them with `verbose`). Control and
    /// formatting characters in anything the model could have chosen (names it holds, quoted strings) are shown as
    /// `\xHH`, so no line of it is forged; paths are escaped already (`FileName.escaped`).
    public func text(verbose: Bool = false) -> String {
        let safe = FileName.escapingControls
        var lines: [String] = []
        var header =
            "\(verdict.rawValue.uppercased())  \(safe(target.path))  (\(target.format)\(target.compression.map { " in \($0)" } ?? ""), \(Report.size(target.size))"
        if let sha = target.sha256 { header += ", sha256 \(sha.prefix(16))…" }
        header += ")"
        lines.append(header)
        if let origin = target.huggingface { lines.append("  " + safe(origin.line)) }
        if let error { lines.append("  error: \(safe(error.message))") }
        let shown = verbose ? findings : findings.filter { $0.severity >= .low }
        let manyWorlds = (detonation?.worlds.count ?? 0) > 1
        for f in shown {
            var line = "  \(f.severity.rawValue.padding(8))  \(f.rule)"
            var place: [String] = []
            if let m = f.evidence.member { place.append(safe(m)) }
            if let o = f.evidence.offset { place.append("@\(o)") }
            if !place.isEmpty { line += "  [\(place.joined(separator: " "))]" }
            if manyWorlds, f.source == .dynamic, let worlds = f.evidence.details.first(where: { $0.0 == "worlds" }) {
                line += "  (world\(worlds.1.contains(",") ? "s" : "") \(safe(worlds.1)))"
            }
            lines.append(line)
            lines.append("            \(safe(f.message))")
            if let args = f.evidence.args, !args.isEmpty {
                lines.append("            args: \(safe(args.joined(separator: ", ")))")
            }
        }
        let hidden = findings.count - shown.count
        if hidden > 0 {
            lines.append("  (\(hidden) informational finding\(hidden == 1 ? "" : "s") not shown; --verbose shows them)")
        }
        if findings.isEmpty && error == nil { lines.append("  no findings") }
        if let runtime = detonation?.runtime { lines.append("  " + safe(runtime.line)) }
        if let world = detonation?.world {
            lines.append("  " + safe("detonated as \(world.user)@\(world.hostname) (world \(world.name))"))
        }
        if let detonation, !detonation.network.isEmpty || !detonation.dnsQuestions.isEmpty {
            lines.append("  network (emulated; nothing left the machine):")
            for q in detonation.dnsQuestions.prefix(32) {
                lines.append("    dns \(safe(q.type)) \(safe(q.name))" + (q.phase.map { "  [\(safe($0))]" } ?? ""))
            }
            for a in detonation.network.prefix(32) {
                var place: [String] = []
                if let phase = a.phase { place.append(phase) }
                if let seq = a.seq { place.append("#\(seq)") }
                let at = place.isEmpty ? "" : "  [\(place.joined(separator: " "))]"
                lines.append("    \(a.transport) \(safe(a.destination))\(at)")
                lines.append("        \(safe(a.sentSummary))")
            }
        }
        if manyWorlds, let detonation {
            var line = "  worlds: " + detonation.worlds.map(\.line).joined(separator: ", ")
            if let kept = detonation.traceWorld { line += "; trace of \(kept)" }
            lines.append(safe(line))
        }
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

extension Report {
    /// A report read back from its JSON (`json`), as a daemon's client receives it; nil when `value` is not one.
    /// The trace and the detonation are read strictly (`TraceEvent.init(json:)`, `DetonationSummary.init?(json:)`), so
    /// the report writes the same JSON again; `traceLines` are not part of the JSON and stay empty.
    public init?(json value: JSON) {
        guard case .object(let m) = value else { return nil }
        func field(_ key: String) -> JSON? { m.first { $0.0 == key }?.1 }
        func string(_ v: JSON?) -> String? { if case .string(let s)? = v { return s } else { return nil } }
        func int(_ v: JSON?) -> Int? { if case .number(let n)? = v { return Int(n) } else { return nil } }
        guard case .object(let t)? = field("target"),
            let path = string(t.first { $0.0 == "path" }?.1),
            let format = string(t.first { $0.0 == "format" }?.1),
            let verdictText = string(field("verdict")), let verdict = Verdict(rawValue: verdictText),
            case .array(let findingValues)? = field("findings")
        else { return nil }
        var findings: [Finding] = []
        for f in findingValues {
            guard case .object(let fm) = f,
                let rule = string(fm.first { $0.0 == "rule" }?.1),
                let severity = string(fm.first { $0.0 == "severity" }?.1).flatMap(Severity.init(rawValue:)),
                let source = string(fm.first { $0.0 == "source" }?.1).flatMap(FindingSource.init(rawValue:)),
                let message = string(fm.first { $0.0 == "message" }?.1)
            else { return nil }
            var evidence = Evidence()
            if case .object(let em)? = fm.first(where: { $0.0 == "evidence" })?.1 {
                for (k, v) in em {
                    switch (k, v) {
                    case ("offset", _): evidence.offset = int(v)
                    case ("member", .string(let s)): evidence.member = s
                    case ("global", .string(let s)): evidence.global = s
                    case ("args", .array(let items)): evidence.args = items.compactMap { string($0) }
                    case ("seq", .array(let items)): evidence.seq = items.compactMap { int($0) }
                    case (_, .string(let s)): evidence.details.append((k, s))
                    default: break
                    }
                }
            }
            findings.append(
                Finding(rule: rule, severity: severity, source: source, message: message, evidence: evidence))
        }
        var trace: [TraceEvent] = []
        if case .array(let items)? = field("trace") {
            for (i, item) in items.enumerated() {
                guard let event = try? TraceEvent(json: item, path: "trace[\(i)]") else { return nil }
                trace.append(event)
            }
        }
        var timings: [(String, Double)] = []
        if case .object(let tm)? = field("timings") {
            for (k, v) in tm { if case .number(let n) = v, let d = Double(n) { timings.append((k, d)) } }
        }
        var error: (code: String, message: String)? = nil
        if case .object(let em)? = field("error") {
            error = (string(em.first { $0.0 == "code" }?.1) ?? "error", string(em.first { $0.0 == "message" }?.1) ?? "")
        }
        var target = ReportTarget(
            path: path, size: int(t.first { $0.0 == "size" }?.1) ?? 0,
            sha256: string(t.first { $0.0 == "sha256" }?.1), format: format)
        target.compression = string(t.first { $0.0 == "compression" }?.1)
        if let origin = t.first(where: { $0.0 == "huggingface" })?.1 {
            guard let read = HubOrigin(json: origin) else { return nil }
            target.huggingface = read
        }
        self.init(target: target, findings: findings, trace: trace, timings: timings, error: error)
        self.verdict = verdict  // as decided where the report was made
        if let member = field("detonation") {
            guard let summary = DetonationSummary(json: member) else { return nil }
            detonation = summary
        }
    }
}
