import AirlockAnalysis
import AirlockFormats
import AirlockJSON
import AirlockTrace
import Testing

/// The trace's data as JSON and back (AirlockTrace): a report read from airlockd carries the same typed trace and
/// detonation as the one made locally, and writes the same JSON again. The real detonations' reports are read back in
/// `ProbeTests.reportRoundTrip`; here every field and every case is set.
@Suite struct TraceJSONTests {
    /// Every rule the trace can name.
    static let rules: [TraceRule?] = [
        .launch, .phase, .phaseRegression, .phaseUnknown, .undecided, .unknownSyscall, .notifyDefault,
        .refused(index: 0), .refused(index: 17), .notify("exec"), .notify("write-outside-tmp"), nil,
    ]

    /// Arguments with every field set, control bytes and non-ASCII text included.
    static var fullArguments: TraceArguments {
        var a = TraceArguments()
        a.path = "/tmp/a\u{1}b"
        a.path2 = "/tmp/ü"
        a.resolved = "/tmp/real"
        a.resolved2 = "/tmp/real2"
        a.continued = true
        a.dirfd = -100
        a.flags = "O_WRONLY|O_CREAT"
        a.mode = "0644"
        a.argv = ["sh", "-c", "\"quoted\""]
        a.argvTruncated = false
        a.family = "inet6"
        a.socketType = "stream"
        a.address = "::1"
        a.port = 443
        a.fd = 3
        a.target = -1
        a.signal = "SIGKILL"
        a.raw = ["0x1", "0xffffffffffffffff"]
        a.unreadable = "changed while read"
        a.truncated = ["path", "argv"]
        return a
    }

    static var trace: [TraceEvent] {
        rules.enumerated().map { i, rule in
            TraceEvent(
                seq: i + 1, timeNs: UInt64(i) * 1_234_567 + (i == 0 ? UInt64(Int64.max) : 0), pid: Int32(i),
                hostPid: Int32.max - Int32(i), syscall: "openat",
                action: i % 3 == 0 ? .allowed : i % 3 == 1 ? .denied : .killed,
                errno: i % 3 == 0 ? nil : "EACCES", rule: rule, phase: i % 2 == 0 ? "load" : nil,
                args: i % 4 == 0 ? TraceArguments() : fullArguments,
                performed: i % 5 == 0 ? .returned(-17) : i % 5 == 1 ? .failed("EXDEV") : nil)
        }
    }

    static func report(cgroup: SandboxCgroupStatus, observation: ObservationReport?) -> Report {
        let target = ReportTarget(path: "/models/m.pt", size: 12, sha256: "ab", format: "pytorch-zip")
        var evidence = Evidence(details: [("phase", "load")])
        evidence.seq = [2, 3]
        let finding = Finding(
            rule: "dynamic.exec", severity: .critical, source: .dynamic, message: "ran sh",
            evidence: evidence)
        var report = Report(target: target, findings: [finding], trace: trace, timings: [("staticMs", 1.5)])
        report.detonation = DetonationSummary(
            argv: ["python3", "-I"], outcome: "timeout", phaseReached: "probe", leftBehind: "a process",
            observation: observation,
            exitCode: nil, signal: "SIGKILL", timedOut: true, durationMs: 2001.125, stdoutTail: "out\n", stderrTail: "",
            traceDropped: 4, traceDroppedBytes: 900,
            limitsHit: [
                ResourceLimitHit(resource: .memory, limit: 1 << 32, detail: "memory"),
                ResourceLimitHit(resource: .pids, limit: 64, detail: "pids"),
            ],
            cgroup: cgroup, traceOmitted: 3)
        return report
    }

