import AirlockAnalysis
import AirlockDaemon
import AirlockFormats
import AirlockJSON
@testable import AirlockSandbox
import AirlockTrace
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 11, class 4: a verdict always comes back, bounded. The trace recorder's budgets (per event and per
/// detonation, counted as JSON), the reply framing, and a model that floods refused program starts with control
/// bytes probed locally and through airlockd.
@Suite("Trace budget: bounded traces, reports and replies")
struct TraceBudgetTests {
    /// 20 arguments of 4000 control bytes: what the flood sample passes to each `execve`.
    static let floodArgv =
        ["sh"] + Array(repeating: String((0..<4000).map { Character(Unicode.Scalar(UInt8(1 + $0 % 31))) }), count: 20)

    static func event(
        _ seq: Int, _ syscall: String = "execve", rule: String = "exec", action: TraceEvent.Action = .denied,
        phase: String = "load", args: TraceArguments = TraceArguments()
    ) -> TraceEvent {
        TraceEvent(
            seq: seq, timeNs: UInt64(seq), pid: 7, hostPid: 7007, syscall: syscall, action: action,
            errno: action == .allowed ? nil : "EACCES", rule: TraceRule(rule), phase: phase, args: args)
    }

    static func floodEvent(_ seq: Int, rule: String = "exec") -> TraceEvent {
        var a = TraceArguments()
        a.path = "/bin/sh"
        a.argv = floodArgv
        return event(seq, rule: rule, args: a)
    }

    // MARK: The recorder

    @Test("an argv of control bytes is cut to its bound as JSON, each kept entry a prefix, and marked")
    func argvBound() {
        var recorder = TraceRecorder(maxEvents: 10, maxBytes: 1 << 20)
        recorder.record(TraceBudgetTests.floodEvent(1))
        let kept = try! #require(recorder.events.first)
        let argv = kept.args.argv ?? []
        #expect(JSON.array(argv.map(JSON.string)).serializedCount <= TraceRecorder.maxArgvBytes)
        #expect(argv.first == "sh")
        #expect(argv.count >= 2 && argv.count < TraceBudgetTests.floodArgv.count)
        for (i, arg) in argv.enumerated() {
            #expect(TraceBudgetTests.floodArgv[i].hasPrefix(arg))
            #expect(JSON.serializedCount(of: arg) <= TraceRecorder.maxArgBytes)
        }
        #expect(kept.args.argvTruncated == true)
        #expect(kept.args.truncated == ["argv"])
        #expect(kept.json.serializedCount < 20_000, "\(kept.json.serializedCount)")
        #expect(kept.json.serialized().contains("\"truncated\":[\"argv\"]"))
    }

    @Test("a path of control bytes or multi-byte characters is cut at a character, within its bound as JSON")
    func pathBound() {
        for unit in ["\u{1}", "é", "\u{FFFD}", "\"", "a"] {
            var a = TraceArguments()
            a.path = "/tmp/" + String(repeating: unit, count: 5000)
            a.path2 = "/short"
            var e = TraceBudgetTests.event(1, "openat", rule: "write-outside-tmp", args: a)
            TraceRecorder.bound(&e.args)
            let path = e.args.path ?? ""
            #expect(JSON.serializedCount(of: path) <= TraceRecorder.maxPathBytes, "\(unit)")
            #expect(a.path!.hasPrefix(path) && path.count > 5, "\(unit)")
            #expect(JSON.serializedCount(of: path) > TraceRecorder.maxPathBytes - 8, "\(unit): cut too short")
            #expect(e.args.path2 == "/short")
            #expect(e.args.truncated == ["path"], "\(unit)")
        }
        // What fits is left alone and unmarked.
        var a = TraceArguments()
        a.path = "/usr/lib/python3/os.py"
        a.argv = ["python3", "-c", "pass"]
        TraceRecorder.bound(&a)
        #expect(a.path == "/usr/lib/python3/os.py" && a.argv == ["python3", "-c", "pass"])
        #expect(a.truncated == nil && a.argvTruncated == nil)
    }

