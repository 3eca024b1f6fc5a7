import AirlockAnalysis
import AirlockFormats
@testable import AirlockProbe
import Foundation
import Testing
import AirlockTestSupport

/// Pickles that look for a tell of the loader harness before acting (Tests/Generators/harness_aware.py): its modules,
/// its command line, `sys.flags`, the descriptors' links, the model as a memfd, the old marker paths, the stack's file names and text,
/// `__main__`'s names, `/proc/self/mountinfo` and `/proc/self/cmdline`, one at a time and all at once. Each one acts only where it finds
/// none of them, so each must come out `malicious` by what it did in the sandbox; the canary on the host must stay
/// untouched.
@Suite("Harness-aware payloads", .serialized)
struct HarnessAwareTests {
    @Test("a payload gated on a harness tell finds none, acts, and is malicious by its behaviour")
    func gated() throws {
        try withSamples("harness_aware.py") { dir, bait in
            let names =
                try JSONSerialization.jsonObject(
                    with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/expectations.json"))) as! [String]
            #expect(names.count >= 11)
            let options = try RealRuntimeTests.options()
            for name in names {
                let report = Prober.probe(file: "\(dir)/\(name).pkl", options: options)
                #expect(report.verdict == .malicious, "\(name): \(report.findings.map(\.rule))")
                let exec = ProbeTests.dynamicEvidence(report, rule: "dynamic.exec", phase: "load", name)
                #expect(
                    exec?.evidence.args?.joined(separator: " ").contains(bait.canary) == true,
                    "\(name): the gate found a tell; stderr: \(report.detonation?.stderrTail ?? "")")
            }
        }
    }
}
