import AirlockJSON
import AirlockSandbox
import AirlockTrace
import ArgumentParser
#if canImport(Glibc)
    import Glibc
#endif

/// Output formats of `airlock exec`.
enum ExecFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// How `airlock exec`'s text output shows the trace: grouped by what was tried (the default), or every event.
enum ExecTraceStyle: String, ExpressibleByArgument, CaseIterable {
    case summary, full
}

extension Airlock {
    /// `airlock exec`: run any command in the sandbox and print its trace.
    struct Exec: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "exec",
            abstract: "Run a command in the sandbox and print what it tried.",
            discussion: """
                Exec's options come first, then `--`, then the command and its arguments: `airlock exec --timeout 5 -- \
                python3 -c 'print(1)'`. Everything after `--` is the command's (`airlock exec -- --help` runs a \
                command named `--help`). Without `--`, the first word that is not one of exec's options starts the \
                command, and every word after it is the command's; a word starting with `-` that is not an exec \
                option is a usage error, never run as the command.

                Text output: the command's output, then the trace grouped by what was tried (refused calls first, \
                each kind once with its count; then allowed ones, opens only counted), then the outcome. \
                --trace full lists every event; --format json gives every event as JSON. docs/sandbox.md says what \
                the sandbox allows and refuses.

                Exit status: the command's own; 128+N when killed by signal N; 124 when the deadline passed;
                125 when the sandbox could not be built; 126 when the command could not be executed; 127 when it
                was not found inside the sandbox; 64 usage error.
                """
        )

        @Option(name: .long, help: "Profile name (in the profile directories) or path to a profile JSON file.")
        var profile: String = "default"

        @Option(
            name: .long, parsing: .unconditional,
            help: "Wall-clock deadline in seconds, more than 0 and at most 86400 (overrides the profile).")
        var timeout: Double?

        @Option(name: .long, help: "Output format: text or json.")
        var format: ExecFormat = .text

        @Option(
            name: .customLong("ro-bind"),
            help: ArgumentHelp(
                "Also mount a host path read-only inside the sandbox (repeatable).", valueName: "HOST:SANDBOX")
        )
        var roBinds: [String] = []

        @Option(
            name: .long,
            help: ArgumentHelp(
                "`profile`: the profile as written (the default); `host`: a drawn host persona over it, as probes use "
                    + "(host name, user, home, /etc, /var, /run, /sys, environment, pid, ordinary rlimits).",
                valueName: "profile|host"))
        var world: String = "profile"

        @Option(
            name: .long,
            help: ArgumentHelp(
                "Text output's trace: `summary`, grouped by what was tried (the default), or `full`, every event.",
                valueName: "summary|full"))
        var trace: ExecTraceStyle?

        @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after --.")
        var command: [String] = []

        /// Whether `arguments` (after the program's name) are `exec` followed by its own options and then `--help` or
        /// `-h`, before `--` or the command: `airlock exec --help`, `airlock exec --timeout 5 -h`. After `--` or the
        /// command's first word, `--help` is the command's own (`airlock exec -- python3 --help`).
        static func asksForHelp(_ arguments: [String]) -> Bool {
            guard arguments.first == "exec" else { return false }
            var i = 1
            while i < arguments.count {
                let a = arguments[i]
                if a == "--help" || a == "-h" { return true }
                if Invocation.valueOptions.contains(a) {
                    i += 2
                } else if Invocation.valueOptions.contains(where: { a.hasPrefix($0 + "=") }) {
                    i += 1
                } else {
                    return false
                }
            }
            return false
        }

        func validate() throws { try invocation.validate() }

        func run() throws { try invocation.run() }

        /// The parsed options, as plain values.
        private var invocation: Invocation {
            Invocation(
                profile: profile, timeout: timeout, format: format, roBinds: roBinds, world: world, trace: trace,
                command: command)
        }

        static func exitStatus(for error: SandboxError) -> Int32 {
            switch error.kind {
            case .commandNotFound: 127
            case .commandNotExecutable: 126
            default: 125
            }
        }
    }
}

extension Airlock.Exec {
    /// One `airlock exec`'s options as plain values, whoever parsed them: ArgumentParser (`Exec`), or
    /// `Invocation(commonForm:)` for the usual forms, which spares the start-up ArgumentParser's reflection.
    struct Invocation {
        var profile = "default"
        var timeout: Double?
        var format: ExecFormat = .text
        var roBinds: [String] = []
        /// `profile` or `host` (`--world`).
        var world = "profile"
        /// How text output shows the trace (`--trace`; nil: the summary).
        var trace: ExecTraceStyle?
        /// What `.captureForPassthrough` captures: the command, after its `--` when one was given.
        var command: [String] = []

