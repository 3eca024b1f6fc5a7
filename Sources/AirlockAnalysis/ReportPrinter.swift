internal import AirlockJSON

#if canImport(Glibc)
    import Glibc
#endif

/// How reports are written: for people, as JSON Lines, or as one SARIF log.
public enum ReportFormat: String, Sendable, CaseIterable {
    /// Text for people: the verdict, the findings that matter, the trace lines (`Report.text`).
    case text
    /// One report per line (`Report.json`, docs/report.schema.json).
    case json
    /// One SARIF 2.1.0 log for every report, written at the end (`Sarif.log`).
    case sarif
}

/// How many reports had each verdict.
public struct VerdictCounts: Sendable, Equatable {
    /// Reports with each verdict.
    public var clean = 0, suspicious = 0, malicious = 0, errors = 0

    /// Every report counted.
    public var total: Int { clean + suspicious + malicious + errors }

    /// Counts one more report with `verdict`.
    public mutating func add(_ verdict: Verdict) {
        switch verdict {
        case .clean: clean += 1
        case .suspicious: suspicious += 1
        case .malicious: malicious += 1
        case .error: errors += 1
        }
    }

    /// The totals line: `12 files: 9 clean, 2 suspicious, 1 malicious, 0 errors (4.1 s)`.
    public func line(seconds: Double) -> String {
        let tenths = Int((max(seconds, 0) * 10).rounded())
        return
            "\(total) file\(total == 1 ? "" : "s"): \(clean) clean, \(suspicious) suspicious, \(malicious) malicious, \(errors) error\(errors == 1 ? "" : "s") (\(tenths / 10).\(tenths % 10) s)"
    }
}

/// The one place reports are rendered, for the CLI, airlockd's clients and intake alike: each report as it comes
/// (text or JSON Lines), or collected into one SARIF log; verdict lines and a totals line for people; and the exit
/// status (docs/formats.md, "Output and exit status").
public struct ReportPrinter {
    /// The output format.
    public let format: ReportFormat
    /// Whether text output shows informational findings too.
    public let verbose: Bool
    /// The tool version SARIF names.
    public let version: String
    /// Where the bytes go.
    private let write: ([UInt8]) -> Void
    /// Only what is not clean: text and JSON Lines leave clean reports out (SARIF keeps every file in its artifacts;
    /// clean files have no results there anyway). Verdict lines leave them out too. Counts and exit status unchanged.
    public var quiet = false
    /// Whether the verdict word of text output is coloured (ANSI). Never JSON or SARIF.
    public var colour = false
    /// Where one verdict line per report goes (the report's first text line), besides the output: the terminal while
    /// the output goes to a file. Coloured if `linesColour`.
    public var verdictLines: (([UInt8]) -> Void)? = nil
    /// Whether verdict lines are coloured.
    public var linesColour = false
    /// Where the totals line goes, when more than one report was printed; nowhere if nil.
    public var totals: (([UInt8]) -> Void)? = nil
    /// Called with each report after it is printed (a progress line).
    public var observer: ((Report) -> Void)? = nil
    /// The worst verdict printed so far.
    public private(set) var worst: Verdict = .clean
    /// Reports printed so far, by verdict.
    public private(set) var counts = VerdictCounts()
    private var collected: [Report] = []
    private let started = ReportPrinter.now()

    /// A printer writing `format` through `write`.
    public init(format: ReportFormat, verbose: Bool, version: String, write: @escaping ([UInt8]) -> Void) {
        self.format = format
        self.verbose = verbose
        self.version = version
        self.write = write
    }

    /// Prints one report now (text, JSON Lines), or keeps it for the SARIF log; and its verdict line if asked.
    public mutating func print(_ report: Report) {
        let shown = !(quiet && report.verdict == .clean)
        switch format {
        case .json: if shown { write(Array(report.json.serialized().utf8) + [0x0A]) }
        case .text:
            if shown { write(Array((ReportPrinter.painted(report.text(verbose: verbose), colour) + "\n").utf8)) }
        case .sarif: collected.append(report)
        }
        if shown, let verdictLines {
            let first = report.text(verbose: false).split(separator: "\n", maxSplits: 1).first.map(String.init) ?? ""
            verdictLines(Array((ReportPrinter.painted(first, linesColour) + "\n").utf8))
        }
        worst = max(worst, report.verdict)
        counts.add(report.verdict)
        observer?(report)
    }

    /// Writes more text to the output as it is (text format: lines a command adds after a report).
    public func text(_ text: String) {
        if format == .text { write(Array(text.utf8)) }
    }

    /// Writes the SARIF log if that is the format and the totals line if asked (more than one report), and returns
    /// the exit status of `scan`, `probe` and `verify`: 0 every report clean, 1 any suspicious or malicious, 2 any
    /// that could not be analysed, 3 no report at all (nothing was examined).
    public func end() -> Int32 {
        if format == .sarif {
            write(Array(Sarif.log(collected, version: version).serialized().utf8) + [0x0A])
        }
        if let totals, counts.total > 1 {
            totals(Array((counts.line(seconds: ReportPrinter.now() - started) + "\n").utf8))
        }
        if counts.total == 0 { return 3 }
        switch worst {
        case .clean: return 0
        case .suspicious, .malicious: return 1
        case .error: return 2
        }
    }

    /// The ANSI colour of each verdict: clean green, suspicious yellow, malicious bold red, error bold magenta.
    public static func colourCode(_ verdict: Verdict) -> String {
        switch verdict {
        case .clean: "32"
        case .suspicious: "33"
        case .malicious: "1;31"
        case .error: "1;35"
        }
    }

    /// `text` with its leading verdict word (`CLEAN`, `SUSPICIOUS`, …: `Report.text`'s first word) coloured when
    /// `colour`; as it is otherwise. Only the verdict word: the rest was escaped by `Report.text` and stays plain.
    static func painted(_ text: String, _ colour: Bool) -> String {
        guard colour else { return text }
        for verdict in [Verdict.clean, .suspicious, .malicious, .error] {
            let word = verdict.rawValue.uppercased()
            if text.hasPrefix(word + " ") {
                return "\u{1B}[\(colourCode(verdict))m\(word)\u{1B}[0m" + text.dropFirst(word.count)
            }
        }
        return text
    }

    private static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
