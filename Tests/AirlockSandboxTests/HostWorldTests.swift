@testable import AirlockSandbox
import AirlockTrace
import Foundation
import Testing
import AirlockTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The drawn host persona (`HostWorld.draw`, issue 15) as a command inside the sandbox sees it, and the profile's
/// limits still holding while `getrlimit` shows ordinary values. Needs root or user namespaces, and the cgroup: never
/// skipped.
@Suite("Host world: the persona and its limits", .serialized)
struct HostWorldTests {
    /// Runs `code` in a drawn `world` (a fixed seed unless given) with `limits`.
    static func run(
        _ code: String, world: HostWorld? = nil, limits: [String: Any] = [:], timeout: Double = 20
    ) throws -> (SandboxResult, HostWorld) {
        var seeded = SplitMix(seed: 15)
        let world = world ?? HostWorld.draw(using: &seeded)
        let profile = try editedProfile { object in editSection(&object) { setLimits(&$0, limits) } }
        var request = SandboxRequest(argv: ["python3", "-c", code], profile: profile, timeoutSeconds: timeout)
        request.world = world
        return (try Sandbox.run(request), world)
    }

    /// What the command sees, as JSON.
    static let observe = """
        import json, os, resource as r, socket, pwd
        def read(p, mode='r'):
            try:
                with open(p, mode) as f: return f.read()
            except OSError as e: return 'error %d' % e.errno
        st = os.statvfs('/')
        print(json.dumps({
            'host': socket.gethostname(), 'pid': os.getpid(), 'ppid': os.getppid(), 'uid': os.getuid(),
            'gid': os.getgid(), 'cwd': os.getcwd(), 'env': dict(os.environ),
            'user': pwd.getpwuid(os.getuid()).pw_name, 'pwhome': pwd.getpwuid(os.getuid()).pw_dir,
            'rl': {n: list(r.getrlimit(getattr(r, 'RLIMIT_' + n))) for n in
                   ['NPROC', 'AS', 'CPU', 'NOFILE', 'FSIZE', 'MEMLOCK', 'MSGQUEUE']},
            'dirs': {d: os.path.isdir(d) for d in ['/home', '/var/tmp', '/var/log', '/var/lib', '/var/cache',
                     '/run/lock', '/sys/class/net', '/run/user/%d' % os.getuid(), os.path.expanduser('~/.config'),
                     os.path.expanduser('~/.cache/huggingface'), os.path.expanduser('~/models')]},
            'rootBytes': st.f_blocks * st.f_frsize,
            'init': read('/proc/1/cmdline', 'rb').decode('latin-1'), 'initComm': read('/proc/1/comm'),
            'mountinfo': read('/proc/self/mountinfo'), 'passwd': read('/etc/passwd'), 'group': read('/etc/group'),
            'hosts': read('/etc/hosts'), 'hostname': read('/etc/hostname'), 'osRelease': read('/etc/os-release'),
            'machineId': read('/etc/machine-id'), 'nsswitch': read('/etc/nsswitch.conf'),
            'bashrc': os.path.isfile(os.path.expanduser('~/.bashrc')),
            'gpu': [os.path.exists('/dev/' + n) for n in ('nvidia0', 'nvidiactl', 'nvidia-uvm')],
        }))
        """

