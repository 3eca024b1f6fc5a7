import AirlockAnalysis
import AirlockFormats
import AirlockJSON
@testable import AirlockProbe
@testable import AirlockSandbox
import AirlockTrace
import AirlockSystem
import Foundation
import Testing
import AirlockTestSupport
import CSandbox

/// `airlock probe` end to end: every generated sample detonated in the sandbox, with the verdict, the dynamic
/// evidence and its phase checked, and each payload's host side effect (the canary file, the loopback listener)
/// proven absent.
@Suite("Probe: detonation and verdicts", .serialized)
struct ProbeTests {

    static func options(timeout: Double = 20, probePhase: Bool = true) throws -> ProbeOptions {
        let profile = try defaultProfile()
        return ProbeOptions(
            profile: profile, program: try SeccompProgram(profile: profile),
            policy: try VerdictPolicy.load("\(repositoryRoot)/Profiles/policy.json", for: profile),
            harnessDirectory: "\(repositoryRoot)/Profiles/harness", timeoutSeconds: timeout, probePhase: probePhase
        )
    }

    static func manifest(_ path: String) throws -> [[String: Any]] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [[String: Any]]
    }

    /// The dynamic finding `rule`, checked to point at denied events of `phase` in the report's own trace.
    @discardableResult
    static func dynamicEvidence(_ report: Report, rule: String, phase: String?, _ name: String) -> Finding? {
        guard let f = report.findings.first(where: { $0.rule == rule && $0.source == .dynamic }) else {
            Issue.record("\(name): no \(rule) finding; findings: \(report.findings.map { "\($0.rule) \($0.message)" })")
            return nil
        }
        let detail = Dictionary(f.evidence.details, uniquingKeysWith: { a, _ in a })
        if let phase { #expect(detail["phase"] == phase, "\(name): \(rule) in phase \(detail["phase"] ?? "?")") }
        // Behaviour findings name their events; findings about how the run ended name the last event seen.
        #expect(f.evidence.seq?.isEmpty == false || detail["lastSeq"] != nil, "\(name): \(rule) names no trace event")
        if let seqs = f.evidence.seq {
            let traced = Set(report.trace.map(\.seq))
            for s in seqs {
                #expect(traced.contains(s), "\(name): evidence seq \(s) is not in the trace")
            }
        }
        return f
    }

    @Test("the pickle corpus: every malicious sample malicious, with dynamic evidence where its payload runs at load")
    func pickleCorpus() throws {
        try withSamples("pickles.py") { dir, _ in
            let options = try ProbeTests.options()
            let kinds = ["exec": "dynamic.exec", "write": "dynamic.write-outside-tmp", "network": "dynamic.network"]
            var detonated = 0
            for sample in try ProbeTests.manifest("\(dir)/manifest.json") {
                let file = sample["file"] as! String, name = sample["name"] as! String
                let report = Prober.probe(file: "\(dir)/\(file)", options: options)
                if sample["benign"] as? Bool == true || name == "legacy_torch" {
                    #expect(report.verdict == .clean, "\(name): \(report.findings.map(\.message))")
                    continue
                }
                if name == "ext_codes" {
                    // Unregistered extension codes: pickle.load fails before anything runs; static analysis decides.
                    #expect(report.verdict == .suspicious, "\(report.findings.map(\.message))")
                    continue
                }
                #expect(report.verdict == .malicious, "\(name): \(report.verdict) \(report.findings.map(\.message))")
                if let kind = sample["detonates"] as? String {
                    ProbeTests.dynamicEvidence(report, rule: kinds[kind]!, phase: "load", name)
                    detonated += 1
                }
            }
            #expect(detonated >= 30)
        }
    }

    @Test("whole model files: the scan's verdict, and dynamic evidence for every malicious pickle-based model")
    func modelFiles() throws {
        try withSamples("models.py") { dir, _ in
            let options = try ProbeTests.options()
            let detonating: Set<String> = ["pickle", "joblib", "pytorch-zip", "pytorch-legacy", "numpy", "npz"]
            var reports: [String: Report] = [:]
            Prober.probe(paths: [dir], options: options) {
                reports[String($0.target.path.dropFirst(dir.count + 1))] = $0
            }
            for e in try ProbeTests.manifest("\(dir)/expectations.json") {
                let path = e["path"] as! String, verdict = e["verdict"] as! String
                let report = try #require(reports[path], "\(path) was not reported")
                #expect(
                    report.verdict.rawValue == verdict, "\(path): \(report.findings.map { "\($0.rule) \($0.message)" })"
                )
                if path == "duplicate.pt" {
                    // Two records named data.pkl: torch.load's reader (miniz) takes record 0, the benign one, and so
                    // does the harness; the payload in the other one is the static analysis's to report.
                    #expect(!report.findings.contains { $0.rule == "dynamic.exec" })
                    #expect(report.findings.contains { $0.rule == "zip.duplicate-name" })
                } else if verdict == "malicious" && detonating.contains(report.target.format) {
                    ProbeTests.dynamicEvidence(report, rule: "dynamic.exec", phase: "load", path)
                }
                if !detonating.contains(report.target.format)
                    || (report.target.format.hasPrefix("n") && verdict == "clean")
                {
                    // A repository's config carries the repository's own detonation (RemoteCodeTests), not its own.
                    let repository = report.detonation?.argv.contains(HarnessFormat.hfRemoteCode.rawValue) == true
                    #expect(
                        report.trace.isEmpty || repository,
                        "\(path): \(report.target.format) should be answered statically")
                    #expect(report.findings.contains { $0.rule == "probe.static-only" }, "\(path)")
                }
            }
        }
    }

    @Test("gadgets, hidden payloads, an attack on PID 1, bombs and realistic benign checkpoints")
    func detonations() throws {
        try withSamples("detonations.py") { dir, _ in
            let timeout = 4.0
            let options = try ProbeTests.options(timeout: timeout)
            for e in try ProbeTests.manifest("\(dir)/expectations.json") {
                let file = e["file"] as! String
                let started = Date()
                let report = Prober.probe(file: "\(dir)/\(file)", options: options)
                let elapsed = Date().timeIntervalSince(started)
                #expect(elapsed < timeout + 3, "\(file) took \(elapsed) s with a \(timeout) s deadline")
                let expected = Verdict(rawValue: e["verdict"] as! String)!
                if e["atLeast"] as? Bool == true {
                    #expect(
                        report.verdict >= expected && report.verdict != .error,
                        "\(file): \(report.verdict) \(report.findings.map(\.message))")
                } else {
                    #expect(report.verdict == expected, "\(file): \(report.verdict) \(report.findings.map(\.message))")
                }
                if let rule = e["dynamic"] as? String {
                    ProbeTests.dynamicEvidence(report, rule: rule, phase: e["phase"] as? String, file)
                }
                for rule in e["alsoDynamic"] as? [String] ?? [] {
                    #expect(
                        report.findings.contains { $0.rule == rule && $0.source == .dynamic }, "\(file): no \(rule)")
                }
                if e["observed"] as? Bool == true {
                    // What was left running is the supervisor's own finding, whatever the harness printed.
                    let left = report.findings.first { $0.rule == "dynamic.left-behind" }
                    let by = left.flatMap { f in f.evidence.details.first { $0.0 == "observedBy" }?.1 }
                    #expect(by == "supervisor", "\(file): left-behind observed by \(by ?? "nobody")")
                }
                if expected == .clean {
                    #expect(
                        report.findings.allSatisfy { $0.source != .dynamic },
                        "\(file): \(report.findings.map(\.message))")
                    #expect(report.timings.contains { $0.0 == "probeMs" }, "\(file): the probe phase ran")
                }
            }
            // The attack on PID 1 and the bombs left the supervisor able to go on.
            let after = Prober.probe(file: "\(dir)/resnetish.pt", options: options)
            #expect(after.verdict == .clean)
        }
    }

    @Test("--no-probe-phase: a payload that only runs when the model is called is then left to the static analysis")
    func noProbePhase() throws {
        try withSamples("detonations.py") { dir, _ in
            let report = Prober.probe(
                file: "\(dir)/callable_payload.pkl", options: try ProbeTests.options(probePhase: false))
            #expect(!report.findings.contains { $0.source == .dynamic })
            #expect(report.verdict == .malicious, "os.system is on the denylist")
            #expect(!report.timings.contains { $0.0 == "probeMs" })
        }
    }

    @Test("a payload that floods the trace first still leaves its refusal in it")
    func traceFlood() throws {
        let bait = try Bait()
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // protocol 0: builtins.exec(<opens of an allowed file, more than the trace keeps, then a write>)
        let code = "[open('/etc/hostname').close() for i in range(10500)]; open('\(bait.canary)', 'w')"
        let pickle = "cbuiltins\nexec\n(V\(code)\ntR."
        _ = FileManager.default.createFile(atPath: "\(dir)/flood.pkl", contents: Data(pickle.utf8))
        let report = Prober.probe(file: "\(dir)/flood.pkl", options: try ProbeTests.options())
        ProbeTests.dynamicEvidence(report, rule: "dynamic.write-outside-tmp", phase: "load", "flood.pkl")
        #expect(report.findings.contains { $0.rule == "dynamic.trace-truncated" })
        try bait.checkUntouched()
    }

    @Test(
        "the model reaches the sandbox as a descriptor it cannot write through, even with every notified call allowed",
        arguments: [(0o666, 2, false), (0o644, 2, false), (0o644, 65 << 20, false), (0o640, 65 << 20, true)])
    func passedDescriptorIsReadOnly(mode: Int, size: Int, acl: Bool) throws {
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/model.pkl"
        _ = FileManager.default.createFile(atPath: path, contents: Data("N.".utf8))
        chmod(path, mode_t(mode))
        truncate(path, off_t(size))  // past ModelSeal.sealedCopyLimit: a read-only reopen of the file itself
        if acl {
            // An access ACL granting the sandbox's host user (65534) read and write, mask rw: the mode bits (0640)
            // hide it. Binary form of system.posix_acl_access: version 2, then (tag u16, perm u16, id u32) entries.
            var bytes: [UInt8] = [2, 0, 0, 0]
            for (tag, perm, id) in [
                (1, 6, UInt32.max), (2, 6, 65534), (4, 4, UInt32.max), (0x10, 6, UInt32.max), (0x20, 0, UInt32.max),
            ] {
                bytes += [UInt8(tag & 0xff), UInt8(tag >> 8), UInt8(perm), 0]
                bytes += withUnsafeBytes(of: UInt32(id).littleEndian, Array.init)
            }
            let set = airlock_setxattr(path, "system.posix_acl_access", bytes, bytes.count, 0, 1)
            #expect(set == 0, "this host's \(dir) keeps no POSIX ACLs (setxattr: errno \(errno)): the case cannot run")
        }
        let fd = open(path, O_RDWR | O_CLOEXEC)  // the caller's own descriptor may be writable
        defer { close(fd) }
        let permissive = try editedProfile { object in
            editSection(&object) { $0["notify"] = [] }
        }
        let passed = try ModelSeal.passableDescriptor(FileDescriptor(fd), profile: permissive)
        defer { passed.close() }
        let n = Sandbox.firstPassedFD
        let script = """
            import os
            print("read", open(\(n), "rb", closefd=False).read(2))
            for how in ("write", "reopen", "truncate"):
                try:
                    if how == "write":
                        os.write(\(n), b"X")
                    elif how == "reopen":
                        os.write(os.open("/proc/self/fd/\(n)", os.O_RDWR), b"X")
                    else:
                        os.ftruncate(\(n), 0)
                    print(how, "worked")
                except OSError as e:
                    print(how, "refused", e.errno)
            """
        let result = try Sandbox.run(
            SandboxRequest(
                argv: ["python3", "-I", "-S", "-c", script], profile: permissive,
                timeoutSeconds: 20, passedFDs: [passed]))
        let out = String(decoding: result.stdout, as: UTF8.self)
        #expect(out.contains("read b'N.'"), "\(out) \(String(decoding: result.stderr, as: UTF8.self))")
        #expect(!out.contains("worked"), "\(out)")
        let after = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(after.count == size && after.prefix(2) == Data("N.".utf8), "the host file changed")
    }

    @Test("a report read back from its JSON (as a daemon's client reads it) writes the same JSON")
    func reportRoundTrip() throws {
        try withSamples("models.py") { dir, _ in
            var reports: [Report] = []
            Prober.probe(paths: [dir], options: try ProbeTests.options()) { reports.append($0) }
            reports.append(Prober.probe(file: "\(dir)/missing.pt", options: try ProbeTests.options()))
            #expect(reports.count > 20)
            #expect(reports.contains { !$0.trace.isEmpty && $0.detonation?.observation != nil })
            for report in reports {
                let again = try #require(Report(json: report.json), "\(report.target.path)")
                #expect(again.json == report.json, "\(report.target.path)")
                #expect(
                    again.trace.map(\.seq) == report.trace.map(\.seq)
                        && again.trace.map(\.rule) == report.trace.map(\.rule))
                #expect(again.verdict == report.verdict)
            }
        }
    }

    @Test("a FIFO or a device is refused at once, never waited on")
    func notRegular() throws {
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(mkfifo("\(dir)/model.pkl", 0o666) == 0)
        let options = try ProbeTests.options()
        for path in ["\(dir)/model.pkl", "/dev/zero"] {
            let probed = Prober.probe(file: path, options: options)
            #expect(probed.verdict == .error && probed.error?.message.contains("not a regular file") == true, "\(path)")
            #expect(StaticScanner.scan(file: path).verdict == .error)
        }
    }

    @Test("the verdict policy: errors name the field")
    func policyErrors() throws {
        let good = try String(contentsOfFile: "\(repositoryRoot)/Profiles/policy.json", encoding: .utf8)
        let cases: [(String, String)] = [
            (good.replacingOccurrences(of: "\"version\": 1", with: "\"version\": 2"), "field version"),
            (
                good.replacingOccurrences(
                    of: "\"severity\": \"critical\",\n      \"message\": \"started a program\"",
                    with: "\"severity\": \"fatal\",\n      \"message\": \"started a program\""), "behaviour[0].severity"
            ),
            (good.replacingOccurrences(of: "\"timeout\": {", with: "\"timeouts\": {"), "outcomes.timeouts"),
            // Behaviour after the loader returned is the model's: a policy cannot file it under start-up.
            (
                good.replacingOccurrences(of: "[\"load\", \"probe\", \"end\"]", with: "[\"load\", \"probe\"]"),
                "field modelPhases"
            ),
            (
                good.replacingOccurrences(of: "\"observationSeconds\": 2", with: "\"observationSeconds\": 600"),
                "field observationSeconds"
            ),
            (
                good.replacingOccurrences(of: "\"observationSeconds\": 2", with: "\"observationSeconds\": 0"),
                "field observationSeconds"
            ),
            ("{", "not valid JSON"),
        ]
        for (text, field) in cases {
            do {
                _ = try VerdictPolicy(json: Array(text.utf8), name: "test")
                Issue.record("accepted a policy that should fail at \(field)")
            } catch {
                #expect(error.message.contains(field), "\(error.message)")
            }
        }
    }

    @Test("airlock probe: exit codes 0, 1, 2 and JSON Lines with trace and timings")
    func cli() throws {
        try withSamples("models.py") { dir, _ in
            #expect(try runCLI(["probe", "\(dir)/benign.pt", "\(dir)/model.safetensors"]).status == 0)
            let evil = try runCLI(["probe", "\(dir)/evil.pt"])
            #expect(evil.status == 1)
            #expect(
                evil.stdout.contains("MALICIOUS") && evil.stdout.contains("dynamic.exec")
                    && evil.stdout.contains("[load]"), "\(evil.stdout)")
            #expect(try runCLI(["probe", "\(dir)/missing.pt"]).status == 2)
            let json = try runCLI(["probe", "--format", "json", "\(dir)/evil.pt", "\(dir)/model.safetensors"])
            let lines = json.stdout.split(separator: "\n")
            #expect(lines.count == 2)
            let first = try JSON.parse(Array(lines[0].utf8))
            guard case .object(let m) = first else {
                Issue.record("not an object")
                return
            }
            let keys = m.map(\.0)
            #expect(
                keys.starts(with: ["schemaVersion", "target", "verdict", "findings", "trace", "timings"]), "\(keys)")
            let timings = m.first { $0.0 == "timings" }?.1
            for key in ["staticMs", "detonationMs", "sandboxSetupMs", "startupMs", "loadMs", "verdictMs"] {
                guard case .object(let t)? = timings, t.contains(where: { $0.0 == key }) else {
                    Issue.record("timings lack \(key)")
                    continue
                }
            }
            // Through a daemon the profile and policy are the daemon's: asking for others is an error, not ignored.
            let chosen = try runCLI(["probe", "--socket", "\(dir)/no.sock", "--profile", "other", "\(dir)/evil.pt"])
            #expect(chosen.status == 2 && chosen.stderr.contains("the daemon's to choose"), "\(chosen.stderr)")
            let unreachable = try runCLI(["--socket", "\(dir)/no.sock", "probe", "\(dir)/evil.pt"])
            #expect(unreachable.status == 2 && unreachable.stderr.contains("cannot connect"), "\(unreachable.stderr)")
            let sarif = try runCLI(["probe", "--format", "sarif", "\(dir)/evil.pt"])
            #expect(sarif.status == 1 && sarif.stdout.contains("dynamic.exec"))
            // A policy that does not fit the profile is refused before anything runs, naming the rule id.
            let policy = try String(contentsOfFile: "\(repositoryRoot)/Profiles/policy.json", encoding: .utf8)
                .replacingOccurrences(of: "\"rule\": \"network\"", with: "\"rule\": \"net\"")
            try policy.write(toFile: "\(dir)/renamed-policy.json", atomically: true, encoding: .utf8)
            let misfit = try runCLI(["probe", "--policy", "\(dir)/renamed-policy.json", "\(dir)/evil.pt"])
            #expect(misfit.status == 2 && misfit.stderr.contains("'net'") && misfit.stdout.isEmpty, "\(misfit.stderr)")
        }
    }
}
