import AirlockAnalysis
import AirlockFormats
@testable import AirlockProbe
import Foundation
import Testing
import AirlockTestSupport

/// GGUF chat templates detonated: the harness reads the template from the model's own bytes inside the sandbox and
/// renders it with the system's Jinja2 (python3-jinja2), in Jinja's sandbox as transformers does and then
/// unsandboxed as llama-cpp-python did (CVE-2024-34359). Payloads are harmless: `touch` of the test's canary and a
/// connection to the test's loopback listener (Tests/Generators/templates.py).
@Suite("Chat template detonation", .serialized)
struct TemplateProbeTests {
    @Test("a template that runs a command or connects is malicious by its behaviour; a public template is clean")
    func detonate() throws {
        let bait = try Bait()
        let dir = try generateSamples("templates.py", bait.args + ["--only", "probe"])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let options = try RealRuntimeTests.options()
        for (name, rule) in [("touch", "dynamic.exec"), ("connect", "dynamic.network")] {
            let report = Prober.probe(file: "\(dir)/probe/\(name).gguf", options: options)
            #expect(report.verdict == .malicious, "\(name): \(report.findings.map(\.rule))")
            let f = ProbeTests.dynamicEvidence(report, rule: rule, phase: "load", name)
            if rule == "dynamic.exec" {
                #expect(f?.evidence.args?.joined(separator: " ").contains(bait.canary) == true)
            }
            let sandbox = report.findings.first { $0.rule == "probe.template-sandbox" }
            #expect(sandbox?.evidence.details.contains { $0 == ("sandbox", "refused") } == true, "\(name)")
            #expect(report.detonation?.runtime?.libraries.contains { $0.module == "jinja2" } == true)
        }
        let benign = Prober.probe(file: "\(dir)/probe/benign.gguf", options: options)
        #expect(benign.verdict == .clean, "\(benign.findings.map { "\($0.rule) \($0.message)" })")
        #expect(benign.detonation != nil, "a GGUF with a chat template is detonated")
        let sandbox = benign.findings.first { $0.rule == "probe.template-sandbox" }
        #expect(sandbox?.evidence.details.contains { $0 == ("sandbox", "accepted") } == true)
        try bait.checkUntouched()
    }

    @Test("a GGUF without a chat template is not detonated")
    func staticOnly() throws {
        let dir = try generateSamples("models.py", [])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let report = Prober.probe(file: "\(dir)/model.gguf", options: try RealRuntimeTests.options())
        #expect(report.detonation == nil)
        #expect(report.findings.contains { $0.rule == "probe.static-only" })
    }

    @Test("template reports of scan and probe validate against docs/report.schema.json")
    func schema() throws {
        let bait = try Bait()
        let dir = try generateSamples("templates.py", bait.args)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let scan = try runCLI(["scan", "--format", "json", dir])
        let probe = try runCLI(
            ["probe", "--format", "json", "\(dir)/probe/touch.gguf", "\(dir)/probe/benign.gguf"], timeout: 120)
        #expect(probe.stdout.split(separator: "\n").count == 2, "\(probe.stderr)")
        try scan.stdout.write(toFile: "\(dir)/scan.jsonl", atomically: true, encoding: .utf8)
        try probe.stdout.write(toFile: "\(dir)/probe.jsonl", atomically: true, encoding: .utf8)
        let validation = try SchemaValidation.python([
            "-c", SchemaValidation.validator, "\(repositoryRoot)/docs/report.schema.json", "\(dir)/scan.jsonl",
            "\(dir)/probe.jsonl",
        ])
        #expect(validation.status == 0, "\(validation.output)")
        try bait.checkUntouched()
    }
}
