import AirlockAnalysis
import AirlockDaemon
import AirlockJSON
@testable import AirlockProbe
@testable import AirlockSandbox
import AirlockTrace
import AirlockSystem
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
    import AirlockTestSupport
#endif

/// One sandbox cannot spend the host's shared budgets: the per-user kernel counters charged to the user who created
/// its user namespace (root here, as for airlockd), memory no rlimit counts (memfd), processes, and the supervisor's
/// own memory for the sealed copy of a model. These run as root on a cgroup v1 host (this machine and CI): the real
/// memory and pids controllers, never skipped.
@Suite("Shared budgets", .serialized)
struct SharedBudgetTests {
    /// The default profile with some of its limits replaced.
    static func profile(_ limits: [String: Any], cgroup: String? = nil) throws -> Profile {
        try editedProfile { object in
            editSection(&object) { section in
                setLimits(&section, limits)
                if let cgroup { section["cgroup"] = cgroup }
            }
        }
    }

    /// The cgroup a run had; records an issue when it had none.
    static func usage(_ result: SandboxResult) -> CgroupUsage? {
        guard case .applied(let usage) = result.cgroup else {
            Issue.record("the run had no cgroup: \(result.cgroup.summary)")
            return nil
        }
        return usage
    }

    /// With /proc the limits are written through the sandbox's own procfs while its sys is writable; without it,
    /// through a procfs of PID 1's own that the command never sees. Both must apply.
    @Test(
        "inotify instances: the 17th fails inside, so the sandbox takes at most 16 of root's 128",
        arguments: [true, false])
    func inotifyInstances(withProc: Bool) throws {
        let profile = try editedProfile { object in
            editSection(&object) { section in
                guard !withProc else { return }
                section["mounts"] = (section["mounts"] as! [[String: Any]]).filter { $0["type"] as? String != "proc" }
            }
        }
        #expect(withProc == profile.sandbox.mounts.contains { $0.destination == "/proc" })
        let result = try runPython(
            """
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            made = 0
            for _ in range(40):
                if libc.inotify_init() < 0:
                    print("refused", made + 1, os.strerror(ctypes.get_errno()))
                    break
                made += 1
            print("made", made)
            """, profile: profile)
        #expect(result.exitCode == 0, "\(result.err)")
        #expect(result.out.contains("made 16\n"), "\(result.out)")
        #expect(result.out.contains("refused 17 Too many open files"), "\(result.out)")
    }

    @Test("inotify watches and fanotify groups are bounded in the sandbox's own user namespace")
    func otherUserNamespaceLimits() throws {
        // Checked by what the kernel refuses: the sandbox's opens of /proc/sys/user are performed by the supervisor,
        // whose user namespace the kernel shows there (docs/sandbox.md, "Notified calls").
        let result = try runPython(
            """
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init()
            os.makedirs("/tmp/w", exist_ok=True)
            made = 0
            for i in range(1100):
                d = "/tmp/w/%d" % i
                os.mkdir(d)
                if libc.inotify_add_watch(fd, d.encode(), 0x100) < 0:
                    print("watch refused", made + 1, ctypes.get_errno())
                    break
                made += 1
            print("watches", made)
            g = libc.fanotify_init(0, 0)
            print("fanotify", g, ctypes.get_errno() if g < 0 else 0)
            """, timeout: 60)
        #expect(result.exitCode == 0, "\(result.err)")
        #expect(result.out.contains("watch refused 1025 \(ENOSPC)\n"), "\(result.out)")
        #expect(result.out.contains("fanotify -1 "), "\(result.out)")
    }

    @Test("POSIX message queues: mq_open is refused by the filter, and RLIMIT_MSGQUEUE 0 refuses them without it")
    func messageQueues() throws {
        let code = """
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            made = 0
            for i in range(12):
                fd = libc.syscall(240, b"airlock-q%d" % i, os.O_CREAT | os.O_RDWR, 0o600, None)  # mq_open
                if fd < 0:
                    print("refused", made + 1, ctypes.get_errno())
                    break
                made += 1
            print("made", made)
            """
        let result = try runPython(code)
        #expect(result.out.contains("refused 1 \(ENOSYS)\n"), "\(result.out) \(result.err)")
        #expect(result.events("mq_open").first?.action == .denied)
        // Without the filter's rule, the rlimit alone.
        let unfiltered = try editedProfile { object in
            object["syscalls"] = (object["syscalls"] as! [[String: Any]]).filter {
                !($0["names"] as! [String]).contains("mq_open")
            }
            // Decided as allowed, or the inventory's `undecided` refusal would answer it instead of the rlimit.
            editSection(&object) { $0["allowedInKernel"] = ($0["allowedInKernel"] as! [String]) + ["mq_open"] }
        }
        let limited = try runPython(code, profile: unfiltered)
        #expect(limited.out.contains("refused 1 \(EMFILE)\n"), "\(limited.out) \(limited.err)")
    }

