import AirlockAnalysis
import AirlockFormats
import AirlockJSON
import ArgumentParser

/// Output formats of `airlock scan`.
enum ScanFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json, sarif
}

extension Airlock {
    /// `airlock scan`: static analysis only.
    struct Scan: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "scan",
            abstract: "Read model files without loading them: format, structure, imports, verdict.",
            discussion: """
                Formats are decided from the content, never the name: pickle (protocols 0-5), PyTorch (ZIP and legacy), joblib, NumPy .npy/.npz, safetensors, Keras v3 (.keras) and HDF5 configs, ONNX, GGUF, ZIP archives, and model folders (every file, plus code that trust_remote_code would run and pickle weights). Every pickle import is judged against an allowlist and a code-execution denylist; imports on neither list make a file at least suspicious. Nothing is loaded or run. docs/formats.md says what each check covers and what it does not.

                JSON output is one report per file, one per line (JSON Lines). SARIF output is one SARIF 2.1.0 log for all files, for code-scanning tools.

                Exit status: 0 every file clean, 1 any suspicious or malicious, 2 any file could not be analysed.
                """
        )

        @Option(name: .long, help: "Output format: text, json (JSON Lines, one report per file) or sarif (one SARIF 2.1.0 log).")
        var format: ScanFormat = .text

        @Flag(name: .long, help: "Show informational findings too (text output).")
        var verbose = false

        @Option(name: .long, help: "Ask airlockd at this socket instead of scanning here (also $AIRLOCK_SOCKET).")
        var socket: String?

        @Argument(help: "Files or folders to scan.")
        var paths: [String] = []

        func validate() throws {
            if paths.isEmpty { throw ValidationError("no file or folder given: airlock scan PATH...") }
        }

        func run() throws {
            var printer = ReportPrinter(format: format, verbose: verbose)
            if let socket = socket ?? Remote.socket {
                try Remote.run("scan", socket: socket, paths: paths, params: [], timeout: 600, printer: &printer)
            } else {
                StaticScanner.scan(paths: paths) { printer.print($0) }
            }
            try printer.finish()
        }
    }
}

/// Prints reports as `scan` and `probe` do, and turns the worst verdict into the exit status.
struct ReportPrinter {
    let format: ScanFormat
    let verbose: Bool
    private var worst: Verdict = .clean
    private var collected: [Report] = []

    init(format: ScanFormat, verbose: Bool) {
        self.format = format
        self.verbose = verbose
    }

    /// Prints one report now (text, JSON Lines), or keeps it for the SARIF log.
    mutating func print(_ report: Report) {
        switch format {
        case .json: writeStdout(Array(report.json.serialized().utf8) + [0x0A])
        case .text: writeStdout(Array((report.text(verbose: verbose) + "\n").utf8))
        case .sarif: collected.append(report)
        }
        worst = max(worst, report.verdict)
    }

    /// Writes the SARIF log if that is the format; exits 0 (all clean), 1 (suspicious or malicious) or 2 (error).
    func finish() throws {
        if format == .sarif {
            writeStdout(Array(Sarif.log(collected, version: Airlock.configuration.version).serialized().utf8) + [0x0A])
        }
        switch worst {
        case .clean: return
        case .suspicious, .malicious: throw ExitCode(1)
        case .error: throw ExitCode(2)
        }
    }
}
