import AirlockAnalysis
import AirlockJSON
@testable import AirlockProbe
@testable import AirlockSandbox
import Foundation
import Testing
import AirlockTestSupport

/// Sandbox-aware payloads (issue 15): pickles that run `os.system` only when one check says "a real host" — the
/// host name, the pid, the environment, the rlimits, /home /var /run /sys, the root's size, the mount sources, PID 1,
/// /etc, the user, the working directory — and one that needs them all. Probed as `airlock probe` does, in the drawn
/// world every probe uses, each must come out malicious with dynamic evidence of the program start in `load`. In
/// the profile as written (the sandbox before issue 15) the gates keep them quiet, which proves each gate works.
@Suite("Sandbox-aware payloads", .serialized)
struct SandboxAwareTests {
    static func manifest(_ dir: String) throws -> [(file: String, tell: String)] {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/manifest.json"))
        let items = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: String]])
        return items.map { ($0["file"]!, $0["tell"]!) }
    }

    static func execEvidence(_ report: Report) -> Finding? {
        report.findings.first { $0.rule == "dynamic.exec" && $0.source == .dynamic }
    }

    @Test("each tell gated alone, and all of them together: malicious, with the program start seen in load")
    func eachTellFires() throws {
        try withSamples("sandbox_aware.py") { dir, _ in
            let options = try ProbeTests.options()
            let samples = try SandboxAwareTests.manifest(dir)
            #expect(samples.count >= 12)
            for sample in samples {
                let report = Prober.probe(file: "\(dir)/\(sample.file)", options: options)
                #expect(report.verdict == .malicious, "\(sample.tell): \(report.verdict)")
                ProbeTests.dynamicEvidence(report, rule: "dynamic.exec", phase: "load", sample.tell)
                let world = try #require(report.detonation?.world, "\(sample.tell): no world in the report")
                #expect(world.hostname != "airlock" && world.user != "airlock" && world.name == "now")
            }
        }
    }

    @Test("without a world (the profile as written) the gates hold: no payload runs")
    func gatesHoldInTheOldSandbox() throws {
        try withSamples("sandbox_aware.py") { dir, _ in
            var options = try ProbeTests.options()
            options.drawsWorld = false
            for sample in try SandboxAwareTests.manifest(dir) where sample.tell != "mount-sources" {
                let report = Prober.probe(file: "\(dir)/\(sample.file)", options: options)
                #expect(report.detonation != nil && report.detonation?.world == nil, "\(sample.tell)")
                #expect(SandboxAwareTests.execEvidence(report) == nil, "\(sample.tell): the gate let the payload run")
            }
        }
    }

    @Test("a payload gated on a GPU fires in a GPU world, and stays quiet in one without")
    func gpuGate() throws {
        try withSamples("sandbox_aware.py") { dir, _ in
            var options = try ProbeTests.options()
            options.world = HostWorld.draw(name: "gpu", gpu: true)
            let fired = Prober.probe(file: "\(dir)/aware_gpu.pkl", options: options)
            #expect(fired.verdict == .malicious)
            ProbeTests.dynamicEvidence(fired, rule: "dynamic.exec", phase: "load", "gpu")
            #expect(fired.detonation?.world?.name == "gpu")
            options.world = HostWorld.draw(name: "cpu", gpu: false)
            let quiet = Prober.probe(file: "\(dir)/aware_gpu.pkl", options: options)
            #expect(SandboxAwareTests.execEvidence(quiet) == nil)
        }
    }

    @Test("the report names the world, and `airlock probe` as a user runs it catches the combined gate")
    func cliReport() throws {
        try withSamples("sandbox_aware.py") { dir, _ in
            let run = try runCLI(["probe", "\(dir)/aware_all.pkl", "--format", "json"])
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stderr)")
            #expect(object["verdict"] as? String == "malicious")
            let findings = object["findings"] as? [[String: Any]] ?? []
            #expect(findings.contains { $0["rule"] as? String == "dynamic.exec" }, "\(findings)")
            let detonation = try #require(object["detonation"] as? [String: Any])
            let world = try #require(detonation["world"] as? [String: Any])
            #expect((world["hostname"] as? String).map { !$0.isEmpty && $0 != "airlock" } == true)
        }
    }
}
