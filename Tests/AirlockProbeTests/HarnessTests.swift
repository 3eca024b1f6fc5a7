@testable import AirlockProbe
@testable import AirlockSandbox
import AirlockTrace
import Foundation
import Testing
import AirlockTestSupport
import AirlockSystem

/// The loader harness (Profiles/harness/serve.py) detonating generated models in the sandbox: groundwork for
/// `airlock probe`. Malicious loads are refused and attributed to the `load` phase; benign ones load cleanly.
@Suite("Loader harness", .serialized)
struct HarnessTests {
    static func models() throws -> String {
        let out = NSTemporaryDirectory() + "airlock-harness-\(UUID().uuidString.prefix(8))"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["\(repositoryRoot)/Tests/Generators/models.py", out]
        try p.run()
        p.waitUntilExit()
        return out
    }

    /// The prefix of the harness's lines in these runs.
    static let prefix = "[harness-test] "

    func detonate(_ file: String, format: String, in dir: String) throws -> SandboxResult {
        var settings = HarnessSettings.draw()
        settings.linePrefix = HarnessTests.prefix
        let mounts = [
            try MountSpec.readOnlyBind(host: "\(repositoryRoot)/Profiles/harness", sandbox: settings.appDirectory),
            try MountSpec.readOnlyBind(host: "\(dir)/\(file)", sandbox: "/model/\(file)"),
        ]
        let config = try settings.descriptor(arguments: [format, "/model/\(file)"])
        defer { config.close() }
        var request = SandboxRequest(
            argv: ["python3", "-S", settings.entryPoint], profile: try defaultProfile(), timeoutSeconds: 20,
            extraMounts: mounts, phases: ["startup", "load", "probe", "end"], passedFDs: [config])
        request.phaseMarkers = settings.phaseMarkers
        return try Sandbox.run(request)
    }

    @Test(
        "malicious models: the payload's exec is refused during load, with its argv",
        arguments: [
            ("evil.pt", "pytorch-zip"), ("legacy_evil.pt", "pytorch-legacy"), ("evil.joblib", "joblib"),
            ("objects.npy", "numpy"),
        ])
    func malicious(file: String, format: String) throws {
        let dir = try HarnessTests.models()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = try detonate(file, format: format, in: dir)
        let exec = try #require(
            result.trace.first { ($0.syscall == "execve") && $0.action == .denied }, "\(result.err)")
        #expect(exec.phase == "load")
        #expect(
            exec.args.argv?.first.map { ["sh", "id"].contains($0) } == true, "\(String(describing: exec.args.argv))")
        #expect(
            !result.trace.contains { $0.phase == "startup" && $0.action == .denied },
            "the runtime's own start-up is clean")
    }

    @Test(
        "benign models load completely with stand-ins, with nothing refused",
        arguments: [
            ("benign.pt", "pytorch-zip"), ("legacy.pt", "pytorch-legacy"), ("model.joblib", "joblib"),
            ("floats.npy", "numpy"),
        ])
    func benign(file: String, format: String) throws {
        let dir = try HarnessTests.models()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = try detonate(file, format: format, in: dir)
        #expect(result.exitCode == 0, "\(result.err)")
        #expect(result.out.contains("\(HarnessTests.prefix)loaded "))
        let refused = result.trace.filter { $0.action != .allowed && $0.rule != .phase }
        #expect(refused.isEmpty, "\(refused.map { "\($0.syscall) \(TraceText.details($0.args))" })")
        #expect(result.trace.contains { $0.rule == .phase && $0.phase == "load" })
    }
}
