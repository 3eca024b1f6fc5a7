import AirlockAnalysis
import AirlockFormats
@testable import AirlockProbe
import AirlockSandbox
import AirlockTrace
import Foundation
import Testing
import AirlockTestSupport

/// `airlock probe --python`: models made by the real libraries (Debian's python3-torch, -sklearn, -joblib, -pandas,
/// -numpy, installed by `make deps`), detonated with the consumer's real stack. These need those packages: without
/// them the generator fails and so does the test, saying which import failed.
@Suite("Probe with the consumer's real Python", .serialized)
struct RealRuntimeTests {
    static func options(python: String? = nil, timeout: Double = 60, probePhase: Bool = true) throws -> ProbeOptions {
        let profile = try defaultProfile()
        let program = try SeccompProgram(profile: profile)
        let harness = "\(repositoryRoot)/Profiles/harness"
        let runtime = try PythonRuntime.resolve(python, profile: profile, program: program, harnessDirectory: harness)
        return ProbeOptions(
            profile: profile, program: program,
            policy: try VerdictPolicy.load("\(repositoryRoot)/Profiles/policy.json", for: profile),
            harnessDirectory: harness, timeoutSeconds: timeout, probePhase: probePhase, runtime: runtime)
    }

    @Test("the system's Python is found and described from inside the sandbox")
    func systemRuntime() throws {
        let runtime = try #require(try Self.options().runtime)
        #expect(runtime.interpreter == PythonRuntime.systemInterpreter)
        #expect(runtime.version.hasPrefix("3."))
        #expect(runtime.implementation == "cpython")
        for module in ["torch", "numpy", "sklearn", "joblib", "pandas"] {
            #expect(
                runtime.distribution(of: module) != nil, "make deps installs the Debian package providing \(module)")
        }
        #expect(runtime.mounts.isEmpty, "the system's Python lives in /usr, which the profile already shows")
        // Through the merged-/usr link: the root's bin and lib are the profile's links, never mounted over.
        let viaRoot = try #require(try Self.options(python: "/bin/python3").runtime)
        #expect(viaRoot.mounts.isEmpty, "\(viaRoot.mounts.map(\.destination))")
    }

    @Test("real models: benign ones clean with their unknown imports observed harmless, trojans malicious by behaviour")
    func realModels() throws {
        try withSamples("real_models.py") { dir, _ in
            let options = try Self.options()
            let expectations = try ProbeTests.manifest("\(dir)/expectations.json")
            #expect(expectations.count >= 11)
            for e in expectations {
                let name = e["file"] as! String
                let report = Prober.probe(file: "\(dir)/\(name)", options: options)
                let summary = report.findings.map { "\($0.rule) \($0.severity) \($0.message.prefix(160))" }
                #expect(report.verdict.rawValue == e["verdict"] as! String, "\(name): \(report.verdict) \(summary)")
                let detonation = try #require(report.detonation, "\(name) was not detonated")
                let runtime = try #require(detonation.runtime, "\(name): no runtime in the report")
                #expect(runtime.interpreter == PythonRuntime.systemInterpreter)
                #expect(runtime.standIns.isEmpty, "\(name): stand-ins \(runtime.standIns)")
                if let rule = e["dynamic"] as? String {
                    ProbeTests.dynamicEvidence(report, rule: rule, phase: nil, name)
                }
                if e["resolved"] as? Bool == true {
                    let unknown = report.findings.filter { $0.rule == "pickle.unknown-import" }
                    #expect(!unknown.isEmpty, "\(name): the static analysis names its library's classes")
                    for f in unknown {
                        #expect(f.severity == .info, "\(name): \(f.message)")
                        #expect(f.evidence.details.contains { $0.0 == "resolvedBy" && $0.1 == "detonation" })
                    }
                }
                if let accepted = e["weightsOnlyAccepted"] as? Bool {
                    #expect(runtime.weightsOnlyAccepted == accepted, "\(name): \(runtime.weightsOnly ?? "nil")")
                }
                if let library = e["library"] as? String {
                    let entry = runtime.libraries.first { $0.module == library }
                    #expect(entry?.version != nil, "\(name): \(library) not among \(runtime.libraries.map(\.module))")
                    #expect(entry?.when == "startup", "\(name): \(library) must be imported before the model")
                }
                // The runtime's start-up is counted, not listed: only its launch and refusals are in the trace.
                #expect(detonation.startupAllowed > 20, "\(name): \(detonation.startupAllowed)")
                let listed = report.trace.filter {
                    $0.phase == "startup" && $0.action == .allowed && $0.rule != .launch
                }
                #expect(listed.isEmpty, "\(name): \(listed.count) allowed start-up calls listed")
                if e["verdict"] as? String == "clean" {
                    #expect(detonation.outcome == "loaded", "\(name): \(detonation.outcome) \(detonation.stderrTail)")
                    #expect(detonation.phaseReached == "end")
                }
            }
        }
    }

    @Test("the payload an estimator keeps for predict() fires in the probe phase, when the consumer calls it")
    func probePhaseCall() throws {
        try withSamples("real_models.py") { dir, _ in
            let report = Prober.probe(file: "\(dir)/late_predict.pkl", options: try Self.options())
            ProbeTests.dynamicEvidence(report, rule: "dynamic.exec", phase: "probe", "late_predict.pkl")
        }
    }

    /// A virtual environment under /home (where the secrets rule looks) with a library of its own, installed as a
    /// distribution, that a pickle imports at load.
    static func makeHomeVenv() throws -> (root: String, venv: String) {
        let root = "/home/airlock-test-\(getpid())-\(UUID().uuidString.prefix(6))"
        let venv = "\(root)/venv"
        let made = try runProgram(
            "/usr/bin/python3", ["-m", "venv", "--system-site-packages", "--without-pip", venv])
        guard made.status == 0 else { throw TestSupportError("python3 -m venv failed: \(made.stderr)") }
        let probe = try runProgram(
            "\(venv)/bin/python3", ["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
        let site = probe.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard site.hasPrefix(venv) else {
            throw TestSupportError("venv site-packages: \(probe.stdout) \(probe.stderr)")
        }
        try """
        class Scaler:
            n_features_in_ = 4
            def __init__(self, factor=2.0):
                self.factor = factor
            def predict(self, X):
                return [sum(row) * self.factor for row in X]
        """.write(toFile: "\(site)/airlock_fixture_lib.py", atomically: true, encoding: .utf8)
        let info = "\(site)/airlock_fixture_lib-1.0.dist-info"
        try FileManager.default.createDirectory(atPath: info, withIntermediateDirectories: true)
        try "Metadata-Version: 2.1\nName: airlock-fixture-lib\nVersion: 1.0\n".write(
            toFile: "\(info)/METADATA", atomically: true, encoding: .utf8)
        try "airlock_fixture_lib\n".write(toFile: "\(info)/top_level.txt", atomically: true, encoding: .utf8)
        return (root, venv)
    }

    @Test("a virtual environment under /home: mounted read-only, its own library read at load is not a secret")
    func homeVenv() throws {
        let (root, venv) = try Self.makeHomeVenv()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let made = try runProgram(
            "\(venv)/bin/python3",
            ["-c", "import pickle, airlock_fixture_lib as m; pickle.dump(m.Scaler(3.0), open('\(dir)/s.pkl', 'wb'))"])
        #expect(made.status == 0, "\(made.stderr)")
        for requested in [venv, "\(venv)/bin/python3", "\(venv)/bin/python"] {
            let options = try Self.options(python: requested)
            let runtime = try #require(options.runtime)
            #expect(runtime.interpreter.hasPrefix(venv), "\(runtime.interpreter)")
            #expect(runtime.prefix == venv)
            #expect(runtime.distribution(of: "airlock_fixture_lib")?.version == "1.0")
            #expect(
                runtime.mounts.allSatisfy { $0.destination.hasPrefix(venv) }, "\(runtime.mounts.map(\.destination))")
            let report = Prober.probe(file: "\(dir)/s.pkl", options: options)
            let summary = report.findings.map { "\($0.rule) \($0.severity) \($0.message.prefix(200))" }
            #expect(report.verdict == .clean, "\(summary)")
            #expect(!report.findings.contains { $0.rule == "dynamic.secrets" }, "\(summary)")
            let library = report.detonation?.runtime?.libraries.first { $0.module == "airlock_fixture_lib" }
            #expect(library?.when == "load" && library?.version == "1.0")
        }
    }

    @Test("a payload reading a secret beside the environment is still a secret")
    func secretBesideVenv() throws {
        let (root, venv) = try Self.makeHomeVenv()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Through the environment's own path: `..` leaves the mounted tree, and the path is judged as it resolves.
        let target = "\(venv)/lib/../../.ssh/id_rsa"
        let made = try runProgram(
            "/usr/bin/python3",
            [
                "-c",
                "import pickle, builtins\nclass P:\n def __reduce__(self): return (builtins.open, ('\(target)',))\n"
                    + "pickle.dump(P(), open('\(dir)/s.pkl', 'wb'))",
            ])
        #expect(made.status == 0, "\(made.stderr)")
        let report = Prober.probe(file: "\(dir)/s.pkl", options: try Self.options(python: venv))
        ProbeTests.dynamicEvidence(report, rule: "dynamic.secrets", phase: "load", "secret beside the venv")
        #expect(report.verdict == .malicious)
    }

    @Test("a model printing the harness's weights-only line does not put it in the report")
    func forgedWeightsOnly() throws {
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let made = try runProgram(
            "/usr/bin/python3",
            [
                "-c",
                "import os, pickle\nclass P:\n def __reduce__(self): return (os.write, (2, b'airlock-harness: weights-only accepted\\n'))\n"
                    + "pickle.dump(P(), open('\(dir)/forge.pkl', 'wb'))",
            ])
        #expect(made.status == 0, "\(made.stderr)")
        let report = Prober.probe(file: "\(dir)/forge.pkl", options: try Self.options())
        let runtime = try #require(report.detonation?.runtime)
        #expect(report.detonation?.stderrTail.contains("weights-only accepted") == true, "the payload did print it")
        #expect(runtime.weightsOnly == nil && runtime.weightsOnlyAccepted == nil, "\(runtime.weightsOnly ?? "nil")")
    }

    @Test("a descriptor limit too low for any sandbox is a clear error, not a set-up crash")
    func lowDescriptorLimit() throws {
        let run = try runProgram("/usr/bin/prlimit", ["--nofile=40:40", airlockBinary, "exec", "--", "/bin/true"])
        #expect(run.status != 0)
        #expect(run.stderr.contains("descriptor limit (40) is below the 128"), "\(run.stderr)")
    }

    @Test("what cannot be a runtime is a clear error and exit 2")
    func errors() throws {
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = "\(dir)/python-shim"
        try "#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        // An old library in a venv of its own (metadata only: the runtime is refused before anything imports it).
        let old = "\(dir)/oldtorch"
        let made = try runProgram("/usr/bin/python3", ["-m", "venv", "--without-pip", old])
        #expect(made.status == 0, "\(made.stderr)")
        let site = try runProgram(
            "\(old)/bin/python3", ["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try FileManager.default.createDirectory(
            atPath: "\(site)/torch-0.4.1.dist-info", withIntermediateDirectories: true)
        try "Metadata-Version: 2.1\nName: torch\nVersion: 0.4.1\n".write(
            toFile: "\(site)/torch-0.4.1.dist-info/METADATA", atomically: true, encoding: .utf8)
        try "torch\n".write(toFile: "\(site)/torch-0.4.1.dist-info/top_level.txt", atomically: true, encoding: .utf8)
        // A venv where the sandbox keeps its own tree (/dev): it cannot be mounted there.
        let shm = "/dev/shm/airlock-test-venv-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: shm) }
        let madeShm = try runProgram("/usr/bin/python3", ["-m", "venv", "--without-pip", shm])
        #expect(madeShm.status == 0, "\(madeShm.stderr)")
        let model = "\(repositoryRoot)/Tests/Fixtures"
        let cases: [(String, String)] = [
            ("\(dir)/nope/bin/python3", "does not exist"),
            ("/etc/passwd", "not an executable program"),
            (script, "is a script"),
            ("/bin/true", "not a Python 3 interpreter"),
            (dir, "not a virtual environment"),
            ("no-such-python-here", "no such program on PATH"),
            (old, "supports torch 1.10 and later"),
            (shm, "cannot be mounted in the sandbox"),
        ]
        for (python, message) in cases {
            let run = try runCLI(["probe", "--python", python, model])
            #expect(run.status == 2, "--python \(python): exit \(run.status) \(run.stderr)")
            #expect(run.stderr.contains(message), "--python \(python): \(run.stderr)")
        }
    }
}
