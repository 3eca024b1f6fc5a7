import AirlockAnalysis
import AirlockDaemon
import AirlockFormats
import AirlockJSON
public import ArgumentParser

extension ReportFormat: ExpressibleByArgument {}

extension Airlock {
    /// `airlock scan`: static analysis only.
    struct Scan: ParsableCommand {
        @OptionGroup var digestCache: DigestCacheOptions
        @OptionGroup var folder: FolderBudgetOptions
        @OptionGroup var output: OutputOptions

        static let configuration = CommandConfiguration(
            commandName: "scan",
            abstract: "Read model files without loading them: format, structure, imports, verdict.",
            discussion: """
                Formats are decided from the content, never the name: pickle (protocols 0-5), PyTorch (ZIP and legacy), joblib, NumPy .npy/.npz, safetensors, Keras v3 (.keras) and HDF5 configs, ONNX, GGUF, ZIP archives, and model folders (every file, plus code that trust_remote_code would run and pickle weights). Symbolic links are reported, never followed, except in a Hugging Face cache (hub/, a models--ORG--NAME folder, its snapshots or one snapshot file): a snapshot's link to a blob of the same repository is opened by descriptor, checked against the blob's content address and reported under the snapshot's name. Every pickle import is judged against an allowlist and a code-execution denylist; imports on neither list make a file at least suspicious. Nothing is loaded or run. docs/formats.md says what each check covers and what it does not.

                JSON output is one report per file, one per line (JSON Lines). SARIF output is one SARIF 2.1.0 log for all files, for code-scanning tools.

                - reads the model from standard input (at most 4 GiB, AIRLOCK_STDIN_MAX_BYTES), spooled to an anonymous file; its report names the target -. It may be given once, and not from a terminal.

                Text output ends with a totals line when more than one file was examined (\"12 files: 9 clean, 2 suspicious, 1 malicious, 0 errors (4.1 s)\"); with JSON or SARIF on standard output it goes to standard error, and only on a terminal. --quiet leaves clean files out of text and JSON Lines. -o FILE writes the output to FILE and one verdict line per file to the terminal. Verdicts are coloured on a terminal (--color; NO_COLOR is honoured), and a progress line is shown on standard error when it is a terminal. Every file of a folder is examined, whatever its name (files of unknown format too); .git folders are skipped. docs/formats.md, "Output and exit status", has the details.

                Exit status: 0 every file clean, 1 any suspicious or malicious, 2 any file could not be analysed, 3 nothing was examined (only empty folders: each is named on standard error), 64 usage error.
                """
        )

        @Option(
            name: .long,
            help: "Output format: text, json (JSON Lines, one report per file) or sarif (one SARIF 2.1.0 log).")
        var format: ReportFormat = .text

        @Flag(name: .long, help: "Show informational findings too (text output).")
        var verbose = false

        @Option(name: .long, help: "Ask airlockd at this socket instead of scanning here (also $AIRLOCK_SOCKET).")
        var socket: String?

        @Argument(help: "Files or folders to scan; - reads one file from standard input (./- is a file named -).")
        var paths: [String] = []

        func validate() throws {
            if paths.isEmpty { throw ValidationError("no file or folder given: airlock scan PATH...") }
            try StandardInput.validate(paths)
        }

        func run() throws {
            digestCache.apply()
            var out = try ReportOutput(output, format: format, verbose: verbose, inputs: paths, label: "scanning")
            if let socket = socket ?? Remote.socket {
                var daemon = DaemonBackend(socket: socket, method: .scan)
                daemon.maxEntries = folder.maxEntries
                daemon.folderBudget = folder.folderBudget
                try Remote.run(daemon, paths: paths, printer: &out.printer, examined: ReportOutput.examined)
            } else {
                out.each(paths) { path, printer in
                    StandardInput.examine(
                        [path],
                        files: { StaticScanner.scan(paths: $0, folderBudget: folder.local) { printer.print($0) } },
                        stdin: { StaticScanner.scan(fd: $0, path: StandardInput.name) },
                        report: { printer.print($0) })
                }
            }
            try out.finish()
        }
    }
}

extension ReportPrinter {
    /// A printer for the CLI: to standard output, naming this airlock's version in SARIF.
    init(format: ReportFormat, verbose: Bool) {
        self.init(format: format, verbose: verbose, version: Airlock.configuration.version, write: writeStdout)
    }

    /// Writes the SARIF log if that is the format; exits 0 (all clean), 1 (suspicious or malicious), 2 (error) or 3
    /// (nothing printed). The commands use `ReportOutput` (OutputOptions.swift), which adds -o, totals and colour.
    func finish() throws {
        let status = end()
        if status != 0 { throw ExitCode(status) }
    }
}
