import AirlockAnalysis
import AirlockNames
import ArgumentParser

#if canImport(Glibc)
    import Glibc
#endif

/// When text output is coloured.
enum ColourChoice: String, ExpressibleByArgument, CaseIterable {
    /// On a terminal (standard output), unless `NO_COLOR` is set and not empty or `TERM` is `dumb`.
    case auto
    /// Always, even into a pipe.
    case always
    /// Never.
    case never

    /// Whether to colour what goes to standard output.
    var enabled: Bool {
        switch self {
        case .always: return true
        case .never: return false
        case .auto:
            if let value = getenv("NO_COLOR"), value.pointee != 0 { return false }
            if let term = getenv("TERM"), String(cString: term) == "dumb" { return false }
            return isatty(1) == 1
        }
    }
}

/// `--quiet`, `-o FILE`, `--color` and `--no-progress`, shared by scan, probe and verify (docs/formats.md, "Output
/// and exit status").
struct OutputOptions: ParsableArguments {
    @Flag(
        name: [.short, .long],
        help:
            "Only what is not clean, plus the totals: text and JSON Lines leave clean files out (SARIF keeps them). The exit status is unchanged."
    )
    var quiet = false

    @Option(
        name: [.short, .long],
        help: ArgumentHelp(
            "Write the --format output to FILE (atomically, mode 0644; never a half file); the terminal gets one verdict line per file and the totals. Not a folder, a symbolic link or one of the inputs.",
            valueName: "FILE"))
    var output: String?

    @Option(
        name: .long,
        help:
            "Colour the verdicts of text output: auto (on a terminal, unless NO_COLOR is set or TERM=dumb), always or never. JSON, SARIF and -o files are never coloured."
    )
    var color: ColourChoice = .auto

    @Flag(name: .customLong("no-progress"), help: "No progress line, even on a terminal.")
    var noProgress = false

    func validate() throws {
        if output == "-" { throw ValidationError("-o -: standard output is the default; leave -o out") }
        if output == "" { throw ValidationError("-o needs a file name") }
    }
}

/// A run's output: the printer (`ReportPrinter`) wired to standard output or the `-o` file, the verdict lines and
/// totals for people, the progress line, and the notices for paths where nothing was examined.
struct ReportOutput {
    /// The printer: pass it to the walks.
    var printer: ReportPrinter
    private let file: OutputFile?
    /// The progress line, on a terminal only (`ProgressBar`).
    let progress: ProgressBar?

    /// Output for `format` as `options` ask; `inputs` are the paths given (`-o` may not name one of them); `label`
    /// starts the progress line ("scanning", "probing").
    init(_ options: OutputOptions, format: ReportFormat, verbose: Bool, inputs: [String], label: String) throws {
        let progress = ProgressBar.make(enabled: !options.noProgress, label: label)
        let toStdout: ([UInt8]) -> Void = { bytes in
            progress?.clear()
            writeStdout(bytes)
        }
        let colour = options.color.enabled
        var file: OutputFile?
        if let path = options.output {
            do {
                file = try OutputFile.open(path, inputs: inputs)
            } catch {
                throw error.exit
            }
        }
        if let file {
            printer = ReportPrinter(
                format: format, verbose: verbose, version: Airlock.configuration.version, write: file.append)
            printer.verdictLines = toStdout
            printer.linesColour = colour
            printer.totals = toStdout
        } else {
            printer = ReportPrinter(
                format: format, verbose: verbose, version: Airlock.configuration.version, write: toStdout)
            printer.colour = format == .text && colour
            // JSON and SARIF on standard output stay pure: their totals go to standard error, on a terminal only.
            printer.totals =
                format == .text
                ? toStdout
                : (isatty(2) == 1
                    ? { bytes in
                        progress?.clear()
                        writeStderr(bytes)
                    } : nil)
        }
        printer.quiet = options.quiet
        if let progress { printer.observer = { progress.files($0) } }
        self.file = file
        self.progress = progress
    }

    /// Says on standard error that nothing was examined in `path` when `reports` is 0 (a folder with no file in it).
    static func examined(_ path: String, reports: Int) {
        guard reports == 0 else { return }
        let shown = FileName(path).escaped
        var why = "no file in it to examine (only folders, .git, sockets, FIFOs or devices)"
        if let dir = opendir(path) {
            var empty = true
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name != "." && name != ".." {
                    empty = false
                    break
                }
            }
            closedir(dir)
            if empty { why = "empty folder" }
        }
        writeStderr("airlock: nothing to examine in \(shown): \(why)\n")
    }

    /// Walks each path with `walk`, saying where nothing was examined.
    mutating func each(_ paths: [String], _ walk: (String, inout ReportPrinter) -> Void) {
        for path in paths {
            let before = printer.counts.total
            walk(path, &printer)
            progress?.clear()
            ReportOutput.examined(path, reports: printer.counts.total - before)
        }
    }

    /// Ends the output: the SARIF log, the totals, the `-o` file given its name; exits 0 every file clean, 1 any
    /// suspicious or malicious, 2 any error, 3 nothing examined.
    func finish() throws {
        progress?.clear()
        let status = printer.end()
        if let file {
            do {
                try file.commit()
            } catch {
                throw error.exit
            }
        }
        if status != 0 { throw ExitCode(status) }
    }
}