    @Test("queued signals and locked memory are bounded by the sandbox's rlimits")
    func signalAndLockLimits() throws {
        let result = try runPython(
            """
            import resource
            print("sigpending", resource.getrlimit(resource.RLIMIT_SIGPENDING))
            print("memlock", resource.getrlimit(resource.RLIMIT_MEMLOCK))
            print("msgqueue", resource.getrlimit(resource.RLIMIT_MSGQUEUE))
            """)
        #expect(result.out.contains("sigpending (256, 256)"), "\(result.out) \(result.err)")
        #expect(result.out.contains("memlock (65536, 65536)"), "\(result.out)")
        #expect(result.out.contains("msgqueue (0, 0)"), "\(result.out)")
    }

    @Test("memfd pages beyond the sandbox's memory limit: the holder is killed and the run says resource exhausted")
    func memfdBeyondMemoryLimit() throws {
        let limit = 256 << 20
        // RLIMIT_AS (4 GiB) never sees memfd pages written with write(); 20 memfds of 60 MiB (RLIMIT_FSIZE is 64 MiB).
        let result = try runPython(
            """
            import os
            fds, held = [], 0
            try:
                for i in range(20):
                    fd = os.memfd_create("hoard"); fds.append(fd)
                    for j in range(60):
                        os.write(fd, b"x" * (1 << 20)); held += 1
                print("held all", held, "MiB")
            except OSError as e:
                print("refused after", held, "MiB:", e)
            """, profile: try SharedBudgetTests.profile(["memoryBytes": limit]), timeout: 30)
        #expect(!result.out.contains("held all"), "\(result.out)")
        let usage = try #require(SharedBudgetTests.usage(result))
        #expect(usage.memoryLimitBytes == UInt64(limit))
        #expect(usage.oomKills + usage.memoryLimitReached > 0)
        let hit = try #require(result.limitsHit.first { $0.resource == .memory }, "\(result.limitsHit)")
        #expect(hit.limit == UInt64(limit))
        #expect(hit.detail.contains("memory limit of \(limit) bytes"))
        #expect(usage.removed)
    }

