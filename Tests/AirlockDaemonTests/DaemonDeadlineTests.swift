import AirlockDaemon
import AirlockJSON
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Static work on a huge file does not hold a worker for hours (docs/daemon.md, "Deadlines of static work"): a sparse
/// file of a terabyte (zeros at memory speed, hours of SHA-256) is stopped by the request's `timeout`, and by its
/// client hanging up; a departed client's probe never reaches a sandbox. "Promptly" is a generous 20 s against runs
/// that would otherwise take hours.
@Suite("airlockd: deadlines of static work", .serialized)
struct DaemonDeadlineTests {
    /// One detonation worker and one static worker: a worker held by the huge file holds its whole lane.
    static let arguments = ["--max-concurrent", "1", "--static-workers", "1"]

    /// A test-owned folder on the root file system (ext4: sparse files up to 16 TiB), removed by `body`'s caller.
    static func withFolder(_ body: (String) throws -> Void) throws {
        let dir = "/var/tmp/airlock-deadline-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        chmod(dir, 0o755)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try body(dir)
    }

    /// A sparse file of `bytes` (holes only, after `head`).
    static func sparse(_ path: String, bytes: Int64, head: [UInt8] = []) throws -> String {
        try Data(head).write(to: URL(fileURLWithPath: path))
        #expect(truncate(path, off_t(bytes)) == 0, "truncate: \(String(cString: strerror(errno)))")
        return path
    }

    /// A folder holding one small clean safetensors file: a folder goes to the detonation lane, scan or probe, so it
    /// waits for the worker the huge file held (a small file alone would be answered by the static lane).
    static func small(_ dir: String) throws -> String {
        let folder = "\(dir)/small"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        _ = try DaemonBackPressureTests.safetensors(folder)
        return folder
    }

