import AirlockTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `airlock` and `airlockd` in a PID namespace whose `/proc` belongs to the parent (`unshare --pid --fork` without
/// `--mount-proc`, as some CI runners and containers are): a private `/proc` is mounted at start, so the sandbox's
/// maps, notifications and paths are its own; where none can be mounted, airlock refuses and says why
/// (docs/sandbox.md, "Where /proc is not the supervisor's").
@Suite("a /proc of another PID namespace", .serialized)
struct ForeignProcTests {
    /// `unshare --pid --fork --kill-child PROGRAM ARGUMENTS`: PROGRAM is PID 1 of a new PID namespace and sees the
    /// parent's /proc.
    static func inForeignProc(_ program: String, _ arguments: [String]) throws -> (
        status: Int32, stdout: String, stderr: String
    ) {
        try runProgram("/usr/bin/unshare", ["--pid", "--fork", "--kill-child", program] + arguments)
    }

    /// A pickle whose load runs `os.system("touch …")`: the detonation must see the execve and deny it.
    static func writeSystemPickle(_ path: String) throws {
        let made = try runProgram(
            "/usr/bin/python3",
            [
                "-c",
                "import os, pickle, sys\nclass P:\n    def __reduce__(self): return (os.system, ('touch /tmp/airlock-foreign-proc',))\n"
                    + "open(sys.argv[1], 'wb').write(pickle.dumps(P(), protocol=2))",
                path,
            ])
        guard made.status == 0 else { throw DaemonTestError("writing \(path): \(made.stderr)") }
    }

    static func makeDirectory() throws -> String {
        let dir = "/tmp/airlock-foreign-proc-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("the setting is what it claims: /proc/self there is not PID 1's own pid")
    func setting() throws {
        let run = try Self.inForeignProc("/bin/sh", ["-c", "echo $$ $(readlink /proc/self)"])
        let words = run.stdout.split(separator: " ").map(String.init)
        #expect(words.first == "1" && words.count == 2 && words[1] != "1", "\(run.stdout)")
    }

    /// The open is relative, from a second thread: its path is decoded through `/proc/<tid>/cwd` of a thread that
    /// is not PID 1, which under the parent's /proc would be another process's directory.
    @Test("airlock exec runs its command and traces it: a denied relative open from a thread and a connect")
    func execTraces() throws {
        let script = """
            import os, socket, threading
            os.chdir('/etc')
            def look():
                try: open('shadow')
                except OSError as e: print('shadow', e.errno)
            t = threading.Thread(target=look); t.start(); t.join()
            s = socket.socket()
            try: s.connect(('127.0.0.1', 9))
            except OSError as e: print('connect', e.errno)
            """
        let run = try Self.inForeignProc(airlockBinary, ["exec", "--", "python3", "-c", script])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        #expect(!run.stderr.contains("uid_map"), "\(run.stderr)")
        #expect(run.stdout.contains("shadow 13"), "\(run.stdout)")
        let denied = run.stdout.split(separator: "\n").first {
            $0.contains("denied EACCES") && $0.contains(" /etc/shadow ")
        }
        #expect(denied != nil, "\(run.stdout)")
        #expect(run.stdout.contains("inet 127.0.0.1:9"), "\(run.stdout)")
    }

    @Test("airlock probe of a pickle that runs a command: the detonation sees the command")
    func probeSeesPayload() throws {
        let dir = try Self.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.writeSystemPickle("\(dir)/system.pkl")
        let run = try Self.inForeignProc(airlockBinary, ["probe", "--format", "json", "\(dir)/system.pkl"])
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any],
            "\(run.stdout)\(run.stderr)")
        #expect(report["error"] is NSNull, "\(report["error"] ?? "")")
        let findings = (report["findings"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String }
        #expect(findings.contains("dynamic.exec"), "\(findings)")
        let trace = report["trace"] as? [[String: Any]] ?? []
        let exec = trace.first {
            $0["syscall"] as? String == "execve" && ($0["args"] as? [String: Any])?["argv"] as? [String] != nil
                && "\($0["args"] ?? "")".contains("airlock-foreign-proc")
        }
        #expect(exec?["action"] as? String == "denied", "\(trace.filter { $0["syscall"] as? String == "execve" })")
    }

    /// Who cannot mount a private /proc there: root without CAP_SYS_ADMIN, and an unprivileged user.
    static let unable: [[String]] = [
        ["/usr/bin/setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin"],
        ["/usr/bin/setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"],
    ]

    @Test(
        "where no private /proc can be mounted, exec and probe refuse, say why, and spawn nothing",
        arguments: unable)
    func refusesWithoutPrivateProc(drop: [String]) throws {
        let run = try runProgram(
            "/usr/bin/unshare",
            ["--pid", "--fork", "--kill-child"] + drop + [airlockBinary, "exec", "--", "/bin/true"])
        #expect(run.status == 125, "\(run.stdout)\(run.stderr)")
        #expect(run.stderr.contains("the /proc mounted here belongs to another PID namespace (this process is "))
        #expect(run.stderr.contains(", 1 here)"), "\(run.stderr)")
        #expect(run.stderr.contains("unshare(CLONE_NEWNS): EPERM"), "\(run.stderr)")
        #expect(!run.stderr.contains("uid_map"), "\(run.stderr)")
        #expect(!run.stdout.contains("execve"), "\(run.stdout)")
        let dir = try Self.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.writeSystemPickle("\(dir)/system.pkl")
        chmod(dir, 0o755)
        chmod("\(dir)/system.pkl", 0o644)
        let probe = try runProgram(
            "/usr/bin/unshare",
            ["--pid", "--fork", "--kill-child"] + drop + [
                airlockBinary, "probe", "--format", "json", "\(dir)/system.pkl",
            ])
        // The runtime is described in a sandbox before anything is loaded: that first sandbox is refused.
        #expect(probe.status != 0 && probe.stdout.isEmpty, "\(probe.stdout)")
        #expect(probe.stderr.contains("the /proc mounted here belongs to another PID namespace"), "\(probe.stderr)")
        #expect(!probe.stderr.contains("uid_map"), "\(probe.stderr)")
    }

    @Test("airlockd in a foreign /proc mounts its own, says so, and detonates")
    func daemonDetonates() throws {
        let dir = try Self.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.writeSystemPickle("\(dir)/system.pkl")
        let socket = "\(dir)/airlockd.sock"
        let log = "\(dir)/airlockd.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        daemon.arguments = ["--pid", "--fork", "--kill-child", airlockdBinary, "--socket", socket]
        daemon.standardOutput = FileHandle.nullDevice
        daemon.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try daemon.run()
        defer {
            kill(daemon.processIdentifier, SIGKILL)
            daemon.waitUntilExit()
        }
        let accepting = waitFor(30) {
            let fd = RawClient.connect(socket)
            if fd >= 0 { close(fd) }
            return fd >= 0 || !daemon.isRunning
        }
        let text = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        try #require(accepting && daemon.isRunning, "\(text())")
        #expect(text().contains("a private /proc was mounted"), "\(text())")
        let run = try runCLI(["--socket", socket, "probe", "--format", "json", "\(dir)/system.pkl"])
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any],
            "\(run.stdout)\(run.stderr)")
        let findings = (report["findings"] as? [[String: Any]] ?? []).compactMap { $0["rule"] as? String }
        #expect(findings.contains("dynamic.exec"), "\(findings) \(report["error"] ?? "")")
    }
}