    static func seen(_ result: SandboxResult) throws -> [String: Any] {
        let line = try #require(result.out.split(separator: "\n").last, "no output: \(result.err)")
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test("the command sees the drawn host: name, user, home, environment, pid, /etc, /var, /run, /sys, root, init")
    func personaAsSeen() throws {
        let (result, world) = try HostWorldTests.run(HostWorldTests.observe)
        let seen = try HostWorldTests.seen(result)
        let user = world.user
        #expect(seen["host"] as? String == world.hostname && world.hostname != "airlock")
        #expect(seen["pid"] as? Int == Int(world.commandPid ?? 0) && (seen["pid"] as? Int ?? 0) > 100)
        #expect(result.commandPid == world.commandPid)
        #expect(seen["ppid"] as? Int == 1)
        #expect(seen["uid"] as? Int == Int(user.uid) && seen["gid"] as? Int == Int(user.gid))
        #expect(seen["cwd"] as? String == user.home && user.home.hasPrefix("/home/"))
        #expect(seen["user"] as? String == user.name && seen["pwhome"] as? String == user.home)
        let env = try #require(seen["env"] as? [String: String])
        for name in ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "INVOCATION_ID", "JOURNAL_STREAM"] {
            #expect(env[name] != nil, "\(name) missing from \(env)")
        }
        #expect(env["HOME"] == user.home && env["USER"] == user.name && env.count > 6)
        #expect(env["SYSTEMD_EXEC_PID"] == String(seen["pid"] as? Int ?? -1))
        let dirs = try #require(seen["dirs"] as? [String: Bool])
        #expect(dirs.values.allSatisfy { $0 }, "\(dirs)")
        #expect((seen["rootBytes"] as? Int ?? 0) >= 30 << 30)
        #expect(seen["init"] as? String == world.initCommand + "\0", "\(seen["init"] ?? "")")
        #expect(seen["initComm"] as? String == "systemd\n")
        let passwd = seen["passwd"] as? String ?? ""
        #expect(passwd.hasPrefix("root:x:0:0:") && passwd.contains("\n\(user.name):x:\(user.uid):"))
        #expect((seen["group"] as? String ?? "").contains("\n\(user.name):x:\(user.gid):"))
        #expect((seen["hosts"] as? String ?? "").contains(world.hostname))
        #expect(seen["hostname"] as? String == world.hostname + "\n")
        #expect((seen["osRelease"] as? String ?? "").contains("ID="))
        #expect((seen["machineId"] as? String ?? "").count == 33)
        #expect((seen["nsswitch"] as? String ?? "").contains("hosts:          files dns"))
        #expect(seen["bashrc"] as? Bool == true)
        #expect(seen["gpu"] as? [Bool] == [false, false, false])
        // Nothing the command can read names Airlock: mount sources, /etc, the environment, PID 1.
        let mountinfo = seen["mountinfo"] as? String ?? ""
        for line in mountinfo.split(separator: "\n") {
            let source = line.components(separatedBy: " - ").last ?? ""
            #expect(!source.contains("airlock"), "\(line)")
        }
        for key in ["passwd", "group", "hosts", "hostname", "init", "initComm"] {
            #expect(!(seen[key] as? String ?? "airlock").contains("airlock"), "\(key)")
        }
        #expect(!env.values.contains { $0.contains("airlock") } && !env.keys.contains { $0.contains("AIRLOCK") })
        #expect(result.ordinaryRlimits && result.rlimitsNote == nil)
    }

    @Test("a GPU world shows the NVIDIA nodes and CUDA's variables")
    func gpuWorld() throws {
        var seeded = SplitMix(seed: 7)
        let (result, _) = try HostWorldTests.run(
            HostWorldTests.observe, world: HostWorld.draw(name: "gpu", gpu: true, using: &seeded))
        let seen = try HostWorldTests.seen(result)
        #expect(seen["gpu"] as? [Bool] == [true, true, true], "\(result.err)")
        let env = try #require(seen["env"] as? [String: String])
        #expect(env["CUDA_VISIBLE_DEVICES"] == "0" && env["NVIDIA_VISIBLE_DEVICES"] == "all")
    }

    @Test("two draws differ, and a seeded draw repeats")
    func drawsDiffer() {
        let a = HostWorld.draw(), b = HostWorld.draw()
        #expect(a != b)
        var s1 = SplitMix(seed: 99), s2 = SplitMix(seed: 99)
        #expect(HostWorld.draw(using: &s1) == HostWorld.draw(using: &s2))
        var names: Set<String> = []
        var seeded = SplitMix(seed: 1)
        for _ in 0..<40 {
            let w = HostWorld.draw(using: &seeded)
            names.insert(w.hostname)
            #expect(!w.hostname.contains("airlock") && !w.user.name.contains("airlock"))
            #expect(w.hostname.utf8.count <= 63 && w.hostname.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" })
            #expect((600...48_000).contains(w.commandPid ?? 0) && (w.commandPid ?? 0) < WorldPersona.pidMax())
        }
        #expect(names.count >= 30)
    }

    @Test("ordinary rlimits, and a fork bomb still stops at pids.max")
    func forkBombStopsAtPidsMax() throws {
        let (result, _) = try HostWorldTests.run(
            """
            import os, resource, time
            print("nproc", resource.getrlimit(resource.RLIMIT_NPROC)[0])
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
            """, limits: ["processes": 10])
        #expect(result.out.contains("refused after 8 \(EAGAIN)"), "\(result.out) \(result.err)")
        let nproc = result.out.split(separator: "\n").first { $0.hasPrefix("nproc ") }.flatMap { Int($0.dropFirst(6)) }
        #expect((nproc ?? 0) > 1024, "\(result.out)")
        #expect(result.limitsHit.contains { $0.resource == .pids && $0.limit == 10 }, "\(result.limitsHit)")
    }

