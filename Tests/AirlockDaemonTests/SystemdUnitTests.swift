import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The systemd side of airlockd without a running systemd: the unit files pass `systemd-analyze verify`, the
/// sysusers.d and tmpfiles.d entries apply, and the daemon speaks the service protocol under
/// `systemd-socket-activate` (socket activation, READY=1, WATCHDOG=1, STOPPING=1, exit 0 on SIGTERM). The hardening
/// directives need a service manager and are checked by hand (docs/daemon.md, "Hardening").
@Suite("airlockd under systemd", .serialized)
struct SystemdUnitTests {
    /// The last value of each `Key=value` line of `systemd/NAME` (comments skipped), by key.
    static func settings(_ name: String) throws -> (String) -> String? {
        let unit = try String(contentsOfFile: "\(repositoryRoot)/systemd/\(name)", encoding: .utf8)
        let lines = unit.split(separator: "\n").filter { !$0.hasPrefix("#") && $0.contains("=") }.map(String.init)
        return { key in lines.last { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) } }
    }

    @Test("systemd-analyze verify: no complaint about the units but the binary not being installed")
    func unitsVerify() throws {
        let run = try runProgram(
            "/usr/bin/systemd-analyze",
            ["verify", "systemd/airlockd.service", "systemd/airlockd.socket", "systemd/airlock-intake.service"],
            directory: repositoryRoot)
        let lines = (run.stdout + run.stderr).split(separator: "\n").map(String.init)
        let unexpected = lines.filter {
            !$0.contains("Command /usr/local/bin/airlockd is not executable")
                && !$0.contains("Command /usr/local/bin/airlock is not executable")
        }
        #expect(unexpected.isEmpty, "systemd-analyze verify: \(unexpected.joined(separator: "\n"))")
        // The only acceptable failure is the missing binary.
        #expect(
            run.status == 0
                || lines.contains {
                    $0.contains("/usr/local/bin/airlockd is not executable")
                        || $0.contains("/usr/local/bin/airlock is not executable")
                })
    }

    @Test("the unit keeps what the sandbox needs: mixed kill mode, no filter that reaches into sandboxes")
    func unitContents() throws {
        let value = try SystemdUnitTests.settings("airlockd.service")
        #expect(value("Type") == "notify")
        #expect(value("ExecStart") == "/usr/local/bin/airlockd")
        #expect(value("KillMode") == "mixed")
        #expect(
            Set(value("CapabilityBoundingSet")?.split(separator: " ").map(String.init) ?? [])
                == ["CAP_SETUID", "CAP_SETGID", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH", "CAP_LEASE"])
        // Each of these breaks the sandbox or hides what a payload does (docs/daemon.md).
        // Sandboxes get cgroups of their own below the service's: delegated, and writable.
        #expect(value("Delegate") == "yes")
        for key in [
            "ProtectControlGroups", "ProtectHostname", "RestrictNamespaces", "MemoryDenyWriteExecute",
            "RestrictSUIDSGID",
            "PrivateUsers", "SystemCallFilter", "DynamicUser", "User",
        ] {
            #expect(value(key) == nil, "\(key) must not be set")
        }
        // The families the default profile lets a payload create, so that its attempts reach the notifier.
        #expect(value("RestrictAddressFamilies") == "AF_UNIX AF_INET AF_INET6 AF_NETLINK")
        let socket = try String(contentsOfFile: "\(repositoryRoot)/systemd/airlockd.socket", encoding: .utf8)
        #expect(socket.contains("ListenStream=/run/airlock/airlockd.sock\n"))
        #expect(socket.contains("SocketMode=0660\n") && socket.contains("SocketGroup=airlock\n"))
    }

    @Test("sysusers.d creates the group airlock, tmpfiles.d the socket's directory (in a scratch root)")
    func sysusersAndTmpfiles() throws {
        let root = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: "\(root)/etc", withIntermediateDirectories: true)
        let users = try runProgram(
            "/usr/bin/systemd-sysusers", ["--root", root, "\(repositoryRoot)/systemd/sysusers.d/airlock.conf"])
        #expect(users.status == 0, "\(users.stderr)")
        let group = try String(contentsOfFile: "\(root)/etc/group", encoding: .utf8)
        #expect(group.split(separator: "\n").contains { $0.hasPrefix("airlock:x:") }, "\(group)")
        let files = try runProgram(
            "/usr/bin/systemd-tmpfiles",
            ["--root", root, "--create", "\(repositoryRoot)/systemd/tmpfiles.d/airlock.conf"])
        #expect(files.status == 0, "\(files.stderr)")
        var st = stat()
        #expect(stat("\(root)/run/airlock", &st) == 0)
        #expect(st.st_mode & S_IFMT == S_IFDIR && st.st_mode & 0o7777 == 0o755 && st.st_uid == 0 && st.st_gid == 0)
        // The intake's user and its quarantine root.
        let passwd = try String(contentsOfFile: "\(root)/etc/passwd", encoding: .utf8)
        let intakeUser = try #require(passwd.split(separator: "\n").first { $0.hasPrefix("airlock-intake:x:") })
        let airlockGID = try #require(
            group.split(separator: "\n").first { $0.hasPrefix("airlock:x:") }?.split(separator: ":")[2])
        #expect(
            intakeUser.split(separator: ":")[3] == airlockGID, "airlock-intake's group is airlock (airlockd's clients)")
        for (folder, mode) in [
            ("incoming", 0o2770), ("quarantine", 0o700), ("approved", 0o750), ("rejected", 0o750), (".airlock", 0o700),
        ] {
            var f = stat()
            #expect(
                stat("\(root)/var/lib/airlock/intake/\(folder)", &f) == 0 && f.st_mode & 0o7777 == mode, "\(folder)")
        }
    }

    @Test("the intake unit: watch mode through airlockd, as the unprivileged user airlock-intake with CAP_LEASE only")
    func intakeUnit() throws {
        let value = try SystemdUnitTests.settings("airlock-intake.service")
        #expect(value("Type") == "notify")
        #expect(value("User") == "airlock-intake")
        #expect(value("ExecStart")?.contains(" intake --root /var/lib/airlock/intake ") == true)
        #expect(value("ExecStart")?.hasSuffix("--socket /run/airlock/airlockd.sock --watch") == true)
        #expect(value("CapabilityBoundingSet") == "CAP_LEASE" && value("AmbientCapabilities") == "CAP_LEASE")
        #expect(value("ReadWritePaths") == "/var/lib/airlock/intake")
    }

    @Test(
        "socket activation: started on the first connection, READY=1, WATCHDOG=1, then STOPPING=1 and exit 0 on SIGTERM"
    )
    func socketActivation() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let notify = try NotifySocket(path: "\(dir)/notify")
        let socketPath = "\(dir)/airlockd.sock"
        let log = "\(dir)/airlockd.log"
        let activator = try Child(
            "/usr/bin/systemd-socket-activate",
            [
                "-l", socketPath, "-E", "NOTIFY_SOCKET=\(notify.path)", "-E", "WATCHDOG_USEC=1000000", airlockdBinary,
            ], output: log)
        defer { activator.stop() }
        try waitForFile(socketPath)
        #expect(notify.receive(timeout: 0.5) == nil, "nothing runs before the first connection")

        let status = try runCLI(["status", "--json", "--socket", socketPath], timeout: 60)
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("\"version\""))
        let ready = notify.messages(until: "READY=1", timeout: 30)
        #expect(ready.last?.contains("READY=1") == true, "\(ready)")
        #expect(ready.last?.contains("STATUS=answering on the systemd socket") == true, "\(ready)")
        // WATCHDOG_USEC=1 s: a ping every half second.
        let watchdog = notify.messages(until: "WATCHDOG=1", timeout: 5)
        #expect(watchdog.last == "WATCHDOG=1", "\(watchdog)")

        kill(activator.pid, SIGTERM)  // systemd-socket-activate execs airlockd in its own process
        let stopping = notify.messages(until: "STOPPING=1", timeout: 15)
        #expect(stopping.last?.hasPrefix("STOPPING=1") == true, "\(stopping)")
        #expect(exitedCleanly(activator.wait(timeout: 15)))
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("<6>airlockd: listening on the socket systemd passed (descriptor 3)"), "\(text)")
        #expect(text.contains("<5>airlockd: stopped"), "\(text)")
    }

    @Test("a passed socket that is not listening (Accept=yes) is refused at start, not spun on")
    func acceptModeRefused() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socketPath = "\(dir)/airlockd.sock"
        let log = "\(dir)/activate.log"
        let activator = try Child(
            "/usr/bin/systemd-socket-activate", ["-a", "-l", socketPath, airlockdBinary], output: log)
        defer { activator.stop() }
        try waitForFile(socketPath)
        let status = try runCLI(["status", "--socket", socketPath], timeout: 60)
        #expect(status.status == 2)
        let text = try waitForText(in: log, "died with code 1")
        #expect(text.contains("is not a listening Unix stream socket"), "\(text)")
    }

    @Test("out of descriptors: the daemon waits instead of spinning, and serves again once connections close")
    func descriptorExhaustion() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socketPath = "\(dir)/airlockd.sock"
        let log = "\(dir)/airlockd.log"
        // A hard limit the profile's openFiles (256) fits under: the daemon resolves its Python runtime in a sandbox
        // at start, and a sandbox cannot be given more descriptors than its supervisor may have.
        let daemon = try Child(
            // 128 is the least a sandbox's set-up needs (the daemon describes its Python runtime in one at start).
            "/usr/bin/prlimit", ["--nofile=128:128", airlockdBinary, "--socket", socketPath], output: log)
        defer { daemon.stop() }
        try waitForFile(socketPath)
        var clients: [Int32] = []
        for _ in 0..<160 { clients.append(try connectUnix(socketPath)) }
        Thread.sleep(forTimeInterval: 0.5)
        let before = cpuSeconds(daemon.pid)
        Thread.sleep(forTimeInterval: 2)
        let used = cpuSeconds(daemon.pid) - before
        #expect(used < 0.5, "airlockd used \(used) s of CPU in 2 s with its descriptor table full")
        for fd in clients { close(fd) }
        let status = try runCLI(["status", "--socket", socketPath], timeout: 60)
        #expect(status.status == 0, "\(status.stderr)")
        #expect(try waitForText(in: log, "cannot accept connections").contains("Too many open files"))
    }

    @Test("the soft descriptor limit is raised to the hard one")
    func descriptorLimitRaised() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let socketPath = "\(dir)/airlockd.sock"
        let daemon = try Child(
            "/usr/bin/prlimit", ["--nofile=64:4096", airlockdBinary, "--socket", socketPath], output: "\(dir)/log")
        defer { daemon.stop() }
        try waitForFile(socketPath)
        let limits = try String(contentsOfFile: "/proc/\(daemon.pid)/limits", encoding: .utf8)
        let line = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") } ?? ""
        #expect(
            line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).prefix(2) == ["4096", "4096"],
            "\(line)")
    }

    @Test("docs/protocol.md's Python client probes a malicious pickle through the daemon")
    func protocolExample() throws {
        let doc = try String(contentsOfFile: "\(repositoryRoot)/docs/protocol.md", encoding: .utf8)
        let start = try #require(doc.range(of: "```python\n"))
        let end = try #require(doc.range(of: "\n```", range: start.upperBound..<doc.endIndex))
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try String(doc[start.upperBound..<end.lowerBound]).write(
            toFile: "\(dir)/client.py", atomically: true, encoding: .utf8)
        // A pickle whose loading calls exec: it tries to connect out, then tries a shell.
        let code =
            "import os, socket\\u000atry:\\u000a    socket.create_connection(('127.0.0.1', 9), timeout=1)\\u000aexcept OSError:\\u000a    pass\\u000aos.system('id')\\u000a"
        try Data("cbuiltins\nexec\n(V\(code)\ntR.".utf8).write(to: URL(fileURLWithPath: "\(dir)/exfil.pkl"))
        let socketPath = "\(dir)/airlockd.sock"
        let daemon = try Child(airlockdBinary, ["--socket", socketPath], output: "\(dir)/log")
        defer { daemon.stop() }
        try waitForFile(socketPath)
        let run = try runProgram("/usr/bin/python3", ["\(dir)/client.py", socketPath, "\(dir)/exfil.pkl"])
        #expect(run.status == 0, "\(run.stderr)")
        let words = run.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        #expect(words.first == "malicious", "\(run.stdout)")
        #expect(words.contains("dynamic.network") && words.contains("dynamic.exec"), "\(run.stdout)")
    }
}

