import Foundation
import Testing
import AirlockTestSupport

/// The intake policy's `python`: a runtime name through airlockd, an interpreter's path when probing here.
@Suite("Intake: the policy's Python runtime", .serialized)
struct IntakeRuntimeTests {
    /// (name, interpreter) of every detonation in the report released with `name`.
    static func runtimes(_ setup: IntakeTests.Setup, _ side: String, _ name: String) throws -> [String] {
        let reports = try setup.report(side, name)["reports"] as? [[String: Any]] ?? []
        return reports.compactMap { report in
            guard let runtime = (report["detonation"] as? [String: Any])?["runtime"] as? [String: Any] else {
                return nil
            }
            return "\(runtime["name"] as? String ?? "-") \(runtime["interpreter"] as? String ?? "-")"
        }
    }

    @Test("through airlockd the policy names the runtime; here it gives the interpreter's path")
    func chosenRuntime() throws {
        let venv = try makeVenv()
        defer { try? FileManager.default.removeItem(atPath: venv) }
        let daemon = try TestDaemon(["--python", "venv=\(venv)"])
        defer { daemon.stop() }

        let remote = try IntakeTests.Setup(policy: #"{"settleSeconds": 0, "python": "venv"}"#)
        try remote.drop("benign.pt")
        let run = try runToEnd(
            airlockBinary,
            ["intake", "--root", remote.root, "--policy", remote.policy, "--once", "--socket", daemon.socket])
        #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
        #expect(try IntakeRuntimeTests.runtimes(remote, "approved", "benign.pt") == ["venv \(venv)/bin/python3"])

        let local = try IntakeTests.Setup(policy: #"{"settleSeconds": 0, "python": "\#(venv)"}"#)
        try local.drop("benign.pt")
        let here = try local.once()
        #expect(here.status == 0, "\(here.stdout) \(here.stderr)")
        // Probed here: no daemon's name, the venv's interpreter.
        #expect(try IntakeRuntimeTests.runtimes(local, "approved", "benign.pt") == ["- \(venv)/bin/python3"])
    }

    @Test("a python of the wrong kind for the backend, a bad value, an unknown name: exit 2 naming it")
    func policyErrors() throws {
        let daemon = try TestDaemon(["--python", "torch=/usr/bin/python3"])
        defer { daemon.stop() }
        let setup = try IntakeTests.Setup()
        try setup.drop("benign.pt")
        let viaDaemon = ["--socket", daemon.socket]
        let cases: [(String, [String], String)] = [
            (#""Torch!""#, [], "field python: expected the name of one of airlockd's runtimes"),
            (#""venv/bin/python""#, [], "field python: expected the name of one of airlockd's runtimes"),
            ("3", [], "field python: expected a string"),
            (#""torch""#, [], "the policy's python torch is the name of an airlockd runtime, but no socket is named"),
            (
                #""/usr/bin/python3""#, viaDaemon,
                "the policy's python /usr/bin/python3 is a path, but the intake probes"
            ),
            (#""numpy""#, viaDaemon, "airlockd at \(daemon.socket) has no runtime of that name (it has system, torch)"),
            (#""/nonexistent/python3""#, [], "cannot prepare detonations: --python /nonexistent/python3"),
        ]
        for (value, extra, message) in cases {
            try #"{"settleSeconds": 0, "python": \#(value)}"#.write(
                toFile: setup.policy, atomically: true, encoding: .utf8)
            let run = try runToEnd(
                airlockBinary, ["intake", "--root", setup.root, "--policy", setup.policy, "--once"] + extra)
            #expect(run.status == 2 && run.stderr.contains(message), "\(value) \(extra): \(run.status) \(run.stderr)")
            #expect(setup.places()["benign.pt"] == ["incoming"], "\(value): the model was taken")
        }
    }
}
