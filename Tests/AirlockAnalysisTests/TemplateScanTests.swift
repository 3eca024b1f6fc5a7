@testable import AirlockAnalysis
import AirlockFormats
import Foundation
import Testing

/// Chat templates where loaders find them (GGUF metadata, `tokenizer_config.json` as a string or a list,
/// `chat_template.json`, `chat_template.jinja`): public templates are clean, namespace escapes malicious, names the
/// analyser cannot evaluate suspicious (Tests/Generators/templates.py).
@Suite("Chat template scan")
struct TemplateScanTests {
    @Test("every generated template file gets its expected verdict and rule")
    func generated() throws {
        let dir = try generate("templates")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let expectations = try JSONDecoder().decode(
            [ScanTests.Expectation].self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/expectations.json")))
        var reports: [String: Report] = [:]
        StaticScanner.scan(paths: [dir]) { reports[String($0.target.path.dropFirst(dir.count + 1))] = $0 }
        #expect(expectations.count >= 200)
        #expect(expectations.filter { $0.verdict == "clean" }.count >= 70, "the public templates in five forms")
        for e in expectations {
            let r = try #require(reports[e.path], "\(e.path) was not scanned")
            let rules = Set(r.findings.map(\.rule))
            #expect(r.verdict.rawValue == e.verdict, "\(e.path): \(r.findings.map { "\($0.rule) \($0.message)" })")
            for rule in e.rules { #expect(rules.contains(rule), "\(e.path) lacks \(rule): \(rules.sorted())") }
        }
    }

    @Test("a GGUF template's findings point into the file, at the template's bytes")
    func ggufOffsets() throws {
        let dir = try generate("templates")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/gguf/hostile_cycler_globals.gguf"
        let r = StaticScanner.scan(file: path)
        let f = try #require(r.findings.first { $0.rule == "template.sandbox-escape" })
        let offset = try #require(f.evidence.offset)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let name = try #require(f.evidence.details.first { $0.0 == "name" }?.1)
        #expect(f.evidence.details.contains { $0 == ("key", "tokenizer.chat_template") })
        #expect(bytes[offset..<(offset + name.utf8.count)].elementsEqual(name.utf8), "offset \(offset) names \(name)")
        #expect(r.chatTemplate)
    }

    @Test("a JSON file with no chat template, and a template-free GGUF, have no template findings")
    func absent() throws {
        let dir = NSTemporaryDirectory() + "airlock-notemplate-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(#"{"bos_token": "__globals__", "model_max_length": 10}"#.utf8).write(
            to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
        let r = StaticScanner.scan(file: dir + "/tokenizer_config.json")
        #expect(r.findings.isEmpty && r.verdict == .clean, "\(r.findings.map(\.rule))")
        try Data(#"{"chat_template": 7}"#.utf8).write(to: URL(fileURLWithPath: dir + "/chat_template.json"))
        #expect(StaticScanner.scan(file: dir + "/chat_template.json").findings.map(\.rule) == ["template.malformed"])
    }

    @Test("a key spelled with escapes or written twice does not hide a template from the analysis")
    func jsonSpellings() throws {
        let dir = NSTemporaryDirectory() + "airlock-spelling-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let escaped = #"{"\u0063hat_template": "{{ cycler.__init__.__globals__ }}"}"#
        try Data(escaped.utf8).write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
        let r = StaticScanner.scan(file: dir + "/tokenizer_config.json")
        #expect(r.verdict == .malicious, "\(r.findings.map(\.rule))")
        let twice = #"{"chat_template": "{{ x }}", "chat_template": "{{ cycler.__init__.__globals__ }}"}"#
        try Data(twice.utf8).write(to: URL(fileURLWithPath: dir + "/chat_template.json"))
        let d = StaticScanner.scan(file: dir + "/chat_template.json")
        #expect(d.verdict == .malicious, "the last key wins, as in Python: \(d.findings.map(\.rule))")
        let nan = #"{"note": NaN, "big": -Infinity, "chat_template": "{{ cycler.__init__.__globals__ }}"}"#
        try Data(nan.utf8).write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
        let n = StaticScanner.scan(file: dir + "/tokenizer_config.json")
        #expect(n.verdict == .malicious, "NaN does not hide the template: \(n.findings.map(\.rule))")
    }
}