        /// exec's own options, each of which takes a value (the ones `init(commonForm:)` reads); `asksForHelp` skips them.
        static let valueOptions: Set<String> = [
            "--profile", "--timeout", "--format", "--ro-bind", "--world", "--trace",
        ]

        func validate() throws(ValidationError) {
            try ArgumentRules.seconds("--timeout", timeout)
            for bind in roBinds {
                let parts = bind.split(separator: ":", maxSplits: 1).map(String.init)
                guard parts.count == 2, !parts[0].isEmpty, parts[1].hasPrefix("/") else {
                    throw ValidationError("--ro-bind expects HOST:SANDBOX with an absolute sandbox path, got '\(bind)'")
                }
            }
            if trace != nil && format == .json {
                throw ValidationError("--trace shapes text output; --format json always has every event")
            }
            guard world == "profile" || world == "host" else {
                throw ValidationError("--world expects profile or host, got '\(world)'")
            }
            if command.isEmpty || (command == ["--"]) {
                throw ValidationError("no command given: airlock exec [OPTIONS] -- CMD [ARGS...]")
            }
            // `.captureForPassthrough` captures from the first word ArgumentParser does not know: an option of exec's
            // misspelt (`--bogus`, `--timeot 5`) would otherwise be run as the command.
            if let first = command.first, first != "--", first.hasPrefix("-") {
                throw ValidationError(
                    "unknown option '\(first)': exec's options go before --, the command after it "
                        + "(airlock exec [OPTIONS] -- CMD [ARGS...])")
            }
        }

        private func runSandbox(_ argv: [String]) -> Result<SandboxResult, SandboxError> {
            Result { () throws(SandboxError) -> SandboxResult in
                Sandbox.prepareInBackground()
                let loaded = try Profile.load(profile)
                var extra: [MountSpec] = []
                for bind in roBinds {
                    let parts = bind.split(separator: ":", maxSplits: 1).map(String.init)
                    extra.append(try MountSpec.readOnlyBind(host: parts[0], sandbox: parts[1]))
                }
                var request = SandboxRequest(argv: argv, profile: loaded, timeoutSeconds: timeout, extraMounts: extra)
                if world == "host" { request.world = HostWorld.draw(fileBytes: loaded.sandbox.limits.fileSizeBytes) }
                return try Sandbox.run(request)
            }
        }

        func run() throws {
            let argv = command.first == "--" ? Array(command.dropFirst()) : command
            let result: SandboxResult
            switch runSandbox(argv) {
            case .success(let r):
                result = r
            case .failure(let error):
                if format == .json {
                    printJSON(ExecReport.error(error))
                } else {
                    writeStderr("airlock: \(error)\n")
                }
                throw ExitCode(Airlock.Exec.exitStatus(for: error))
            }

            if format == .json {
                printJSON(ExecReport.json(result))
            } else {
                writeStdout(result.stdout)
                if result.stdoutDropped > 0 {
                    writeStdout(Array("\n[airlock: \(result.stdoutDropped) more bytes of stdout dropped]\n".utf8))
                }
                writeStderr(result.stderr)
                if result.stderrDropped > 0 {
                    writeStderr("\n[airlock: \(result.stderrDropped) more bytes of stderr dropped]\n")
                }
                var summary = "\n── airlock trace: \(result.trace.count + result.traceDropped) notified system calls "
                summary += "(\(result.trace.filter { $0.action != .allowed }.count) refused)"
                if trace == .full {
                    summary += " ──\n" + TraceText.table(result.trace, dropped: result.traceDropped) + "\n"
                } else {
                    summary += "; --trace full lists each ──\n"
                    summary += TraceSummary.text(result.trace, dropped: result.traceDropped)
                }
                let outcome: String
                if result.timedOut {
                    outcome = "deadline passed: the sandbox was killed"
                } else if let code = result.exitCode {
                    outcome = "exit code \(code)"
                } else {
                    outcome = "killed by \(result.signal ?? "a signal")"
                }
                summary += "── \(outcome) after \(TraceText.milliseconds(result.durationNs)) ms ──\n"
                for hit in result.limitsHit { summary += "── resource exhausted: \(hit.detail) ──\n" }
                if case .unavailable = result.cgroup { summary += "── \(result.cgroup.summary) ──\n" }
                writeStdout(Array(summary.utf8))
            }
            if result.timedOut { throw ExitCode(124) }
            if let code = result.exitCode, code != 0 { throw ExitCode(code) }
            if let number = result.signalNumber { throw ExitCode(128 + number) }
        }
    }
}

