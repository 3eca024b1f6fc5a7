internal import CSandbox
public import AirlockSystem
#if canImport(Glibc)
    import Glibc
#endif

/// Whether the `/proc` this process sees numbers processes as its own PID namespace does, and the verified way into
/// a sandbox's `/proc/<pid>` (docs/sandbox.md, "Where /proc is not the supervisor's").
///
/// The supervisor names its sandbox's PID 1 and every notifying thread by pids of its own PID namespace (clone3,
/// seccomp notifications) and reaches them under `/proc/<pid>`. Under a `/proc` of another namespace those paths
/// name other processes. A constructor in CSandbox (`private_proc.c`) mounts a private `/proc` at start, before any
/// thread exists, when the one found is foreign; `problem` says why it is still foreign when it is, and
/// `openProcess` checks, through the pidfd, that `/proc/<pid>` is the process before anything is written there.
public enum ProcMount {
    /// How the process found `/proc` at start.
    public enum Start: Equatable, Sendable {
        /// `/proc` was this PID namespace's already; nothing was done.
        case own
        /// `/proc` was another PID namespace's; a private mount namespace with a fresh `/proc` serves this process.
        case madePrivate(pidThere: Int32, pidHere: Int32)
        /// `/proc` was another PID namespace's (or missing) and no private one could be mounted.
        case foreign(pidThere: Int32, pidHere: Int32, step: String, errno: Errno?)
    }

    /// What the start-up step found and did.
    public static var start: Start {
        let s = airlock_proc_start_state()
        switch s.state {
        case Int32(AIRLOCK_PROC_PRIVATE.rawValue):
            return .madePrivate(pidThere: s.pid_there, pidHere: s.pid_here)
        case Int32(AIRLOCK_PROC_FOREIGN.rawValue):
            return .foreign(
                pidThere: s.pid_there, pidHere: s.pid_here, step: s.step.map { String(cString: $0) } ?? "?",
                errno: s.error == 0 ? nil : Errno(s.error))
        default:
            return .own
        }
    }

    /// This process's pid as the proc mount at `procRoot` numbers it, or nil when `PROC_ROOT/self` does not resolve
    /// (this process is not visible in that mount's PID namespace, or nothing is mounted there).
    public static func selfPid(procRoot: String = "/proc") -> Int32? {
        let pid = airlock_proc_self_pid(procRoot)
        return pid > 0 ? pid : nil
    }

    /// Nil when `/proc` is this process's PID namespace's; otherwise the sentence a refusal gives: whose `/proc` it
    /// is, why no private one could be mounted, and what the operator can do. Cheap: one readlink.
    public static func problem() -> String? {
        let here = getpid()
        let there = selfPid()
        if there == here { return nil }
        let seen = there.map { "this process is \($0) there, \(here) here" } ?? "this process is not visible there"
        var why = "it changed after start"
        if case .foreign(_, _, let step, let errno) = start {
            why = errno.map { "\(step): \($0)" } ?? step
        }
        return "the /proc mounted here belongs to another PID namespace (\(seen)) and a private /proc could not be "
            + "mounted (\(why)): the sandbox's processes cannot be told apart from others there, so nothing is "
            + "spawned. Run airlock where /proc is its PID namespace's (a container with its own /proc, "
            + "`unshare --pid --fork --mount-proc`), or give it CAP_SYS_ADMIN over its PID namespace and allow "
            + "unshare(CLONE_NEWNS) and mount (docs/sandbox.md, \"Where /proc is not the supervisor's\")"
    }

    /// The pid of `pidfd`'s process as the proc mount at `procRoot` numbers it: nil when unreadable, 0 when the
    /// process is not visible in that mount's namespace, -1 when it has exited.
    public static func pidfdPid(_ pidfd: FileDescriptor, procRoot: String = "/proc") -> Int32? {
        let pid = airlock_pidfd_pid_in(procRoot, pidfd.rawValue)
        return pid == -2 ? nil : pid
    }

    /// Opens `PROC_ROOT/<pid>` as a directory once the pidfd has shown that the proc mount numbers its process
    /// `pid`, and checks again afterwards that the process is still alive under that number (the caller is its only
    /// reaper, so the number cannot have been reused in between). Anything else refuses: a map is never written
    /// into a process the pid does not name.
    public static func openProcess(
        _ pid: Int32, pidfd: FileDescriptor, procRoot: String = "/proc"
    ) throws(SandboxError) -> FileDescriptor {
        func check(_ when: String) throws(SandboxError) {
            let there = pidfdPid(pidfd, procRoot: procRoot)
            guard there == pid else {
                let seen =
                    switch there {
                    case nil: "its pidfd's fdinfo could not be read there"
                    case 0: "the process is not visible there"
                    case -1: "the process has exited"
                    case let n?: "the process is \(n) there"
                    }
                throw SandboxError(
                    .supervisor,
                    "\(procRoot)/\(pid) is not the sandbox's process \(when) (\(seen)): "
                        + (problem() ?? "the /proc mounted here belongs to another PID namespace"))
            }
        }
        try check("before opening it")
        let fd = "\(procRoot)/\(pid)".withCString { open($0, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW) }
        guard fd >= 0 else {
            throw SandboxError(.spawn, "open \(procRoot)/\(pid)", errno: .current)
        }
        do {
            try check("after opening it")
        } catch {
            _ = close(fd)
            throw error
        }
        return FileDescriptor(fd)
    }
}

extension ProcMount {
    /// A pidfd for `pid` (`pidfd_open`), or nil with `errno` set; the caller closes it.
    public static func pidfd(of pid: Int32) -> FileDescriptor? {
        let fd = airlock_pidfd_open(pid)
        return fd >= 0 ? FileDescriptor(fd) : nil
    }
}
