import AirlockAnalysis
import AirlockFormats
import Foundation
@testable import AirlockProbe
@testable import AirlockSandbox
import AirlockTrace
import Testing
import AirlockTestSupport

/// The verdict rules on synthetic traces: no root, no sandbox, no detonation. Each policy rule and outcome is checked
/// through `DynamicRules` and `Verdict.decide`, with the shipped policy and profile.
@Suite struct VerdictRulesTests {
    static func policy() throws -> VerdictPolicy {
        try VerdictPolicy.load("\(repositoryRoot)/Profiles/policy.json", for: defaultProfile())
    }

    /// An event refused by `rule` in `phase`.
    static func event(
        _ seq: Int, _ syscall: String, rule: TraceRule, phase: HarnessPhase?, action: TraceEvent.Action = .denied,
        args: TraceArguments = TraceArguments()
    ) -> TraceEvent {
        TraceEvent(
            seq: seq, timeNs: UInt64(seq) * 1000, pid: 2, hostPid: 100, syscall: syscall, action: action,
            errno: action == .allowed ? nil : "EACCES", rule: rule, phase: phase?.rawValue, args: args)
    }

    /// The phase markers and launch of a run that reached `last`, then `events`.
    static func trace(reaching last: HarnessPhase, _ events: [TraceEvent] = []) -> [TraceEvent] {
        var out = [event(1, "execve", rule: .launch, phase: .startup, action: .allowed)]
        for phase in HarnessPhase.allCases.dropFirst() where phase <= last {
            var args = TraceArguments()
            args.path = PhaseMarker.path(phase.rawValue)
            out.append(event(out.count + 1, "openat", rule: .phase, phase: phase, args: args))
        }
        return out
            + events.enumerated().map { i, e in
                var e = e
                e.seq = out.count + i + 1
                return e
            }
    }

    static func detonation(
        _ trace: [TraceEvent], exitCode: Int32? = 0, signal: String? = nil, timedOut: Bool = false,
        stderr: String = "", dropped: Int = 0
    ) -> Detonation {
        var result = SandboxResult(
            exitCode: exitCode, signal: signal, timedOut: timedOut, stdout: [], stdoutDropped: 0,
            stderr: Array(stderr.utf8), stderrDropped: 0, trace: trace, traceDropped: dropped,
            durationNs: 5_000_000)
        result.commandPid = 2
        return Detonation(
            argv: ["python3"], phases: HarnessPhase.sequence(probe: true), result: result, durationMs: 5,
            linePrefix: "[t] ")
    }

    static func staticReport(_ findings: [Finding] = []) -> Report {
        Report(target: ReportTarget(path: "m.pkl", size: 10, sha256: nil, format: "pickle"), findings: findings)
    }

    @Test(
        "a refusal by each of the profile's notify rules in a model phase becomes that rule's finding",
        arguments: [
            ("exec", "dynamic.exec", Severity.critical), ("network", "dynamic.network", .critical),
            ("secrets", "dynamic.secrets", .critical), ("write-outside-tmp", "dynamic.write-outside-tmp", .critical),
            ("modify-outside-tmp", "dynamic.modify-outside-tmp", .critical),
            ("signal-outside", "dynamic.signal-outside", .critical), ("identity", "dynamic.identity", .high),
            ("setid-mode", "dynamic.setid-mode", .critical), ("undecided", "dynamic.refused-syscall", .high),
            ("unknown-syscall", "dynamic.refused-syscall", .high),
            ("phase-regression", "dynamic.phase-forgery", .critical),
            ("phase-unknown", "dynamic.phase-forgery", .high),
        ])
    func behaviour(rule: String, finding: String, severity: Severity) throws {
        let policy = try Self.policy()
        for phase in [HarnessPhase.load, .probe, .end] {
            let refused = Self.event(0, "execve", rule: TraceRule(rule), phase: phase)
            let d = Self.detonation(Self.trace(reaching: .end, [refused]))
            let findings = DynamicRules.findings(d, policy: policy)
            #expect(findings.map(\.rule) == [finding], "\(rule) in \(phase): \(findings.map(\.rule))")
            #expect(findings.first?.severity == severity)
            #expect(findings.first?.evidence.seq == [5])
            #expect(findings.first?.evidence.details.contains { $0 == ("phase", phase.rawValue) } == true)
        }
    }