/// What a client passes is opened with the client's file-system identity: a descriptor or a folder never lets the
/// daemon's root read, on the client's behalf, what the client could not read itself.
@Suite("airlockd opens what a client passes as that client", .serialized)
struct DaemonClientIdentityTests {
    @Test("an O_PATH descriptor or a folder of a file the client cannot read gives no report of its content")
    func confusedDeputy() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let client: uid_t = 4242
        let secret = "TOPSECRET-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: "\(dir)/secret", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(dir)/mine", withIntermediateDirectories: true)
        for (path, word) in [("\(dir)/secret/private.pkl", secret), ("\(dir)/mine/own.pkl", "mine")] {
            try Data(
                "cbuiltins\nexec\n(Vimport socket\\u000aprint('\(word)')\\u000asocket.create_connection(('127.0.0.1', 9))\ntR."
                    .utf8
            )
            .write(to: URL(fileURLWithPath: path))
        }
        chmod("\(dir)/secret/private.pkl", 0o600)  // root's, in a folder anyone may list
        chown("\(dir)/mine", client, client)
        chown("\(dir)/mine/own.pkl", client, client)
        chmod("\(dir)/mine", 0o700)
        chmod("\(dir)/mine/own.pkl", 0o600)
        let script = """
            import json, os, socket, struct, sys
            def call(sock, request, fd):
                body = json.dumps(request).encode()
                socket.send_fds(sock, [struct.pack(">I", len(body)) + body], [fd])
                (n,) = struct.unpack(">I", sock.recv(4, socket.MSG_WAITALL))
                return json.loads(sock.recv(n, socket.MSG_WAITALL))
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(sys.argv[1])
            for method, path, flags in [("scan", "\(dir)/secret/private.pkl", os.O_PATH), ("scan", "\(dir)/secret", os.O_RDONLY),
                                        ("probe", "\(dir)/mine/own.pkl", os.O_RDONLY)]:
                print(json.dumps(call(sock, {"airlock": 1, "id": path, "method": method, "params": {"name": path}}, os.open(path, flags))))
            """
        try script.write(toFile: "\(dir)/client.py", atomically: true, encoding: .utf8)
        let socketPath = "\(dir)/airlockd.sock"
        let daemon = try Child(
            airlockdBinary, ["--socket", socketPath, "--allow-uid", String(client)], output: "\(dir)/log")
        defer { daemon.stop() }
        try waitForFile(socketPath)
        chmod(socketPath, 0o666)
        let run = try runProgram(
            "/usr/bin/setpriv",
            [
                "--reuid", String(client), "--regid", String(client), "--clear-groups",
                "/usr/bin/python3", "\(dir)/client.py", socketPath,
            ])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(!run.stdout.contains(secret), "the reports hold what the client could not read: \(run.stdout)")
        let replies = run.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        try #require(replies.count == 3, "\(run.stdout)")
        // The O_PATH descriptor: reopened as the client, refused.
        #expect((replies[0]["error"] as? [String: Any])?["code"] as? String == "bad-request", "\(replies[0])")
        // The folder: listed, its root-only file not opened.
        let folder = try #require(replies[1]["reports"] as? [[String: Any]], "\(replies[1])")
        #expect(folder.count == 1 && folder.first?["verdict"] as? String == "error", "\(folder)")
        // The client's own file in its own 0700 folder: probed as usual, sandbox and all.
        let own = try #require((replies[2]["reports"] as? [[String: Any]])?.first, "\(replies[2])")
        #expect(own["verdict"] as? String == "malicious")
        let rules = (own["findings"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String }
        #expect(rules.contains("dynamic.network"), "\(rules)")
    }

    @Test("an ONNX model's external file the client cannot read is not passed into its detonation")
    func onnxExternalDataAsClient() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let client: uid_t = 4243
        let models = try generateSamples("onnx_models.py", ["--detonation"])
        defer { try? FileManager.default.removeItem(atPath: models) }
        let folder = "\(dir)/onnx"
        try FileManager.default.copyItem(atPath: "\(models)/external-inside", toPath: folder)
        chmod(dir, 0o755)
        chmod(folder, 0o755)
        chmod("\(folder)/model.onnx", 0o644)
        chmod("\(folder)/model.onnx.data", 0o600)  // root's: the client cannot read it
        let script = """
            import json, os, socket, struct, sys
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(sys.argv[1])
            body = json.dumps({"airlock": 1, "id": "1", "method": "probe", "params": {"name": "onnx"}}).encode()
            socket.send_fds(sock, [struct.pack(">I", len(body)) + body], [os.open(sys.argv[2], os.O_RDONLY)])
            (n,) = struct.unpack(">I", sock.recv(4, socket.MSG_WAITALL))
            print(sock.recv(n, socket.MSG_WAITALL).decode())
            """
        try script.write(toFile: "\(dir)/client.py", atomically: true, encoding: .utf8)
        let socketPath = "\(dir)/airlockd.sock"
        let daemon = try Child(
            airlockdBinary, ["--socket", socketPath, "--allow-uid", String(client)], output: "\(dir)/log")
        defer { daemon.stop() }
        try waitForFile(socketPath)
        chmod(socketPath, 0o666)
        let run = try runProgram(
            "/usr/bin/setpriv",
            [
                "--reuid", String(client), "--regid", String(client), "--clear-groups",
                "/usr/bin/python3", "\(dir)/client.py", socketPath, folder,
            ])
        #expect(run.status == 0, "\(run.stderr)")
        let reply = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        let reports = try #require(reply["reports"] as? [[String: Any]], "\(reply)")
        let model = try #require(reports.first { ($0["target"] as? [String: Any])?["format"] as? String == "onnx" })
        let findings = model["findings"] as? [[String: Any]] ?? []
        let note = try #require(findings.first { $0["rule"] as? String == "probe.onnx" }, "\(findings)")
        let evidence = note["evidence"] as? [String: Any]
        // Read as the client, the file is refused: nothing passed, and the load fails for want of it.
        #expect(evidence?["packed"] as? String == "0", "\(note)")
        #expect(model["verdict"] as? String != "clean", "\(findings)")
    }
}

