@testable import AirlockAnalysis
import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

/// Runs a generator under Tests/Generators into a fresh directory.
func generate(_ script: String) throws -> String {
    var root = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { root.deleteLastPathComponent() }
    let out = NSTemporaryDirectory() + "airlock-\(script)-\(UUID().uuidString.prefix(8))"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    p.arguments = [root.appendingPathComponent("Tests/Generators/\(script).py").path, out]
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw POSIXError(.EIO) }
    return out
}

/// `airlock scan` end to end on generated files: the verdict, the rules that prove it, the format.
@Suite("Static scan", .serialized)
struct ScanTests {
    struct Expectation: Decodable {
        var path: String
        var verdict: String
        var rules: [String]
        var format: String?
    }

    @Test("every generated model file gets its expected verdict and evidence")
    func models() throws {
        let dir = try generate("models")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let expectations = try JSONDecoder().decode(
            [Expectation].self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/expectations.json")))
        var reports: [String: Report] = [:]
        StaticScanner.scan(paths: [dir]) { reports[String($0.target.path.dropFirst(dir.count + 1))] = $0 }
        #expect(expectations.count >= 25)
        for e in expectations {
            let r = try #require(reports[e.path], "\(e.path) was not scanned")
            let rules = Set(r.findings.map(\.rule))
            #expect(r.verdict.rawValue == e.verdict, "\(e.path): \(r.findings.map { "\($0.rule) \($0.message)" })")
            for rule in e.rules { #expect(rules.contains(rule), "\(e.path) lacks \(rule): \(rules.sorted())") }
            if let format = e.format { #expect(r.target.format == format, "\(e.path)") }
            #expect(r.target.sha256?.count == 64)
        }
    }

    @Test("every malicious pickle sample is malicious, every benign one clean")
    func pickleCorpus() throws {
        let dir = try generate("pickles")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".pkl") }.sorted()
        #expect(files.count >= 40)
        var malicious = 0
        for file in files {
            let r = StaticScanner.scan(file: "\(dir)/\(file)")
            let expected: Verdict
            if file.hasPrefix("benign_") || file == "legacy_torch.pkl" {
                expected = .clean
            } else if file == "ext_codes.pkl" {
                expected = .suspicious
            } else {
                expected = .malicious
                malicious += 1
            }
            #expect(r.verdict == expected, "\(file): \(r.findings.map(\.message))")
        }
        #expect(malicious >= 35, "the pickle corpus; models.py adds a dozen more malicious files")
    }

    @Test("truncated and corrupted model files give a verdict or a clear error, never a crash")
    func damaged() throws {
        let dir = try generate("models")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["evil.pt", "objects.npz", "lambda.keras", "legacy_evil.pt", "model.safetensors", "traversal.onnx"]
        {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name)")))
            let path = "\(dir)/damaged-\(name)"
            for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 40)) {
                try Data(bytes[0..<cut]).write(to: URL(fileURLWithPath: path))
                let r = StaticScanner.scan(file: path)
                if r.verdict == .error { #expect(r.error != nil) }
            }
        }
    }

    @Test("compressed streams and unrecognised content under a model's name are not silently clean")
    func unrecognised() throws {
        let dir = NSTemporaryDirectory() + "airlock-unrecognised-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pickle: [UInt8] = [0x80, 0x04, 0x4E, 0x2E]  // protocol 4, None, STOP
        let cases: [(String, [UInt8], String?)] = [
            // Compressed headers over data that does not decompress (a zlib header, as joblib's compress=3 writes).
            ("model.joblib", [0x78, 0x9C] + pickle, "compressed.unreadable"),
            ("model.pkl.gz", [0x1F, 0x8B, 0x08, 0x00] + pickle, "compressed.unreadable"),
            ("model.pt.bz2", Array("BZh91AY&SY".utf8), "compressed.unreadable"),
            ("model.pkl.xz", [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00, 0x00], "compressed.unreadable"),
            ("weights.bin", Array(repeating: 0xA5, count: 64), "format.unrecognised"),
            ("notes.txt", Array("plain text, no model".utf8), nil),
        ]
        for (name, bytes, rule) in cases {
            try Data(bytes).write(to: URL(fileURLWithPath: "\(dir)/\(name)"))
            let r = StaticScanner.scan(file: "\(dir)/\(name)")
            if let rule {
                #expect(
                    r.verdict == .suspicious && r.findings.contains { $0.rule == rule },
                    "\(name): \(r.findings.map(\.rule))")
            } else {
                #expect(r.verdict == .clean, "\(name): \(r.findings.map(\.rule))")
            }
        }
    }

    @Test("a folder with more files than the descriptor limit is walked whole, one open file at a time")
    func manyFiles() throws {
        let dir = NSTemporaryDirectory() + "airlock-many-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: "\(dir)/sub/deeper", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let count = 1200  // more than a default RLIMIT_NOFILE of 1024
        for i in 0..<count {
            let sub = i % 3 == 0 ? "" : (i % 3 == 1 ? "sub/" : "sub/deeper/")
            _ = FileManager.default.createFile(atPath: "\(dir)/\(sub)f\(i).txt", contents: Data("x".utf8))
        }
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/sub/link", withDestinationPath: "/etc")
        var reports: [Report] = []
        StaticScanner.scan(paths: [dir]) { reports.append($0) }
        #expect(reports.count == count + 1)
        #expect(reports.filter { $0.verdict == .error }.isEmpty)
        #expect(
            reports.contains {
                $0.target.path == "\(dir)/sub/link" && $0.findings.contains { $0.rule == "folder.symlink" }
            })
    }

    @Test("a folder nested deeper than the walk goes is an error report, not silently left out")
    func tooDeep() throws {
        let dir = NSTemporaryDirectory() + "airlock-deep-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let levels = FolderWalk.maxDepth + 2
        let deepest = dir + String(repeating: "/d", count: levels)
        try FileManager.default.createDirectory(atPath: deepest, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dir + "/top.txt", contents: Data("x".utf8))
        _ = FileManager.default.createFile(
            atPath: deepest + "/evil.pkl", contents: Data([0x80, 0x04, 0x4B, 0x01, 0x2E]))
        var reports: [Report] = []
        StaticScanner.scan(paths: [dir]) { reports.append($0) }
        let errors = reports.filter { $0.verdict == .error }
        #expect(errors.count == 1, "\(reports.map { ($0.target.path, $0.verdict) })")
        #expect(errors.first?.error?.message.contains("nested deeper than \(FolderWalk.maxDepth) folders") == true)
        #expect(reports.contains { $0.target.path == dir + "/top.txt" })
    }

    @Test("a missing path is an error report, not a crash")
    func missing() {
        var reports: [Report] = []
        StaticScanner.scan(paths: ["/nonexistent/airlock-model.pt"]) { reports.append($0) }
        #expect(reports.count == 1)
        #expect(reports.first?.verdict == .error)
    }
}
