public import AirlockJSON
internal import AirlockFormats

/// SARIF 2.1.0 for code-scanning tools: one log, one run, a rule per rule id, a result per finding, an artifact per
/// file with its SHA-256. Files that could not be analysed become tool notifications.
public enum Sarif {
    /// The SARIF log for `reports`.
    public static func log(_ reports: [Report], version: String) -> JSON {
        var ruleIndex: [String: Int] = [:]
        var rules: [JSON] = []
        var results: [JSON] = []
        var artifacts: [JSON] = []
        var notifications: [JSON] = []
        for (artifactIndex, report) in reports.enumerated() {
            let uri = self.uri(report.target.path)
            var artifact: [(String, JSON)] = [
                ("location", .object([("uri", .string(uri))])), ("length", .int(report.target.size)),
            ]
            if let sha = report.target.sha256 { artifact.append(("hashes", .object([("sha-256", .string(sha))]))) }
            artifact.append(
                (
                    "properties",
                    .object([("format", .string(report.target.format)), ("verdict", .string(report.verdict.rawValue))])
                ))
            artifacts.append(.object(artifact))
            if let error = report.error {
                notifications.append(
                    .object([
                        ("level", .string("error")),
                        ("message", .object([("text", .string("\(report.target.path): \(error.message)"))])),
                        ("descriptor", .object([("id", .string(error.code))])),
                    ]))
            }
            for finding in report.findings {
                let index: Int
                if let known = ruleIndex[finding.rule] {
                    index = known
                } else {
                    index = rules.count
                    ruleIndex[finding.rule] = index
                    rules.append(
                        .object([
                            ("id", .string(finding.rule)),
                            ("shortDescription", .object([("text", .string(finding.rule))])),
                            ("defaultConfiguration", .object([("level", .string(level(finding.severity)))])),
                        ]))
                }
                var physical: [(String, JSON)] = [
                    ("artifactLocation", .object([("uri", .string(uri)), ("index", .int(artifactIndex))]))
                ]
                if let offset = finding.evidence.offset, finding.evidence.member == nil {
                    physical.append(("region", .object([("byteOffset", .int(offset))])))
                }
                results.append(
                    .object([
                        ("ruleId", .string(finding.rule)),
                        ("ruleIndex", .int(index)),
                        ("level", .string(level(finding.severity))),
                        ("message", .object([("text", .string(finding.message))])),
                        ("locations", .array([.object([("physicalLocation", .object(physical))])])),
                        (
                            "properties",
                            .object([
                                ("severity", .string(finding.severity.rawValue)),
                                ("source", .string(finding.source.rawValue)), ("evidence", finding.evidence.json),
                            ])
                        ),
                    ]))
            }
        }
        var run: [(String, JSON)] = [
            (
                "tool",
                .object([
                    (
                        "driver",
                        .object([
                            ("name", .string("airlock")), ("version", .string(version)),
                            ("semanticVersion", .string(version)),
                            ("rules", .array(rules)),
                        ])
                    )
                ])
            ),
            ("artifacts", .array(artifacts)),
            ("results", .array(results)),
        ]
        if !notifications.isEmpty {
            run.append(
                (
                    "invocations",
                    .array([
                        .object([
                            ("executionSuccessful", .bool(false)),
                            ("toolExecutionNotifications", .array(notifications)),
                        ])
                    ])
                ))
        }
        return .object([
            ("$schema", .string("https://json.schemastore.org/sarif-2.1.0.json")),
            ("version", .string("2.1.0")),
            ("runs", .array([.object(run)])),
        ])
    }

    /// SARIF levels: critical and high are errors, medium a warning, the rest notes.
    static func level(_ severity: Severity) -> String {
        switch severity {
        case .critical, .high: "error"
        case .medium: "warning"
        case .low, .info: "note"
        }
    }

    /// A URI reference for a path: percent-encoded, `file://` for absolute paths.
    static func uri(_ path: String) -> String {
        var out = path.hasPrefix("/") ? "file://" : ""
        let hex: [Character] = Array("0123456789ABCDEF")
        for byte in path.utf8 {
            let c = Character(Unicode.Scalar(byte))
            if byte < 0x80 && (c.isLetter || c.isNumber || "-._~/".contains(c)) {
                out.append(c)
            } else {
                out += "%" + String(hex[Int(byte >> 4)]) + String(hex[Int(byte & 0xF)])
            }
        }
        return out
    }
}