    @Test("refusals before load are the runtime's: startup-refused, low, and the verdict stays clean")
    func startup() throws {
        let policy = try Self.policy()
        let early = Self.event(2, "execve", rule: .notify("exec"), phase: .startup)
        var trace = Self.trace(reaching: .end)
        trace.insert(early, at: 1)
        let report = Verdict.decide(static: Self.staticReport(), dynamic: Self.detonation(trace), policy: policy)
        #expect(report.findings.map(\.rule) == ["dynamic.startup-refused"])
        #expect(report.verdict == .clean)
    }

    @Test("refused outright: critical for the listed calls, high for others, nothing for ignored ones")
    func refusedOutright() throws {
        let policy = try Self.policy()
        let events = [
            Self.event(0, "ptrace", rule: .refused(index: 3), phase: .load),
            Self.event(0, "personality", rule: .refused(index: 7), phase: .load),
            Self.event(0, "clone3", rule: .refused(index: 9), phase: .load),
        ]
        for (event, severity) in zip(events, [Severity.critical, .high, nil]) {
            let findings = DynamicRules.findings(Self.detonation(Self.trace(reaching: .end, [event])), policy: policy)
            #expect(findings.map(\.severity) == (severity.map { [$0] } ?? []), "\(event.syscall): \(findings)")
            #expect(findings.allSatisfy { $0.rule == "dynamic.refused-syscall" })
        }
        // Ignored calls are ignored in start-up too: runtimes make them on their own.
        let early = Self.event(0, "clone3", rule: .refused(index: 9), phase: .startup)
        #expect(DynamicRules.findings(Self.detonation(Self.trace(reaching: .end, [early])), policy: policy).isEmpty)
    }

    @Test("a refusal by a rule the policy does not name is otherDenied; allowed calls and markers are never findings")
    func otherDenied() throws {
        let policy = try Self.policy()
        let events = [
            Self.event(0, "openat", rule: .notify("custom"), phase: .load),
            Self.event(0, "openat", rule: .notify("exec"), phase: .load, action: .allowed),
        ]
        let findings = DynamicRules.findings(Self.detonation(Self.trace(reaching: .end, events)), policy: policy)
        #expect(findings.map(\.rule) == ["dynamic.denied"])
        #expect(findings.first?.severity == .high)
    }

    @Test("an inet call the emulated network answered (allowed, rule network) is dynamic.network in a model phase only")
    func emulatedNetworkUse() throws {
        let policy = try Self.policy()
        var connect = Self.event(0, "connect", rule: .notify("network"), phase: .load, action: .allowed)
        connect.args.family = "inet"
        connect.args.address = "203.0.113.7"
        connect.args.port = 443
        let inLoad = DynamicRules.findings(Self.detonation(Self.trace(reaching: .end, [connect])), policy: policy)
        #expect(inLoad.map(\.rule) == ["dynamic.network"] && inLoad.first?.severity == .critical)
        var early = connect
        early.phase = HarnessPhase.startup.rawValue
        #expect(DynamicRules.findings(Self.detonation(Self.trace(reaching: .end, [early])), policy: policy).isEmpty)
        var unix = connect
        unix.args.family = "unix"
        #expect(DynamicRules.findings(Self.detonation(Self.trace(reaching: .end, [unix])), policy: policy).isEmpty)
    }

    @Test("refusals of one kind are grouped into one finding listing every seq")
    func grouping() throws {
        let policy = try Self.policy()
        let events = (0..<40).map { _ in Self.event(0, "connect", rule: .notify("network"), phase: .load) }
        let findings = DynamicRules.findings(Self.detonation(Self.trace(reaching: .end, events)), policy: policy)
        #expect(findings.count == 1)
        #expect(findings.first?.evidence.seq?.count == DynamicRules.maxSeqs)
        #expect(findings.first?.evidence.details.contains { $0 == ("events", "40") } == true)
        #expect(findings.first?.message.contains("40 such calls") == true)
    }

