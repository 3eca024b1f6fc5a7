import AirlockAnalysis
import AirlockDaemon
import AirlockJSON
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Back-pressure clients live with (docs/daemon.md, "Lanes" and "Back-pressure"): `busy` retried by the client API
/// and the CLI, the static lane that never waits behind detonations, per-uid queue and connection limits, idle
/// connections closed first.
@Suite("airlockd back-pressure", .serialized)
struct DaemonBackPressureTests {
    /// A plain pickle of plain values: detonated (a pickle always is), quickly.
    static func plainPickle(_ dir: String) throws -> String {
        let model = "\(dir)/weights.pkl"
        let made = try runProgram(
            "/usr/bin/python3", ["-c", "import pickle; pickle.dump({'w': [0.5] * 8}, open('\(model)', 'wb'))"])
        #expect(made.status == 0, "\(made.stderr)")
        return model
    }

    /// A small clean safetensors file: answered by the static analysis alone.
    static func safetensors(_ dir: String) throws -> String {
        let path = "\(dir)/small.safetensors"
        let header = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) }
        bytes += Array(header.utf8) + [UInt8](repeating: 0, count: 8)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Probes `path` through `DaemonBackend`, which retries `busy`; the outcome as the caller of the API sees it.
    /// What one retrying request came to: nil `code` when answered.
    struct Outcome: Sendable, CustomStringConvertible {
        var code: String?
        var message = ""
        var verdicts: [String] = []
        var seconds = 0.0
        var description: String { code.map { "error \($0): \(message)" } ?? "ok \(verdicts) after \(seconds) s" }
    }

    static func probeRetrying(_ socket: String, _ path: String, method: DaemonRequest.Method = .probe) -> Outcome {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return Outcome(code: "open", message: path) }
        defer { close(fd) }
        let start = Date()
        let backend = DaemonBackend(socket: socket, method: method, retry: BusyRetry(seconds: 120))
        var client: DaemonClient? = nil
        do throws(ClientError) {
            let reports = try backend.examine(fd: fd, name: path, with: &client)
            return Outcome(
                code: nil, verdicts: reports.map(\.verdict.rawValue), seconds: Date().timeIntervalSince(start))
        } catch {
            return Outcome(code: error.code, message: error.message, seconds: Date().timeIntervalSince(start))
        }
    }

    static func lane(_ status: [String: Any], _ name: String) -> [String: Any] {
        (status["lanes"] as? [[String: Any]] ?? []).first { $0["name"] as? String == name } ?? [:]
    }

    @Test(
        "a burst of 100 probes on 2 workers and a queue of 64: the daemon says busy, the client API retries, all answered"
    )
    func burstOfProbes() throws {
        try withSamples("models.py") { dir, _ in
            // One world per probe: the queue is what is tested, not the worlds.
            let daemon = try TestDaemon(["--max-concurrent", "2", "--queue", "64"], config: ["worlds": 1])
            defer { daemon.stop() }
            let model = try DaemonBackPressureTests.plainPickle(dir)
            let socket = daemon.socket
            let results = Collector<Outcome>()
            onThreads(100, into: results) { _ in DaemonBackPressureTests.probeRetrying(socket, model) }
            let done = results.wait(count: 100, timeout: 170)
            #expect(done.count == 100, "\(100 - done.count) clients never heard back")
            for outcome in done { #expect(outcome.code == nil && outcome.verdicts == ["clean"], "\(outcome)") }
            let status = try daemonStatus(socket)
            #expect((status["verdicts"] as? [String: Int])?["clean"] == 100, "\(status)")
            // The burst was beyond the queue: the daemon did refuse, and nobody above the client API saw it.
            #expect(((status["refused"] as? [String: Int])?["busy"] ?? 0) > 0, "no busy was ever said: \(status)")
        }
    }

    @Test("150 concurrent scans on a static lane of 1 worker and a queue of 4: every one answered, none busy")
    func burstOfScans() throws {
        let dir = NSTemporaryDirectory() + "airlock-lanes-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try DaemonBackPressureTests.safetensors(dir)
        let daemon = try TestDaemon(config: ["staticWorkers": 1, "staticQueue": 4, "maxConnections": 1024])
        defer { daemon.stop() }
        let socket = daemon.socket
        let results = Collector<Outcome>()
        onThreads(150, into: results) { _ in DaemonBackPressureTests.probeRetrying(socket, model, method: .scan) }
        let done = results.wait(count: 150, timeout: 120)
        #expect(done.count == 150, "\(150 - done.count) clients never heard back")
        for outcome in done { #expect(outcome.code == nil && outcome.verdicts == ["clean"], "\(outcome)") }
        let status = try daemonStatus(socket)
        #expect(((status["refused"] as? [String: Int])?["busy"] ?? 0) > 0, "no busy was ever said: \(status)")
    }

    @Test("the CLI waits out busy: says so once on stderr, and answers the file")
    func cliRetries() throws {
        try withDetonationDaemon(["--max-concurrent", "1", "--queue", "0"], config: ["worlds": 1]) { dir, daemon in
            let socket = daemon.socket
            let model = try DaemonBackPressureTests.plainPickle(dir)
            // The one detonation worker is taken by a model that loops until its deadline.
            let slow = Collector<ProbeOutcome>()
            onThreads(1, into: slow) { _ in probeThroughDaemon(socket, "\(dir)/cpu_loop.pkl", timeout: 3) }
            #expect(
                waitFor(10) {
                    (try? daemonStatus(socket)).map {
                        DaemonBackPressureTests.lane($0, "detonation")["busyWorkers"] as? Int
                    }
                        == 1
                })
            let run = try runCLI(
                ["--socket", socket, "probe", "--timeout", "30", "--format", "json", model], timeout: 60)
            #expect(run.status == 0, "exit \(run.status): \(run.stderr) \(run.stdout)")
            #expect(run.stdout.contains("\"verdict\":\"clean\""), "\(run.stdout)")
            let notices = run.stderr.components(separatedBy: "airlockd is busy").count - 1
            #expect(notices == 1, "stderr: \(run.stderr)")
            #expect(run.stderr.contains("retrying for up to 30 s"), "stderr: \(run.stderr)")
            #expect(slow.wait(count: 1, timeout: 30).first?.code == nil)
        }
    }

    @Test("a static probe is answered while every detonation worker is busy, without waiting for them")
    func staticLane() throws {
        try withDetonationDaemon(["--max-concurrent", "1", "--queue", "4"], config: ["worlds": 1]) { dir, daemon in
            let socket = daemon.socket
            let safetensors = try DaemonBackPressureTests.safetensors(dir)
            let slow = Collector<ProbeOutcome>()
            onThreads(3, into: slow) { _ in probeThroughDaemon(socket, "\(dir)/cpu_loop.pkl", timeout: 20) }
            #expect(
                waitFor(10) {
                    guard let status = try? daemonStatus(socket) else { return false }
                    let lane = DaemonBackPressureTests.lane(status, "detonation")
                    return lane["busyWorkers"] as? Int == 1 && lane["queueDepth"] as? Int == 2
                }, "the detonations did not take the worker and the queue")
            for method in ["probe", "scan"] {
                let fd = open(safetensors, O_RDONLY | O_CLOEXEC)
                defer { close(fd) }
                let start = Date()
                let reply = foundation(
                    try DaemonClient(path: socket).call(
                        method, params: [("name", .string("small.safetensors"))], descriptor: fd, timeout: 60))
                let seconds = Date().timeIntervalSince(start)
                let reports = reply["reports"] as? [[String: Any]] ?? []
                #expect(reports.first?["verdict"] as? String == "clean", "\(method): \(reply)")
                #expect(seconds < 3, "\(method) answered after \(seconds) s, behind the detonations")
            }
            let status = try daemonStatus(socket)
            // The detonations were still going on all along (they end with the daemon).
            #expect(DaemonBackPressureTests.lane(status, "detonation")["busyWorkers"] as? Int == 1, "\(status)")
            #expect(slow.snapshot.isEmpty, "\(slow.snapshot)")
        }
    }

    @Test("a file the static lane takes by its first bytes and that needs a sandbox is still detonated")
    func staticLaneHandsOver() throws {
        try withSamples("models.py") { dir, _ in
            let daemon = try TestDaemon()
            defer { daemon.stop() }
            // Object arrays behind a NumPy header (the static lane's kind of file), and a pickle that claims a
            // safetensors header length and a '{'.
            let disguised = "\(dir)/disguised.safetensors"
            var bytes = withUnsafeBytes(of: UInt64(0x7B).littleEndian) { Array($0) } + Array("{".utf8)
            bytes += try Array(Data(contentsOf: URL(fileURLWithPath: try DaemonBackPressureTests.plainPickle(dir))))
            try Data(bytes).write(to: URL(fileURLWithPath: disguised))
            for path in ["\(dir)/objects.npy", disguised] {
                let local = try runCLI(["probe", "--format", "json", path], timeout: 120)
                let remote = try runCLI(["--socket", daemon.socket, "probe", "--format", "json", path], timeout: 120)
                func summary(_ out: String) -> (String?, Bool) {
                    let r = (try? JSONSerialization.jsonObject(with: Data(out.utf8))) as? [String: Any] ?? [:]
                    let detonated = (r["detonation"]).map { !($0 is NSNull) } ?? false
                    return (r["verdict"] as? String, detonated)
                }
                let (localVerdict, localDetonated) = summary(local.stdout)
                let (remoteVerdict, remoteDetonated) = summary(remote.stdout)
                #expect(remoteVerdict != nil && remoteVerdict == localVerdict, "\(path): \(remote.stdout.prefix(300))")
                #expect(remoteDetonated == localDetonated, "\(path): detonated locally \(localDetonated)")
                if path.hasSuffix(".npy") {
                    #expect(remoteDetonated, "objects.npy was not detonated through the daemon")
                }
            }
        }
    }
}
