import AirlockAnalysis
import AirlockDaemon
import AirlockProbe
import ArgumentParser

extension Airlock {
    /// `airlock probe`: static analysis, then a detonation of every file whose loading can run code.
    struct Probe: ParsableCommand {
        @OptionGroup var digestCache: DigestCacheOptions
        @OptionGroup var folder: FolderBudgetOptions
        @OptionGroup var output: OutputOptions

        static let configuration = CommandConfiguration(
            commandName: "probe",
            abstract: "Is this model safe to load here? Static analysis, then loading it in the sandbox and watching.",
            discussion: """
                Each file is first analysed statically, as by `airlock scan`. Files whose loading can run code (pickle, joblib, PyTorch ZIP and legacy, NumPy object arrays) are then loaded the way their consumer loads them — pickle.load, torch.load's reader, numpy.load(allow_pickle=True) — by a harness inside the sandbox, optionally touching the loaded object afterwards (the probe phase). Every sensitive system call is recorded with the phase it came from; refused behaviour while loading (starting programs, network, writes outside /tmp, secrets, signals outside the sandbox) makes the file malicious, a deadline, exhausted resources or a crash suspicious. Formats that carry no code (safetensors, GGUF, numeric arrays) are answered statically, and the report says so. A folder whose config.json or tokenizer_config.json has an auto_map (trust_remote_code) is also detonated as a whole, as transformers loads it: its modules imported, its config built and its model constructed. In a Hugging Face cache (hub/, a repository, a snapshot or one snapshot file) each snapshot file is detonated through the blob its link names, opened by descriptor within the same repository, under the snapshot's file name.

                The verdict policy is Profiles/policy.json (docs/policy.md); the sandbox profile is Profiles/default.json unless --profile says otherwise.

                - reads the model from standard input (at most 4 GiB, AIRLOCK_STDIN_MAX_BYTES), spooled to an anonymous file that is analysed and detonated by descriptor (through airlockd too); its report names the target -. It may be given once, and not from a terminal.

                JSON output is one report per file, one per line, with the trace and timings. Totals, --quiet, -o FILE, colour and the progress line work as for `airlock scan` (docs/formats.md, "Output and exit status").

                Exit status: 0 every file clean, 1 any suspicious or malicious, 2 any file could not be analysed, 3 nothing was examined (only empty folders: each is named on standard error), 64 usage error.
                """
        )

        @Option(
            name: .long, help: "Sandbox profile: a name in the profile directories or a path to a profile JSON file.")
        var profile: String = "default"

        @Option(name: .long, help: "Verdict policy file (default: policy.json in the profile directories).")
        var policy: String?

        @Option(
            name: .long, parsing: .unconditional,
            help: "Deadline of each detonation in seconds, more than 0 and at most 86400 (default: the profile's).")
        var timeout: Double?

        @Option(
            name: .long, parsing: .unconditional,
            help: ArgumentHelp(
                "Detonate each file in up to N worlds, one after the other (1 to \(WorldCatalog.maximum)): today's host with credentials; a GPU host on the first of next month and a host more than a year ahead, sleeps skipped; then hosts without credentials (docs/probe.md, \"Worlds\"). A malicious world ends the probe; --worlds 1 is a single detonation. Default: \(WorldCatalog.defaultCount), or airlockd's `worlds`.",
                valueName: "N"))
        var worlds: Int?

        @Option(
            name: .customLong("world-budget"), parsing: .unconditional,
            help: ArgumentHelp(
                "Seconds the worlds of one file may take together (default: twice the deadline, --timeout or the profile's). The first world always runs whole; a later one starts only while what is left is at least the longest world so far, and the report says which worlds the budget cut.",
                valueName: "SECONDS"))
        var worldBudget: Double?

        @Flag(name: .customLong("no-probe-phase"), help: "Load only; do not touch the loaded object afterwards.")
        var noProbePhase = false

        @Option(
            name: .long,
            help: "Output format: text, json (JSON Lines, one report per file) or sarif (one SARIF 2.1.0 log).")
        var format: ReportFormat = .text

        @Flag(name: .long, help: "Show informational findings too (text output).")
        var verbose = false

        @Option(
            name: .long,
            help: ArgumentHelp(
                "The consumer's Python: an interpreter, or a virtual environment's folder (default: /usr/bin/python3). With --socket or $AIRLOCK_SOCKET, the name of one of airlockd's runtimes (airlock status lists them; the daemon never takes a path).",
                valueName: "PATH|NAME"))
        var python: String?

        @Option(name: .long, help: "Ask airlockd at this socket instead of probing here (also $AIRLOCK_SOCKET).")
        var socket: String?

        @Argument(help: "Files or folders to probe; - reads one file from standard input (./- is a file named -).")
        var paths: [String] = []

        func validate() throws {
            if paths.isEmpty { throw ValidationError("no file or folder given: airlock probe PATH...") }
            try ArgumentRules.seconds("--timeout", timeout)
            try ArgumentRules.count("--worlds", worlds, 1...WorldCatalog.maximum)
            try ArgumentRules.seconds("--world-budget", worldBudget)
            try StandardInput.validate(paths)
        }

        func run() throws {
            digestCache.apply()
            var out = try ReportOutput(output, format: format, verbose: verbose, inputs: paths, label: "probing")
            switch try backend() {
            case .daemon(let daemon):
                try Remote.run(daemon, paths: paths, printer: &out.printer, examined: ReportOutput.examined)
            case .local(let options):
                out.each(paths) { path, printer in
                    StandardInput.examine(
                        [path],
                        files: {
                            Prober.probe(paths: $0, options: options, folderBudget: folder.local) { printer.print($0) }
                        },
                        stdin: { Prober.probe(fd: $0, path: StandardInput.name, options: options) },
                        report: { printer.print($0) })
                }
            }
            try out.finish()
        }

        /// airlockd when a socket is named (there is no local fallback), else here with the options built once.
        private func backend() throws -> ProbeBackend {
            if let socket = socket ?? Remote.socket {
                if profile != "default" || policy != nil {
                    writeStderr(
                        "airlock: --profile and --policy are the daemon's to choose (airlockd --profile, --policy)\n")
                    throw ExitCode(2)
                }
                var daemon = DaemonBackend(
                    socket: socket, timeout: timeout, probePhase: !noProbePhase, python: python, worlds: worlds,
                    worldBudget: worldBudget)
                daemon.maxEntries = folder.maxEntries
                daemon.folderBudget = folder.folderBudget
                return .daemon(daemon)
            }
            do {
                var options = try ProbeBackend.localOptions(
                    profile: profile, policy: policy, timeout: timeout, probePhase: !noProbePhase, python: python)
                options.worlds = worlds ?? WorldCatalog.defaultCount
                options.worldBudgetSeconds = worldBudget
                // --timeout bounds each file's static analysis too (a sparse file of terabytes hashes for hours);
                // without it the local run is the user's to stop.
                options.staticTimeoutSeconds = timeout
                return .local(options)
            } catch {
                writeStderr("airlock: \(error)\n")
                throw ExitCode(2)
            }
        }
    }
}