    @Test(
        "how the loader ended becomes the outcome's finding",
        arguments: [
            ("timeout", "dynamic.timeout"), ("crashed", "dynamic.crashed"), ("cpu-limit", "dynamic.resource-exhausted"),
            ("early-exit", "dynamic.early-exit"), ("load-error", "dynamic.load-failed"),
            ("resource-exhausted", "dynamic.resource-exhausted"), ("probe-error", "dynamic.probe-failed"),
        ])
    func outcomes(kind: String, finding: String) throws {
        let policy = try Self.policy()
        let d: Detonation
        switch VerdictPolicy.Outcome(rawValue: kind)! {
        case .timeout:
            d = Self.detonation(Self.trace(reaching: .load), exitCode: nil, signal: "SIGKILL", timedOut: true)
        case .crashed: d = Self.detonation(Self.trace(reaching: .load), exitCode: nil, signal: "SIGSEGV")
        case .cpuLimit: d = Self.detonation(Self.trace(reaching: .load), exitCode: nil, signal: "SIGXCPU")
        case .earlyExit: d = Self.detonation(Self.trace(reaching: .load), exitCode: 0)
        case .loadError:
            d = Self.detonation(
                Self.trace(reaching: .load), exitCode: 3, stderr: "[t] load-error ValueError: x\n")
        case .resourceExhausted:
            d = Self.detonation(
                Self.trace(reaching: .load), exitCode: 4,
                stderr: "[t] resource-exhausted MemoryError: \n")
        case .probeError:
            d = Self.detonation(
                Self.trace(reaching: .probe), exitCode: 3, stderr: "[t] probe-error KeyError: k\n")
        default:
            Issue.record("no case for \(kind)")
            return
        }
        #expect(d.outcome.outcome?.rawValue == kind, "\(d.outcome)")
        let findings = DynamicRules.findings(d, policy: policy)
        #expect(findings.map(\.rule) == [finding], "\(findings)")
    }

    @Test("the harness's words never make a report cleaner: a probe-error outside probe is an early exit")
    func probeErrorNeedsProbe() throws {
        let d = Self.detonation(
            Self.trace(reaching: .load), exitCode: 3, stderr: "[t] probe-error KeyError: k\n")
        #expect(d.outcome.outcome == .earlyExit)
    }

    @Test("a clean load is clean; left-behind and a truncated trace add their findings")
    func cleanAndExtras() throws {
        let policy = try Self.policy()
        let clean = Self.detonation(Self.trace(reaching: .end))
        #expect(clean.outcome.outcome == nil && clean.outcome.phase == .end)
        #expect(Verdict.decide(static: Self.staticReport(), dynamic: clean, policy: policy).verdict == .clean)
        let left = Self.detonation(
            Self.trace(reaching: .end), stderr: "[t] left-behind threads=1\n", dropped: 3)
        let findings = DynamicRules.findings(left, policy: policy)
        #expect(findings.map(\.rule) == ["dynamic.left-behind", "dynamic.trace-truncated"])
        #expect(Verdict.decide(static: Self.staticReport(), dynamic: left, policy: policy).verdict == .suspicious)
    }

    @Test("a loader that stopped before load is an error with the static findings alone")
    func stoppedBeforeModel() throws {
        let policy = try Self.policy()
        let d = Self.detonation(Self.trace(reaching: .startup), exitCode: 1, stderr: "Traceback\n")
        let report = Verdict.decide(static: Self.staticReport(), dynamic: d, policy: policy)
        #expect(report.verdict == .error && report.error?.code == "detonation")
        let flagged = Self.staticReport([
            Finding(rule: "pickle.dangerous-import", severity: .critical, message: "os.system")
        ])
        #expect(Verdict.decide(static: flagged, dynamic: d, policy: policy).verdict == .malicious)
    }

    @Test("static and dynamic findings decide one verdict together")
    func together() throws {
        let policy = try Self.policy()
        let exec = Self.event(0, "execve", rule: .notify("exec"), phase: .load)
        let unknown = Finding(rule: "pickle.unknown-import", severity: .medium, message: "x")
        let report = Verdict.decide(
            static: Self.staticReport([unknown]),
            dynamic: Self.detonation(Self.trace(reaching: .end, [exec])), policy: policy)
        #expect(report.verdict == .malicious)
        #expect(report.findings.map(\.rule) == ["dynamic.exec", "pickle.unknown-import"])
        #expect(report.timings.map(\.0).contains("detonationMs") && report.detonation != nil && report.trace.count == 5)
    }
}

/// The verdict policy checked against the profile it judges: no rule id on one side the other cannot match.
@Suite struct PolicyProfileTests {
    static func policyText() throws -> String {
        try String(contentsOfFile: "\(repositoryRoot)/Profiles/policy.json", encoding: .utf8)
    }