    @Test("the whole trace stays within its byte budget, counted as the report writes it, and what is left is counted")
    func byteBudget() {
        var recorder = TraceRecorder(maxEvents: 100_000, maxBytes: 1 << 20)
        for seq in 1...2_000 { recorder.record(TraceBudgetTests.floodEvent(seq)) }
        let written = recorder.events.reduce(0) { $0 + $1.json.serializedCount }
        #expect(written == recorder.bytes)
        #expect(recorder.bytes <= 1 << 20)
        #expect(recorder.events.count > 10)
        #expect(recorder.events.count + recorder.dropped == 2_000)
        #expect(recorder.droppedBytes >= recorder.dropped * 10_000)
        // The first events are the ones kept.
        #expect(recorder.events.map(\.seq) == Array(1...recorder.events.count))
        // With the bytes spent (and events to spare), a new kind of refusal still gets in, from the reserve.
        let kept = recorder.events.count
        recorder.record(TraceBudgetTests.floodEvent(2_001, rule: "exec-elsewhere"))
        recorder.record(TraceBudgetTests.floodEvent(2_002))
        #expect(recorder.events.count == kept + 1 && recorder.events.last?.seq == 2_001)
        #expect(recorder.bytes <= 1 << 20)
    }

    @Test("past both budgets the first event of each new kind of refusal is still kept, and only the first")
    func kindsKept() {
        var recorder = TraceRecorder(maxEvents: 100, maxBytes: 1 << 20)
        recorder.record(TraceBudgetTests.event(1, rule: "phase", phase: "load"))
        for seq in 2...1_000 { recorder.record(TraceBudgetTests.floodEvent(seq)) }
        // Small allowed calls fill what room is left, in bytes and then in events.
        for seq in 1_001...1_500 {
            recorder.record(TraceBudgetTests.event(seq, "openat", rule: "read", action: .allowed))
        }
        let full = recorder.events.count
        #expect(full == 100)
        #expect(recorder.dropped > 0)
        // A new kind (another rule), and a phase announcement, after the flood spent the ordinary budget.
        recorder.record(TraceBudgetTests.event(2_001, "connect", rule: "network"))
        recorder.record(TraceBudgetTests.event(2_002, "openat", rule: "phase", phase: "probe"))
        recorder.record(TraceBudgetTests.event(2_003, "connect", rule: "network"))
        recorder.record(TraceBudgetTests.floodEvent(2_004, rule: "exec-other"))
        let seqs = recorder.events.map(\.seq)
        #expect(seqs.contains(2_001) && seqs.contains(2_002) && seqs.contains(2_004), "\(seqs.suffix(5))")
        #expect(!seqs.contains(2_003))
        #expect(recorder.events.count == full + 3)
        #expect(recorder.bytes <= 1 << 20)
        // Allowed calls have no kind: past the budget they are dropped.
        recorder.record(TraceBudgetTests.event(2_005, "openat", rule: "read", action: .allowed))
        #expect(recorder.events.last?.seq == 2_004)
    }

    @Test("the event bound still holds for small events, with the reserve for new kinds on top")
    func eventBound() {
        var recorder = TraceRecorder(maxEvents: 50, maxBytes: 1 << 20)
        for seq in 1...500 { recorder.record(TraceBudgetTests.event(seq, "openat", rule: "read", action: .allowed)) }
        #expect(recorder.events.count == 50 && recorder.dropped == 450)
        recorder.record(TraceBudgetTests.event(501))
        #expect(recorder.events.count == 51)
    }

    @Test("JSON's counted size is the size it writes, control bytes and multi-byte characters included")
    func serializedCount() {
        let values: [JSON] = [
            .null, .bool(true), .bool(false), .int(-12), .double(1.5), .string(""),
            .string("a\"b\\c\n\r\t\u{1}\u{7F}é☃𝄞"),
            .array([]), .object([]),
            .array([.int(1), .string("x"), .object([("k\u{2}", .array([.null, .bool(false)]))])]),
            .object([("a", .int(1)), ("b", .string(String(repeating: "\u{1F}", count: 1000)))]),
        ]
        for v in values {
            #expect(v.serializedCount == v.serialized().utf8.count, "\(v.serialized())")
            #expect(v.serializedBytes() == Array(v.serialized().utf8))
        }
    }

