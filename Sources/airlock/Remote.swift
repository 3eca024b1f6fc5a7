import AirlockNames
import AirlockAnalysis
import AirlockDaemon
import AirlockFormats
import AirlockJSON
import AirlockSystem
import ArgumentParser

#if canImport(Glibc)
    import Glibc
#endif

/// The CLI through airlockd: `airlock --socket PATH probe|scan …` or `$AIRLOCK_SOCKET`. With a socket named, there
/// is no local fallback: a daemon that cannot be reached is an error (exit 2).
enum Remote {
    /// The socket named by `--socket` (moved here by `Airlock.main`) or `$AIRLOCK_SOCKET`.
    nonisolated(unsafe) static var socketFlag: String?

    static var socket: String? {
        if let socketFlag { return socketFlag }
        if let env = getenv("AIRLOCK_SOCKET"), env.pointee != 0 { return String(cString: env) }
        return nil
    }

    /// Sends each path to the daemon as a descriptor; prints the reports it answers with.
    /// `examined` is told how many reports each path had.
    static func run(
        _ daemon: DaemonBackend, paths: [String], printer: inout ReportPrinter,
        examined: (String, Int) -> Void = { _, _ in }
    ) throws {
        var daemon = daemon
        // Said once for the run, not per retry nor per file.
        let said = Once()
        daemon.retry.onWaiting = { error, seconds in
            guard said.first() else { return }
            let what = error.waiting.map { "\($0) waiting" } ?? error.reason ?? "busy"
            writeStderr("airlock: airlockd is busy (\(what)); retrying for up to \(Int(seconds.rounded(.up))) s\n")
        }
        var client: DaemonClient?
        do {
            client = try daemon.connect()
        } catch  where !error.isRetryable {
            writeStderr("airlock: \(error)\n")
            throw ExitCode(2)
        } catch {
            client = nil  // a full backlog: the first request connects again, retrying
        }
        for path in paths {
            let before = printer.counts.total
            let shown = FileName(path).escaped  // as a local scan shows it
            let fd: FileDescriptor
            if path == StandardInput.name {
                switch StandardInput.spool() {
                case .success(let spooled): fd = spooled
                case .failure(let error):
                    printer.print(error.report)
                    continue
                }
            } else {
                do {
                    fd = try FileDescriptor.open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK)
                } catch {
                    printer.print(errorReport(shown, "io", "cannot open \(shown): \(error.errnoValue.text)"))
                    continue
                }
            }
            defer { fd.close() }
            do throws(ClientError) {
                for report in try daemon.examine(fd: fd.rawValue, name: shown, with: &client) { printer.print(report) }
            } catch {
                // Answers about this file go in its report; anything about the daemon or the connection ends the run.
                if ["file-busy", "bad-request", "no-descriptor", "busy"].contains(error.code) {
                    printer.print(errorReport(shown, error.code, error.message))
                } else {
                    writeStderr("airlock: \(error)\n")
                    throw ExitCode(2)
                }
            }
            examined(path, printer.counts.total - before)
        }
    }

    /// True the first time only (the waiting notice's flag; the notice may come from any thread).
    final class Once: @unchecked Sendable {
        private let monitor = Monitor()
        private var done = false
        func first() -> Bool {
            monitor.locked { () -> Bool in
                defer { done = true }
                return !done
            }
        }
    }

    static func errorReport(_ path: String, _ code: String, _ message: String) -> Report {
        Report(
            target: ReportTarget(path: path, size: 0, sha256: nil, format: FileFormat.unknown.rawValue), findings: [],
            error: (code, message))
    }
}

