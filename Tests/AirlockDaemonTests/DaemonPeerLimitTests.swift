import AirlockDaemon
import AirlockJSON
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Limits per peer uid (docs/daemon.md, "Back-pressure"): one uid cannot fill the queue nor hold every connection,
/// and idle connections are closed before anyone is refused.
@Suite("airlockd per-uid limits", .serialized)
struct DaemonPeerLimitTests {
    /// As uid/gid 65534: connects, sends `status` (or a probe of ARGV[3] when given) and prints the first reply, or
    /// {"waiting": true} when none came within 2 s, or {"closed": true}.
    static let nobodyClient = """
        import json, os, socket, struct, sys
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(sys.argv[1])
        if len(sys.argv) > 2:
            fd = os.open(sys.argv[2], os.O_RDONLY)
            body = json.dumps({"airlock": 1, "id": 1, "method": "probe", "params": {"name": "m"}}).encode()
            socket.send_fds(s, [struct.pack(">I", len(body)) + body], [fd])
        else:
            body = json.dumps({"airlock": 1, "id": 1, "method": "status", "params": {}}).encode()
            s.sendall(struct.pack(">I", len(body)) + body)
        s.settimeout(2)
        def exact(n):
            b = b""
            while len(b) < n:
                c = s.recv(n - len(b))
                if not c:
                    raise EOFError
                b += c
            return b
        try:
            n = struct.unpack(">I", exact(4))[0]
            print(json.dumps(json.loads(exact(n))))
        except socket.timeout:
            print(json.dumps({"waiting": True}))
        except (EOFError, ConnectionResetError):
            print(json.dumps({"closed": True}))
        """

    static func asNobody(_ socket: String, _ extra: [String] = []) throws -> [String: Any] {
        chmod(socket, 0o666)
        let run = try runProgram(
            "/usr/bin/setpriv",
            [
                "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3", "-I", "-c", nobodyClient,
                socket,
            ]
                + extra)
        #expect(run.status == 0, "client as 65534: \(run.stderr)")
        guard let result = (try? JSONSerialization.jsonObject(with: Data(run.stdout.utf8))) as? [String: Any] else {
            throw DaemonTestError("client as 65534 printed \(run.stdout) \(run.stderr)")
        }
        return result
    }

    static func reason(_ reply: [String: Any]) -> String? { (reply["error"] as? [String: Any])?["reason"] as? String }