/// Descriptors go to the request whose bytes they were sent with, also when requests are pipelined.
@Suite("airlockd pairs descriptors with their requests")
struct DaemonDescriptorTests {
    @Test("status, scan with a descriptor, status, scan with its descriptor on its first bytes, status: all answered")
    func pipelined() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("cbuiltins\nexec\n(Vprint(1)\ntR.".utf8).write(to: URL(fileURLWithPath: "\(dir)/m.pkl"))
        let script = """
            import json, os, socket, struct, sys
            def frame(o):
                b = json.dumps(o).encode()
                return struct.pack(">I", len(b)) + b
            def reply(s):
                (n,) = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))
                r = json.loads(s.recv(n, socket.MSG_WAITALL))
                return "%s:%s" % (r["id"], "ok" if r["ok"] else r["error"]["code"])
            fd = os.open(sys.argv[2], os.O_RDONLY)
            for _ in range(10):
                s = socket.socket(socket.AF_UNIX)
                s.connect(sys.argv[1])
                s.sendall(frame({"airlock": 1, "id": "st1", "method": "status"}))
                socket.send_fds(s, [frame({"airlock": 1, "id": "scan1", "method": "scan"})], [fd])
                s.sendall(frame({"airlock": 1, "id": "st2", "method": "status"}))
                b = frame({"airlock": 1, "id": "scan2", "method": "scan", "params": {"name": "x" * 3000}})
                socket.send_fds(s, [b[:10]], [fd])
                s.sendall(b[10:] + frame({"airlock": 1, "id": "st3", "method": "status"}))
                print(" ".join(reply(s) for _ in range(5)))
            """
        try script.write(toFile: "\(dir)/client.py", atomically: true, encoding: .utf8)
        let socketPath = "\(dir)/airlockd.sock"
        let daemon = try Child(airlockdBinary, ["--socket", socketPath], output: "\(dir)/log")
        defer { daemon.stop() }
        try waitForFile(socketPath)
        let run = try runProgram("/usr/bin/python3", ["\(dir)/client.py", socketPath, "\(dir)/m.pkl"])
        #expect(run.status == 0, "\(run.stderr)")
        let lines = run.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 10)
        for line in lines { #expect(line == "st1:ok scan1:ok st2:ok scan2:ok st3:ok") }
    }
}

