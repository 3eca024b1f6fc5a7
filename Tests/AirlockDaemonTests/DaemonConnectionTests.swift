import AirlockDaemon
import AirlockJSON
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// airlockd's connections: timeouts, requests behind one in flight, the connection bound, the framing edge cases.
extension DaemonTests {
    @Test("idleTimeoutSeconds and ioTimeoutSeconds from --config: idle connections and half messages are closed")
    func idleTimeout() throws {
        let daemon = try TestDaemon(config: ["idleTimeoutSeconds": 1, "ioTimeoutSeconds": 1.5])
        defer { daemon.stop() }
        let socket = daemon.socket

        let silent = RawClient.connect(socket)
        let talker = RawClient.connect(socket)
        let partial = RawClient.connect(socket)
        defer { for fd in [silent, talker, partial] { close(fd) } }
        #expect(RawClient.request(talker, "{\"airlock\":1,\"id\":1,\"method\":\"status\"}")?["ok"] as? Bool == true)
        RawClient.sendAll(partial, RawClient.header(100) + Array("{\"airlock\":".utf8))
        let start = Date()

        let (silentMessages, silentEnd) = RawClient.readAll(silent, timeout: 8)
        #expect(silentMessages.isEmpty && silentEnd == .closed, "\(silentMessages) \(silentEnd)")
        let waited = Date().timeIntervalSince(start)
        #expect(waited > 0.8 && waited < 4, "closed after \(waited) s")

        let (talkerMessages, talkerEnd) = RawClient.readAll(talker, timeout: 5)
        #expect(talkerMessages.isEmpty && talkerEnd == .closed, "\(talkerMessages) \(talkerEnd)")

        // A message that stopped half-way: timeout, then closed.
        let (partialMessages, partialEnd) = RawClient.readAll(partial, timeout: 6)
        #expect(
            partialMessages.count == 1 && partialMessages.first.flatMap(errorCode) == "timeout", "\(partialMessages)")
        #expect(partialEnd == .closed)

