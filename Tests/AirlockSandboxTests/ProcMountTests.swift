import AirlockSandbox
import AirlockSystem
import AirlockTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `ProcMount`: telling a `/proc` of this PID namespace from another's, and opening `/proc/<pid>` only when the
/// pidfd vouches for it (docs/sandbox.md, "Where /proc is not the supervisor's").
@Suite("/proc ownership and the pidfd check", .serialized)
struct ProcMountTests {
    /// A `sleep` that is PID 1 of a new PID namespace with its own proc mounted in its own mount namespace; that
    /// proc is reachable from here as `/proc/<host pid>/root/proc`: a /proc of another PID namespace.
    final class ForeignNamespace {
        let process = Process()
        private(set) var hostPid: Int32 = 0

        init() throws {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
            process.arguments = ["--pid", "--fork", "--kill-child", "--mount-proc", "/bin/sleep", "30"]
            process.standardError = FileHandle.nullDevice
            try process.run()
            // unshare forks the sleep: find it as unshare's child, once it has exec'd and mounted its proc.
            let found = waitFor(10) {
                guard
                    let children = try? String(
                        contentsOfFile:
                            "/proc/\(self.process.processIdentifier)/task/\(self.process.processIdentifier)/children",
                        encoding: .utf8),
                    let child = children.split(separator: " ").first.flatMap({ Int32($0) })
                else { return false }
                self.hostPid = child
                let comm = (try? String(contentsOfFile: "/proc/\(child)/comm", encoding: .utf8)) ?? ""
                return comm.hasPrefix("sleep") && FileManager.default.fileExists(atPath: "\(self.procRoot)/1/status")
            }
            if !found {
                process.terminate()
                throw DaemonTestError("unshare --pid --mount-proc sleep did not start")
            }
        }

        var procRoot: String { "/proc/\(hostPid)/root/proc" }

        deinit {
            kill(hostPid, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// Here (or, on a runner whose /proc is the parent's, after the private one was mounted at start) /proc is this
    /// namespace's: nothing is refused.
    @Test("here /proc is this PID namespace's (or was made so at start): nothing is refused")
    func ownProc() throws {
        if case .foreign = ProcMount.start { Issue.record("start: \(ProcMount.start)") }
        #expect(ProcMount.selfPid() == getpid())
        #expect(ProcMount.problem() == nil)
    }

    @Test("a /proc that is not a procfs is never taken for one, even with a self link naming this process")
    func notProcfs() throws {
        let dir = "/tmp/airlock-fake-proc-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/self", withDestinationPath: "\(getpid())")
        #expect(ProcMount.selfPid(procRoot: dir) == nil)
    }

    @Test(
        "a /proc of another PID namespace is told apart: this process is not visible there, and a pidfd is not vouched for"
    )
    func foreignProcDetected() throws {
        let foreign = try ForeignNamespace()
        #expect(ProcMount.selfPid(procRoot: foreign.procRoot) == nil)
        let pidfd = try #require(ProcMount.pidfd(of: foreign.hostPid))
        defer { pidfd.close() }
        // In this namespace's /proc the pidfd names the sleep by its host pid…
        #expect(ProcMount.pidfdPid(pidfd) == foreign.hostPid)
        let good = try ProcMount.openProcess(foreign.hostPid, pidfd: pidfd)
        good.close()
        // …but the foreign /proc cannot vouch for it: there its /proc/<host pid> is another process or none, and its
        // /proc/1 is the sleep under another number. Both are refused.
        #expect(ProcMount.pidfdPid(pidfd, procRoot: foreign.procRoot) == nil)
        for pid in [foreign.hostPid, 1] {
            #expect(throws: SandboxError.self) {
                try ProcMount.openProcess(pid, pidfd: pidfd, procRoot: foreign.procRoot)
            }
        }
    }

    @Test("a pid the pidfd does not name is refused; so is a process that has exited")
    func wrongPidRefused() throws {
        let foreign = try ForeignNamespace()
        let pidfd = try #require(ProcMount.pidfd(of: foreign.hostPid))
        defer { pidfd.close() }
        let other = try #require(ProcMount.pidfd(of: getpid()))
        defer { other.close() }
        let error = try #require(throws: SandboxError.self) { try ProcMount.openProcess(getpid(), pidfd: pidfd) }
        #expect(error.message.contains("the process is \(foreign.hostPid) there"), "\(error)")
        kill(foreign.hostPid, SIGKILL)
        #expect(waitFor(10) { ProcMount.pidfdPid(pidfd) == -1 })
        let gone = try #require(throws: SandboxError.self) { try ProcMount.openProcess(foreign.hostPid, pidfd: pidfd) }
        #expect(gone.message.contains("has exited"), "\(gone)")
    }
}
