internal import CSandbox
import AirlockSystem
#if canImport(Glibc)
    import Glibc
#endif

/// Runs commands in a fresh sandbox and supervises them: seccomp notifications, output, deadline.
///
/// `run` blocks the calling thread for the life of the sandbox and serves notifications on it, so call it from a
/// dedicated thread, never from Swift's cooperative pool.
public enum Sandbox {
    /// The number the first of `SandboxRequest.passedFDs` has in the command.
    public static let firstPassedFD = Int32(AIRLOCK_FIRST_PASSED_FD)

    /// Starts reading, on a thread of its own, what the next sandbox's set-up needs whatever its profile: the table
    /// of the system calls libseccomp knows (`SyscallTable.native`, about a fifth of `airlock exec`'s own
    /// instructions, because libseccomp looks each number up with a linear search) and where the cgroup hierarchies
    /// are (`CgroupHierarchies`, from /proc/self/mountinfo and /proc/self/cgroup). For a caller about to load a
    /// profile and run one sandbox (`airlock exec`), so that these overlap the profile's parsing; the set-up waits for
    /// them if they are not ready by then, and nothing is read twice. Call it at most once per process: the cgroup
    /// reading is used by the next sandbox only, and a long-lived caller (airlockd) reads afresh for every sandbox.
    public static func prepareInBackground() {
        CgroupHierarchies.expectPrefetch()
        var thread = pthread_t()
        let work: @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? = { _ in
            _ = SyscallTable.native
            CgroupHierarchies.prefetch()
            return nil
        }
        if pthread_create(&thread, nil, work, nil) == 0 { pthread_detach(thread) }
    }

    /// Builds the sandbox, runs the command, answers its notifications, and returns what happened. Throws when the
    /// sandbox could not be built or the command could not be started; nothing runs half-isolated.
    ///
    /// - Parameter program: the filter compiled from `request.profile`, when the caller keeps one (a long-running
    ///   supervisor compiles each profile once); compiled here otherwise.
    public static func run(
        _ request: SandboxRequest, program: SeccompProgram? = nil
    ) throws(SandboxError) -> SandboxResult {
        guard !request.argv.isEmpty, !request.argv[0].isEmpty else {
            throw SandboxError(.commandNotFound, "no command given")
        }
        if request.argv.contains(where: { $0.utf8.contains(0) }) {
            throw SandboxError(.commandNotFound, "arguments may not contain NUL bytes")
        }
        guard request.passedFDs.count <= Int(AIRLOCK_MAX_PASSED_FDS) else {
            throw SandboxError(
                .spawn,
                "at most \(AIRLOCK_MAX_PASSED_FDS) descriptors can be passed, not \(request.passedFDs.count)"
            )
        }
        if let closed = request.passedFDs.first(where: { fcntl($0.rawValue, F_GETFD) < 0 }) {
            throw SandboxError(.spawn, "descriptor \(closed.rawValue) to pass is not open", errno: Errno(EBADF))
        }
        let descriptors = Sandbox.raiseDescriptorLimit()
        if descriptors < Sandbox.leastDescriptors {
            throw SandboxError(
                .spawn,
                "the descriptor limit (\(descriptors)) is below the \(Sandbox.leastDescriptors) a sandbox's set-up needs (it moves its descriptors above 64): raise RLIMIT_NOFILE"
            )
        }
        let compiled: SeccompProgram
        if let program { compiled = program } else { compiled = try SeccompProgram(profile: request.profile) }
        var request = request
        if let world = request.world { world.apply(to: &request.profile.sandbox) }
        NetworkSink.placeResolverFiles(&request)
        return try withIdentity(request) { (request) throws(SandboxError) in
            try supervised(request, program: compiled)
        }
    }

    /// Builds and supervises the sandbox; on return the supervisor is gone (PID 1 killed if need be, and reaped).
    private static func supervised(
        _ request: SandboxRequest, program: SeccompProgram
    ) throws(SandboxError) -> SandboxResult {
        let supervisor = try SandboxSupervisor(request: request, program: program)
        return try supervisor.supervise()
    }
}

extension Sandbox {
    /// Descriptors the set-up needs at least: PID 1 moves the ones it keeps above 64 before placing the passed ones.
    static let leastDescriptors: UInt64 = 128

    /// Raises this process's soft descriptor limit to the hard one and returns the soft limit now in force. Building
    /// a sandbox holds a descriptor per mount tree, pipe and passed file, and under a low soft limit
    /// (`prlimit --nofile=64`, some CI runners, systemd's default 1024 beside a daemon's connections) its PID 1 died in
    /// set-up. Supervisors poll and never select, so the hard limit is safe; each sandbox then sets its own (the
    /// profile's `openFiles`, at most this hard limit). `Sandbox.run` calls it; airlockd calls it at start too.
    @discardableResult
    public static func raiseDescriptorLimit() -> UInt64 {
        var files = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files) == 0 else { return .max }
        if files.rlim_cur < files.rlim_max {
            files.rlim_cur = files.rlim_max
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files) != 0 {
                _ = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &files)
            }
        }
        return UInt64(files.rlim_cur)
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
func monotonicNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