    @Test("the shipped policy fits the shipped profile")
    func shipped() throws {
        let policy = try VerdictPolicy.load("\(repositoryRoot)/Profiles/policy.json", for: defaultProfile())
        #expect(policy.behaviour[.notify("exec")]?.finding == "dynamic.exec")
    }

    @Test("a behaviour rule the profile cannot produce is an error naming it")
    func unknownRule() throws {
        let text = try Self.policyText().replacingOccurrences(of: "\"rule\": \"exec\"", with: "\"rule\": \"execute\"")
        let policy = try VerdictPolicy(json: Array(text.utf8), name: "test")
        let profile = try defaultProfile()
        do throws(PolicyError) {
            try policy.check(against: profile, name: "test")
            Issue.record("accepted a policy naming a rule the profile does not have")
        } catch {
            #expect(error.message.contains("'execute'"), "\(error.message)")
            #expect(error.code == "policy")
        }
    }

    @Test("a notify rule of the profile cannot take an id the supervisor uses: the profile parser names the field")
    func reservedNotifyID() throws {
        for id in ["launch", "default", "phase-regression", "syscalls[3]"] {
            do {
                _ = try editedProfile { json in
                    editSection(&json) { section in
                        var notify = section["notify"] as! [[String: Any]]
                        notify[1]["id"] = id
                        section["notify"] = notify
                    }
                }
                Issue.record("accepted a profile whose notify rule is named \(id)")
            } catch let error as SandboxError {
                #expect(
                    error.kind == .profile && error.message.contains("field airlock.notify[1].id: '\(id)' is reserved"),
                    "\(error.message)")
            }
        }
    }

    @Test("a refusing notify rule of the profile the policy never names is an error naming it")
    func unnamedRule() throws {
        let profile = try editedProfile { json in
            var airlock = json["airlock"] as! [String: Any]
            var notify = airlock["notify"] as! [[String: Any]]
            notify[0]["id"] = "run-program"
            airlock["notify"] = notify
            json["airlock"] = airlock
        }
        let text = try Self.policyText()
        // `exec` renamed on both sides fits.
        let renamed = text.replacingOccurrences(of: "\"rule\": \"exec\"", with: "\"rule\": \"run-program\"")
        try VerdictPolicy(json: Array(renamed.utf8), name: "test").check(against: profile, name: "test")
        // Only in the profile: `run-program` is unnamed (and `exec` no longer produced).
        let policy = try VerdictPolicy(json: Array(text.utf8), name: "test")
        do throws(PolicyError) {
            try policy.check(against: profile, name: "test")
            Issue.record("accepted a policy that leaves run-program unnamed")
        } catch {
            #expect(error.message.contains("'exec'"), "\(error.message)")
        }
        // A second refusing rule the policy never names.
        let extended = try editedProfile { json in
            editSection(&json) { section in
                var notify = section["notify"] as! [[String: Any]]
                var copy = notify[0]
                copy["id"] = "exec-again"
                notify.append(copy)
                section["notify"] = notify
            }
        }
        do throws(PolicyError) {
            try policy.check(against: extended, name: "test")
            Issue.record("accepted a policy that leaves exec-again unnamed")
        } catch {
            #expect(
                error.message.contains("'exec-again'") && error.message.contains("no behaviour entry"),
                "\(error.message)")
        }
    }

    @Test("reserved ids, syscalls[N] and duplicates are refused as behaviour rules")
    func malformedRules() throws {
        let good = try Self.policyText()
        for (id, words) in [
            ("launch", "not a rule that refuses"), ("syscalls[3]", "not a rule that refuses"),
            ("network", "named twice"),
        ] {
            let text = good.replacingOccurrences(of: "\"rule\": \"exec\"", with: "\"rule\": \"\(id)\"")
            #expect(throws: PolicyError.self) { _ = try VerdictPolicy(json: Array(text.utf8), name: "test") }
            do throws(PolicyError) {
                _ = try VerdictPolicy(json: Array(text.utf8), name: "test")
            } catch {
                #expect(error.message.contains("field behaviour[") && error.message.contains(words), "\(error.message)")
            }
        }
        let phases = good.replacingOccurrences(
            of: "[\"load\", \"probe\", \"end\"]", with: "[\"load\", \"prob\", \"end\"]")
        #expect(throws: PolicyError.self) { _ = try VerdictPolicy(json: Array(phases.utf8), name: "test") }
    }
}