    @Test("an unlimited RLIMIT_CPU, and a CPU spinner is killed at the profile's CPU seconds by the supervisor")
    func cpuSpinnerStopsAtBudget() throws {
        let (result, _) = try HostWorldTests.run(
            """
            import resource, sys
            print("cpu", resource.getrlimit(resource.RLIMIT_CPU)[0] == resource.RLIM_INFINITY, flush=True)
            while True:
                pass
            """, limits: ["cpuSeconds": 1], timeout: 20)
        #expect(result.out.contains("cpu True"), "\(result.out) \(result.err)")
        #expect(result.signal == "SIGKILL" && !result.timedOut)
        let hit = try #require(result.limitsHit.first { $0.resource == .cpu }, "\(result.limitsHit)")
        #expect(hit.limit == 1)
        #expect(result.durationNs < 10_000_000_000)
    }

    @Test("an unlimited RLIMIT_AS, and a memory bomb stops at memory.max")
    func memoryBombStopsAtMemoryMax() throws {
        let (result, _) = try HostWorldTests.run(
            """
            import resource
            print("as", resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY, flush=True)
            hoard = []
            for i in range(64):
                hoard.append(bytearray(16 << 20))
            print("held all")
            """, limits: ["memoryBytes": 256 << 20], timeout: 30)
        #expect(result.out.contains("as True"), "\(result.out) \(result.err)")
        #expect(!result.out.contains("held all"))
        #expect(result.limitsHit.contains { $0.resource == .memory }, "\(result.limitsHit)")
    }

    @Test("without a cgroup (not root), a world still applies and the profile's rlimits are shown and enforced")
    func noCgroupFallsBackToRlimits() throws {
        let run = try runProgram(
            "/usr/bin/setpriv",
            [
                "--reuid=65534", "--regid=65534", "--clear-groups", airlockBinary, "exec", "--world", "host",
                "--format", "json", "--", "python3", "-c",
                "import resource as r, socket; print(socket.gethostname(), r.getrlimit(r.RLIMIT_CPU)[0], "
                    + "r.getrlimit(r.RLIMIT_NPROC)[0], r.getrlimit(r.RLIMIT_AS)[0])",
            ])
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stderr)")
        let cgroup = try #require(object["cgroup"] as? [String: Any])
        #expect(cgroup["applied"] as? Bool == false, "\(cgroup)")
        let words = (object["stdout"] as? String ?? "").split(separator: " ").map(String.init)
        #expect(words.count == 4 && words[0] != "airlock", "\(words)")
        #expect(Array(words.dropFirst()) == ["60", "64", "\(4 << 30)\n"], "\(words)")
    }

    @Test(
        "PID 1's command line is exactly its title, one the argument area holds or one that runs on past it",
        arguments: ["/sbin/init", "/lib/systemd/systemd", String(repeating: "/usr/lib/systemd/systemd-x", count: 40)])
    func initTitle(title: String) throws {
        var seeded = SplitMix(seed: 3)
        var world = HostWorld.draw(using: &seeded)
        world.initCommand = title
        world.initName = "init"
        let (result, _) = try HostWorldTests.run(
            "import sys; sys.stdout.buffer.write(open('/proc/1/cmdline', 'rb').read() + b'|' "
                + "+ open('/proc/1/comm', 'rb').read())",
            world: world)
        let area = try #require(WorldPersona.argumentArea())
        let fits = title.utf8.count + 1 <= Int(area.areaEnd - area.start)
        let shown = fits ? title : String(title.prefix(Int(area.areaEnd - area.start) - 1))
        #expect(result.out == shown + "\0|init\n", "\(result.out.debugDescription) \(result.err)")
        #expect(!result.out.contains("airlock") && !result.out.contains("xctest"))
    }

    @Test("the supervisor's argument area, which PID 1's title is written over, is found")
    func argumentArea() throws {
        let area = try #require(WorldPersona.argumentArea())
        #expect(area.end > area.start && area.areaEnd >= area.end)
    }
}
