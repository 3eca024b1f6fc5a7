@testable import AirlockAnalysis
import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

/// ONNX models written by the real onnx (Debian's 1.12 and the current one in `.build-deps/onnx`) and TorchScript
/// archives written by the real torch.jit, scanned as a folder and one file at a time.
@Suite("ONNX and TorchScript scans", .serialized)
struct ONNXTorchScriptScanTests {
    /// The consumer environment `make test-venvs` makes: the system's site-packages and the current onnx and
    /// onnxruntime from PyPI.
    static let onnxVenv = "\(repositoryRoot)/.build-deps/onnx"

    struct Expectation: Decodable {
        var folder: String?
        var file: String
        var verdict: String
        var rule: String?
        var onnx: String?
    }

    /// Runs `script` with `python` into a fresh folder; returns it and its expectations.
    static func generate(_ script: String, python: String, _ extra: [String] = []) throws -> (String, [Expectation]) {
        let out = NSTemporaryDirectory() + "airlock-\(script)-\(UUID().uuidString.prefix(8))"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["\(repositoryRoot)/Tests/Generators/\(script)", out] + extra
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TestSupportError("\(script) failed under \(python)") }
        let data = try Data(contentsOf: URL(fileURLWithPath: out + "/expectations.json"))
        return (out, try JSONDecoder().decode([Expectation].self, from: data))
    }

    static func reports(_ paths: [String]) -> [String: Report] {
        var out: [String: Report] = [:]
        StaticScanner.scan(paths: paths) { out[$0.target.path] = $0 }
        return out
    }

    static func check(python: String) throws {
        let (dir, expectations) = try generate("onnx_models.py", python: python)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(expectations.count >= 12)
        let folderScan = reports([dir])
        for e in expectations {
            let path = "\(dir)/\(e.folder!)/\(e.file)"
            // The folder walked, and the model named alone: external data is looked up in its folder either way.
            for report in [folderScan[path], reports([path])[path]] {
                let r = try #require(report, "\(path) not reported")
                #expect(r.target.format == "onnx", "\(path)")
                #expect(
                    r.verdict.rawValue == e.verdict, "\(e.folder!) (onnx \(e.onnx ?? "?")): \(r.findings.map(\.rule))")
                if let rule = e.rule {
                    #expect(r.findings.contains { $0.rule == rule }, "\(e.folder!): \(r.findings.map(\.rule))")
                }
            }
        }
    }

    @Test("Debian's onnx 1.12: every model gets its verdict and the rule that proves it")
    func debianONNX() throws {
        try Self.check(python: "/usr/bin/python3")
    }

    @Test("the current onnx from PyPI (IR 10 and later): the same verdicts")
    func currentONNX() throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: "\(Self.onnxVenv)/bin/python3"),
            "no \(Self.onnxVenv): run `make test-venvs` (make test does)")
        try Self.check(python: "\(Self.onnxVenv)/bin/python3")
    }

    @Test("a symbolic link inside the folder that leads back in is followed, not flagged")
    func linkInside() throws {
        let dir = NSTemporaryDirectory() + "airlock-onnx-link-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/blobs", withIntermediateDirectories: true)
        try Data(count: 8).write(to: URL(fileURLWithPath: dir + "/blobs/real.bin"))
        try FileManager.default.createSymbolicLink(atPath: dir + "/w.data", withDestinationPath: "blobs/real.bin")
        try FileManager.default.createSymbolicLink(
            atPath: dir + "/abs.data", withDestinationPath: dir + "/blobs/real.bin")
        try FileManager.default.createSymbolicLink(atPath: dir + "/up.data", withDestinationPath: "blobs/../../x")
        // The folder reached through a link of the host's own (as a /home that is a link would be).
        let alias = dir + "-alias"
        try FileManager.default.createSymbolicLink(atPath: alias, withDestinationPath: dir)
        defer { try? FileManager.default.removeItem(atPath: alias) }
        try FileManager.default.createSymbolicLink(
            atPath: dir + "/via.data", withDestinationPath: alias + "/blobs/real.bin")
        let refs = [("w.data", 0), ("abs.data", 4), ("up.data", 0), ("blobs", 0), ("nothere", 0), ("via.data", 4)].map {
            ONNXExternalReference(tensor: "t", location: $0.0, offset: Int64($0.1), length: 4, at: 0)
        }
        let fd = open(dir, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        let rules = ONNXExternalFiles.findings(refs, dirfd: fd, folder: []).map {
            ($0.evidence.details.first { $0.0 == "location" }?.1 ?? "") + ":" + $0.rule
        }
        #expect(
            Set(rules) == [
                "up.data:onnx.external-data-symlink", "blobs:onnx.external-data-not-file",
                "nothere:onnx.external-data-missing",
                // via.data and abs.data both read bytes 4..<8 of blobs/real.bin: the same file, reached inside.
                ":onnx.external-data-overlap",
            ], "\(rules)")
    }

    @Test("an ONNX model that is also a ZIP (in an unknown field) or opens like a pickle is analysed both ways")
    func polyglots() throws {
        let dir = NSTemporaryDirectory() + "airlock-onnx-polyglot-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The ZIP holds a pickle that would call os.system; nothing here loads it.
        let script = """
            import io, os, pickle, sys, zipfile
            def varint(v):
                out = b""
                while True:
                    b = v & 0x7F; v >>= 7
                    out += bytes([b | (0x80 if v else 0)])
                    if not v: return out
            def field(n, data): return varint(n << 3 | 2) + varint(len(data)) + data
            node = field(4, b"Relu")
            model = b"\\x08\\x0d" + field(7, field(1, node))
            class P:
                def __reduce__(self): return (os.system, ("true",))
            z = io.BytesIO()
            with zipfile.ZipFile(z, "w") as f: f.writestr("archive/data.pkl", pickle.dumps(P(), protocol=2))
            os.makedirs(sys.argv[1])
            open(sys.argv[1] + "/zip.onnx", "wb").write(model + field(999, z.getvalue()))
            # PROTO 2, BININT1 8, STOP to pickle; field 32 = 0x4B and field 1 = 46 to protobuf.
            open(sys.argv[1] + "/pickle.onnx", "wb").write(b"\\x80\\x02\\x4b\\x08\\x2e" + model)
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", script, dir]
        try p.run()
        p.waitUntilExit()
        try #require(p.terminationStatus == 0)
        let zip = StaticScanner.scan(file: dir + "/zip.onnx")
        #expect(zip.target.format == "onnx")
        #expect(zip.verdict == .malicious, "\(zip.findings.map(\.rule))")
        #expect(zip.findings.contains { $0.rule == "format.polyglot" })
        #expect(zip.findings.contains { $0.evidence.global == "posix.system" || $0.evidence.global == "os.system" })
        let pickle = StaticScanner.scan(file: dir + "/pickle.onnx")
        #expect(pickle.target.format == "onnx")
        #expect(pickle.findings.contains { $0.rule == "format.polyglot" }, "\(pickle.findings.map(\.rule))")
    }

    @Test("TorchScript from the real torch.jit: scripted and traced clean, from_file and custom operators flagged")
    func torchScript() throws {
        let (dir, expectations) = try Self.generate("torchscript_models.py", python: "/usr/bin/python3")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(expectations.count >= 7)
        for e in expectations {
            let path = "\(dir)/\(e.file)"
            let r = StaticScanner.scan(file: path)
            #expect(r.target.format == "pytorch-zip")
            #expect(r.verdict.rawValue == e.verdict, "\(e.file): \(r.findings.map(\.rule))")
            if let rule = e.rule {
                #expect(r.findings.contains { $0.rule == rule }, "\(e.file): \(r.findings.map(\.rule))")
            }
            #expect(r.findings.contains { $0.rule == "torchscript.code" })
        }
    }
}