    @Test(
        "a synthetic report with every field set reads back typed and writes the same JSON",
        arguments: [
            (
                SandboxCgroupStatus.applied(
                    CgroupUsage(
                        hierarchy: "memory v1, pids v2", memoryLimitBytes: 1 << 32, pidsLimit: 64,
                        memoryPeakBytes: 123_456,
                        memoryLimitReached: 2, oomKills: 1, pidsLimitReached: 0, removed: true,
                        paths: ["/sys/fs/cgroup/x"])),
                ObservationReport(
                    endAnnouncedNs: 1_234_567, workEndedNs: 1_234_999,
                    left: [
                        LeftBehind(kind: .process, pid: 7, name: "sleep", timeNs: 5_000_001),
                        LeftBehind(kind: .timer, pid: 2, name: "SIGALRM handler", timeNs: 999_999_999_999),
                    ], leftDropped: 3, windowExpired: true, firedSignals: ["SIGALRM"]) as ObservationReport?
            ),
            (
                .applied(
                    CgroupUsage(
                        hierarchy: "v2", memoryLimitBytes: 1, pidsLimit: 2, memoryPeakBytes: nil,
                        memoryLimitReached: 0, oomKills: 0, pidsLimitReached: 5, removed: false)),
                ObservationReport()
            ),
            (.unavailable("not delegated"), nil),
        ])
    func syntheticRoundTrip(cgroup: SandboxCgroupStatus, observation: ObservationReport?) throws {
        let report = Self.report(cgroup: cgroup, observation: observation)
        let text = report.json.serialized()
        let parsed = try JSON.parse(Array(text.utf8))
        let back = try #require(Report(json: parsed))
        #expect(back.json.serialized() == text)
        #expect(back.trace == report.trace)
        #expect(back.trace.map(\.rule) == Self.rules)
        // Times come back to the microsecond the JSON keeps.
        #expect(back.detonation?.observation?.json == observation?.json)
        #expect(back.detonation?.observation?.left.map(\.name) == observation?.left.map(\.name))
        #expect(back.detonation?.limitsHit == report.detonation?.limitsHit)
        if case .applied(var usage) = cgroup {
            usage.paths = []  // not in the JSON
            #expect(back.detonation?.cgroup == .applied(usage))
        } else {
            #expect(back.detonation?.cgroup == cgroup)
        }
    }

    @Test("every trace rule reads back from the text the trace writes")
    func ruleText() {
        for case let rule? in Self.rules {
            #expect(TraceRule(rule.description) == rule, "\(rule)")
        }
        #expect(TraceRule.reservedIDs.allSatisfy(TraceRule.isReserved))
        #expect(TraceRule.isReserved("syscalls[3]") && TraceRule.isReserved("syscalls[03]"))
        #expect(!TraceRule.isReserved("exec") && !TraceRule.isReserved("syscalls"))
    }

    @Test("a trace the sandbox could not have written is refused, naming the field")
    func strict() throws {
        let event = Self.trace[1].json
        guard case .object(let members) = event else { throw TraceFormatError("not an object") }
        let cases: [(JSON, String)] = [
            (.object(members + [("extra", .bool(true))]), "trace[0].extra"),
            (.object(members.filter { $0.0 != "seq" }), "trace[0].seq"),
            (.object(members.map { $0.0 == "action" ? ($0.0, .string("maybe")) : $0 }), "trace[0].action"),
            (.object(members.map { $0.0 == "pid" ? ($0.0, .int(Int64(Int32.max) + 1)) : $0 }), "trace[0].pid"),
            (
                .object(members.map { $0.0 == "args" ? ($0.0, .object([("port", .string("443"))])) : $0 }),
                "trace[0].args.port"
            ),
            (
                .object(
                    members.map {
                        $0.0 == "performed" ? ($0.0, .object([("returned", .int(1)), ("errno", .string("EIO"))])) : $0
                    }), "trace[0].performed"
            ),
        ]
        for (value, field) in cases {
            #expect(throws: TraceFormatError.self) { _ = try TraceEvent(json: value, path: "trace[0]") }
            do throws(TraceFormatError) {
                _ = try TraceEvent(json: value, path: "trace[0]")
            } catch {
                #expect(error.message.contains("field \(field)"), "\(error.message)")
            }
        }
        // A report whose trace or detonation is not one is not read at all.
        var report = Self.report(cgroup: .unavailable("x"), observation: nil).json
        guard case .object(var top) = report else { return }
        top = top.map { $0.0 == "trace" ? ($0.0, .array([.object(members + [("extra", .null)])])) : $0 }
        report = .object(top)
        #expect(Report(json: report) == nil)
        #expect(throws: TraceFormatError.self) {
            _ = try SandboxCgroupStatus(json: .object([("applied", .bool(true))]))
        }
        #expect(throws: TraceFormatError.self) {
            _ = try ObservationReport(json: ObservationReport().json.replacing("leftDropped", with: "left"))
        }
    }
}

extension JSON {
    /// The object with member `key` renamed to `new` (for malformed variants).
    fileprivate func replacing(_ key: String, with new: String) -> JSON {
        guard case .object(let members) = self else { return self }
        return .object(members.map { ($0.0 == key ? new : $0.0, $0.1) })
    }
}