    @Test("reading more files than the memory limit holds is not resource exhaustion: page cache is reclaimed")
    func pageCacheIsNotExhaustion() throws {
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/data.bin"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        let chunk = [UInt8](repeating: 0x5a, count: 1 << 20)
        for _ in 0..<160 { _ = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
        fsync(fd)
        // Out of the page cache, so that the sandbox's reads are charged to the sandbox.
        #expect(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0)
        close(fd)
        let result = try runPython(
            """
            total = 0
            for _ in range(2):
                with open("/data/data.bin", "rb") as f:
                    while chunk := f.read(1 << 20):
                        total += len(chunk)
            print("read", total >> 20, "MiB")
            """, profile: try SharedBudgetTests.profile(["memoryBytes": 64 << 20]),
            mounts: [try MountSpec.readOnlyBind(host: dir, sandbox: "/data")])
        #expect(result.out.contains("read 320 MiB"), "\(result.out) \(result.err)")
        #expect(result.exitCode == 0)
        #expect(result.limitsHit.isEmpty, "\(result.limitsHit)")
        let usage = try #require(SharedBudgetTests.usage(result))
        #expect(usage.oomKills == 0 && (usage.memoryPeakBytes ?? 0) <= 64 << 20)
    }

    @Test("fork beyond pids.max fails, and the run names the pids limit")
    func forkBeyondPidsLimit() throws {
        let result = try runPython(
            """
            import os, time
            children = 0
            try:
                for _ in range(100):
                    if os.fork() == 0:
                        time.sleep(30)
                        os._exit(0)
                    children += 1
                print("forked all")
            except OSError as e:
                print("refused after", children, e.errno)
            """, profile: try SharedBudgetTests.profile(["processes": 10]), timeout: 20)
        // PID 1 and the command are two of the ten.
        #expect(result.out.contains("refused after 8 \(EAGAIN)"), "\(result.out) \(result.err)")
        let usage = try #require(SharedBudgetTests.usage(result))
        #expect(usage.pidsLimit == 10 && usage.pidsLimitReached >= 1)
        #expect(result.limitsHit.contains { $0.resource == .pids && $0.limit == 10 }, "\(result.limitsHit)")
    }

    @Test("the cgroup exists, in both controllers, while the sandbox runs, holds all of it, and is removed after")
    func cgroupLifecycle() throws {
        let result = try runPython(
            """
            import os
            print(open("/proc/self/cgroup").read())
            """)
        #expect(result.exitCode == 0, "\(result.err)")
        let usage = try #require(SharedBudgetTests.usage(result))
        #expect(usage.hierarchy == "v1" || usage.hierarchy == "v2")
        #expect(usage.memoryLimitBytes == 4 << 30 && usage.pidsLimit == 64)
        #expect((usage.memoryPeakBytes ?? 0) > 1 << 20, "the interpreter's memory was charged to the sandbox's cgroup")
        #expect(usage.removed)
        #expect(!usage.paths.isEmpty)
        for path in usage.paths { #expect(access(path, F_OK) != 0, "\(path) is still there") }
        // Inside, the cgroup namespace is rooted at the sandbox's own cgroup: no name of the host's shows.
        for line in result.out.split(separator: "\n")
        where line.contains("memory") || line.contains("pids") || line.hasPrefix("0::") {
            #expect(line.hasSuffix(":/"), "\(line)")
        }
    }

    @Test("the cgroup of a sandbox that was killed at its deadline is removed as well")
    func cgroupRemovedAfterTimeout() throws {
        let result = try runPython("import os, time\nos.fork()\ntime.sleep(60)", timeout: 1)
        #expect(result.timedOut)
        let usage = try #require(SharedBudgetTests.usage(result))
        #expect(usage.removed)
        for path in usage.paths { #expect(access(path, F_OK) != 0, "\(path) is still there") }
    }

    @Test("cgroups left by a supervisor that was killed are removed by the next run")
    func staleCgroupsRemoved() throws {
        let first = try runPython("pass")
        let usage = try #require(SharedBudgetTests.usage(first))
        let parents = usage.paths.map { String($0[..<$0.lastIndex(of: "/")!]) }
        // A PID that no longer exists: a process that has been reaped.
        let dead = Process()
        dead.executableURL = URL(fileURLWithPath: "/bin/true")
        try dead.run()
        dead.waitUntilExit()
        let stale = parents.map { "\($0)/airlock-\(dead.processIdentifier)-5ca1ab1e" }
        for path in stale { #expect(mkdir(path, 0o755) == 0, "\(path): \(errno)") }
        _ = try runPython("pass")
        for path in stale { #expect(access(path, F_OK) != 0, "\(path) was left") }
    }

    @Test("a required cgroup that cannot be made is an error that says why; an optional one is reported missing")
    func cgroupRequirement() throws {
        // An unprivileged supervisor can create no cgroup below root's: run `airlock exec` as nobody.
        let binary = airlockBinary
        for (mode, expectError) in [("required", true), ("optional", false)] {
            let path = "/tmp/airlock-cgroup-\(mode)-\(getpid()).json"
            let profile = try Data(contentsOf: URL(fileURLWithPath: "\(repositoryRoot)/Profiles/default.json"))
            var object = try JSONSerialization.jsonObject(with: profile) as! [String: Any]
            editSection(&object) { $0["cgroup"] = mode }
            try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
            chmod(path, 0o644)
            defer { unlink(path) }
            let run = try runProgram(
                "/usr/sbin/runuser",
                [
                    "-u", "nobody", "--", "/usr/bin/env", "HOME=/", binary,
                    "exec", "--format", "json", "--profile", path, "--", "true",
                ])
            if expectError {
                #expect(run.status == 125, "\(run.stdout) \(run.stderr)")
                #expect(run.stdout.contains("\"code\":\"cgroup\""), "\(run.stdout)")
                #expect(run.stdout.contains("needs a cgroup of its own"), "\(run.stdout)")
            } else {
                #expect(run.status == 0, "\(run.stdout) \(run.stderr)")
                #expect(run.stdout.contains("\"cgroup\":{\"applied\":false,\"reason\":"), "\(run.stdout)")
            }
        }
    }

    @Test("airlock probe: a pickle that fills memfds past the memory limit is resource-exhausted, naming the limit")
    func probeReportsMemoryLimit() throws {
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = "\(dir)/hoard.pkl"
        let payload = """
            import os
            fds = []
            for i in range(20):
                fd = os.memfd_create("h"); fds.append(fd)
                for j in range(60): os.write(fd, b"x" * (1 << 20))
            """
        let generator = """
            import pickle, sys
            class P:
                def __reduce__(self): return (exec, (sys.argv[2],))
            open(sys.argv[1], "wb").write(pickle.dumps(P(), protocol=2))
            """
        let made = try runProgram("/usr/bin/python3", ["-c", generator, model, payload])
        #expect(made.status == 0, "\(made.stderr)")
        let profile = try SharedBudgetTests.profile(["memoryBytes": 256 << 20])
        let options = ProbeOptions(
            profile: profile, program: try SeccompProgram(profile: profile),
            policy: try VerdictPolicy.load("\(repositoryRoot)/Profiles/policy.json", for: profile),
            harnessDirectory: "\(repositoryRoot)/Profiles/harness", timeoutSeconds: 30
        )
        let report = Prober.probe(file: model, options: options)
        let detonation = try #require(report.detonation?.json.serialized())
        #expect(detonation.contains("\"outcome\":\"resource-exhausted\""), "\(detonation)")
        #expect(detonation.contains("\"resource\":\"memory\",\"limit\":\(256 << 20)"), "\(detonation)")
        let finding = try #require(report.findings.first { $0.rule == "dynamic.resource-exhausted" })
        #expect(finding.message.contains("memory limit of \(256 << 20) bytes"), "\(finding.message)")
    }

    @Test("profile and daemon fields: the cgroup requirement and the memory limit are checked, errors name the field")
    func settingsAreChecked() throws {
        #expect(try SharedBudgetTests.profile([:]).sandbox.cgroup == .optional)
        #expect(try SharedBudgetTests.profile([:], cgroup: "required").sandbox.cgroup == .required)
        #expect(throws: SandboxError.self) { try SharedBudgetTests.profile([:], cgroup: "sometimes") }
        do {
            _ = try SharedBudgetTests.profile(["memoryBytes": 1 << 20])
            Issue.record("a 1 MiB memory limit was accepted")
        } catch let error as SandboxError {
            #expect(error.message.contains("airlock.limits.memoryBytes"), "\(error.message)")
        }
        #expect(DaemonConfig().cgroup == .required)
        #expect(try DaemonConfig(json: Array(#"{"cgroup": "optional"}"#.utf8), name: "t").cgroup == .optional)
        #expect(throws: ConfigError.self) { try DaemonConfig(json: Array(#"{"cgroup": "never"}"#.utf8), name: "t") }
    }

    // MARK: The sealed copy of a writable model

    /// A world-writable sparse file of `size` bytes with `data` at `offset`.
    static func sparseFile(_ dir: String, size: Int, data: [UInt8], at offset: Int) throws -> String {
        let path = "\(dir)/sparse.pkl"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        fchmod(fd, 0o666)
        #expect(ftruncate(fd, off_t(size)) == 0)
        #expect(data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) } == data.count)
        return path
    }

    @Test("a sparse world-writable 3 GiB file with 4 KiB of data becomes a sealed memfd that costs about 4 KiB")
    func sparseSealedCopy() throws {
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let size = 3 << 30, offset = 1 << 30
        let data = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
        let path = try SharedBudgetTests.sparseFile(dir, size: size, data: data, at: offset)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        let sealed = try ModelSeal.passableDescriptor(FileDescriptor(fd), profile: try defaultProfile())
        defer { sealed.close() }
        let copy = sealed.rawValue
        var st = stat()
        #expect(fstat(copy, &st) == 0)
        #expect(st.st_size == off_t(size))
        #expect(st.st_blocks * 512 <= 64 << 10, "the copy holds \(st.st_blocks * 512) bytes")
        // F_GET_SEALS: F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE (glibc's macros do not reach Swift).
        #expect(fcntl(copy, 1034) & 0xf == 0xf)
        var back = [UInt8](repeating: 0, count: 4096 + 16)
        #expect(back.withUnsafeMutableBytes { pread(copy, $0.baseAddress, $0.count, off_t(offset - 8)) } == back.count)
        #expect(Array(back[8..<(8 + 4096)]) == data)
        #expect(back[0..<8].allSatisfy { $0 == 0 } && back[(8 + 4096)...].allSatisfy { $0 == 0 })
    }

    @Test("a writable file with more data than the copy budget is refused with a clear error, not copied")
    func sealedCopyOverBudget() throws {
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = try SharedBudgetTests.sparseFile(
            dir, size: 8 << 20, data: [UInt8](repeating: 0x41, count: 2 << 20), at: 0)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        let profile = try SharedBudgetTests.profile(["modelCopyBytes": 1 << 20])
        #expect {
            _ = try ModelSeal.passableDescriptor(FileDescriptor(fd), profile: profile)
        } throws: { error in
            let e = error as? SandboxError
            return e?.errno == Errno(EFBIG) && e?.message.contains("airlock.limits.modelCopyBytes") == true
        }
        // Within the budget, the same file is copied.
        let roomy = try SharedBudgetTests.profile(["modelCopyBytes": 4 << 20])
        let copy = try ModelSeal.passableDescriptor(FileDescriptor(fd), profile: roomy)
        copy.close()
    }
}
