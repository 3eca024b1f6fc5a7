internal import AirlockJSON

/// How reports are written: for people, as JSON Lines, or as one SARIF log.
public enum ReportFormat: String, Sendable, CaseIterable {
    /// Text for people: the verdict, the findings that matter, the trace lines (`Report.text`).
    case text
    /// One report per line (`Report.json`, docs/report.schema.json).
    case json
    /// One SARIF 2.1.0 log for every report, written at the end (`Sarif.log`).
    case sarif
}

/// The one place reports are rendered, for the CLI, airlockd's clients and intake alike: each report as it comes
/// (text or JSON Lines), or collected into one SARIF log; and the worst verdict, which decides the exit status.
public struct ReportPrinter {
    /// The output format.
    public let format: ReportFormat
    /// Whether text output shows informational findings too.
    public let verbose: Bool
    /// The tool version SARIF names.
    public let version: String
    /// Where the bytes go.
    private let write: ([UInt8]) -> Void
    /// The worst verdict printed so far.
    public private(set) var worst: Verdict = .clean
    private var collected: [Report] = []

    /// A printer writing `format` through `write`.
    public init(format: ReportFormat, verbose: Bool, version: String, write: @escaping ([UInt8]) -> Void) {
        self.format = format
        self.verbose = verbose
        self.version = version
        self.write = write
    }

    /// Prints one report now (text, JSON Lines), or keeps it for the SARIF log.
    public mutating func print(_ report: Report) {
        switch format {
        case .json: write(Array(report.json.serialized().utf8) + [0x0A])
        case .text: write(Array((report.text(verbose: verbose) + "\n").utf8))
        case .sarif: collected.append(report)
        }
        worst = max(worst, report.verdict)
    }

    /// Writes the SARIF log if that is the format, and returns the exit status of `scan` and `probe`: 0 every report
    /// clean, 1 any suspicious or malicious, 2 any that could not be analysed.
    public func end() -> Int32 {
        if format == .sarif {
            write(Array(Sarif.log(collected, version: version).serialized().utf8) + [0x0A])
        }
        switch worst {
        case .clean: return 0
        case .suspicious, .malicious: return 1
        case .error: return 2
        }
    }
}
