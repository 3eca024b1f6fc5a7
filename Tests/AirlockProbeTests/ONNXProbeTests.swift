import AirlockAnalysis
import AirlockFormats
import AirlockSystem
import AirlockTrace
@testable import AirlockProbe
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// ONNX models written by the real onnx (`onnx_models.py --detonation`), detonated with the consumer's onnx and
/// onnxruntime: Debian's onnx 1.12 (no onnxruntime) under the system Python, onnx 1.23 and onnxruntime 1.32 in
/// `.build-deps/onnx`. The model's folder reaches the sandbox as the loader sees it; reads outside it are traced.
/// Standard ONNX operators cannot run code or touch files: inference runs only to be faithful, never as a payload.
@Suite("Probe of ONNX", .serialized)
struct ONNXProbeTests {
    /// A honey credential inside the sandbox's world: reading it is a `dynamic.secrets` refusal.
    static let secret = "/root/.aws/credentials"
    static let venv = "\(repositoryRoot)/.build-deps/onnx"

    /// The detonation models, written by `python`'s onnx.
    static func models(python: String) throws -> String {
        let out = NSTemporaryDirectory() + "airlock-onnx-\(UUID().uuidString.prefix(8))"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [
            "\(repositoryRoot)/Tests/Generators/onnx_models.py", out, "--secret", secret, "--detonation",
        ]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TestSupportError("onnx_models.py failed under \(python)") }
        return out
    }

    static func summary(_ report: Report) -> [String] {
        report.findings.map { "\($0.severity) \($0.rule) \($0.message.prefix(160))" }
    }

    static func probe(_ dir: String, _ name: String, _ options: ProbeOptions) throws -> Report {
        let report = Prober.probe(file: "\(dir)/\(name)/model.onnx", options: options)
        _ = try #require(report.detonation, "\(name) was not detonated: \(summary(report))")
        return report
    }

    /// Clean models load clean; an allowed read of the packed external file shows in `load`.
    static func expectClean(_ report: Report, _ name: String) {
        #expect(report.verdict == .clean, "\(name): \(summary(report))")
        #expect(!report.findings.contains { $0.source == .dynamic && $0.severity >= .medium }, "\(summary(report))")
        #expect(report.findings.contains { $0.rule == ONNXDetonation.detonatedRule }, "\(name)")
    }

    @Test("onnx 1.12 (system): clean models load clean; a location climbing out through a folder reads the secret")
    func systemOnnx() throws {
        let dir = try Self.models(python: "/usr/bin/python3")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let options = try RealRuntimeTests.options()
        #expect(options.runtime?.distribution(of: "onnx") != nil, "Debian's python3-onnx is not installed")
        for name in ["clean", "external-inside", "runs", "big"] {
            let report = try Self.probe(dir, name, options)
            Self.expectClean(report, name)
            #expect(
                report.detonation?.runtime?.libraries.contains { $0.module == "onnx" && $0.when == "startup" } == true)
        }
        let inside = try Self.probe(dir, "external-inside", options)
        #expect(
            inside.trace.contains {
                $0.phase == "load" && $0.action == .allowed
                    && $0.args.path?.hasPrefix("/tmp/tmp") == true
                    && $0.args.path?.hasSuffix("/model/model.onnx.data") == true
                    && $0.args.flags?.contains("O_WRONLY") == false
            }, "the loader did not read the packed external file")
        // No onnxruntime here: nothing to run.
        #expect(try Self.probe(dir, "runs", options).detonation?.stdoutTail.contains("loaded NotRun") == true)

        let climb = try Self.probe(dir, "climb", options)
        #expect(climb.verdict == .malicious, "\(Self.summary(climb))")
        #expect(climb.findings.contains { $0.rule == "onnx.external-data-traversal" })
        let read = ProbeTests.dynamicEvidence(climb, rule: "dynamic.secrets", phase: "load", "climb")
        #expect(
            read?.evidence.details.contains { $0.0 == "path" && $0.1 == Self.secret } == true, "\(Self.summary(climb))")

        // onnx 1.12 strips the leading `../`: the read stays in the folder, on a path the secrets rule still names.
        let dotdot = try Self.probe(dir, "dotdot", options)
        #expect(dotdot.verdict == .malicious, "\(Self.summary(dotdot))")
        #expect(dotdot.findings.contains { $0.rule == "dynamic.secrets" }, "\(Self.summary(dotdot))")
    }

    @Test("onnx 1.23 and onnxruntime 1.32 (venv): clean models load and run; climbing locations are refused, said")
    func currentOnnx() throws {
        #expect(
            FileManager.default.isExecutableFile(atPath: "\(Self.venv)/bin/python3"),
            "no \(Self.venv): run `make test-venvs` (make test does)")
        let dir = try Self.models(python: "\(Self.venv)/bin/python3")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let options = try RealRuntimeTests.options(python: Self.venv)
        let runtime = try #require(options.runtime)
        #expect(runtime.distribution(of: "onnxruntime") != nil)
        for name in ["clean", "external-inside", "runs", "big"] {
            let report = try Self.probe(dir, name, options)
            Self.expectClean(report, name)
            let libraries = report.detonation?.runtime?.libraries ?? []
            for lib in ["onnx", "onnxruntime"] {
                #expect(
                    libraries.contains { $0.module == lib && $0.when == "startup" && $0.version != nil },
                    "\(name): \(lib) not reported: \(libraries.map(\.module))")
            }
        }
        // The session ran on zero inputs shaped from the graph (a symbolic batch dimension taken as 1).
        // `big` is read from its descriptor, its bias from the folder all the same.
        for name in ["runs", "big"] {
            let runs = try Self.probe(dir, name, options)
            #expect(runs.detonation?.stdoutTail.contains("loaded InferenceRan") == true, "\(name)")
        }
        for name in ["climb", "dotdot"] {
            let report = try Self.probe(dir, name, options)
            #expect(report.verdict == .malicious, "\(name): \(Self.summary(report))")
            #expect(report.findings.contains { $0.rule == "onnx.external-data-traversal" && $0.severity == .critical })
            // The real loader refused the location: the refusal is reported, not hidden.
            #expect(
                report.findings.contains {
                    $0.source == .dynamic && $0.message.contains("ValidationError")
                } || report.findings.contains { $0.rule == "dynamic.secrets" }, "\(name): \(Self.summary(report))")
        }
    }

    @Test("a folder probed whole: each ONNX model detonated with its own folder's external files")
    func folderProbe() throws {
        let dir = try Self.models(python: "/usr/bin/python3")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var reports: [String: Report] = [:]
        Prober.probe(paths: [dir], options: try RealRuntimeTests.options()) { reports[$0.target.path] = $0 }
        let inside = try #require(reports["\(dir)/external-inside/model.onnx"])
        #expect(inside.detonation != nil)
        Self.expectClean(inside, "external-inside in a folder")
        let note = inside.findings.first { $0.rule == ONNXDetonation.detonatedRule }
        #expect(note?.evidence.details.contains { $0.0 == "packed" && $0.1 == "1" } == true)
        let climb = try #require(reports["\(dir)/climb/model.onnx"])
        #expect(climb.verdict == .malicious)
        #expect(climb.findings.contains { $0.rule == "dynamic.secrets" }, "\(Self.summary(climb))")
    }

    @Test("a model with external data handed as a descriptor alone (airlockd's single file) is answered statically")
    func withoutFolder() throws {
        let dir = try Self.models(python: "/usr/bin/python3")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let options = try RealRuntimeTests.options()
        for (name, detonated) in [("external-inside", false), ("clean", true)] {
            let fd = open("\(dir)/\(name)/model.onnx", O_RDONLY)
            #expect(fd >= 0)
            defer { close(fd) }
            let report = Prober.probe(fd: fd, path: "\(name)/model.onnx", options: options)
            #expect((report.detonation != nil) == detonated, "\(name): \(Self.summary(report))")
            #expect(report.verdict == .clean, "\(name): \(Self.summary(report))")
            #expect(report.findings.contains { $0.rule == "probe.static-only" } == !detonated, "\(name)")
        }
    }

    @Test("the pack takes files inside the folder by descriptor; links out, climbs and absolutes are left out")
    func pack() throws {
        let dir = NSTemporaryDirectory() + "airlock-onnx-pack-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
        fm.createFile(atPath: dir + "/a.bin", contents: Data([1, 2, 3, 4]))
        fm.createFile(atPath: dir + "/sub/b.bin", contents: Data([5, 6]))
        fm.createFile(atPath: dir + "/model.onnx", contents: Data([0]))
        try fm.createSymbolicLink(atPath: dir + "/out.bin", withDestinationPath: "/etc/hostname")
        try fm.createSymbolicLink(atPath: dir + "/in.bin", withDestinationPath: "a.bin")
        fm.createFile(atPath: dir + "/shared.bin", contents: Data([9]))
        #expect(link(dir + "/shared.bin", dir + "/shared-too.bin") == 0)
        let locations = [
            "a.bin", "./sub/b.bin", "out.bin", "in.bin", "../x", "/etc/hostname", "sub/../../y", "missing.bin",
            "model.onnx", "a.bin", "shared.bin",
        ]
        let refs = locations.map { ONNXExternalReference(tensor: "t", location: $0, offset: nil, length: nil, at: 0) }
        let dirfd = open(dir, O_RDONLY | O_DIRECTORY)
        #expect(dirfd >= 0)
        defer { close(dirfd) }
        let pack = try ONNXFolderPack.read(
            refs, folder: ModelFolder(dirfd: dirfd, components: [], name: Array("model.onnx".utf8)))
        defer { pack.memory?.close() }
        #expect(pack.files.map(\.name) == ["a.bin", "sub/b.bin", "in.bin"])
        #expect(pack.files.map(\.size) == [4, 2, 4])
        #expect(pack.folders == ["sub"])
        #expect(pack.left.map(\.name) == ["shared.bin"])
        let memory = try #require(pack.memory)
        var st = stat()
        #expect(fstat(memory.rawValue, &st) == 0)
        let header = ONNXFolderPack.magic.count + ("sub/".utf8.count + 10)
        #expect(Int(st.st_size) == header + (2 + 5 + 8 + 4) + (2 + 9 + 8 + 2) + (2 + 6 + 8 + 4))
    }

    @Test("the model's name in the sandbox is its own only when plain")
    func modelNames() {
        #expect(ONNXDetonation.modelName(Array("resnet-50.onnx".utf8)) == "resnet-50.onnx")
        for odd in ["../x.onnx", ".hidden", "-flag", "a b.onnx", "é.onnx", "", String(repeating: "a", count: 200)] {
            #expect(ONNXDetonation.modelName(Array(odd.utf8)) == "model.onnx", "\(odd)")
        }
    }
}
