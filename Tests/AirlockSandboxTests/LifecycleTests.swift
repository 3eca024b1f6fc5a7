@testable import AirlockSandbox
import AirlockTrace
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
    import AirlockTestSupport
#endif

/// Resource bombs, deadlines and the death of the supervisor. These use their own host uid so a fork bomb's
/// RLIMIT_NPROC budget (counted per host uid) is not shared with sandboxes other tests run at the same time.
@Suite("Lifecycle", .serialized)
struct LifecycleTests {
    func isolatedProfile(hostUid: Int, _ edit: (inout [String: Any]) -> Void = { _ in }) throws -> Profile {
        try editedProfile { object in
            editSection(&object) { section in
                section["user"] = ["uid": 1000, "gid": 1000, "hostUid": hostUid, "hostGid": hostUid]
                edit(&section)
            }
        }
    }

    @Test("an endless loop is killed at the deadline and reported as timed out")
    func endlessLoop() throws {
        let started = Date()
        let result = try runPython("while True: pass", profile: try isolatedProfile(hostUid: 61001), timeout: 1)
        #expect(result.timedOut)
        #expect(result.exitCode == nil)
        #expect(result.signal == "SIGKILL")
        #expect(Date().timeIntervalSince(started) < 5)
    }

    @Test("a fork bomb ends at the deadline and leaves no process behind")
    func forkBomb() throws {
        let marker = "forkbomb-\(UUID().uuidString.prefix(8))"
        let result = try runPython(
            """
            import os
            MARK = "\(marker)"
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
            """, profile: try isolatedProfile(hostUid: 61002), timeout: 2)
        #expect(result.timedOut)
        #expect(hostProcesses(containing: marker).isEmpty)
    }

    @Test("a memory bomb fails inside the address-space limit")
    func memoryBomb() throws {
        let profile = try isolatedProfile(hostUid: 61003) { setLimits(&$0, ["addressSpaceBytes": 1 << 30]) }
        let result = try runPython(
            """
            try:
                huge = bytearray(1 << 40)
            except MemoryError:
                print("1 TiB refused")
            hoard = []
            try:
                while True:
                    hoard.append(bytearray(32 << 20))
            except MemoryError:
                print("stopped at", len(hoard) * 32, "MiB")
            """, profile: profile, timeout: 20)
        #expect(result.out.contains("1 TiB refused"), "\(result.out) \(result.err)")
        #expect(result.out.contains("stopped at"))
        #expect(!result.timedOut)
    }

    @Test("output beyond the bound is counted, not kept")
    func outputBound() throws {
        let profile = try isolatedProfile(hostUid: 61004) { setLimits(&$0, ["outputBytes": 1000]) }
        let result = try runPython(
            "import sys; sys.stdout.write('x' * 5000); sys.stderr.write('y' * 3000)", profile: profile)
        #expect(result.stdout.count == 1000)
        #expect(result.stdoutDropped == 4000)
        #expect(result.stderr.count == 1000)
        #expect(result.stderrDropped == 2000)
        #expect(result.exitCode == 0)
    }

    @Test("the trace is bounded: later notifications are answered and counted")
    func traceBound() throws {
        let profile = try isolatedProfile(hostUid: 61005) { setLimits(&$0, ["traceEvents": 50]) }
        let result = try runPython(
            "import os\nfor i in range(500): os.close(os.open('/dev/null', os.O_RDONLY))\nprint('done')",
            profile: profile)
        #expect(result.out.contains("done"))
        #expect(result.trace.count == 50)
        #expect(result.traceDropped > 400)
    }

    @Test("when the supervisor is killed, the whole sandbox dies with it")
    func supervisorDeath() throws {
        let marker = "orphan-\(UUID().uuidString.prefix(8))"
        let supervisor = Process()
        supervisor.executableURL = URL(fileURLWithPath: airlockBinary)
        supervisor.arguments = [
            "exec", "--timeout", "60", "--", "python3", "-c",
            "import os, time\nMARK = '\(marker)'\nos.fork()\ntime.sleep(60)",
        ]
        supervisor.standardOutput = FileHandle.nullDevice
        supervisor.standardError = FileHandle.nullDevice
        try supervisor.run()
        var seen: [Int32] = []
        for _ in 0..<100 where seen.count < 2 {
            usleep(50_000)
            seen = hostProcesses(containing: marker)
        }
        #expect(seen.count >= 2, "the payload and its child should be running")
        kill(supervisor.processIdentifier, SIGKILL)
        supervisor.waitUntilExit()
        var left = hostProcesses(containing: marker)
        for _ in 0..<60 where !left.isEmpty {
            usleep(50_000)
            left = hostProcesses(containing: marker)
        }
        #expect(left.isEmpty, "processes outlived the supervisor: \(left)")
    }

    @Test("a KILL action in the profile kills the caller and is recorded as killed")
    func killAction() throws {
        let profile = try editedProfile { object in
            var rules = object["syscalls"] as! [[String: Any]]
            rules.append(["names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"])
            object["syscalls"] = rules
        }
        let result = try runPython("import os; os.getppid(); print('survived')", profile: profile)
        #expect(!result.out.contains("survived"))
        #expect(result.signal == "SIGKILL")
        let event = try #require(result.events("getppid").first)
        #expect(event.action == .killed)
    }

    @Test("a KILL action hit by a thread that is not the leader still ends the whole process")
    func killActionFromThread() throws {
        let profile = try editedProfile { object in
            var rules = object["syscalls"] as! [[String: Any]]
            rules.append(["names": ["getppid"], "action": "SCMP_ACT_KILL_THREAD"])
            object["syscalls"] = rules
        }
        let result = try runPython(
            """
            import os, threading, time
            threading.Thread(target=os.getppid).start()
            time.sleep(2)
            print('survived')
            """, profile: profile)
        #expect(!result.out.contains("survived"))
        #expect(result.signal == "SIGKILL")
        #expect(result.events("getppid").first?.action == .killed)
    }

    @Test("with recordRefused off, refused calls fail in the kernel and stay out of the trace")
    func unrecordedRefusals() throws {
        let profile = try editedProfile { object in editSection(&object) { $0["recordRefused"] = false } }
        let result = try runPython(
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.syscall(425, 1, 0), ctypes.get_errno())",
            profile: profile)
        #expect(result.out.contains("-1 1"))
        #expect(result.events("io_uring_setup").isEmpty)
    }
}
