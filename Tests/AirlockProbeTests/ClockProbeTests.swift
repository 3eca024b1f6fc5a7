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

    /// Scans and detonates `path` as a pickle in `world`, as `Prober.probe` does without one.
    static func probe(_ path: String, world: HostWorld?, timeout: Double) throws -> Report {
        let options = try ProbeTests.options(timeout: timeout)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        #expect(fd >= 0)
        defer { close(fd) }
        let report = StaticScanner.scan(fd: fd, path: path, budget: options.budget)
        let detonation = try Detonation.run(fd: fd, format: .pickle, options: options, world: world)
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
}
