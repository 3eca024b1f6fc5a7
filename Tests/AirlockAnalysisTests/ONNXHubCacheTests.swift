@testable import AirlockAnalysis
import Foundation
import Testing
import AirlockTestSupport

/// ONNX models with external data inside a Hugging Face cache: every file of a snapshot is a link to a blob, so the
/// external data a model names are links too, which the cache walk follows and judges. They must not read as links
/// leading out of the model's folder, and a missing one must still be said.
@Suite("ONNX external data in a Hugging Face cache")
struct ONNXHubCacheTests {
    static let revision = String(repeating: "ab", count: 20)

    /// Lays the files of `folder` out as huggingface_hub does: each in `blobs/<sha256>`, linked from
    /// `snapshots/<revision>/<its path>`; returns the repository folder.
    static func cache(from folder: String, into root: String) throws -> String {
        let fm = FileManager.default
        let repo = root + "/models--acme--onnx"
        let snapshot = repo + "/snapshots/\(revision)"
        try fm.createDirectory(atPath: repo + "/blobs", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: repo + "/refs", withIntermediateDirectories: true)
        try revision.write(toFile: repo + "/refs/main", atomically: true, encoding: .utf8)
        for case let relative as String in fm.enumerator(atPath: folder)! {
            var isDirectory: ObjCBool = false
            _ = fm.fileExists(atPath: folder + "/" + relative, isDirectory: &isDirectory)
            if isDirectory.boolValue { continue }
            let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + relative))
            let blob = StaticScanner.scan(file: folder + "/" + relative).target.sha256!
            try data.write(to: URL(fileURLWithPath: repo + "/blobs/" + blob))
            let depth = relative.split(separator: "/").count - 1
            let link = snapshot + "/" + relative
            try fm.createDirectory(
                atPath: (link as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try fm.createSymbolicLink(
                atPath: link, withDestinationPath: String(repeating: "../", count: depth + 2) + "blobs/" + blob)
        }
        return repo
    }

    @Test("external data in the snapshot: clean as in a plain folder; a missing file is still said", .serialized)
    func externalDataInSnapshot() throws {
        let (dir, expectations) = try ONNXTorchScriptScanTests.generate("onnx_models.py", python: "/usr/bin/python3")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["external-inside", "external-subfolder", "external-missing"] {
            let e = try #require(expectations.first { $0.folder == name })
            let root = dir + "/hub-\(name)"
            let repo = try Self.cache(from: "\(dir)/\(name)", into: root)
            let snapshot = repo + "/snapshots/\(Self.revision)"
            // From the hub, the repository and the snapshot itself: the same answer.
            for start in [root, repo, snapshot] {
                let reports = ONNXTorchScriptScanTests.reports([start])
                let r = try #require(reports[snapshot + "/model.onnx"], "\(name) from \(start): \(reports.keys)")
                #expect(r.target.huggingface?.verified == true)
                #expect(r.verdict.rawValue == e.verdict, "\(name) from \(start): \(r.findings.map(\.rule))")
                #expect(!r.findings.contains { $0.rule == "onnx.external-data-symlink" }, "\(name) from \(start)")
                if let rule = e.rule { #expect(r.findings.contains { $0.rule == rule }, "\(name): \(r.findings)") }
            }
        }
    }

    @Test("an ONNX model that is also a valid safetensors file is read both ways, whatever its name")
    func safetensorsPolyglot() throws {
        let dir = NSTemporaryDirectory() + "airlock-polyglot-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["\(repositoryRoot)/Tests/Generators/onnx_polyglots.py", dir]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        for name in ["polyglot.onnx", "polyglot.safetensors"] {
            let r = StaticScanner.scan(file: dir + "/" + name)
            #expect(r.verdict == .malicious, "\(name): \(r.target.format) \(r.findings.map(\.rule))")
            #expect(r.findings.contains { $0.rule == "format.polyglot" }, "\(name)")
            #expect(r.findings.contains { $0.rule == "onnx.external-data-traversal" }, "\(name)")
        }
    }
}
