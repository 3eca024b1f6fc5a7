import AirlockDaemon
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The flood end to end: `airlock probe` and airlockd with a short deadline (docs/probe.md, "Bounds").
@Suite("Trace budget: a flood of refused execs", .serialized)
struct TraceFloodTests {
    /// The documented bound on one report (docs/probe.md): the 4 MiB trace budget plus findings and tails.
    static let maxReport = 6 << 20

    static func withFlood(_ body: (_ file: String, _ dir: String) throws -> Void) throws {
        let dir = try generateSamples("floods.py", [])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try body("\(dir)/exec_flood.pkl", dir)
    }

    /// Runs `airlock ARGS` with its output in a file (a runaway report must not be read into the test's memory);
    /// returns the exit status and the output's size, and the output itself when it is within `maxReport`.
    static func probe(_ arguments: [String], in dir: String) throws -> (
        status: Int32, size: Int, report: [String: Any]?, stderr: String
    ) {
        let out = "\(dir)/report.json"
        let quoted = ([airlockBinary] + arguments).map { "'\($0)'" }.joined(separator: " ")
        let run = try runProgram("/bin/sh", ["-c", "\(quoted) > '\(out)'"])
        let size = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0
        var report: [String: Any]? = nil
        if size > 0 && size <= maxReport, let data = FileManager.default.contents(atPath: out) {
            report = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        }
        try? FileManager.default.removeItem(atPath: out)
        return (run.status, size, report, run.stderr)
    }

    /// The report is `malicious` with exec evidence from the flood, and says what the budget left out.
    static func check(_ r: (status: Int32, size: Int, report: [String: Any]?, stderr: String), _ how: String) {
        #expect(r.status == 1, "\(how): exit \(r.status): \(r.stderr.prefix(2000))")
        #expect(r.size <= maxReport, "\(how): a report of \(r.size) bytes")
        guard let report = r.report else {
            Issue.record("\(how): no readable report")
            return
        }
        #expect(report["verdict"] as? String == "malicious", "\(how)")
        let findings = report["findings"] as? [[String: Any]] ?? []
        let exec = findings.first { $0["rule"] as? String == "dynamic.exec" }
        #expect(exec != nil, "\(how): \(findings.map { $0["rule"] ?? "" })")
        let trace = report["trace"] as? [[String: Any]] ?? []
        let detonation = report["detonation"] as? [String: Any] ?? [:]
        // How much of the flood the budget held back depends on how fast this machine ran it; the counts are there.
        #expect(detonation["traceDropped"] is Int && detonation["traceDroppedBytes"] is Int, "\(how): \(detonation)")
        #expect(detonation["timedOut"] as? Bool == true, "\(how)")
        let execs = trace.filter { $0["syscall"] as? String == "execve" && $0["action"] as? String == "denied" }
        #expect(!execs.isEmpty, "\(how)")
        let marked = execs.contains {
            (($0["args"] as? [String: Any])?["truncated"] as? [String])?.contains("argv") == true
        }
        #expect(marked, "\(how): no exec event marked as shortened")
    }

    @Test("airlock probe of a 5 s flood of refused execs: malicious, with exec evidence, in a bounded report")
    func localProbe() throws {
        try TraceFloodTests.withFlood { file, dir in
            let started = Date()
            let r = try TraceFloodTests.probe(["probe", "--timeout", "5", "--format", "json", file], in: dir)
            TraceFloodTests.check(r, "local")
            #expect(Date().timeIntervalSince(started) < 60)
        }
    }

