import AirlockDaemon
import AirlockJSON
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// Who may ask airlockd and what it reads for them; leases, a killed worker, SIGTERM under load, `airlock status`.
extension DaemonTests {
    @Test("uid 65534 is refused with forbidden and nothing else; --allow-uid 65534 lets it in")
    func peerCheck() throws {
        do {
            let daemon = try TestDaemon()
            defer { daemon.stop() }
            var st = stat()
            #expect(
                lstat(daemon.socket, &st) == 0 && st.st_mode & 0o777 == 0o600 && st.st_uid == 0,
                "socket mode \(String(st.st_mode & 0o777, radix: 8))")
            // Let the kernel allow the connect, so that SO_PEERCRED is what refuses.
            chmod(daemon.socket, 0o666)
            let result = try DaemonTests.runAsNobody(daemon.socket, "all")
            let replies = result["replies"] as? [[String: Any]] ?? []
            #expect(replies.count == 1, "\(result)")
            #expect(replies.first.flatMap(errorCode) == "forbidden", "\(result)")
            #expect(replies.first?["status"] == nil)
            #expect(["eof", "reset"].contains(result["end"] as? String ?? ""), "\(result)")
            #expect(daemon.log.contains("refused a connection from uid 65534"), "\(daemon.log)")
            let status = try daemonStatus(daemon.socket)
            #expect((status["refused"] as? [String: Int])?["forbidden"] == 1, "\(status)")
        }
        // Groups: nobody's primary group, then a supplementary group (SO_PEERGROUPS).
        do {
            let daemon = try TestDaemon(["--allow-group", "nogroup"])
            defer { daemon.stop() }
            chmod(daemon.socket, 0o666)
            let result = try DaemonTests.runAsNobody(daemon.socket, "one")
            let replies = result["replies"] as? [[String: Any]] ?? []
            #expect(replies.count == 1 && replies.first?["ok"] as? Bool == true, "--allow-group nogroup: \(result)")
        }
        do {
            let daemon = try TestDaemon(["--allow-group", "users"])
            defer { daemon.stop() }
            chmod(daemon.socket, 0o666)
            let refused = try DaemonTests.runAsNobody(daemon.socket, "all")
            #expect((refused["replies"] as? [[String: Any]])?.first.flatMap(errorCode) == "forbidden", "\(refused)")
            let result = try DaemonTests.runAsNobody(daemon.socket, "one", groups: "100")
            let replies = result["replies"] as? [[String: Any]] ?? []
            #expect(replies.count == 1 && replies.first?["ok"] as? Bool == true, "supplementary group users: \(result)")
        }
        do {
            let daemon = try TestDaemon(["--allow-uid", "65534"])
            defer { daemon.stop() }
            chmod(daemon.socket, 0o666)
            let result = try DaemonTests.runAsNobody(daemon.socket, "one")
            let replies = result["replies"] as? [[String: Any]] ?? []
            #expect(
                replies.count == 1 && replies.first?["ok"] as? Bool == true && replies.first?["id"] as? Int == 7,
                "\(result)")
            #expect(replies.first?["status"] is [String: Any], "\(result)")
        }
    }

    @Test("a client cannot have the daemon read a file it cannot read: O_PATH and write-only descriptors are refused")
    func descriptorAccess() throws {
        // One worker: the walks as uid 65534 and root's run on the same thread.
        let daemon = try TestDaemon(["--allow-uid", "65534", "--max-concurrent", "1"])
        defer { daemon.stop() }
        chmod(daemon.socket, 0o666)
        // Root's file, readable by root only; writable by everyone, so that nobody can open it write-only.
        let secret = "\(daemon.dir)/secret.pkl"
        try Data("cos\nsystem\n(S'id'\ntR.".utf8).write(to: URL(fileURLWithPath: secret))
        chmod(secret, 0o622)
        let denied = try DaemonTests.runAsNobody(
            daemon.socket, secret, code: DaemonTests.pythonDescriptorClient, ["read"])
        #expect(denied["openErrno"] as? Int == Int(EACCES), "nobody could open the secret for reading: \(denied)")
        for flags in ["path", "write"] {
            let reply = try DaemonTests.runAsNobody(
                daemon.socket, secret, code: DaemonTests.pythonDescriptorClient, [flags])
            #expect(errorCode(reply) == "bad-request", "\(flags) descriptor: \(reply)")
            #expect(reply["reports"] == nil, "the daemon read the secret through a \(flags) descriptor: \(reply)")
        }
        // A readable descriptor is fine.
        chmod(secret, 0o644)
        let reply = try DaemonTests.runAsNobody(
            daemon.socket, secret, code: DaemonTests.pythonDescriptorClient, ["read"])
        #expect(reply["ok"] as? Bool == true && (reply["reports"] as? [Any])?.count == 1, "\(reply)")

        // A folder the client may list: inside it, only what the client could open itself is read.
        let folder = "\(daemon.dir)/folder"
        try FileManager.default.createDirectory(atPath: "\(folder)/private", withIntermediateDirectories: true)
        chmod(folder, 0o755)
        chmod("\(folder)/private", 0o700)
        for (name, mode) in [("public.pkl", 0o644), ("secret.pkl", 0o600), ("private/inner.pkl", 0o644)]
            as [(String, mode_t)]
        {
            try Data("cos\nsystem\n(S'id'\ntR.".utf8).write(to: URL(fileURLWithPath: "\(folder)/\(name)"))
            chmod("\(folder)/\(name)", mode)
        }
        for method in ["scan", "probe"] {
            let walked = try DaemonTests.runAsNobody(
                daemon.socket, folder, code: DaemonTests.pythonDescriptorClient, ["dir", method])
            let reports = walked["reports"] as? [[String: Any]] ?? []
            let byPath = Dictionary(reports.map { (($0["target"] as? [String: Any])?["path"] as? String ?? "?", $0) }) {
                a, _ in a
            }
            #expect(
                walked["ok"] as? Bool == true && byPath["secret/public.pkl"]?["verdict"] as? String == "malicious",
                "\(method): \(byPath.keys.sorted())")
            if method == "probe" {
                // Detonated with the daemon's rights: the sandbox started and the payload was caught at load.
                let rules = (byPath["secret/public.pkl"]?["findings"] as? [[String: Any]] ?? []).compactMap {
                    $0["rule"] as? String
                }
                #expect(rules.contains("dynamic.exec"), "\(String(describing: byPath["secret/public.pkl"]))")
            }
            let leaked = byPath["secret/secret.pkl"].flatMap { ($0["target"] as? [String: Any])?["sha256"] as? String }
            #expect(
                leaked == nil,
                "\(method): the daemon read a file uid 65534 may not read: \(String(describing: byPath["secret/secret.pkl"]))"
            )
            #expect(
                !byPath.keys.contains { $0.contains("inner.pkl") },
                "\(method): the daemon listed a folder uid 65534 may not list: \(byPath.keys.sorted())")
            #expect(
                byPath["secret/private"]?["verdict"] as? String == "error",
                "\(method): a folder the client cannot enter is an error report, not silently empty: \(byPath.keys.sorted())"
            )
        }
        // Root's own folder scan still reads everything.
        let rootDescriptor = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(rootDescriptor) }
        let client = try DaemonClient(path: daemon.socket)
        let all = foundation(
            try client.call("scan", params: [("name", .string("f"))], descriptor: rootDescriptor, timeout: 30))
        let paths = (all["reports"] as? [[String: Any]] ?? []).compactMap {
            ($0["target"] as? [String: Any])?["sha256"] as? String
        }
        #expect(paths.count == 3, "\(all)")
        let probed = foundation(
            try client.call("probe", params: [("name", .string("f"))], descriptor: rootDescriptor, timeout: 30))
        let detonated = (probed["reports"] as? [[String: Any]] ?? []).filter {
            ($0["findings"] as? [[String: Any]] ?? []).contains { $0["rule"] as? String == "dynamic.exec" }
        }
        #expect(detonated.count == 3, "\(probed)")
    }

    @Test("read leases: a file open for writing is refused as file-busy; while it is probed, a writer must wait")
    func leases() throws {
        try withDetonationDaemon() { dir, daemon in
            let socket = daemon.socket
            let model = "\(dir)/cpu_loop.pkl"
            let writer = open("\(dir)/resnetish.pt", O_WRONLY | O_CLOEXEC)
            #expect(writer >= 0)
            let busy = probeThroughDaemon(socket, "\(dir)/resnetish.pt", client: 30)
            #expect(busy.code == "file-busy", "\(busy)")
            close(writer)
            let after = probeThroughDaemon(socket, "\(dir)/resnetish.pt", client: 30)
            #expect(after.code == nil && after.verdicts == ["clean"], "\(after)")

            let results = Collector<ProbeOutcome>()
            onThreads(1, into: results) { _ in probeThroughDaemon(socket, model, timeout: 2, client: 60) }
            #expect(waitFor(15) { loaders(under: daemon.pid).count == 1 }, "the loader never ran")
            let blocked = open(model, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            let blockedErrno = errno
            if blocked >= 0 { close(blocked) }
            #expect(
                blocked < 0 && blockedErrno == EWOULDBLOCK,
                "a writer opened the file under probe (errno \(blockedErrno))")
            let done = results.wait(count: 1, timeout: 20)
            #expect(done.first?.code == nil && done.first?.verdicts == ["suspicious"], "\(done)")
            let free = open(model, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            #expect(free >= 0, "the lease outlived the probe (errno \(errno))")
            if free >= 0 { close(free) }
        }
    }

    @Test("a worker's sandboxed loader killed mid-probe: the client hears promptly, the daemon serves the next request")
    func workerKilled() throws {
        // One world: a killed loader's world ends, and a second world would start another loader.
        try withDetonationDaemon(["--max-concurrent", "2"], config: ["worlds": 1]) { dir, daemon in
            let socket = daemon.socket
            let model = "\(dir)/cpu_loop.pkl"
            let results = Collector<ProbeOutcome>()
            onThreads(1, into: results) { _ in probeThroughDaemon(socket, model, timeout: 40, client: 60) }
            var found: [Int32] = []
            #expect(
                waitFor(15) {
                    found = loaders(under: daemon.pid)
                    return !found.isEmpty
                }, "no loader under airlockd")
            try #require(!found.isEmpty)
            usleep(300_000)  // well inside the load
            let killed = Date()
            for pid in found { kill(pid, SIGKILL) }
            let done = results.wait(count: 1, timeout: 15)
            try #require(done.count == 1, "the client never heard back")
            let outcome = done[0]
            #expect(
                outcome.finished.timeIntervalSince(killed) < 5,
                "answered \(outcome.finished.timeIntervalSince(killed)) s after the kill")
            if outcome.code == nil {
                #expect(outcome.verdicts.count == 1 && outcome.verdicts != ["clean"], "\(outcome)")
                #expect(outcome.rules.contains("dynamic.crashed"), "\(outcome)")
            }
            #expect(daemon.process.isRunning)
            let next = probeThroughDaemon(socket, "\(dir)/resnetish.pt", client: 30)
            #expect(next.code == nil && next.verdicts == ["clean"], "\(next)")
            #expect(loaders(under: daemon.pid).isEmpty)
        }
    }

    @Test(
        "airlockd SIGKILLed mid-probe: its sandboxes die with it, the client gets an error, a new daemon takes the socket"
    )
    func daemonKilled() throws {
        try withDetonationDaemon(["--max-concurrent", "2"]) { dir, daemon in
            let socket = daemon.socket
            let model = "\(dir)/cpu_loop.pkl"
            let results = Collector<ProbeOutcome>()
            onThreads(2, into: results) { _ in probeThroughDaemon(socket, model, timeout: 40, client: 60) }
            #expect(waitFor(15) { loaders(under: daemon.pid).count == 2 }, "two loaders never ran")
            let tree = descendants(of: daemon.pid).map(\.pid)
            #expect(tree.count >= 4, "sandbox processes: \(tree)")
            let killed = Date()
            kill(daemon.pid, SIGKILL)
            let done = results.wait(count: 2, timeout: 10)
            #expect(done.count == 2, "\(2 - done.count) clients hang")
            for outcome in done {
                #expect(outcome.code != nil, "\(outcome)")
                #expect(outcome.finished.timeIntervalSince(killed) < 3, "\(outcome)")
            }
            let gone = waitFor(2) { tree.allSatisfy { !running($0) } }
            let left = tree.compactMap(hostProcess).filter { $0.state != "Z" }
            #expect(gone, "left behind: \(left.map { "\($0.pid) \($0.cmdline)" })")
            #expect(!tree.compactMap(hostProcess).contains { isLoader($0) })

            // The stale socket file is replaced by the next daemon.
            #expect(daemon.waitForExit(timeout: 5))
            let next = try TestDaemon(directory: daemon.dir)
            defer { next.stop() }
            let outcome = probeThroughDaemon(next.socket, "\(dir)/resnetish.pt", client: 30)
            #expect(outcome.code == nil && outcome.verdicts == ["clean"], "\(outcome)")
        }
    }

    @Test("SIGTERM under load: requests in flight answered, queued and new ones refused, exit 0, socket removed")
    func sigtermUnderLoad() throws {
        try withDetonationDaemon(["--max-concurrent", "3"]) { dir, daemon in
            let socket = daemon.socket
            let model = "\(dir)/cpu_loop.pkl"
            let results = Collector<ProbeOutcome>()
            onThreads(3, into: results) { _ in probeThroughDaemon(socket, model, timeout: 3, client: 60) }
            #expect(waitFor(15) { loaders(under: daemon.pid).count == 3 }, "three loaders never ran")
            // A fourth waits in the queue.
            onThreads(1, into: results) { _ in probeThroughDaemon(socket, "\(dir)/resnetish.pt", client: 60) }
            #expect(
                waitFor(5) { ((try? daemonStatus(socket))?["queueDepth"] as? Int) == 1 },
                "the fourth request never queued")
            // A connection made (and accepted: it is answered) before the signal, used after it.
            let early = try DaemonClient(path: socket)
            _ = try early.call("status", timeout: 10)

            kill(daemon.pid, SIGTERM)
            #expect(waitFor(2) { access(socket, F_OK) != 0 }, "the socket file is still there")
            let refused = RawClient.connect(socket)
            #expect(refused < 0, "a new connection was accepted after SIGTERM")
            if refused >= 0 { close(refused) }
            let fd = open("\(dir)/resnetish.pt", O_RDONLY | O_CLOEXEC)
            defer { close(fd) }
            let late = #expect(throws: ClientError.self) {
                try early.call("probe", params: [("name", .string("late"))], descriptor: fd, timeout: 10)
            }
            #expect(late?.code == "shutting-down", "\(String(describing: late))")

            let done = results.wait(count: 4, timeout: 20)
            #expect(done.count == 4, "\(4 - done.count) clients hang")
            let answered = done.filter { $0.code == nil }
            let stopped = done.filter { $0.code == "shutting-down" }
            #expect(answered.count == 3, "\(done)")
            for outcome in answered {
                #expect(outcome.verdicts == ["suspicious"] && outcome.rules.contains("dynamic.timeout"), "\(outcome)")
            }
            #expect(stopped.count == 1, "\(done)")

            #expect(daemon.waitForExit(timeout: 20), "airlockd still running after SIGTERM")
            if !daemon.process.isRunning {
                #expect(
                    daemon.process.terminationReason == .exit && daemon.process.terminationStatus == 0,
                    "exit \(daemon.process.terminationStatus) \(daemon.process.terminationReason == .exit ? "" : "(signal)"): \(daemon.log)"
                )
            }
            #expect(access(socket, F_OK) != 0)
            #expect(waitFor(2) { descendants(of: daemon.pid).isEmpty })
        }
    }

    @Test("airlock status --json counts requests and verdicts; --prometheus prints airlockd_requests_total")
    func status() throws {
        try withSamples("models.py") { dir, _ in
            let daemon = try TestDaemon(["--max-concurrent", "2", "--queue", "7"])
            defer { daemon.stop() }
            let socket = daemon.socket
            let probe = try runCLI([
                "--socket", socket, "probe", "--format", "json", "\(dir)/benign.pt", "\(dir)/evil.pt",
                "\(dir)/model.safetensors",
            ])
            #expect(probe.status == 1, "\(probe.stderr)")
            let scan = try runCLI(["--socket", socket, "scan", "--format", "json", "\(dir)/hf_repo"])
            #expect(scan.status == 1, "\(scan.stderr)")
            let fd = RawClient.connect(socket)
            _ = RawClient.request(fd, "{\"airlock\":1,\"id\":1,\"method\":\"nope\"}")
            close(fd)

            let json = try runCLI(["status", "--socket", socket, "--json"])
            #expect(json.status == 0, "\(json.stderr)")
            let status = try #require(
                (try? JSONSerialization.jsonObject(with: Data(json.stdout.utf8))) as? [String: Any], "\(json.stdout)")
            #expect(status["requests"] as? Int == 5, "\(status)")
            let verdicts = status["verdicts"] as? [String: Int] ?? [:]
            // probe: clean, malicious, clean; scan of hf_repo: config.json and modeling_custom.py suspicious, the
            // weights clean.
            #expect(verdicts == ["clean": 4, "malicious": 1, "suspicious": 2, "error": 0], "\(verdicts)")
            #expect((status["refused"] as? [String: Int]) == ["unknown-method": 1], "\(status)")
            #expect(status["workers"] as? Int == 2 && status["queueCapacity"] as? Int == 7, "\(status)")
            #expect((status["latencyMs"] as? [String: Any])?["samples"] as? Int == 4, "\(status)")

            let prometheus = try runCLI(["status", "--socket", socket, "--prometheus"])
            #expect(prometheus.status == 0, "\(prometheus.stderr)")
            #expect(prometheus.stdout.contains("# TYPE airlockd_requests_total counter"))
            #expect(
                prometheus.stdout.contains("airlockd_requests_total{method=\"probe\",outcome=\"ok\"} 3"),
                "\(prometheus.stdout)")
            #expect(
                prometheus.stdout.contains("airlockd_requests_total{method=\"scan\",outcome=\"ok\"} 1"),
                "\(prometheus.stdout)")
            #expect(
                prometheus.stdout.contains("airlockd_verdicts_total{verdict=\"malicious\"} 1"), "\(prometheus.stdout)")

            let text = try runCLI(["status"], socketVariable: socket)
            #expect(text.status == 0 && text.stdout.contains("requests     5"), "\(text.stdout) \(text.stderr)")
        }
    }
}
