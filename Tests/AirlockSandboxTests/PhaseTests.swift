@testable import AirlockSandbox
import AirlockTrace
import Foundation
import Testing
import AirlockTestSupport

/// Phase announcements: ordered with the notifications, forward only.
@Suite("Phases")
struct PhaseTests {
    @Test("events carry the phase announced before them; phases cannot move back")
    func attribution() throws {
        let code = """
            import os
            def announce(name):
                try:
                    open("\(PhaseMarker.prefix)" + name)
                except OSError:
                    pass
            open("/etc/hostname").read()
            announce("load")
            open("/etc/passwd").read()
            announce("startup")
            open("/etc/group").read()
            announce("probe")
            try:
                open("/etc/shadow")
            except OSError:
                pass
            """
        let result = try Sandbox.run(
            SandboxRequest(
                argv: ["python3", "-c", code], profile: defaultProfile(), phases: ["startup", "load", "probe"]))
        #expect(result.exitCode == 0, "\(result.err)")
        func phase(of path: String) -> String? { result.trace.first { $0.args.path == path }?.phase }
        #expect(result.trace.first?.phase == "startup")
        #expect(phase(of: "/etc/hostname") == "startup")
        #expect(phase(of: "/etc/passwd") == "load")
        #expect(phase(of: "/etc/group") == "load", "a move back to startup is refused")
        #expect(phase(of: "/etc/shadow") == "probe")
        let markers = result.trace.filter { $0.args.path?.hasPrefix(PhaseMarker.prefix) == true }
        #expect(markers.map(\.rule) == [.phase, .phaseRegression, .phase])
        #expect(markers.allSatisfy { $0.action == .denied && $0.errno == "ENOENT" })
    }

    @Test("without phases, nothing is attributed and marker paths are ordinary opens")
    func disabled() throws {
        let result = try runPython("import os\ntry:\n    open('\(PhaseMarker.prefix)load')\nexcept OSError:\n    pass")
        #expect(result.trace.allSatisfy { $0.phase == nil })
        #expect(result.trace.contains { $0.args.path == PhaseMarker.path("load") && $0.rule == .notifyDefault })
    }

    @Test("with the request's own markers only those paths announce; the fixed prefix is an ordinary open")
    func requestMarkers() throws {
        let load = "/usr/share/locale/en/LC_MESSAGES/qzkfjwuexbnhta.mo"
        let code = """
            for path in ("\(PhaseMarker.path("load"))", "/etc/hostname", "\(load)", "/etc/passwd"):
                try:
                    open(path).read()
                except OSError:
                    pass
            """
        var request = SandboxRequest(
            argv: ["python3", "-c", code], profile: try defaultProfile(), phases: ["startup", "load"])
        request.phaseMarkers = [load: "load"]
        let result = try Sandbox.run(request)
        #expect(result.exitCode == 0, "\(result.err)")
        func event(_ path: String) -> TraceEvent? { result.trace.first { $0.args.path == path } }
        #expect(event(PhaseMarker.path("load"))?.rule != .phase, "the old fixed marker announces nothing")
        #expect(event("/etc/hostname")?.phase == "startup")
        #expect(event(load)?.rule == .phase && event(load)?.errno == "ENOENT")
        #expect(event("/etc/passwd")?.phase == "load")
    }
}
