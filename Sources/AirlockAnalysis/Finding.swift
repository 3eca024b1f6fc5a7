public import AirlockFormats

/// How bad a finding is.
public enum Severity: String, Sendable, CaseIterable, Comparable {
    case info, low, medium, high, critical

    public static func < (a: Severity, b: Severity) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// Where a finding comes from.
public enum FindingSource: String, Sendable {
    /// Reading the bytes.
    case `static`
    /// Behaviour seen while loading the file in the sandbox.
    case dynamic
    /// Hashes, manifests, signatures.
    case provenance
}

/// One thing the report says about a file, with a stable rule id.
public struct Finding: Sendable, Equatable {
    /// Stable rule id, such as `pickle.dangerous-import`.
    public var rule: String
    /// How bad it is.
    public var severity: Severity
    /// Where it comes from.
    public var source: FindingSource
    /// A sentence for people.
    public var message: String
    /// Where and what.
    public var evidence: Evidence

    /// Creates a finding.
    public init(
        rule: String, severity: Severity, source: FindingSource = .static, message: String,
        evidence: Evidence = Evidence()
    ) {
        self.rule = rule
        self.severity = severity
        self.source = source
        self.message = message
        self.evidence = evidence
    }
}

/// The answer to "is this safe to load here?".
public enum Verdict: String, Sendable, Comparable {
    case clean, suspicious, malicious, error

    public static func < (a: Verdict, b: Verdict) -> Bool {
        let order: [Verdict] = [.clean, .suspicious, .malicious, .error]
        return order.firstIndex(of: a)! < order.firstIndex(of: b)!
    }
}

extension Verdict {
    /// The one rule that turns findings into a verdict, for static and dynamic findings alike: `malicious` when any
    /// finding is critical, `suspicious` when any is high or medium, otherwise `clean`; `error` when the file could not
    /// be analysed (`analysed` false) and nothing found says more than low.
    public static func decide(findings: [Finding], analysed: Bool = true) -> Verdict {
        let worst = findings.map(\.severity).max() ?? .info
        if !analysed && worst < .medium { return .error }
        switch worst {
        case .critical: return .malicious
        case .high, .medium: return .suspicious
        case .low, .info: return .clean
        }
    }
}
