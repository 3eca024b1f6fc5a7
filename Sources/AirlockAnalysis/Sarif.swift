public import AirlockJSON
internal import AirlockNames
internal import AirlockFormats
internal import Crypto

#if canImport(Glibc)
    import Glibc
#endif

/// How a SARIF log names files and links its rules.
public struct SarifOptions: Sendable {
    /// The folder relative paths are relative to, and absolute paths below it are made relative to
    /// (`uriBaseId: "%SRCROOT%"`, with `run.originalUriBaseIds` naming it); an absolute path, normally the current
    /// directory, written as report paths are (`FileName.escaped`). Nil: absolute paths stay `file://` URIs and
    /// `%SRCROOT%` is left to the consumer.
    public var sourceRoot: String?
    /// The rules reference each rule's `helpUri` points into (`rules.md`, with the rule id as the fragment).
    public var rulesURL: String

    /// Options with the current directory as the source root and the rules reference of `AIRLOCK_RULES_URL` or
    /// `SarifRules.defaultRulesURL`.
    public init(
        sourceRoot: String? = SarifOptions.currentDirectory(),
        rulesURL: String = SarifRules.rulesURL(environment: SarifOptions.environment())
    ) {
        self.sourceRoot = sourceRoot
        self.rulesURL = rulesURL
    }

    /// The process's current directory, escaped as report paths are (`FileName.escaped`, so that paths below it are
    /// recognised and its URI names its own bytes); nil when it cannot be read or is not absolute.
    public static func currentDirectory() -> String? {
        guard let raw = getcwd(nil, 0) else { return nil }
        defer { free(raw) }
        let path = FileName(bytes: UnsafeBufferPointer(start: raw, count: strlen(raw)).map { UInt8(bitPattern: $0) })
            .escaped
        return path.hasPrefix("/") ? path : nil
    }

    /// `AIRLOCK_RULES_URL` from the environment, the one variable the log reads.
    public static func environment() -> [String: String] {
        guard let value = getenv("AIRLOCK_RULES_URL") else { return [:] }
        return ["AIRLOCK_RULES_URL": String(cString: value)]
    }
}

/// SARIF 2.1.0 for code-scanning tools (GitHub code scanning among them): one log, one run, a rule per rule id (with
/// descriptions, help, a `helpUri` into the rules reference, `security-severity`, tags and precision), a result per
/// finding (with `partialFingerprints` that stay the same across runs and machines), an artifact per file with its
/// SHA-256. Files that could not be analysed become tool notifications. docs/formats.md, "SARIF", says how files are
/// named and fingerprints are made.
public enum Sarif {
    /// The key of Airlock's own fingerprint in `partialFingerprints`.
    public static let fingerprintKey = "airlockFinding/v1"
    /// The base id relative URIs are relative to.
    public static let sourceRootId = "%SRCROOT%"