extension ForeignProcTests {
    @Test("airlockd where no private /proc can be mounted: warns why at start and exits 2 (its runtimes cannot start)")
    func daemonRefuses() throws {
        let dir = try Self.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try runProgram(
            "/usr/bin/timeout",
            [
                "30", "/usr/bin/unshare", "--pid", "--fork", "--kill-child", "/usr/bin/setpriv", "--bounding-set",
                "-sys_admin", "--inh-caps", "-sys_admin", airlockdBinary, "--socket", "\(dir)/airlockd.sock",
            ])
        #expect(run.status == 2, "\(run.stderr)")
        let warning = run.stderr.split(separator: "\n").first { $0.hasPrefix("<4>") }
        #expect(warning?.contains("belongs to another PID namespace") == true, "\(run.stderr)")
        #expect(warning?.contains("every detonation will be refused") == true, "\(run.stderr)")
        #expect(!run.stderr.contains("uid_map"), "\(run.stderr)")
    }

    @Test("in a user namespace that does not map the sandbox's host id, exec refuses naming the id, not a /proc error")
    func unmappedHostID() throws {
        let run = try runProgram(
            "/usr/bin/unshare",
            ["--user", "--map-root-user", "--pid", "--fork", "--kill-child", airlockBinary, "exec", "--", "/bin/true"])
        #expect(run.status != 0, "\(run.stdout)\(run.stderr)")
        #expect(
            run.stderr.contains("host id 65534 is not mapped in the user namespace airlock runs in"), "\(run.stderr)")
        #expect(!run.stdout.contains("execve"), "\(run.stdout)")
    }
}