// MARK: - Helpers

/// A short, fresh directory (Unix socket paths must stay under 108 bytes).
private func scratchDirectory() throws -> String {
    let path = "/tmp/airlockd-test-\(getpid())-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A program started in the background with `posix_spawn`, its stdout and stderr appended to a file. Not a
/// Foundation `Process`: Foundation learns that a child ended when the child's copy of a monitoring socket closes,
/// and systemd-socket-activate closes every inherited descriptor before it execs airlockd; Foundation then blocks in
/// `waitpid` for a process that still runs, and every later `Process` (runCLI) hangs with it.
private final class Child {
    let pid: pid_t
    private(set) var status: Int32?

    init(_ path: String, _ arguments: [String], output: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // The test runner's threads block signals; a child would inherit that mask (and never see SIGTERM or
        // SIGCHLD). Start it with none blocked and the usual dispositions.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), defaults = sigset_t()
        sigemptyset(&none)
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE, SIGUSR1, SIGUSR2] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
        self.pid = pid
    }

    /// Whether it still runs (reaps it once it has ended).
    var isRunning: Bool {
        guard status == nil else { return false }
        var raw: Int32 = 0
        let rc = waitpid(pid, &raw, WNOHANG)
        if rc == 0 || (rc < 0 && errno == EINTR) { return true }
        status = rc == pid ? raw : -1  // -1: reaped by someone else (ECHILD)
        return false
    }

    /// Waits up to `timeout` seconds for it to end; its wait status, nil while it runs.
    @discardableResult
    func wait(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        return status
    }

    /// SIGTERM, then SIGKILL after 15 s; reaped.
    func stop() {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        if wait(timeout: 15) == nil {
            kill(pid, SIGKILL)
            wait(timeout: 15)
        }
    }
}