/// The JSON printed by `airlock exec --format json`: one object, keys in a fixed order.
enum ExecReport {
    static func json(_ r: SandboxResult) -> JSON {
        .object([
            ("exitCode", r.exitCode.map(JSON.int) ?? .null),
            ("signal", .optional(r.signal)),
            ("timedOut", .bool(r.timedOut)),
            ("stdout", .string(String(decoding: r.stdout, as: UTF8.self))),
            ("stdoutTruncated", .bool(r.stdoutDropped > 0)),
            ("stdoutDroppedBytes", .int(r.stdoutDropped)),
            ("stderr", .string(String(decoding: r.stderr, as: UTF8.self))),
            ("stderrTruncated", .bool(r.stderrDropped > 0)),
            ("stderrDroppedBytes", .int(r.stderrDropped)),
            ("trace", .array(r.trace.map(\.json))),
            ("traceDropped", .int(r.traceDropped)),
            ("traceDroppedBytes", .int(r.traceDroppedBytes)),
            ("durationMs", .double((Double(r.durationNs) / 1e3).rounded() / 1e3)),
            ("limitsHit", .array(r.limitsHit.map(\.json))),
            ("cgroup", r.cgroup.json),
        ])
    }

    /// `{"error": {"code": …, "message": …}}`, printed when the sandbox could not run the command.
    static func error(_ e: SandboxError) -> JSON {
        .object([("error", .object([("code", .string(e.code)), ("message", .string(e.description))]))])
    }
}

func printJSON(_ value: JSON) {
    writeStdout(Array(value.serialized().utf8) + [0x0A])
}

func writeStdout(_ bytes: [UInt8]) { writeAll(1, bytes) }
func writeStderr(_ bytes: [UInt8]) { writeAll(2, bytes) }
func writeStderr(_ text: String) { writeAll(2, Array(text.utf8)) }

private func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return
        }
        offset += n
    }
}

extension Airlock.Exec.Invocation {
    /// `exec` in its common form, parsed without ArgumentParser: `exec [--profile P] [--timeout S] [--format F]
    /// [--ro-bind HOST:SANDBOX]... -- CMD [ARGS...]`, each option at most once (`--ro-bind` as often as wanted), each
    /// value neither empty nor starting with `-`, read as ArgumentParser reads it (`Double(_:)`, the format's raw
    /// value) and valid. Nil for anything else (help, mistakes, other spellings, a command without `--`), which is
    /// left to ArgumentParser and answered exactly as before. What is accepted gets the values ArgumentParser would
    /// give: before the `--` only options and their values, the `--` kept at the head of the captured command.
    ///
    /// Why: building ArgumentParser's command tree reflects over every command, 1.2 ms of a sandbox run's start-up
    /// (docs/benchmarks.md, "Start-up budget (issue 12)").
    init?(commonForm arguments: [String]) {
        guard arguments.first == "exec" else { return nil }
        var seen: Set<String> = []
        var i = 1
        while i < arguments.count && arguments[i] != "--" {
            let name = arguments[i]
            guard i + 1 < arguments.count, let first = arguments[i + 1].utf8.first, first != UInt8(ascii: "-") else {
                return nil
            }
            let value = arguments[i + 1]
            guard name == "--ro-bind" || seen.insert(name).inserted else { return nil }
            switch name {
            case "--profile": profile = value
            case "--timeout":
                guard let seconds = Double(value) else { return nil }
                timeout = seconds
            case "--format":
                guard let format = ExecFormat(rawValue: value) else { return nil }
                self.format = format
            case "--ro-bind": roBinds.append(value)
            case "--world": world = value
            case "--trace":
                guard let style = ExecTraceStyle(rawValue: value) else { return nil }
                trace = style
            default: return nil
            }
            i += 2
        }
        guard i + 1 < arguments.count else { return nil }
        command = Array(arguments[i...])
        do { try validate() } catch { return nil }
    }
}
