import AirlockAnalysis
import AirlockFormats
import AirlockJSON
@testable import AirlockProbe
@testable import AirlockSandbox
import Foundation
import Testing
import AirlockTestSupport

/// `airlock probe` with the emulated network (issue 15): payloads gated on "the network works" act, and come out
/// `malicious` with the destination and what they sent as evidence, in the report's `detonation.network` and text;
/// nothing reaches the test's host listener.
@Suite("Probe: emulated network", .serialized)
struct NetworkProbeTests {
    @Test("network-gated and exfiltrating pickles: malicious, destination and bytes in the report")
    func networkPayloads() throws {
        try withSamples("network_payloads.py") { dir, _ in
            let options = try ProbeTests.options()
            let manifest = try ProbeTests.manifest("\(dir)/manifest.json")
            #expect(manifest.count == 4)
            for sample in manifest {
                let file = sample["file"] as! String, marker = sample["marker"] as! String
                let report = Prober.probe(file: "\(dir)/\(file)", options: options)
                #expect(report.verdict == .malicious, "\(file): \(report.findings.map(\.message))")
                let finding = ProbeTests.dynamicEvidence(report, rule: "dynamic.network", phase: "load", file)
                let detonation = try #require(report.detonation, "\(file)")
                if sample["dns"] as? Bool == true {
                    #expect(detonation.dnsQuestions.contains { $0.name.contains(marker) }, "\(file)")
                    #expect(report.text().contains(marker), "\(file)")
                    continue
                }
                let port = sample["port"] as! Int
                let attempt = try #require(
                    detonation.network.first { $0.port == port && ($0.text ?? "").contains(marker) },
                    "\(file): \(detonation.network.map(\.destination))")
                #expect(attempt.phase == "load", "\(file)")
                if let name = sample["name"] as? String { #expect(attempt.name == name, "\(file)") }
                let detail = Dictionary(finding?.evidence.details ?? [], uniquingKeysWith: { a, _ in a })
                #expect(detail["destination"] != nil, "\(file): \(detail)")
                #expect(report.text().contains(attempt.destination), "\(file)")
                if file == "gated_http_post.pkl" {
                    #expect(attempt.httpRequest == "POST /v1/collect HTTP/1.1")
                    #expect(attempt.httpHost == "collector.example.invalid")
                }
                // The report's JSON reads back with the network section intact.
                let json = detonation.json
                #expect(DetonationSummary(json: json)?.network == detonation.network)
            }
        }
    }
}
