import AirlockAnalysis
@testable import AirlockProbe
@testable import AirlockSandbox
import AirlockTrace
import Foundation
import Testing
import AirlockTestSupport

/// Sleeper pickles (`Tests/Generators/sleepers.py`): one acts only after a date, one only after a 60-second sleep. In
/// a single detonation on the host's clock neither acts; in a world whose clock is set (the date moved on, sleeps
/// skipped) each does, and the report has the dynamic evidence.
@Suite("Probe: sleepers in clock worlds", .serialized)
struct ClockProbeTests {
    static func world(_ clock: SandboxClock) throws -> HostWorld {
        let settings = try defaultProfile().sandbox
        return HostWorld(
            name: "clock", hostname: settings.hostname,
            user: HostWorld.User(name: "user", uid: settings.user.uid, gid: settings.user.gid, home: settings.cwd),
            environment: settings.environment.map { HostWorld.Variable($0.0, $0.1) }, clock: clock)
    }

    /// Scans and detonates `path` in `world`, as `Prober.probe` does without one.
    static func probe(
        _ path: String, world: HostWorld?, timeout: Double, realRuntime: Bool = false
    ) throws -> Report {
        let options =
            try realRuntime ? RealRuntimeTests.options(timeout: timeout) : ProbeTests.options(timeout: timeout)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        #expect(fd >= 0)
        defer { close(fd) }
        let report = StaticScanner.scan(fd: fd, path: path, budget: options.budget)
        let format = try #require(Prober.harnessFormat(report)?.0)
        let plan = ConsumerPlan(format: format, modules: report.modules, runtime: options.runtime)
        let detonation = try Detonation.run(fd: fd, format: format, plan: plan, options: options, world: world)
        return Verdict.decide(static: report, dynamic: detonation, policy: options.policy)
    }

    static func acted(_ report: Report) -> Bool {
        report.findings.contains { $0.rule == "dynamic.exec" && $0.source == .dynamic }
    }

    @Test("a pickle gated on a future date acts in a world whose date is past it, and only there")
    func dateSleeper() throws {
        let notBefore = Date().timeIntervalSince1970 + 200 * 86_400
        let dir = try generateSamples("sleepers.py", [String(notBefore)])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plain = try ClockProbeTests.probe("\(dir)/date.pkl", world: nil, timeout: 20)
        #expect(!ClockProbeTests.acted(plain), "the gate holds on the host's date: \(plain.findings.map(\.rule))")
        let later = try ClockProbeTests.world(SandboxClock(realtimeOffsetSeconds: 365 * 86_400))
        let report = try ClockProbeTests.probe("\(dir)/date.pkl", world: later, timeout: 20)
        #expect(report.verdict == .malicious)
        #expect(ClockProbeTests.acted(report), "\(report.findings.map { "\($0.rule) \($0.message)" })")
        ProbeTests.dynamicEvidence(report, rule: "dynamic.exec", phase: "load", "date sleeper")
    }

    @Test("a pickle that waits 60 s before acting acts within the deadline in a sleep-skipping world")
    func delaySleeper() throws {
        let dir = try generateSamples("sleepers.py", ["0"])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plain = try ClockProbeTests.probe("\(dir)/delay.pkl", world: nil, timeout: 8)
        #expect(!ClockProbeTests.acted(plain), "a 60 s sleep outlasts an 8 s detonation on the host's clock")
        let skipping = try ClockProbeTests.world(SandboxClock(skipsSleeps: true))
        let started = Date()
        let report = try ClockProbeTests.probe("\(dir)/delay.pkl", world: skipping, timeout: 20)
        #expect(Date().timeIntervalSince(started) < 20)
        #expect(report.verdict == .malicious)
        #expect(ClockProbeTests.acted(report), "\(report.findings.map { "\($0.rule) \($0.message)" })")
        ProbeTests.dynamicEvidence(report, rule: "dynamic.exec", phase: "load", "delay sleeper")
    }

    /// The cost of a clock world (docs/benchmarks.md): a benign torch and sklearn model detonated three times each
    /// on the host's clock, in a date-shifted world and in a sleep-skipping one; the medians are printed.
    @Test("a clock world's cost on benign torch and sklearn detonations stays small")
    func cost() throws {
        let dir = NSTemporaryDirectory() + "airlock-clock-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        writer.arguments = [
            "-c",
            """
            import sys, torch, joblib, numpy
            from sklearn.linear_model import LogisticRegression
            torch.save(torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU()).state_dict(), sys.argv[1] + "/m.pt")
            x = numpy.random.RandomState(0).rand(200, 8); y = (x[:, 0] > 0.5).astype(int)
            joblib.dump(LogisticRegression().fit(x, y), sys.argv[1] + "/m.joblib")
            """, dir,
        ]
        try writer.run()
        writer.waitUntilExit()
        try #require(writer.terminationStatus == 0)
        let worlds: [(String, HostWorld?)] = [
            ("host clock", nil),
            ("date +1 year", try ClockProbeTests.world(SandboxClock(realtimeOffsetSeconds: 365 * 86_400))),
            ("sleep skipping", try ClockProbeTests.world(SandboxClock(skipsSleeps: true))),
        ]
        for file in ["m.pt", "m.joblib"] {
            var medians: [Double] = []
            for (name, world) in worlds {
                var times: [Double] = []
                for _ in 0..<3 {
                    let started = Date()
                    let report = try ClockProbeTests.probe(
                        "\(dir)/\(file)", world: world, timeout: 60, realRuntime: true)
                    times.append(Date().timeIntervalSince(started) * 1000)
                    #expect(report.verdict == .clean, "\(file) \(name): \(report.findings.map(\.message))")
                }
                let median = times.sorted()[1]
                medians.append(median)
                print("clock-bench \(file) \(name): median \(Int(median)) ms of \(times.map { Int($0) })")
            }
            #expect(medians[1] < medians[0] * 2 + 1000 && medians[2] < medians[0] * 2 + 1000, "\(file): \(medians)")
        }
    }
}
