import AirlockAnalysis
import AirlockFormats
@testable import AirlockProbe
import Foundation
import Testing
import AirlockTestSupport

/// TorchScript archives from the real torch.jit, detonated with the system's torch: torch.jit.load, then forward on
/// canary inputs. The code's file reads are the sandbox's to see.
@Suite("Probe of TorchScript", .serialized)
struct TorchScriptProbeTests {
    /// A honey credential inside the sandbox's world: reading it is a `dynamic.secrets` refusal.
    static let secret = "/root/.aws/credentials"

    @Test("scripted and traced modules run clean; forward's torch.from_file of a secret is refused and reported")
    func detonations() throws {
        let out = try generateSamples("torchscript_models.py", ["--secret", Self.secret])
        defer { try? FileManager.default.removeItem(atPath: out) }
        let options = try RealRuntimeTests.options()
        let reports = ["scripted.pt", "traced.pt", "plain.pt", "from_file.pt", "continued_from_file.pt"].map {
            ($0, Prober.probe(file: "\(out)/\($0)", options: options))
        }
        for (name, report) in reports {
            let detonation = try #require(report.detonation, "\(name) was not detonated")
            #expect(detonation.runtime?.standIns.isEmpty == true, "\(name)")
            let summary = report.findings.map { "\($0.rule) \($0.message.prefix(120))" }
            if name.contains("from_file") {
                #expect(report.verdict == .malicious, "\(name): \(summary)")
                // Statically from the code, and dynamically from the refused open in forward.
                #expect(report.findings.contains { $0.rule == "torchscript.dangerous-op" })
                let f = ProbeTests.dynamicEvidence(report, rule: "dynamic.secrets", phase: "probe", name)
                #expect(f?.evidence.details.contains { $0.0 == "path" && $0.1 == Self.secret } == true, "\(summary)")
            } else {
                #expect(report.verdict == .clean, "\(name): \(summary)")
                #expect(!report.findings.contains { $0.source == .dynamic && $0.severity >= .medium }, "\(summary)")
            }
        }
    }
}