    /// Sends a probe of `path` on `fd` without waiting for the reply.
    static func sendProbe(_ fd: Int32, _ path: String, timeout: Double) {
        let file = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(file) }
        let body = #"{"airlock":1,"id":7,"method":"probe","params":{"name":"slow","timeout":\#(timeout)}}"#
        #expect(RawClient.send(fd, RawClient.frame(body), descriptors: [file]) > 0)
    }

    static func detonationLane(_ socket: String) -> [String: Any] {
        guard let status = try? daemonStatus(socket) else { return [:] }
        return (status["lanes"] as? [[String: Any]] ?? []).first { $0["name"] as? String == "detonation" } ?? [:]
    }

    @Test("one uid cannot fill the detonation queue: past its share it is told busy (peer-queue-full), another is not")
    func queuePerUid() throws {
        try withDetonationDaemon([
            "--max-concurrent", "1", "--queue", "8", "--queue-per-uid", "2", "--allow-uid", "65534",
        ]) { dir, daemon in
            let socket = daemon.socket
            let slow = "\(dir)/cpu_loop.pkl"
            chmod(dir, 0o755)
            var open: [Int32] = []
            defer { for fd in open { close(fd) } }
            for i in 0..<3 {
                let fd = RawClient.connect(socket)
                open.append(fd)
                DaemonPeerLimitTests.sendProbe(fd, slow, timeout: 10)
                if i == 0 {
                    #expect(waitFor(10) { DaemonPeerLimitTests.detonationLane(socket)["busyWorkers"] as? Int == 1 })
                }
            }
            #expect(waitFor(10) { DaemonPeerLimitTests.detonationLane(socket)["queueDepth"] as? Int == 2 })
            // Root's third waiting request: refused at once.
            let fd = RawClient.connect(socket)
            open.append(fd)
            DaemonPeerLimitTests.sendProbe(fd, slow, timeout: 10)
            RawClient.setTimeout(fd, 10)
            guard case .success(let reply) = RawClient.readMessage(fd) else {
                Issue.record("no reply to the request over the uid's share")
                return
            }
            #expect(errorCode(reply) == "busy" && DaemonPeerLimitTests.reason(reply) == "peer-queue-full", "\(reply)")
            // Another uid still gets a place in the queue (no reply within 2 s: it waits its turn).
            let other = try DaemonPeerLimitTests.asNobody(socket, [slow])
            #expect(other["waiting"] as? Bool == true, "uid 65534: \(other)")
        }
    }

    @Test("a uid with a line of slow scans delays another uid's scan by about one of them, not by the whole line")
    func fairStaticLane() throws {
        let daemon = try TestDaemon(["--allow-uid", "65534", "--static-workers", "1"])
        defer { daemon.stop() }
        let socket = daemon.socket
        let dir = "/tmp/airlock-fair-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        chmod(dir, 0o755)
        // Distinct sparse files (the digest cache would answer a second scan of one at once), hashed whole.
        for i in 0..<4 {
            FileManager.default.createFile(atPath: "\(dir)/big\(i).bin", contents: nil)
            #expect(truncate("\(dir)/big\(i).bin", 96 << 20) == 0)
        }
        FileManager.default.createFile(atPath: "\(dir)/small.bin", contents: Data([0x08, 0x01]))
        chmod("\(dir)/small.bin", 0o644)
        let rootDone = Collector<Date>()
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        for i in 0..<4 {
            let fd = RawClient.connect(socket)
            fds.append(fd)
            let file = open("\(dir)/big\(i).bin", O_RDONLY | O_CLOEXEC)
            let body = #"{"airlock":1,"id":1,"method":"scan","params":{"name":"big"}}"#
            #expect(RawClient.send(fd, RawClient.frame(body), descriptors: [file]) > 0)
            close(file)
        }
        for fd in fds {
            let thread = Thread {
                RawClient.setTimeout(fd, 120)
                _ = RawClient.readMessage(fd)
                rootDone.append(Date())
            }
            thread.start()
        }
        usleep(200_000)
        let other = try DaemonPeerLimitTests.asNobodyScan(socket, "\(dir)/small.bin")
        let otherDone = Date()
        #expect(other["ok"] as? Bool == true, "\(other)")
        let root = rootDone.wait(count: 4, timeout: 120).sorted()
        #expect(root.count == 4)
        // At most two of root's scans (the one running, the next) may finish before the other uid's.
        #expect(
            root.filter { $0 < otherDone }.count <= 2, "the other uid waited behind root's line: \(root), \(otherDone)")
    }

    /// As uid 65534: a scan of `path`, waiting up to 120 s for the reply.
    static func asNobodyScan(_ socket: String, _ path: String) throws -> [String: Any] {
        chmod(socket, 0o666)
        let code = """
            import json, os, socket, struct, sys
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(120)
            s.connect(sys.argv[1])
            fd = os.open(sys.argv[2], os.O_RDONLY)
            body = json.dumps({"airlock": 1, "id": 1, "method": "scan", "params": {"name": "m"}}).encode()
            socket.send_fds(s, [struct.pack(">I", len(body)) + body], [fd])
            def exact(n):
                b = b""
                while len(b) < n:
                    c = s.recv(n - len(b))
                    if not c:
                        raise EOFError
                    b += c
                return b
            n = struct.unpack(">I", exact(4))[0]
            print(json.dumps(json.loads(exact(n))))
            """
        let run = try runProgram(
            "/usr/bin/setpriv",
            [
                "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/python3", "-I", "-c", code, socket,
                path,
            ])
        guard let result = (try? JSONSerialization.jsonObject(with: Data(run.stdout.utf8))) as? [String: Any] else {
            throw DaemonTestError("client as 65534 printed \(run.stdout) \(run.stderr)")
        }
        return result
    }

    @Test("at a uid's connection cap its longest-idle connection is closed first, with a busy notice")
    func idleClosedFirst() throws {
        let daemon = try TestDaemon(config: ["maxConnectionsPerUid": 3, "maxConnections": 100])
        defer { daemon.stop() }
        let socket = daemon.socket
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        for _ in 0..<3 {
            let fd = RawClient.connect(socket)
            #expect(RawClient.request(fd, #"{"airlock":1,"id":1,"method":"status"}"#) != nil)
            fds.append(fd)
            usleep(50_000)
        }
        // The first is now the oldest but used again: the second is the longest idle.
        #expect(RawClient.request(fds[0], #"{"airlock":1,"id":2,"method":"status"}"#) != nil)
        let fourth = RawClient.connect(socket)
        fds.append(fourth)
        #expect(RawClient.request(fourth, #"{"airlock":1,"id":1,"method":"status"}"#) != nil, "the fourth was refused")
        let (messages, end) = RawClient.readAll(fds[1], timeout: 3)
        #expect(end == .closed, "the longest-idle connection is still open")
        #expect(messages.count == 1 && errorCode(messages[0]) == "busy", "\(messages)")
        #expect(messages.first.map { DaemonPeerLimitTests.reason($0) } == "peer-connections", "\(messages)")
        #expect(messages.first.map { $0["id"] is NSNull } == true)
        for i in [0, 2, 3] {
            #expect(RawClient.request(fds[i], #"{"airlock":1,"id":3,"method":"status"}"#) != nil, "connection \(i)")
        }
    }

    @Test("at the global cap the globally longest-idle connection is closed first")
    func globalIdleClosedFirst() throws {
        let daemon = try TestDaemon(config: ["maxConnectionsPerUid": 10, "maxConnections": 3])
        defer { daemon.stop() }
        let socket = daemon.socket
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        for _ in 0..<3 {
            let fd = RawClient.connect(socket)
            #expect(RawClient.request(fd, #"{"airlock":1,"id":1,"method":"status"}"#) != nil)
            fds.append(fd)
            usleep(50_000)
        }
        let fourth = RawClient.connect(socket)
        fds.append(fourth)
        #expect(RawClient.request(fourth, #"{"airlock":1,"id":1,"method":"status"}"#) != nil, "the fourth was refused")
        let (messages, end) = RawClient.readAll(fds[0], timeout: 3)
        #expect(
            end == .closed && messages.first.map { DaemonPeerLimitTests.reason($0) } == "connections", "\(messages)")
    }

    @Test("one uid holding its cap of busy connections cannot lock another uid out; its next one is refused")
    func noLockOut() throws {
        try withDetonationDaemon(
            [
                "--max-concurrent", "1", "--queue", "8", "--queue-per-uid", "8", "--max-connections-per-uid", "4",
                "--allow-uid", "65534",
            ],
            config: ["maxConnections": 8]
        ) { dir, daemon in
            let socket = daemon.socket
            var fds: [Int32] = []
            defer { for fd in fds { close(fd) } }
            // Root opens as many connections as it can get, each with a request in flight (the status polls are
            // root's too, so the last goes in once they are over).
            for _ in 0..<3 {
                let fd = RawClient.connect(socket)
                fds.append(fd)
                DaemonPeerLimitTests.sendProbe(fd, "\(dir)/cpu_loop.pkl", timeout: 10)
            }
            #expect(waitFor(10) { DaemonPeerLimitTests.detonationLane(socket)["queueDepth"] as? Int == 2 })
            let last = RawClient.connect(socket)
            fds.append(last)
            DaemonPeerLimitTests.sendProbe(last, "\(dir)/cpu_loop.pkl", timeout: 10)
            usleep(500_000)
            let fifth = RawClient.connect(socket)
            fds.append(fifth)
            let (messages, end) = RawClient.readAll(fifth, timeout: 3)
            #expect(end == .closed && messages.count == 1, "\(messages) \(end)")
            #expect(messages.first.map { DaemonPeerLimitTests.reason($0) } == "peer-connections", "\(messages)")
            // Another uid is served.
            let other = try DaemonPeerLimitTests.asNobody(socket)
            #expect(other["ok"] as? Bool == true, "uid 65534: \(other)")
        }
    }
}
