import AirlockDaemon
import AirlockJSON
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// airlockd end to end: the debug daemon on a socket in a fresh directory, asked by the CLI, by DaemonClient, by hand
/// and by another user; killed, its workers killed, stopped under load.
@Suite("airlockd", .serialized)
struct DaemonTests {
    /// Parses `airlock probe --format json` output: path → (verdict, sha256).
    static func verdicts(_ jsonLines: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in jsonLines.split(separator: "\n") {
            guard let r = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                let target = r["target"] as? [String: Any], let path = target["path"] as? String
            else {
                Issue.record("not a report: \(line.prefix(200))")
                continue
            }
            out[path] = "\(r["verdict"] as? String ?? "?") \(target["sha256"] as? String ?? "-")"
        }
        return out
    }

    @Test("the daemon gives the same verdict as a local probe for every sample model, and for hf_repo as a folder")
    func sameVerdicts() throws {
        try withSamples("models.py") { dir, _ in
            let daemon = try TestDaemon()
            defer { daemon.stop() }
            var isDir: ObjCBool = false
            let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted().map { "\(dir)/\($0)" }
                .filter { FileManager.default.fileExists(atPath: $0, isDirectory: &isDir) && !isDir.boolValue }
            let folder = "\(dir)/hf_repo"
            #expect(files.count >= 20, "models.py wrote \(files.count) files")
            #expect(FileManager.default.fileExists(atPath: folder, isDirectory: &isDir) && isDir.boolValue)

            let remote = try runCLI(
                ["--socket", daemon.socket, "probe", "--format", "json"] + files + [folder], timeout: 120)
            let local = try runCLI(["probe", "--format", "json"] + files + [folder], timeout: 120)
            let remoteVerdicts = DaemonTests.verdicts(remote.stdout)
            let localVerdicts = DaemonTests.verdicts(local.stdout)
            #expect(
                remote.status == local.status,
                "exit \(remote.status) through the daemon, \(local.status) locally: \(remote.stderr)")
            #expect(localVerdicts.count == files.count + 4, "\(localVerdicts.keys.sorted())")
            #expect(localVerdicts.keys.contains { $0.hasPrefix("\(folder)/") })
            for path in Set(localVerdicts.keys).union(remoteVerdicts.keys).sorted() {
                #expect(
                    remoteVerdicts[path] == localVerdicts[path],
                    "\(path): daemon \(remoteVerdicts[path] ?? "none"), local \(localVerdicts[path] ?? "none")")
            }
            // The same through $AIRLOCK_SOCKET, for the folder alone.
            let viaEnv = try runCLI(["probe", "--format", "json", folder], socketVariable: daemon.socket)
            let envVerdicts = DaemonTests.verdicts(viaEnv.stdout)
            #expect(envVerdicts.count == 4)
            for (path, v) in envVerdicts { #expect(localVerdicts[path] == v, "\(path) via $AIRLOCK_SOCKET") }
            let status = try daemonStatus(daemon.socket)
            #expect(status["requests"] as? Int == files.count + 2, "\(status)")
        }
    }

    @Test("100 concurrent clients, 2 workers and a queue of 128: every one answered, clean")
    func hundredClients() throws {
        try withSamples("models.py") { dir, _ in
            let daemon = try TestDaemon(["--max-concurrent", "2", "--queue", "128", "--queue-per-uid", "128"])
            defer { daemon.stop() }
            let socket = daemon.socket
            // A plain pickle of plain values: the queue is what is tested, not how long torch takes to import
            // (about a second per cold detonation).
            let model = "\(dir)/weights.pkl"
            let made = try runProgram(
                "/usr/bin/python3",
                ["-c", "import pickle; pickle.dump({'w': [0.5] * 8, 'b': 0.1}, open('\(model)', 'wb'))"])
            #expect(made.status == 0, "\(made.stderr)")
            let results = Collector<ProbeOutcome>()
            onThreads(100, into: results) { _ in probeThroughDaemon(socket, model, client: 120) }
            let done = results.wait(count: 100, timeout: 120)
            #expect(done.count == 100, "\(100 - done.count) clients never heard back")
            for outcome in done {
                #expect(outcome.code == nil && outcome.verdicts == ["clean"], "\(outcome)")
            }
            let status = try daemonStatus(socket)
            #expect((status["verdicts"] as? [String: Int])?["clean"] == 100, "\(status)")
            #expect(status["queueDepth"] as? Int == 0 && status["busyWorkers"] as? Int == 0, "\(status)")
        }
    }

    @Test("a queue of 1: the clients beyond it are told busy at once, none hangs, the accepted ones are answered")
    func smallQueue() throws {
        try withDetonationDaemon(["--max-concurrent", "2", "--queue", "1"]) { dir, daemon in
            let socket = daemon.socket
            let model = "\(dir)/cpu_loop.pkl"
            let results = Collector<ProbeOutcome>()
            let started = Date()
            onThreads(60, into: results) { _ in probeThroughDaemon(socket, model, timeout: 1.5, client: 60) }
            let done = results.wait(count: 60, timeout: 30)
            #expect(done.count == 60, "\(60 - done.count) clients hang")
            let busy = done.filter { $0.code == "busy" }
            let answered = done.filter { $0.code == nil }
            #expect(busy.count + answered.count == done.count, "\(done.filter { $0.code != nil && $0.code != "busy" })")
            #expect(busy.count >= 40, "only \(busy.count) busy replies")
            #expect(answered.count >= 2 && answered.count <= 20, "\(answered.count) answered")
            for outcome in busy { #expect(outcome.seconds < 3, "busy only after \(outcome.seconds) s") }
            for outcome in answered {
                #expect(outcome.verdicts == ["suspicious"] && outcome.rules.contains("dynamic.timeout"), "\(outcome)")
            }
            #expect(Date().timeIntervalSince(started) < 30)
            let status = try daemonStatus(socket)
            #expect((status["refused"] as? [String: Int])?["busy"] == busy.count, "\(status)")
        }
    }

    @Test("garbage on the socket: each connection gets an error reply or is closed, and the daemon keeps answering")
    func garbage() throws {
        let daemon = try TestDaemon()
        defer { daemon.stop() }
        let socket = daemon.socket
        let codes: Set<String> = ["bad-request", "too-large", "unknown-method", "no-descriptor", "timeout"]
        usleep(100_000)
        let baseline = openDescriptors(daemon.pid)

        // Random bytes, then end of input: error replies only, then the connection ends.
        var random = SplitMix(state: 0xA1F)
        for round in 0..<30 {
            let fd = RawClient.connect(socket)
            #expect(fd >= 0)
            let length = round == 0 ? 3 : Int(random.next() % 16384) + 1
            var bytes = random.bytes(length)
            if round % 3 == 1 { bytes[0] = 0 }  // a length the daemon may accept, then a body it must parse
            RawClient.setTimeout(fd, 5)
            RawClient.sendAll(fd, bytes)
            shutdown(fd, Int32(SHUT_WR))
            let (messages, end) = RawClient.readAll(fd, timeout: 5)
            #expect(end == .closed, "random round \(round): \(end)")
            for m in messages { #expect(errorCode(m).map(codes.contains) == true, "random round \(round): \(m)") }
            close(fd)
        }

        // A length of 0: bad-request, then closed.
        do {
            let fd = RawClient.connect(socket)
            RawClient.sendAll(fd, [0, 0, 0, 0] + Array("{}".utf8))
            let (messages, end) = RawClient.readAll(fd, timeout: 5)
            #expect(messages.count == 1 && errorCode(messages[0]) == "bad-request", "\(messages)")
            #expect(end == .closed)
            close(fd)
        }

        // 64 MiB of text on one line: its first four bytes are a huge length: too-large, then closed (the rest is
        // not read).
        do {
            let fd = RawClient.connect(socket)
            RawClient.setTimeout(fd, 10)
            let start = Date()
            var line = [UInt8](repeating: UInt8(ascii: "A"), count: 64 << 20)
            line[line.count - 1] = UInt8(ascii: "\n")
            let all = RawClient.sendAll(fd, line)
            #expect(!all, "the daemon read all 64 MiB")
            let (messages, end) = RawClient.readAll(fd, timeout: 5)
            #expect(messages.count == 1 && errorCode(messages[0]) == "too-large", "\(messages)")
            #expect(end == .closed)
            #expect(Date().timeIntervalSince(start) < 10)
            close(fd)
        }

        // A truncated frame, then the client leaves: nothing to answer, nothing breaks.
        do {
            let fd = RawClient.connect(socket)
            RawClient.sendAll(fd, RawClient.header(100) + Array("{\"airlock\":1,".utf8))
            close(fd)
            let fd2 = RawClient.connect(socket)
            RawClient.sendAll(fd2, RawClient.header(100) + Array("{\"airlock\":1,".utf8))
            shutdown(fd2, Int32(SHUT_WR))
            let (messages, end) = RawClient.readAll(fd2, timeout: 5)
            #expect(messages.isEmpty && end == .closed, "\(messages) \(end)")
            close(fd2)
        }

        // Invalid JSON, a wrong version, an unknown method, a probe without a descriptor: error replies that keep the
        // connection usable.
        do {
            let fd = RawClient.connect(socket)
            defer { close(fd) }
            let bad = RawClient.request(fd, "{\"airlock\":1,\"id\":1,\"method\":")
            #expect(bad.flatMap(errorCode) == "bad-request", "\(String(describing: bad))")
            let notObject = RawClient.request(fd, "[1,2,3]")
            #expect(notObject.flatMap(errorCode) == "bad-request", "\(String(describing: notObject))")
            let version = RawClient.request(fd, "{\"airlock\":2,\"id\":\"v\",\"method\":\"status\"}")
            #expect(
                version.flatMap(errorCode) == "bad-request" && version?["id"] as? String == "v",
                "\(String(describing: version))")
            let unknown = RawClient.request(fd, "{\"airlock\":1,\"id\":3,\"method\":\"detonate-everything\"}")
            #expect(
                unknown.flatMap(errorCode) == "unknown-method" && unknown?["id"] as? Int == 3,
                "\(String(describing: unknown))")
            let status = RawClient.request(fd, "{\"airlock\":1,\"id\":4,\"method\":\"status\"}")
            #expect(
                status?["ok"] as? Bool == true && status?["id"] as? Int == 4 && status?["status"] is [String: Any],
                "status after unknown-method: \(String(describing: status))")
            let noFD = RawClient.request(
                fd, "{\"airlock\":1,\"id\":5,\"method\":\"probe\",\"params\":{\"name\":\"x\"}}")
            #expect(
                noFD.flatMap(errorCode) == "no-descriptor" && noFD?["id"] as? Int == 5, "\(String(describing: noFD))")
            let scanNoFD = RawClient.request(fd, "{\"airlock\":1,\"id\":6,\"method\":\"scan\"}")
            #expect(scanNoFD.flatMap(errorCode) == "no-descriptor", "\(String(describing: scanNoFD))")
            // Two faults, one answer: the descriptor is checked before the parameters.
            let twoFaults = RawClient.request(
                fd, "{\"airlock\":1,\"id\":8,\"method\":\"probe\",\"params\":{\"timeout\":-1}}")
            #expect(twoFaults.flatMap(errorCode) == "no-descriptor", "\(String(describing: twoFaults))")
            let metrics = RawClient.request(fd, "{\"airlock\":1,\"id\":7,\"method\":\"metrics\"}")
            #expect((metrics?["metrics"] as? String)?.contains("airlockd_requests_total") == true)
        }

        // DaemonClient's probe without a descriptor.
        do {
            let client = try DaemonClient(path: socket)
            let error = #expect(throws: ClientError.self) {
                try client.call("probe", params: [("name", .string("x"))], timeout: 10)
            }
            #expect(error?.code == "no-descriptor", "\(String(describing: error))")
        }

        // Descriptors: two on a probe, five on a probe, a pipe, one on a status request.
        do {
            let path = "\(daemon.dir)/one-byte"
            try Data("x".utf8).write(to: URL(fileURLWithPath: path))
            let file = open(path, O_RDONLY | O_CLOEXEC)
            defer { close(file) }
            var pipeFDs: [Int32] = [-1, -1]
            #expect(pipe(&pipeFDs) == 0)
            defer { for fd in pipeFDs { close(fd) } }

            let fd = RawClient.connect(socket)
            defer { close(fd) }
            RawClient.setTimeout(fd, 10)
            let probe = RawClient.frame("{\"airlock\":1,\"id\":1,\"method\":\"probe\",\"params\":{\"name\":\"two\"}}")
            #expect(RawClient.send(fd, probe, descriptors: [file, file]) == probe.count)
            let two = try? RawClient.readMessage(fd).get()
            #expect(two.flatMap(errorCode) == "no-descriptor", "\(String(describing: two))")
            let status = RawClient.frame("{\"airlock\":1,\"id\":2,\"method\":\"status\"}")
            #expect(RawClient.send(fd, status, descriptors: [file]) == status.count)
            let withFD = try? RawClient.readMessage(fd).get()
            #expect(withFD?["ok"] as? Bool == true, "\(String(describing: withFD))")
            let piped = RawClient.frame("{\"airlock\":1,\"id\":3,\"method\":\"probe\",\"params\":{\"name\":\"pipe\"}}")
            #expect(RawClient.send(fd, piped, descriptors: [pipeFDs[0]]) == piped.count)
            let pipeReply = try? RawClient.readMessage(fd).get()
            #expect(
                pipeReply.flatMap(errorCode) == "bad-request" && pipeReply?["id"] as? Int == 3,
                "\(String(describing: pipeReply))")
            let scan = RawClient.frame(
                "{\"airlock\":1,\"id\":4,\"method\":\"scan\",\"params\":{\"name\":\"one-byte\"}}")
            #expect(RawClient.send(fd, scan, descriptors: [file]) == scan.count)
            let scanned = try? RawClient.readMessage(fd).get()
            #expect(
                scanned?["ok"] as? Bool == true && (scanned?["reports"] as? [Any])?.count == 1,
                "\(String(describing: scanned))")

            let many = RawClient.connect(socket)
            defer { close(many) }
            #expect(RawClient.send(many, probe, descriptors: [file, file, file, file, file]) == probe.count)
            let (messages, end) = RawClient.readAll(many, timeout: 5)
            #expect(messages.count == 1 && messages.first.flatMap(errorCode) == "bad-request", "\(messages)")
            #expect(end == .closed)
        }

        // 200 idle connections held open; another client is still answered.
        do {
            var idle: [Int32] = []
            for _ in 0..<200 {
                let fd = RawClient.connect(socket)
                #expect(fd >= 0, "connection \(idle.count): errno \(errno)")
                if fd >= 0 { idle.append(fd) }
            }
            defer { for fd in idle { close(fd) } }
            // One of them with half a message.
            RawClient.sendAll(idle[0], RawClient.header(50) + [UInt8(ascii: "{")])
            let start = Date()
            let status = try daemonStatus(socket)
            #expect(Date().timeIntervalSince(start) < 5)
            #expect((status["connections"] as? Int ?? 0) >= 200, "\(status)")
        }

        #expect(daemon.process.isRunning, "airlockd died: \(daemon.log)")
        // Every descriptor that came with the garbage, and every connection, was closed.
        #expect(
            waitFor(3) { openDescriptors(daemon.pid) <= baseline },
            "airlockd holds \(openDescriptors(daemon.pid)) descriptors, \(baseline) at the start")
        let status = try daemonStatus(socket)
        #expect(status["version"] as? String != nil)
        let refused = status["refused"] as? [String: Int] ?? [:]
        #expect(
            refused["unknown-method"] == 1 && refused["too-large"] ?? 0 >= 1 && refused["no-descriptor"] == 5,
            "\(refused)")
    }
}