        // New connections are still served.
        #expect(try daemonStatus(socket)["version"] != nil)
    }

    @Test(
        "a client that sends requests and never reads the replies: the daemon stops reading it, stays small, drops it")
    func unreadReplies() throws {
        // No warm sandboxes: each costs the daemon a few MiB as it starts, which is not what is measured here.
        let daemon = try TestDaemon(config: ["ioTimeoutSeconds": 2, "warm": 0])
        defer { daemon.stop() }
        let socket = daemon.socket
        let before = memoryKB(daemon.pid, "VmHWM")
        let fd = RawClient.connect(socket)
        defer { close(fd) }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        // Status requests as fast as the daemon takes them, for 2 s, never reading a reply.
        let chunk = [[UInt8]](repeating: RawClient.frame("{\"airlock\":1,\"id\":1,\"method\":\"status\"}"), count: 2000)
            .flatMap { $0 }
        var sent = 0
        let start = Date()
        flood: while Date().timeIntervalSince(start) < 2 {
            let n = chunk[(sent % chunk.count)...].withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            switch n {
            case 1...: sent += n
            case _ where errno == EAGAIN || errno == EINTR: usleep(1000)
            default: break flood
            }
        }
        // Others are still served.
        let other = Date()
        #expect(try daemonStatus(socket)["version"] != nil)
        #expect(Date().timeIntervalSince(other) < 2)
        let grown = memoryKB(daemon.pid, "VmHWM") - before
        #expect(
            grown < 16 << 10, "airlockd grew by \(grown / 1024) MiB holding the replies to \(sent) bytes of requests")
        // A client that does not take its replies is dropped after ioTimeoutSeconds.
        #expect(
            waitFor(5) { (try? daemonStatus(socket))?["connections"] as? Int == 1 },
            "the flooding client is still connected")
        #expect(daemon.process.isRunning)
    }

    @Test("a request sent behind a probe on the same connection is answered after it, however long the probe takes")
    func pipelined() throws {
        try withDetonationDaemon(config: ["ioTimeoutSeconds": 1, "idleTimeoutSeconds": 1]) { dir, daemon in
            let model = open("\(dir)/cpu_loop.pkl", O_RDONLY | O_CLOEXEC)
            defer { close(model) }
            let fd = RawClient.connect(daemon.socket)
            defer { close(fd) }
            // Each in a sendmsg of its own (docs/protocol.md): the probe with its descriptor, the status right behind.
            let probe = RawClient.frame(
                "{\"airlock\":1,\"id\":1,\"method\":\"probe\",\"params\":{\"name\":\"cpu_loop.pkl\",\"timeout\":2.5}}")
            let status = RawClient.frame("{\"airlock\":1,\"id\":2,\"method\":\"status\"}")
            #expect(RawClient.send(fd, probe, descriptors: [model]) == probe.count)
            #expect(RawClient.send(fd, status, descriptors: []) == status.count)
            RawClient.setTimeout(fd, 15)
            let first = try? RawClient.readMessage(fd).get()
            #expect(first?["id"] as? Int == 1 && first?["ok"] as? Bool == true, "\(String(describing: first))")
            let verdicts = (first?["reports"] as? [[String: Any]])?.map { $0["verdict"] as? String }
            #expect(verdicts == ["suspicious"], "\(String(describing: first))")
            let second = try? RawClient.readMessage(fd).get()
            #expect(second?["id"] as? Int == 2 && second?["status"] is [String: Any], "\(String(describing: second))")

            // 3000 requests in one go (more replies than the socket holds): all answered, in order.
            let burst = (0..<3000).flatMap {
                RawClient.frame("{\"airlock\":1,\"id\":\($0),\"method\":\"\($0 % 2 == 0 ? "status" : "metrics")\"}")
            }
            let writer = Collector<Bool>()
            onThreads(1, into: writer) { _ in RawClient.sendAll(fd, burst) }
            var ids: [Int] = []
            while ids.count < 3000, case .success(let m) = RawClient.readMessage(fd) {
                ids.append(m["id"] as? Int ?? -1)
            }
            #expect(ids == Array(0..<3000), "\(ids.count) replies")
            #expect(writer.wait(count: 1, timeout: 5) == [true])
        }
    }

    @Test("maxConnections from --config: beyond it the longest-idle connection is told busy and closed (idle first)")
    func maxConnections() throws {
        let daemon = try TestDaemon(config: ["maxConnections": 5, "maxConnectionsPerUid": 5])
        defer { daemon.stop() }
        var open: [Int32] = []
        defer { for fd in open { close(fd) } }
        for i in 0..<5 {
            let fd = RawClient.connect(daemon.socket)
            open.append(fd)
            #expect(
                RawClient.request(fd, "{\"airlock\":1,\"id\":\(i),\"method\":\"status\"}")?["ok"] as? Bool == true,
                "connection \(i)")
        }
        let extra = RawClient.connect(daemon.socket)
        defer { close(extra) }
        #expect(RawClient.request(extra, #"{"airlock":1,"id":9,"method":"status"}"#)?["ok"] as? Bool == true)
        // Room was made by closing the longest-idle connection, the first, with a busy notice.
        let (messages, end) = RawClient.readAll(open[0], timeout: 5)
        #expect(messages.count == 1 && messages.first.flatMap(errorCode) == "busy", "\(messages)")
        #expect(end == .closed)
    }

    @Test(
        "the socket path: a live daemon's socket is not taken over, a file that is not a socket is not removed, no daemon is an error"
    )
    func socketPath() throws {
        let first = try TestDaemon()
        defer { first.stop() }
        let second = Process()
        second.executableURL = URL(fileURLWithPath: airlockdBinary)
        second.arguments = ["--socket", first.socket]
        let err = Pipe()
        second.standardError = err
        second.standardOutput = FileHandle.nullDevice
        try second.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        second.waitUntilExit()
        #expect(
            second.terminationStatus != 0 && text.contains("another airlockd is listening"),
            "\(second.terminationStatus) \(text)")
        #expect(try daemonStatus(first.socket)["version"] != nil, "the first daemon lost its socket")

        let plain = "\(first.dir)/not-a-socket"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: plain))
        let third = Process()
        third.executableURL = URL(fileURLWithPath: airlockdBinary)
        third.arguments = ["--socket", plain]
        let err3 = Pipe()
        third.standardError = err3
        third.standardOutput = FileHandle.nullDevice
        try third.run()
        let text3 = String(decoding: err3.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        third.waitUntilExit()
        #expect(
            third.terminationStatus != 0 && text3.contains("is not a socket"), "\(third.terminationStatus) \(text3)")
        #expect((try? String(contentsOfFile: plain, encoding: .utf8)) == "keep me")

        // The CLI with a socket named and no daemon behind it: exit 2, no local fallback.
        let none = try runCLI(["--socket", "\(first.dir)/nobody-home.sock", "probe", plain])
        #expect(none.status == 2 && none.stdout.isEmpty && none.stderr.contains("cannot connect"), "\(none)")
    }

    @Test(
        "SIGTERM with a probe that outlasts shutdownGraceSeconds: its client is told shutting-down, exit 0, the sandbox dies"
    )
    func sigtermPastGrace() throws {
        try withDetonationDaemon(config: ["shutdownGraceSeconds": 1]) { dir, daemon in
            let socket = daemon.socket
            let model = "\(dir)/cpu_loop.pkl"
            let results = Collector<ProbeOutcome>()
            onThreads(1, into: results) { _ in probeThroughDaemon(socket, model, timeout: 40, client: 60) }
            #expect(waitFor(15) { loaders(under: daemon.pid).count == 1 }, "the loader never ran")
            let tree = descendants(of: daemon.pid).map(\.pid)
            let signalled = Date()
            kill(daemon.pid, SIGTERM)
            let done = results.wait(count: 1, timeout: 10)
            #expect(done.count == 1, "the client hangs")
            if let outcome = done.first {
                #expect(outcome.code == "shutting-down", "\(outcome)")
                #expect(outcome.finished.timeIntervalSince(signalled) < 4, "\(outcome)")
            }
            #expect(daemon.waitForExit(timeout: 5), "airlockd still running")
            if !daemon.process.isRunning {
                #expect(
                    daemon.process.terminationReason == .exit && daemon.process.terminationStatus == 0, "\(daemon.log)")
            }
            #expect(waitFor(2) { tree.allSatisfy { !running($0) } }, "left behind: \(tree.filter(running))")
            #expect(access(socket, F_OK) != 0)
        }
    }

    /// A Python client run as another user: connects, sends a status request, prints `{"replies": […], "end": …}`.
    static let pythonClient = """
        import json, socket, struct, sys
        out = {"replies": [], "end": None}
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(sys.argv[1])
        except OSError as e:
            print(json.dumps({"connectErrno": e.errno}))
            sys.exit(0)
        body = json.dumps({"airlock": 1, "id": 7, "method": "status"}).encode()
        try:
            s.sendall(struct.pack(">I", len(body)) + body)
        except OSError as e:
            out["sendErrno"] = e.errno
        def exact(n):
            b = b""
            while len(b) < n:
                c = s.recv(n - len(b))
                if not c:
                    raise EOFError
                b += c
            return b
        try:
            while True:
                n = struct.unpack(">I", exact(4))[0]
                out["replies"].append(json.loads(exact(n)))
                if sys.argv[2] == "one":
                    out["end"] = "stopped"
                    break
        except EOFError:
            out["end"] = "eof"
        except ConnectionResetError:
            out["end"] = "reset"
        except socket.timeout:
            out["end"] = "timeout"
        print(json.dumps(out))
        """

    /// A Python client run as another user that sends a probe with a descriptor of `sys.argv[2]` opened with the
    /// flags named in `sys.argv[3]` ("path": O_PATH, "write": O_WRONLY, "read": O_RDONLY, "dir"), as the method in
    /// `sys.argv[4]` (default probe); prints the reply.
    static let pythonDescriptorClient = """
        import json, os, socket, struct, sys
        flags = {"path": os.O_PATH, "write": os.O_WRONLY, "read": os.O_RDONLY, "dir": os.O_RDONLY | os.O_DIRECTORY}[sys.argv[3]]
        method = sys.argv[4] if len(sys.argv) > 4 else "probe"
        try:
            fd = os.open(sys.argv[2], flags)
        except OSError as e:
            print(json.dumps({"openErrno": e.errno}))
            sys.exit(0)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(sys.argv[1])
        body = json.dumps({"airlock": 1, "id": 9, "method": method, "params": {"name": "secret"}}).encode()
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

    /// Runs the Python client as uid/gid 65534 without supplementary groups.
    static func runAsNobody(
        _ socket: String, _ mode: String, groups: String? = nil, code: String = pythonClient, _ extra: [String] = []
    ) throws -> [String: Any] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments =
            ["--reuid", "65534", "--regid", "65534"] + (groups.map { ["--groups", $0] } ?? ["--clear-groups"])
            + ["/usr/bin/python3", "-I", "-c", code, socket, mode] + extra
        p.currentDirectoryURL = URL(fileURLWithPath: "/")
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "client as 65534: \(errText)")
        guard let result = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw DaemonTestError("client as 65534 printed \(String(decoding: data, as: UTF8.self)) \(errText)")
        }
        return result
    }
}