/// Whether a wait status says: exited with status 0.
private func exitedCleanly(_ status: Int32?) -> Bool {
    guard let status, status != -1 else { return false }
    return status & 0x7f == 0 && (status >> 8) & 0xff == 0
}

private struct Timeout: Error, CustomStringConvertible {
    let description: String
}

private func waitForFile(_ path: String, timeout: Double = 20) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while !FileManager.default.fileExists(atPath: path) {
        guard Date() < deadline else { throw Timeout(description: "\(path) did not appear within \(timeout) s") }
        Thread.sleep(forTimeInterval: 0.02)
    }
}

/// The file's text once it contains `needle`.
private func waitForText(in path: String, _ needle: String, timeout: Double = 20) throws -> String {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        if text.contains(needle) { return text }
        guard Date() < deadline else {
            throw Timeout(description: "\(path) did not say \"\(needle)\" within \(timeout) s: \(text)")
        }
        Thread.sleep(forTimeInterval: 0.05)
    }
}

/// A connected Unix stream socket.
private func connectUnix(_ path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
    let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
    }
    guard rc == 0 else {
        let e = errno
        close(fd)
        throw POSIXError(POSIXErrorCode(rawValue: e) ?? .EIO)
    }
    return fd
}

/// User plus system CPU time of a process, seconds.
private func cpuSeconds(_ pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return 0 }
    // After "pid (comm) ": state is field 3, utime 14, stime 15.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// A datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
private final class NotifySocket {
    let path: String
    let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }

    deinit { close(fd) }

    /// The next datagram, or nil when none arrives within `timeout` seconds.
    func receive(timeout: Double) -> String? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(timeout * 1000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buffer, buffer.count, 0)
        return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : nil
    }

    /// Datagrams up to and including the first that contains `needle` (all of them if none does in time).
    func messages(until needle: String, timeout: Double) -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        var seen: [String] = []
        while Date() < deadline, let message = receive(timeout: deadline.timeIntervalSinceNow) {
            seen.append(message)
            if message.contains(needle) { break }
        }
        return seen
    }
}