    @Test("the size the recorder counts for an event is the size its JSON takes, whatever members it has")
    func eventSize() {
        var full = TraceArguments()
        full.path = "/tmp/\u{1}é\"x"
        full.path2 = "/a\\b"
        full.dirfd = -100
        full.flags = "O_WRONLY|O_CREAT"
        full.mode = "644"
        full.argv = ["sh", "-c", "\u{7F}\n\t"]
        full.argvTruncated = true
        full.family = "inet6"
        full.socketType = "stream"
        full.address = "::1"
        full.port = 65535
        full.fd = 3
        full.target = -1
        full.signal = "SIGKILL"
        full.raw = ["0x1", "0xffffffff"]
        full.unreadable = "path"
        full.truncated = ["path", "argv"]
        full.resolved = "/etc/\u{1}passwd"
        full.resolved2 = "/tmp/b"
        full.continued = true
        let events = [
            TraceBudgetTests.event(1, args: full),
            TraceBudgetTests.event(12_345_678, "openat", rule: "r", action: .allowed),
            TraceEvent(
                seq: 0, timeNs: UInt64.max, pid: -1, hostPid: Int32.max, syscall: "x", action: .killed, errno: nil,
                rule: nil, phase: nil, args: TraceArguments()),
            TraceBudgetTests.floodEvent(3),
            TraceEvent(
                seq: 4, timeNs: 1, pid: 2, hostPid: 3, syscall: "openat", action: .allowed, errno: nil,
                rule: .notifyDefault,
                phase: "load", args: full, performed: .returned(-17)),
            TraceEvent(
                seq: 5, timeNs: 1, pid: 2, hostPid: 3, syscall: "rename", action: .allowed, errno: nil,
                rule: .notifyDefault,
                phase: nil, args: full, performed: .failed("EXDEV")),
        ]
        for e in events {
            #expect(
                TraceRecorder.serializedCount(e) == e.json.serialized().utf8.count, "\(e.json.serialized().prefix(200))"
            )
        }
    }

    // MARK: Framing

    @Test("many small messages in one buffer are split in linear time, and the last partial one kept")
    func readerLinear() throws {
        var bytes: [UInt8] = []
        let one = Wire.frame(.object([("airlock", .int(1)), ("method", .string("status"))]))
        for _ in 0..<100_000 { bytes += one }
        bytes += one.prefix(3)
        var reader = Wire.Reader(maxMessage: 64)
        let started = Date()
        var count = 0
        reader.append(bytes[...])
        while let body = try reader.next() {
            #expect(body.count == one.count - 4)
            count += 1
        }
        #expect(count == 100_000)
        #expect(reader.hasPartial && reader.buffer.count == 3)
        // Shifting the rest after each message (removeFirst) moved 170 GB here; an offset moves nothing.
        #expect(Date().timeIntervalSince(started) < 10)
    }

    @Test(
        "a reply over the protocol's bound becomes an error reply with its id, never a trap or a length clients refuse")
    func frameTooLarge() throws {
        // Over a bound of 1 MiB here (`Wire.maxReply`, 512 MiB, takes minutes to count in a debug build).
        let big = JSON.string(String(repeating: "\u{1}", count: 1 << 16))
        let reply = JSON.object([
            ("airlock", .int(1)), ("id", .int(42)), ("ok", .bool(true)),
            ("reports", .array(Array(repeating: big, count: 4))),
        ])
        #expect(reply.serializedCount > 1 << 20)
        let frame = Wire.frame(reply, limit: 1 << 20)
        #expect(frame.count < 4096)
        let n = Int(frame[0]) << 24 | Int(frame[1]) << 16 | Int(frame[2]) << 8 | Int(frame[3])
        #expect(n == frame.count - 4)
        guard case .object(let m) = try JSON.parse(Array(frame[4...])) else {
            Issue.record("not an object")
            return
        }
        #expect(m.first { $0.0 == "id" }?.1 == .int(42))
        #expect(m.first { $0.0 == "ok" }?.1 == .bool(false))
        guard case .object(let e)? = m.first(where: { $0.0 == "error" })?.1 else {
            Issue.record("no error")
            return
        }
        #expect(e.first { $0.0 == "code" }?.1 == .string("internal"))
        // A reply within the bound is framed as it is.
        let small = JSON.object([("id", .int(1)), ("ok", .bool(true))])
        #expect(Wire.frame(small) == [0, 0, 0, UInt8(small.serialized().utf8.count)] + Array(small.serialized().utf8))
    }

    @Test("an outbox sends a large reply in pieces without shifting it, in order")
    func outboxLinear() {
        var box = Wire.Outbox()
        let reply = (0..<(16 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        box.append(reply)
        var received: [UInt8] = []
        received.reserveCapacity(reply.count)
        let started = Date()
        var round = 0
        while !box.isEmpty {
            round += 1
            // A socket takes a few KiB at a time, sometimes nothing.
            _ = box.send { raw in
                if round % 5 == 0 { return -1 }
                let n = min(raw.count, 4096 + round % 3)
                received.append(contentsOf: raw.prefix(n))
                return n
            }
        }
        #expect(received == reply)
        #expect(Date().timeIntervalSince(started) < 30)
        box.append([1, 2])
        box.append([3])
        #expect(box.count == 3)
    }

    @Test("reports that would not fit a reply lose their traces, largest first, and keep every verdict")
    func reportsFit() {
        func report(_ name: String, events: Int, verdict: Verdict) -> Report {
            let target = ReportTarget(path: name, size: 1, sha256: nil, format: "pickle")
            let finding = Finding(
                rule: "dynamic.exec", severity: verdict == .malicious ? .critical : .info, source: .dynamic,
                message: "x", evidence: Evidence(details: [("phase", "load")]))
            let trace = (1...max(1, events)).map { TraceBudgetTests.floodEvent($0) }
            var r = Report(target: target, findings: [finding], trace: events > 0 ? trace : [])
            r.detonation = DetonationSummary(
                argv: ["python3"], outcome: "loaded", phaseReached: "end", leftBehind: nil, observation: nil,
                exitCode: 0,
                signal: nil, timedOut: false, durationMs: 1, stdoutTail: "", stderrTail: "", traceDropped: 0,
                traceDroppedBytes: 0, limitsHit: [], cgroup: .unavailable("not set up"))
            r.traceLines = ["#1 execve"]
            return r
        }
        var reports = [
            report("a", events: 10, verdict: .malicious), report("b", events: 200, verdict: .clean),
            report("c", events: 1, verdict: .malicious),
        ]
        let before = reports.map(\.replySize).reduce(0, +)
        let limit = before - 1_000_000
        #expect(Report.fit(&reports, within: limit))
        #expect(reports.map(\.replySize).reduce(0, +) + reports.count <= limit)
        #expect(reports.map(\.verdict) == [.malicious, .clean, .malicious])
        #expect(reports[1].trace.isEmpty && !reports[0].trace.isEmpty && !reports[2].trace.isEmpty)
        #expect(reports[1].detonation?.traceOmitted == 200)
        #expect(reports[1].traceLines.first?.contains("left out") == true)
        // Read back as a client does: the mark and the verdict survive.
        let back = Report(json: reports[1].json)
        #expect(back?.verdict == .clean && back?.trace.isEmpty == true && back?.detonation == reports[1].detonation)
        // With no room at all, every trace goes and it says it did not fit; the verdicts stay.
        #expect(!Report.fit(&reports, within: 10))
        #expect(reports.allSatisfy(\.trace.isEmpty) && reports.map(\.verdict) == [.malicious, .clean, .malicious])
    }
}