extension Airlock {
    /// `airlock status`: what the daemon is doing.
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "status",
            abstract:
                "Show airlockd's queue by runtime, workers and what each does, totals by verdict, refusals by reason, latency percentiles, sandbox memory peaks and Python runtimes.",
            discussion: """
                Asks the daemon at --socket, $AIRLOCK_SOCKET, or /run/airlock/airlockd.sock. Each runtime is listed with its name (what `airlock --socket S probe --python NAME` chooses; the default is marked), interpreter, Python version and the versions of the consumer libraries installed in it (torch, numpy, sklearn, …).
                """
        )

        @Option(name: .long, help: "The daemon's socket.")
        var socket: String?

        @Flag(name: .long, help: "Print the metrics in Prometheus' text format instead.")
        var prometheus = false

        @Flag(name: .long, help: "Print the status as JSON.")
        var json = false

        func validate() throws {
            if json && prometheus {
                throw ValidationError("--json and --prometheus cannot be given together: choose one output")
            }
        }

        func run() throws {
            let path = socket ?? Remote.socket ?? DaemonClient.defaultSocket
            do {
                let client = try DaemonClient(path: path)
                if prometheus {
                    let reply = try client.call("metrics", timeout: 30)
                    if case .string(let text)? = reply.first(where: { $0.0 == "metrics" })?.1 {
                        writeStdout(Array(text.utf8))
                    }
                    return
                }
                let reply = try client.call("status", timeout: 30)
                guard let status = reply.first(where: { $0.0 == "status" })?.1 else {
                    throw ClientError("protocol", "no status in the reply")
                }
                if json {
                    printJSON(status)
                } else {
                    writeStdout(Array(Status.text(status, socket: path).utf8))
                }
            } catch {
                writeStderr("airlock: \(error)\n")
                throw ExitCode(2)
            }
        }

        static func text(_ status: JSON, socket: String) -> String {
            guard case .object(let m) = status else { return "" }
            func v(_ key: String) -> String {
                switch m.first(where: { $0.0 == key })?.1 {
                case .number(let n)?: n
                case .string(let s)?: s
                case .object(let o)?: o.map { "\($0.0) \(render($0.1))" }.joined(separator: ", ")
                default: "-"
                }
            }
            func render(_ j: JSON) -> String { if case .number(let n) = j { n } else { j.serialized() } }
            return """
                airlockd \(v("version")) at \(socket), up \(v("uptimeSeconds")) s
                  workers      \(v("busyWorkers")) busy of \(v("workers"))
                  queue        \(v("queueDepth")) waiting of \(v("queueCapacity"))
                  connections  \(v("connections"))
                  requests     \(v("requests"))
                  verdicts     \(v("verdicts"))
                  refused      \(v("refused"))
                  latency ms   \(v("latencyMs"))
                \(lanes(m))\(runtimes(m))
                """
        }

        /// The lanes, their workers, the queue by runtime, sandbox memory peaks, refusals by reason, warm sandboxes
        /// ready by runtime and the HTTP endpoint: members older daemons do not send are left out.
        static func lanes(_ m: [(String, JSON)]) -> String {
            func member(_ j: JSON?, _ key: String) -> JSON? {
                if case .object(let o)? = j { return o.first(where: { $0.0 == key })?.1 }
                return nil
            }
            func num(_ j: JSON?) -> String { if case .number(let n)? = j { n } else { "-" } }
            func str(_ j: JSON?) -> String { if case .string(let s)? = j { s } else { "-" } }
            func counts(_ j: JSON?) -> String {
                guard case .object(let o)? = j, !o.isEmpty else { return "none" }
                return o.map { "\($0.0.isEmpty ? "(none)" : $0.0) \(num($0.1))" }.joined(separator: ", ")
            }
            func mib(_ j: JSON?) -> String {
                guard case .number(let n)? = j, let bytes = Double(n) else { return "-" }
                return String(Int((bytes / 1_048_576).rounded())) + " MiB"
            }
            let root = JSON.object(m)
            var out = ""
            if case .array(let lanes)? = member(root, "lanes") {
                for lane in lanes {
                    out +=
                        "  lane         \(str(member(lane, "name"))): \(num(member(lane, "busyWorkers"))) busy, \(num(member(lane, "queueDepth"))) waiting of \(num(member(lane, "capacity"))); waiting by runtime: \(counts(member(lane, "queuedByRuntime")))\n"
                    guard case .array(let workers)? = member(lane, "workers") else { continue }
                    for (i, w) in workers.enumerated() {
                        out +=
                            str(member(w, "state")) == "busy"
                            ? "    worker \(i)   busy \(num(member(w, "busySeconds"))) s: \(str(member(w, "method"))) with runtime \(str(member(w, "runtime")).isEmpty ? "(none)" : str(member(w, "runtime")))\n"
                            : "    worker \(i)   idle\n"
                    }
                }
            }
            if case .object(let memory)? = member(root, "sandboxMemory") {
                let lines = memory.map { runtime, peaks in
                    "\(runtime.isEmpty ? "(none)" : runtime): max \(mib(member(peaks, "maxBytes"))), p50 \(mib(member(peaks, "p50Bytes"))), p90 \(mib(member(peaks, "p90Bytes"))), p99 \(mib(member(peaks, "p99Bytes"))) over \(num(member(peaks, "samples"))) recent of \(num(member(peaks, "detonations")))"
                }
                out +=
                    "  sandbox mem  \(lines.isEmpty ? "no detonation yet" : lines.joined(separator: "\n               "))\n"
            }
            if case .object(let reasons)? = member(root, "refusedReasons") {
                let text = reasons.map { "\($0.0) (\(counts($0.1)))" }.joined(separator: ", ")
                out += "  refused why  \(text.isEmpty ? "none" : text)\n"
            }
            if let partial = member(root, "partial") { out += "  partial      \(counts(partial))\n" }
            if let ready = member(root, "warmReady") { out += "  warm ready   \(counts(ready))\n" }
            if let ids = member(root, "sandboxIds"), case .object = ids {
                out +=
                    "  sandbox ids  \(num(member(ids, "firstUid"))):\(num(member(ids, "count"))) (gids from \(num(member(ids, "firstGid")))): \(num(member(ids, "held"))) held (peak \(num(member(ids, "peak")))), \(num(member(ids, "quarantined"))) held back, \(num(member(ids, "refused"))) refused\n"
            }
            if case .string(let address)? = member(root, "metricsListen") {
                out += "  metrics      http://\(address)/metrics\n"
            }
            return out
        }

        /// The runtimes' lines: name (default marked), interpreter, implementation and version, libraries.
        static func runtimes(_ m: [(String, JSON)]) -> String {
            guard case .array(let items)? = m.first(where: { $0.0 == "runtimes" })?.1, !items.isEmpty else {
                return "  runtimes     -\n"
            }
            var out = ""
            for (i, item) in items.enumerated() {
                guard case .object(let r) = item else { continue }
                func s(_ key: String) -> String {
                    if case .string(let text)? = r.first(where: { $0.0 == key })?.1 { text } else { "-" }
                }
                let marked = r.contains { $0.0 == "default" && $0.1 == .bool(true) } ? " (default)" : ""
                var libraries = "no consumer libraries"
                if case .object(let libs)? = r.first(where: { $0.0 == "libraries" })?.1, !libs.isEmpty {
                    libraries = libs.map { key, value in
                        if case .string(let version) = value { "\(key) \(version)" } else { key }
                    }.joined(separator: ", ")
                }
                out +=
                    "\(i == 0 ? "  runtimes     " : "               ")\(s("name"))\(marked): \(s("interpreter")), \(s("implementation")) \(s("version")); \(libraries)\n"
            }
            return out
        }
    }
}