    /// `method` of `path` through a fresh client: the reply, and the seconds it took.
    static func call(
        _ socket: String, _ method: String, _ path: String, timeout: Double? = nil, client: Double = 60
    ) throws -> (reply: [String: Any], seconds: Double) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DaemonTestError("cannot open \(path)") }
        defer { close(fd) }
        var params: [(String, JSON)] = [("name", .string(path))]
        if let timeout { params.append(("timeout", .double(timeout))) }
        let start = Date()
        let c = try DaemonClient(path: socket)
        let reply = foundation(try c.call(method, params: params, descriptor: fd, timeout: client))
        return (reply, Date().timeIntervalSince(start))
    }

    /// Sends `method` of `path` on a raw connection and hangs up `after` seconds later, without reading the reply.
    static func sendAndLeave(
        _ socket: String, _ method: String, _ path: String, after: Double = 0, timeout: Double = 600
    ) throws {
        let sock = RawClient.connect(socket)
        guard sock >= 0 else { throw DaemonTestError("cannot connect to \(socket)") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        let body =
            #"{"airlock": 1, "id": 1, "method": "\#(method)", "params": {"name": "\#(path)", "timeout": \#(timeout)}}"#
        #expect(RawClient.send(sock, RawClient.frame(body), descriptors: [fd]) > 0)
        if after > 0 { usleep(useconds_t(after * 1e6)) }
        close(sock)
    }

    /// Busy workers of every lane, from `status`.
    static func busyWorkers(_ socket: String) -> Int? {
        guard let status = try? daemonStatus(socket), let lanes = status["lanes"] as? [[String: Any]] else {
            return nil
        }
        return lanes.map { $0["busyWorkers"] as? Int ?? 0 }.reduce(0, +)
    }

    @Test("a scan of a 1 TiB sparse file with timeout 2 s is an error naming the deadline; the worker is free after")
    func timeoutStopsHashing() throws {
        try Self.withFolder { dir in
            let huge = try Self.sparse("\(dir)/huge.bin", bytes: 1 << 40)
            let daemon = try TestDaemon(Self.arguments, config: ["warm": 0, "requestTimeoutSeconds": 600])
            defer { daemon.stop() }
            let (reply, seconds) = try Self.call(daemon.socket, "scan", huge, timeout: 2, client: 40)
            #expect(seconds < 20, "the scan took \(seconds) s")
            let report = try #require((reply["reports"] as? [[String: Any]])?.first, "\(reply)")
            #expect(report["verdict"] as? String == "error")
            let error = report["error"] as? [String: Any]
            #expect(error?["code"] as? String == "timeout", "\(report)")
            let message = error?["message"] as? String ?? ""
            #expect(message.contains("deadline (2.0 s)"), "\(report)")
            #expect((report["target"] as? [String: Any])?["sha256"] is NSNull, "\(report)")
            // One detonation worker: the next request is answered, not stuck behind the huge file.
            let (next, took) = try Self.call(daemon.socket, "scan", try Self.small(dir), client: 40)
            #expect(took < 20, "the next scan took \(took) s")
            #expect((next["reports"] as? [[String: Any]])?.first?["verdict"] as? String == "clean", "\(next)")
        }
    }

    @Test("a client that hangs up during the scan of a huge file frees its worker; the next client is answered")
    func departedClientFreesTheWorker() throws {
        try Self.withFolder { dir in
            let huge = try Self.sparse("\(dir)/huge.bin", bytes: 1 << 40)
            let daemon = try TestDaemon(Self.arguments, config: ["warm": 0, "requestTimeoutSeconds": 600])
            defer { daemon.stop() }
            try Self.sendAndLeave(daemon.socket, "scan", huge, after: 0.5)
            // The request's own timeout (600 s) would hold the worker for ten minutes: only the hang-up frees it.
            #expect(waitFor(20) { Self.busyWorkers(daemon.socket) == 0 }, "the worker stayed busy: \(daemon.log)")
            let (next, took) = try Self.call(daemon.socket, "scan", try Self.small(dir), client: 40)
            #expect(took < 20, "the next scan took \(took) s")
            #expect((next["reports"] as? [[String: Any]])?.first?["verdict"] as? String == "clean", "\(next)")
            // A client that hangs up and reconnects at once: its new request is answered as any other.
            try Self.sendAndLeave(daemon.socket, "scan", huge)
            let (again, t2) = try Self.call(daemon.socket, "scan", try Self.small(dir), client: 40)
            #expect(t2 < 20, "the scan after a reconnect took \(t2) s")
            #expect((again["reports"] as? [[String: Any]])?.first?["verdict"] as? String == "clean", "\(again)")
        }
    }

    @Test("the probe of a departed client never reaches a sandbox")
    func departedClientIsNotDetonated() throws {
        try Self.withFolder { dir in
            // A pickle (always detonated) followed by 16 GiB of holes: minutes of hashing before the detonation.
            let made = try runProgram(
                "/usr/bin/python3",
                ["-c", "import pickle, sys; sys.stdout.buffer.write(pickle.dumps({'w': [0.5]}, protocol=0))"])
            #expect(made.status == 0)
            let model = try Self.sparse("\(dir)/model.pkl", bytes: 16 << 30, head: Array(made.stdout.utf8))
            let daemon = try TestDaemon(Self.arguments, config: ["warm": 0, "worlds": 1, "requestTimeoutSeconds": 600])
            defer { daemon.stop() }
            // Hung up while the detonation lane hashes it (0.5 s), or at once: in the static lane, at the hand-over,
            // or queued.
            for delay in [0.5, 0, 0.01, 0.1] {
                try Self.sendAndLeave(daemon.socket, "probe", model, after: delay)
                #expect(waitFor(20) { Self.busyWorkers(daemon.socket) == 0 }, "busy after \(delay) s: \(daemon.log)")
            }
            // Queued behind another client's huge scan (which holds the one detonation worker for its 5 s), then
            // hung up: it never starts.
            let holder = RawClient.connect(daemon.socket)
            defer { close(holder) }
            let hugeFD = open(try Self.sparse("\(dir)/huge.bin", bytes: 1 << 40), O_RDONLY | O_CLOEXEC)
            defer { close(hugeFD) }
            let scan = #"{"airlock": 1, "id": 2, "method": "scan", "params": {"name": "huge.bin", "timeout": 5}}"#
            #expect(RawClient.send(holder, RawClient.frame(scan), descriptors: [hugeFD]) > 0)
            usleep(300_000)
            try Self.sendAndLeave(daemon.socket, "probe", model, after: 0.3)
            #expect(waitFor(30) { Self.busyWorkers(daemon.socket) == 0 }, "busy: \(daemon.log)")
            // What the daemon answered (to nobody) is an error, and no detonation ran.
            let status = try daemonStatus(daemon.socket)
            let verdicts = status["verdicts"] as? [String: Int] ?? [:]
            #expect(verdicts.filter { $0.key != "error" }.values.reduce(0, +) == 0, "\(status)")
            #expect((status["sandboxMemory"] as? [String: Any] ?? [:]).isEmpty, "\(status)")
            #expect(loaders(under: daemon.pid).isEmpty)
        }
    }

    @Test("a client that hangs up during a folder probe of 16 remote-code repositories frees the worker")
    func departedClientStopsRepositoryDetonations() throws {
        try Self.withFolder { dir in
            // 16 repositories whose module sleeps: each detonation lasts its whole timeout (3 s), so all 16 hold the
            // worker for about 50 s (less than the 60 s folder budget); a hang-up must stop them after the first.
            let root = "\(dir)/repos"
            for i in 0..<16 {
                let repo = "\(root)/r\(i < 10 ? "0" : "")\(i)"
                try FileManager.default.createDirectory(atPath: repo, withIntermediateDirectories: true)
                try Data(#"{"model_type": "x", "auto_map": {"AutoModel": "modeling.M"}}"#.utf8).write(
                    to: URL(fileURLWithPath: repo + "/config.json"))
                try Data("import time\ntime.sleep(600)\nclass M: pass\n".utf8).write(
                    to: URL(fileURLWithPath: repo + "/modeling.py"))
            }
            _ = chmod(root, 0o755)
            let daemon = try TestDaemon(Self.arguments, config: ["warm": 0, "worlds": 1, "requestTimeoutSeconds": 600])
            defer { daemon.stop() }
            try Self.sendAndLeave(daemon.socket, "probe", root, after: 0.5, timeout: 3)
            #expect(waitFor(25) { Self.busyWorkers(daemon.socket) == 0 }, "the worker stayed busy: \(daemon.log)")
            let status = try daemonStatus(daemon.socket)
            // The walk's record of what it left out (the repositories not detonated, the files not examined).
            let partial = status["partial"] as? [String: Int] ?? [:]
            #expect(partial["folder-budget"] == 1, "\(status)")
            #expect(loaders(under: daemon.pid).isEmpty)
        }
    }
}