    @Test("with a 64 KiB trace budget the flood is held to it, and what was left out is counted")
    func smallBudget() throws {
        try TraceFloodTests.withFlood { file, dir in
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(repositoryRoot)/Profiles/default.json"))
            var profile = try JSONSerialization.jsonObject(with: data) as! [String: Any]
            var section = profile["airlock"] as! [String: Any]
            setLimits(&section, ["traceBytes": 65536])
            profile["airlock"] = section
            let path = "\(dir)/small-trace.json"
            try JSONSerialization.data(withJSONObject: profile).write(to: URL(fileURLWithPath: path))
            let r = try TraceFloodTests.probe(
                ["probe", "--profile", path, "--timeout", "3", "--format", "json", file], in: dir)
            TraceFloodTests.check(r, "64 KiB budget")
            #expect(r.size < 200_000, "a report of \(r.size) bytes")
            let detonation = r.report?["detonation"] as? [String: Any] ?? [:]
            #expect((detonation["traceDropped"] as? Int ?? 0) > 0, "\(detonation)")
            #expect((detonation["traceDroppedBytes"] as? Int ?? 0) > 10_000, "\(detonation)")
            let findings = r.report?["findings"] as? [[String: Any]] ?? []
            #expect(findings.contains { $0["rule"] as? String == "dynamic.trace-truncated" })
        }
    }

    @Test("900,000 static findings: the report keeps the most severe 1000, counts the rest by rule, and stays small")
    func findingsFlood() throws {
        try TraceFloodTests.withFlood { _, dir in
            let r = try TraceFloodTests.probe(["scan", "--format", "json", "\(dir)/import_flood.pt"], in: dir)
            #expect(r.status == 1, "exit \(r.status): \(r.stderr.prefix(500))")
            #expect(r.size < 2 << 20, "a report of \(r.size) bytes")
            #expect(r.report?["verdict"] as? String == "suspicious")
            let findings = r.report?["findings"] as? [[String: Any]] ?? []
            #expect(findings.count == 1001)
            let note = findings.last
            #expect(note?["rule"] as? String == "report.findings-omitted")
            let evidence = note?["evidence"] as? [String: Any] ?? [:]
            #expect(evidence["omitted"] as? String == "899000", "\(evidence)")
            #expect(evidence["rule:pickle.unknown-import"] as? String == "899000", "\(evidence)")
        }
    }

    @Test("eight processes writing to stdout as fast as they can do not keep the supervisor from its deadline")
    func outputFlood() throws {
        try TraceFloodTests.withFlood { file, dir in
            let started = Date()
            let r = try TraceFloodTests.probe(
                ["probe", "--timeout", "3", "--format", "json", "\(dir)/output_flood.pkl"], in: dir)
            let seconds = Date().timeIntervalSince(started)
            #expect(seconds < 30, "the probe took \(seconds) s with a 3 s deadline")
            #expect(r.status == 1, "exit \(r.status): \(r.stderr.prefix(2000))")
            let detonation = r.report?["detonation"] as? [String: Any] ?? [:]
            #expect(detonation["timedOut"] as? Bool == true, "\(detonation)")
            #expect((detonation["stdoutTail"] as? String)?.isEmpty == false)
            _ = file
        }
    }

    @Test("through airlockd: the verdict comes back, the report is bounded, and the daemon stays up and small")
    func daemonProbe() throws {
        try TraceFloodTests.withFlood { file, dir in
            let daemon = try TestDaemon()
            defer { daemon.stop() }
            let r = try TraceFloodTests.probe(
                ["--socket", daemon.socket, "probe", "--timeout", "5", "--format", "json", file], in: dir)
            TraceFloodTests.check(r, "airlockd")
            #expect(daemon.process.isRunning, "airlockd died: \(daemon.log.suffix(2000))")
            let status = try DaemonClient(path: daemon.socket).call("status", timeout: 10)
            #expect(status.contains { $0.0 == "status" })
            // Its peak memory: the trace budget, not the flood, decides it.
            let text = (try? String(contentsOfFile: "/proc/\(daemon.pid)/status", encoding: .utf8)) ?? ""
            let peakKiB =
                text.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
                .flatMap { $0.split(separator: " ").dropFirst().first.flatMap { Int($0) } } ?? 0
            #expect(peakKiB > 0 && peakKiB < 512 * 1024, "airlockd's peak RSS \(peakKiB) KiB")
        }
    }
}