    /// The SARIF log for `reports`.
    public static func log(_ reports: [Report], version: String, options: SarifOptions = SarifOptions()) -> JSON {
        let root = options.sourceRoot.flatMap(normalizedRoot)
        var ruleIndex: [String: Int] = [:]
        var rules: [JSON] = []
        var results: [JSON] = []
        var artifacts: [JSON] = []
        var artifactIndex: [String: Int] = [:]
        var notifications: [JSON] = []
        var usesRoot = false
        var worst: [String: Severity] = [:]
        for report in reports {
            for f in report.findings { worst[f.rule] = max(worst[f.rule] ?? f.severity, f.severity) }
        }
        for report in reports {
            let place = location(report.target.path, root: root)
            usesRoot = usesRoot || place.relative
            let index: Int
            if let known = artifactIndex[place.key] {
                index = known
            } else {
                index = artifacts.count
                artifactIndex[place.key] = index
                var artifact: [(String, JSON)] = [
                    ("location", place.artifactLocation(index: nil)), ("length", .int(max(report.target.size, -1))),
                ]
                if let sha = report.target.sha256 { artifact.append(("hashes", .object([("sha-256", .string(sha))]))) }
                artifact.append(
                    (
                        "properties",
                        .object([
                            ("format", .string(report.target.format)), ("verdict", .string(report.verdict.rawValue)),
                        ])
                    ))
                artifacts.append(.object(artifact))
            }
            if let error = report.error {
                notifications.append(
                    .object([
                        ("level", .string("error")),
                        ("message", .object([("text", .string("\(report.target.path): \(error.message)"))])),
                        ("descriptor", .object([("id", .string(error.code))])),
                        ("locations", .array([.object([("physicalLocation", place.physical(index: index))])])),
                    ]))
            }
            var occurrences: [String: Int] = [:]
            for finding in report.findings {
                let rule: Int
                if let known = ruleIndex[finding.rule] {
                    rule = known
                } else {
                    rule = rules.count
                    ruleIndex[finding.rule] = rule
                    let severity = SarifRules.defaultSeverity(of: finding.rule) ?? worst[finding.rule] ?? .medium
                    rules.append(descriptor(finding.rule, severity: severity, rulesURL: options.rulesURL))
                }
                let key = fingerprintKey(finding, uri: place.key, sha256: report.target.sha256)
                occurrences[key, default: 0] += 1
                let fingerprint = fingerprint(key) + ":\(occurrences[key]!)"
                results.append(
                    .object([
                        ("ruleId", .string(finding.rule)),
                        ("ruleIndex", .int(rule)),
                        ("level", .string(level(finding.severity))),
                        ("message", .object([("text", .string(finding.message))])),
                        (
                            "locations",
                            .array([
                                .object([
                                    ("physicalLocation", place.physical(index: index, region: region(finding.evidence)))
                                ])
                            ])
                        ),
                        ("partialFingerprints", .object([(fingerprintKey, .string(fingerprint))])),
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
        var driver: [(String, JSON)] = [
            ("name", .string("airlock")), ("version", .string(version)), ("semanticVersion", .string(version)),
        ]
        if let home = projectURL(options.rulesURL) { driver.append(("informationUri", .string(home))) }
        driver.append(("rules", .array(rules)))
        var run: [(String, JSON)] = [("tool", .object([("driver", .object(driver))]))]
        if usesRoot, let root {
            run.append(
                (
                    "originalUriBaseIds",
                    .object([
                        (
                            sourceRootId,
                            .object([
                                ("uri", .string(uri(root == "/" ? "/" : root + "/"))),
                                ("description", .object([("text", .string("The folder paths are relative to."))])),
                            ])
                        )
                    ])
                ))
        }
        run.append(("artifacts", .array(artifacts)))
        run.append(("results", .array(results)))
        run.append(("columnKind", .string("unicodeCodePoints")))
        run.append(
            (
                "invocations",
                .array([
                    .object(
                        [("executionSuccessful", .bool(notifications.isEmpty))]
                            + (notifications.isEmpty ? [] : [("toolExecutionNotifications", .array(notifications))]))
                ])
            ))
        return .object([
            ("$schema", .string("https://json.schemastore.org/sarif-2.1.0.json")),
            ("version", .string("2.1.0")),
            ("runs", .array([.object(run)])),
        ])
    }

    /// The reporting descriptor of `rule`.
    static func descriptor(_ rule: String, severity: Severity, rulesURL: String) -> JSON {
        let family = SarifRules.family(of: rule)
        let full =
            family?.description
            ?? "A finding of a rule Airlock's rules reference does not describe yet; the result's message says what was found."
        let remedy = family?.remedy ?? "Do not load the file until you know why it was reported."
        let cwes = SarifRules.cwes(of: rule)
        let help = "\(full) \(remedy) Default severity: \(severity.rawValue)."
        let cweLinks = cwes.map { "[CWE-\($0)](https://cwe.mitre.org/data/definitions/\($0).html)" }
        let markdown =
            "**\(SarifRules.title(of: rule))** (`\(rule)`)\n\n\(full)\n\n**What to do:** \(remedy)\n\n"
            + "Default severity: \(severity.rawValue)."
            + (cweLinks.isEmpty ? "" : " Weakness: \(cweLinks.joined(separator: ", ")).")
            + " See [the rules reference](\(rulesURL)#\(uri(rule)))."
        var properties: [(String, JSON)] = []
        if let s = SarifRules.securitySeverity(severity) { properties.append(("security-severity", .string(s))) }
        var tags = ["security", "model-file"]
        if let family { tags.append(family.prefix) }
        for cwe in cwes { tags += ["CWE-\(cwe)", "external/cwe/cwe-\(cwe)"] }
        properties.append(("tags", .array(tags.map(JSON.string))))
        properties.append(("precision", .string(family?.precision ?? "medium")))
        return .object([
            ("id", .string(rule)),
            ("name", .string(ruleName(rule))),
            ("shortDescription", .object([("text", .string(SarifRules.title(of: rule)))])),
            ("fullDescription", .object([("text", .string(full))])),
            ("help", .object([("text", .string(help)), ("markdown", .string(markdown))])),
            ("helpUri", .string(rulesURL + "#" + uri(rule))),
            ("defaultConfiguration", .object([("level", .string(level(severity)))])),
            ("properties", .object(properties)),
        ])
    }

    /// The rule's name in UpperCamelCase, as SARIF suggests for `reportingDescriptor.name` (`PickleDangerousImport`).
    static func ruleName(_ rule: String) -> String {
        rule.split(whereSeparator: { $0 == "." || $0 == "-" }).map { $0.prefix(1).uppercased() + $0.dropFirst() }
            .joined()
    }

    /// The project's home for `driver.informationUri`: a published rules reference (`http(s)://…/docs/rules.md`)
    /// without its `docs/rules.md`; nil for a local one (the project has no public home of its own to name).
    static func projectURL(_ rulesURL: String) -> String? {
        guard rulesURL.hasPrefix("https://") || rulesURL.hasPrefix("http://"), rulesURL.hasSuffix("/docs/rules.md")
        else { return nil }
        return String(rulesURL.dropLast("docs/rules.md".count))
    }

    /// SARIF levels: critical and high are errors, medium a warning, the rest notes.
    static func level(_ severity: Severity) -> String {
        switch severity {
        case .critical, .high: "error"
        case .medium: "warning"
        case .low, .info: "note"
        }
    }

    /// The region of a finding: `startLine` (and `startColumn`) when the evidence has a line (`fileLine`, `fileColumn` details:
    /// in the report's own file, text files), `byteOffset` when it has an offset in the file itself (not in a member).
    static func region(_ evidence: Evidence) -> [(String, JSON)] {
        var region: [(String, JSON)] = []
        if let line = number(evidence, "fileLine") {
            region.append(("startLine", .int(line)))
            if let column = number(evidence, "fileColumn") { region.append(("startColumn", .int(column))) }
        }
        if let offset = evidence.offset, offset >= 0, evidence.member == nil {
            region.append(("byteOffset", .int(offset)))
        }
        return region
    }

    /// A detail of `evidence` that is a positive decimal number of at most 9 digits.
    static func number(_ evidence: Evidence, _ name: String) -> Int? {
        guard let text = evidence.details.first(where: { $0.0 == name })?.1, (1...9).contains(text.utf8.count),
            text.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let n = Int(text), n >= 1
        else { return nil }
        return n
    }

    /// What identifies a finding across runs: the rule, the file as the log names it relative to the source root,
    /// and the evidence that comes from the file's bytes (member, global, constant arguments, the byte offset in a
    /// binary file, the line in an archive member). Never the message (it carries counts and sizes), other details
    /// (some carry budgets or times) nor timings. Findings with equal keys in one file are told apart by their order.
    ///
    /// A finding located by line in a text file leaves its offset and other positions out, so that lines added above it
    /// do not make it a new finding, and adds its other details (what the text says). Any other finding includes the file's SHA-256: evidence is shown capped (long arguments are cut),
    /// so without it a changed payload could inherit the fingerprint, and with it a dismissal, of the finding it
    /// replaced. A dynamic finding's arguments and trace positions vary between runs and are left out.
    static func fingerprintKey(_ finding: Finding, uri: String, sha256: String?) -> String {
        var parts = [fingerprintKey, finding.rule, uri]
        let e = finding.evidence
        let located = number(e, "fileLine") != nil
        parts.append("member=" + (e.member ?? ""))
        parts.append("global=" + (e.global ?? ""))
        parts.append("content=" + (located ? "" : sha256 ?? ""))
        if finding.source != .dynamic {
            parts.append("offset=" + (located ? "" : e.offset.map(String.init) ?? ""))
            parts.append("line=" + (number(e, "line").map(String.init) ?? ""))
            parts.append("args=" + (e.args ?? []).joined(separator: "\u{1F}"))
            if located {
                // What the bytes say (a template's attribute or global name), not where: otherwise two findings of one
                // rule differ only by their order, and a new one above a dismissed one would take its fingerprint.
                for (k, v) in e.details where !positional(k) { parts.append(k + "=" + v) }
            }
        }
        return parts.joined(separator: "\u{1E}")
    }

    /// Whether an evidence detail is a position (`fileLine`, `line`, `templateOffset`, …), which edits above a finding
    /// change.
    static func positional(_ key: String) -> Bool {
        ["fileLine", "fileColumn", "line", "column"].contains(key) || key.hasSuffix("Offset") || key == "offset"
    }

    /// The first 128 bits of the key's SHA-256, in hex.
    static func fingerprint(_ key: String) -> String {
        let digest = SHA256.hash(data: Array(key.utf8))
        let hex: [Character] = Array("0123456789abcdef")
        var out = ""
        for byte in digest.prefix(16) {
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0xF)])
        }
        return out
    }
}
