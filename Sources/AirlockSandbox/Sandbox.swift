internal import CCap
internal import CSandbox
internal import CSeccomp
#if canImport(Glibc)
import Glibc
#endif

/// What to run in a sandbox, and how.
public struct SandboxRequest: Sendable {
    /// The command and its arguments; `argv[0]` is looked up in the sandbox's `PATH` unless it holds a `/`.
    public var argv: [String]
    /// The profile that shapes the sandbox.
    public var profile: Profile
    /// Overrides the profile's `limits.timeoutSeconds`.
    public var timeoutSeconds: Double?
    /// Mounts added after the profile's (for example the model, read-only, at `/model`).
    public var extraMounts: [MountSpec]
    /// Phases the command may announce, in order (`startup`, `load`, `probe`); empty for none. See `PhaseMarker`.
    public var phases: [String]
    /// Open descriptors handed to the command, as `Sandbox.firstPassedFD`, +1, … (at most 8). The command can use
    /// what they are open for, and nothing the mount tree does not show otherwise; reopening one through
    /// `/proc/self/fd/N` is an ordinary open, checked against the sandbox's ids and notified like any other.
    public var passedFDs: [Int32]
    /// Whether, and how long, to watch what the command leaves running once its work is done (it needs `phases`).
    /// Without it, whatever is left when the command exits is killed at once.
    public var observation: SandboxObservation?

    /// Creates a request.
    public init(
        argv: [String], profile: Profile, timeoutSeconds: Double? = nil, extraMounts: [MountSpec] = [],
        phases: [String] = [], passedFDs: [Int32] = [], observation: SandboxObservation? = nil
    ) {
        self.argv = argv
        self.profile = profile
        self.timeoutSeconds = timeoutSeconds
        self.extraMounts = extraMounts
        self.phases = phases
        self.passedFDs = passedFDs
        self.observation = observation
    }
}

/// Runs commands in a fresh sandbox and supervises them: seccomp notifications, output, deadline.
///
/// `run` blocks the calling thread for the life of the sandbox and serves notifications on it, so call it from a
/// dedicated thread, never from Swift's cooperative pool.
public enum Sandbox {
    /// The number the first of `SandboxRequest.passedFDs` has in the command.
    public static let firstPassedFD = Int32(AIRLOCK_FIRST_PASSED_FD)

    /// Files up to this size are always handed to the sandbox as a sealed in-memory copy (within
    /// `Limits.modelCopyBytes`).
    public static let sealedCopyLimit: UInt64 = 64 << 20

    /// A descriptor of the file open as `fd` that is safe to pass to a sandbox run with `profile`
    /// (`SandboxRequest.passedFDs`): the very file, never a path looked up again, and one the command cannot write
    /// through. A file the sandbox's host user could write (which a reopen through `/proc/self/fd/N` would then
    /// allow) becomes a sealed in-memory copy; so does any small file, whatever its mode bits say, because an ACL
    /// could still grant that user write access and a copy of up to `sealedCopyLimit` costs little. Other files get a
    /// fresh read-only open of the same file. The caller closes it.
    ///
    /// A copy holds the file's data extents only (holes stay holes, so a sparse file costs what it stores), and at
    /// most `profile.sandbox.limits.modelCopyBytes` of them: a writable file with more data is refused.
    public static func passableDescriptor(_ fd: Int32, profile: Profile) throws(SandboxError) -> Int32 {
        let reopened = open("/proc/self/fd/\(fd)", O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard reopened >= 0 else { throw SandboxError(.mountSource, "cannot reopen the model read-only", errno: errno) }
        var st = stat()
        guard fstat(reopened, &st) == 0 else {
            close(reopened)
            throw SandboxError(.mountSource, "cannot stat the model", errno: errno)
        }
        let size = UInt64(max(0, st.st_size))
        let budget = profile.sandbox.limits.modelCopyBytes
        let ids = Sandbox.hostIDs(profile)
        let writable = st.st_mode & 0o002 != 0 || (st.st_uid == ids.uid && st.st_mode & 0o200 != 0)
            || (st.st_gid == ids.gid && st.st_mode & 0o020 != 0)
        guard (size <= sealedCopyLimit && size <= budget) || writable else { return reopened }
        defer { close(reopened) }
        let copy = airlock_sealed_copy(reopened, size, budget)
        guard copy >= 0 else {
            if errno == EFBIG {
                throw SandboxError(
                    .mountSource,
                    "the model is writable by the sandbox's user \(ids.uid) and holds more than \(budget) bytes "
                        + "of data, the budget of its sealed copy (airlock.limits.modelCopyBytes): make it read-only for "
                        + "that user, or raise the budget",
                    errno: EFBIG
                )
            }
            throw SandboxError(.mountSource, "cannot copy the model into sealed memory", errno: errno)
        }
        return copy
    }

    /// The host uid and gid the sandbox's user runs as: the profile's (`airlock.user.hostUid`, 65534 by default)
    /// when the supervisor is root, otherwise the supervisor's own.
    public static func hostIDs(_ profile: Profile) -> (uid: UInt32, gid: UInt32) {
        let user = profile.sandbox.user
        return geteuid() == 0 ? (user.hostUid, user.hostGid) : (geteuid(), getegid())
    }

    /// Builds the sandbox, runs the command, answers its notifications, and returns what happened. Throws when the
    /// sandbox could not be built or the command could not be started; nothing runs half-isolated.
    ///
    /// - Parameter program: the filter compiled from `request.profile`, when the caller keeps one (a long-running
    ///   supervisor compiles each profile once); compiled here otherwise.
    public static func run(_ request: SandboxRequest, program: SeccompProgram? = nil) throws(SandboxError) -> SandboxResult {
        guard !request.argv.isEmpty, !request.argv[0].isEmpty else {
            throw SandboxError(.commandNotFound, "no command given")
        }
        if request.argv.contains(where: { $0.utf8.contains(0) }) {
            throw SandboxError(.commandNotFound, "arguments may not contain NUL bytes")
        }
        guard request.passedFDs.count <= Int(AIRLOCK_MAX_PASSED_FDS) else {
            throw SandboxError(.spawn, "at most \(AIRLOCK_MAX_PASSED_FDS) descriptors can be passed, not \(request.passedFDs.count)")
        }
        if let closed = request.passedFDs.first(where: { fcntl($0, F_GETFD) < 0 }) {
            throw SandboxError(.spawn, "descriptor \(closed) to pass is not open", errno: EBADF)
        }
        let compiled: SeccompProgram
        if let program { compiled = program } else { compiled = try SeccompProgram(profile: request.profile) }
        let run = try SandboxRun(request: request, program: compiled)
        return try run.supervise()
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
func monotonicNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// C memory that must outlive the clone call.
private final class CArena {
    private var mallocs: [UnsafeMutableRawPointer] = []

    func string(_ s: String) -> UnsafeMutablePointer<CChar> {
        let p = strdup(s)!
        mallocs.append(UnsafeMutableRawPointer(p))
        return p
    }

    func bytes(_ b: [UInt8]) -> UnsafeMutablePointer<CChar> {
        let p = malloc(max(b.count, 1))!
        b.withUnsafeBytes { if $0.count > 0 { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        mallocs.append(p)
        return p.assumingMemoryBound(to: CChar.self)
    }

    func array<T>(_ items: [T]) -> UnsafeMutablePointer<T> {
        let p = malloc(max(items.count, 1) * MemoryLayout<T>.stride)!.bindMemory(to: T.self, capacity: max(items.count, 1))
        p.initialize(from: items, count: items.count)
        mallocs.append(UnsafeMutableRawPointer(p))
        return p
    }

    deinit { for p in mallocs { free(p) } }
}

/// One sandbox from spawn to reaping. Owns every descriptor it opens.
private final class SandboxRun {
    let request: SandboxRequest
    let limits: Limits
    let start: UInt64
    let deadline: UInt64
    var pid: pid_t = 0
    var pidfd: Int32 = -1
    var stdoutFd: Int32 = -1
    var stderrFd: Int32 = -1
    var statusFd: Int32 = -1
    var controlFd: Int32 = -1
    var listener: Int32 = -1
    var reaped = false
    let arch: UInt32
    /// The sandbox's cgroup; released (and removed) after `deinit` has killed and reaped the tree.
    var cgroup: SandboxCgroup?
    var cgroupUnavailable = "not set up"

    init(request: SandboxRequest, program: SeccompProgram) throws(SandboxError) {
        self.request = request
        var limits = request.profile.sandbox.limits
        if let t = request.timeoutSeconds {
            guard t > 0, t <= 86_400 else { throw SandboxError(.profile, "the timeout must be in (0, 86400] seconds") }
            limits.timeoutSeconds = t
        }
        self.limits = limits
        arch = program.nativeArch
        start = monotonicNow()
        deadline = start + UInt64(limits.timeoutSeconds * 1e9)
        try spawn(program)
    }

    deinit {
        if pidfd >= 0 && !reaped {
            _ = airlock_pidfd_send_signal(pidfd, SIGKILL)
            var status: Int32 = 0
            _ = airlock_pidfd_wait(pidfd, &status, 0)
        }
        for fd in [pidfd, stdoutFd, stderrFd, statusFd, controlFd, listener] where fd >= 0 { close(fd) }
    }

    // MARK: Spawn

    private func spawn(_ program: SeccompProgram) throws(SandboxError) {
        let settings = request.profile.sandbox
        let arena = CArena()
        let mounts = settings.mounts + request.extraMounts
        var cMounts: [airlock_mount] = []
        for (i, m) in mounts.enumerated() {
            var c = airlock_mount()
            c.destination = UnsafePointer(arena.string(String(m.destination.dropFirst())))
            c.mode = m.mode ?? 0o755
            c.optional = m.optional ? 1 : 0
            switch m.kind {
            case .bind:
                let source = m.source ?? ""
                var st = stat()
                if stat(source, &st) != 0 && !m.optional {
                    let field = i < settings.mounts.count ? "airlock.mounts[\(i)].source" : "mount \(m.destination)"
                    throw SandboxError(.mountSource, "mount source \(source) (\(field)) is missing", errno: errno)
                }
                c.kind = Int32(AIRLOCK_MOUNT_BIND.rawValue)
                c.source = UnsafePointer(arena.string(source))

            case .tmpfs:
                c.kind = Int32(AIRLOCK_MOUNT_TMPFS.rawValue)
                let size = m.sizeBytes ?? (64 << 20)
                c.data = UnsafePointer(arena.string("mode=\(String(m.mode ?? 0o1777, radix: 8)),size=\(size),nr_inodes=16384"))
            case .proc:
                c.kind = Int32(AIRLOCK_MOUNT_PROC.rawValue)
            case .dev:
                c.kind = Int32(AIRLOCK_MOUNT_DEV.rawValue)
            case .file:
                c.kind = Int32(AIRLOCK_MOUNT_FILE.rawValue)
                let bytes = Array((m.contents ?? "").utf8)
                c.data = UnsafePointer(arena.bytes(bytes))
                c.data_len = bytes.count
                c.mode = m.mode ?? 0o644
            case .symlink:
                c.kind = Int32(AIRLOCK_MOUNT_SYMLINK.rawValue)
                c.source = UnsafePointer(arena.string(m.target ?? ""))
            case .dir:
                c.kind = Int32(AIRLOCK_MOUNT_DIR.rawValue)
            }
            cMounts.append(c)
        }

        try makeCgroup()
        // With a pids cgroup, the cgroup is the limit that answers (and is reported); RLIMIT_NPROC, one above it,
        // stays as the backstop that also bounds what is charged to the supervisor's user.
        let nproc = cgroup == nil ? limits.processes : limits.processes + 1
        let rlimits: [airlock_rlimit] = [
            airlock_rlimit(resource: Int32(RLIMIT_AS.rawValue), soft: limits.addressSpaceBytes, hard: limits.addressSpaceBytes),
            airlock_rlimit(resource: Int32(RLIMIT_CPU.rawValue), soft: limits.cpuSeconds, hard: limits.cpuSeconds + 1),
            airlock_rlimit(resource: Int32(RLIMIT_NOFILE.rawValue), soft: limits.openFiles, hard: limits.openFiles),
            airlock_rlimit(resource: airlock_rlimit_nproc(), soft: nproc, hard: nproc),
            airlock_rlimit(resource: Int32(RLIMIT_FSIZE.rawValue), soft: limits.fileSizeBytes, hard: limits.fileSizeBytes),
            airlock_rlimit(resource: Int32(RLIMIT_CORE.rawValue), soft: 0, hard: 0),
        ] + SharedBudgets.rlimits(limits)
        let userLimits = SharedBudgets.userNamespaceLimits(limits).map {
            airlock_user_limit(
                path: UnsafePointer(arena.string("sys/user/\($0.name)")),
                value: UnsafePointer(arena.string(String($0.value)))
            )
        }

        // The command: tried at each PATH entry of the sandbox's environment, in order.
        let command = request.argv[0]
        var candidates: [String] = []
        if command.contains("/") {
            candidates = [command]
        } else {
            let path = settings.environment.first { $0.0 == "PATH" }?.1 ?? "/usr/bin:/bin"
            candidates = path.split(separator: ":").filter { $0.hasPrefix("/") }.map { "\($0)/\(command)" }
        }
        let cCandidates: [UnsafePointer<CChar>?] = candidates.map { UnsafePointer(arena.string($0)) } + [nil]
        let cArgv: [UnsafeMutablePointer<CChar>?] = request.argv.map { arena.string($0) } + [nil]
        let cEnv: [UnsafeMutablePointer<CChar>?] = settings.environment.map { arena.string("\($0.0)=\($0.1)") } + [nil]

        guard let emptyCaps = cap_init() else { throw SandboxError(.supervisor, "libcap: cap_init", errno: errno) }
        defer { cap_free(UnsafeMutableRawPointer(emptyCaps)) }

        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard devNull >= 0 else { throw SandboxError(.supervisor, "open /dev/null", errno: errno) }
        defer { close(devNull) }
        let out = try pipePair()
        stdoutFd = out.read
        defer { close(out.write) }
        let err = try pipePair()
        stderrFd = err.read
        defer { close(err.write) }
        let status = try pipePair()
        statusFd = status.read
        defer { close(status.write) }
        let control = try pipePair()
        controlFd = control.write
        defer { close(control.read) }
        for fd in [stdoutFd, stderrFd, statusFd] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }

        let privileged = geteuid() == 0
        var spec = airlock_spawn_spec()
        spec.namespaces = airlock_namespace_flags()
        spec.hostname = UnsafePointer(arena.string(settings.hostname))
        spec.staging = UnsafePointer(arena.string("/tmp"))
        spec.root_options = UnsafePointer(arena.string("mode=0755,size=16m,nr_inodes=4096"))
        spec.mounts = UnsafePointer(arena.array(cMounts))
        spec.mount_count = cMounts.count
        spec.rlimits = UnsafePointer(arena.array(rlimits))
        spec.rlimit_count = rlimits.count
        spec.uid = settings.user.uid
        spec.gid = settings.user.gid
        spec.drop_supplementary_groups = privileged ? 1 : 0
        spec.empty_caps = UnsafeMutableRawPointer(emptyCaps)
        spec.cap_last = Int32(cap_max_bits()) - 1
        spec.filter_len = UInt16(program.instructions.count)
        spec.filter_flags = UInt32(SECCOMP_FILTER_FLAG_NEW_LISTENER) | UInt32(1 << 5) // WAIT_KILLABLE_RECV
        spec.cwd = UnsafePointer(arena.string(settings.cwd))
        spec.candidates = UnsafePointer(arena.array(cCandidates))
        spec.argv = UnsafePointer(arena.array(cArgv))
        spec.envp = UnsafePointer(arena.array(cEnv))
        spec.stdin_fd = devNull
        spec.stdout_fd = out.write
        spec.stderr_fd = err.write
        spec.status_fd = status.write
        spec.control_fd = control.read
        spec.passed_fds = UnsafePointer(arena.array(request.passedFDs))
        spec.passed_fd_count = request.passedFDs.count
        spec.user_limits = UnsafePointer(arena.array(userLimits))
        spec.user_limit_count = userLimits.count
        spec.cgroup_fd = cgroup?.cloneFD ?? -1
        let taskFiles: [UnsafePointer<CChar>?] = (cgroup?.v1TaskFiles ?? []).map { UnsafePointer(arena.string($0)) }
        spec.cgroup_tasks = UnsafePointer(arena.array(taskFiles))
        spec.cgroup_task_count = taskFiles.count

        var childPidfd: Int32 = -1
        let rc = program.instructions.withUnsafeBytes { filter -> Int32 in
            spec.filter = filter.baseAddress
            return airlock_spawn(&spec, &childPidfd)
        }
        guard rc > 0 else {
            throw SandboxError(.spawn, "clone3 with new user, pid, net, mount, ipc, uts and cgroup namespaces", errno: -rc)
        }
        pid = rc
        pidfd = childPidfd

        // Map the sandbox's ids to unprivileged host ids, then let the child go on.
        let user = settings.user
        let (hostUid, hostGid) = Sandbox.hostIDs(request.profile)
        if !privileged { try writeProc("setgroups", "deny") }
        try writeProc("uid_map", "\(user.uid) \(hostUid) 1\n")
        try writeProc("gid_map", "\(user.gid) \(hostGid) 1\n")
        try sendControl("M")
    }

    /// The whole sandbox's memory and pids limits (`SandboxCgroup`); without one, a run goes on only when the
    /// profile allows it, and its result says why there was none.
    private func makeCgroup() throws(SandboxError) {
        do throws(CgroupUnavailable) {
            cgroup = try SandboxCgroup(limits: limits)
        } catch {
            try noCgroup(error.reason)
        }
    }

    private func noCgroup(_ reason: String) throws(SandboxError) {
        if request.profile.sandbox.cgroup == .required {
            throw SandboxError(
                .cgroup,
                "the sandbox needs a cgroup of its own (memory and pids limits), and none could be made: \(reason)"
            )
        }
        cgroupUnavailable = reason
    }

    private func pipePair() throws(SandboxError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard airlock_pipe(&fds) == 0 else { throw SandboxError(.supervisor, "pipe2", errno: errno) }
        return (fds[0], fds[1])
    }

    private func writeProc(_ file: String, _ text: String) throws(SandboxError) {
        let fd = open("/proc/\(pid)/\(file)", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxError(.spawn, "open /proc/\(pid)/\(file)", errno: errno) }
        defer { close(fd) }
        let n = text.withCString { write(fd, $0, strlen($0)) }
        guard n == text.utf8.count else { throw SandboxError(.spawn, "write /proc/\(pid)/\(file)", errno: errno) }
    }

    private func sendControl(_ byte: Character) throws(SandboxError) {
        var b = byte.asciiValue!
        guard write(controlFd, &b, 1) == 1 else {
            throw SandboxError(.setup, "the sandbox's PID 1 went away during set-up", errno: errno)
        }
    }

    // MARK: Status messages

    private var statusBuffer: [UInt8] = []
    private var statusEOF = false

    /// Reads whatever status messages are available.
    private func readStatus() -> [airlock_message] {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(statusFd, $0.baseAddress, $0.count) }
            if n > 0 {
                statusBuffer.append(contentsOf: chunk[0..<n])
                continue
            }
            if n == 0 { statusEOF = true }
            if n < 0 && errno == EINTR { continue }
            break
        }
        let size = MemoryLayout<airlock_message>.size
        var messages: [airlock_message] = []
        while statusBuffer.count >= size {
            let m = statusBuffer.withUnsafeBytes { $0.loadUnaligned(as: airlock_message.self) }
            messages.append(m)
            statusBuffer.removeFirst(size)
        }
        return messages
    }

    private static let stepNames: [UInt32: String] = [
        AIRLOCK_STEP_WAIT_MAPS.rawValue: "waiting for the uid/gid maps",
        AIRLOCK_STEP_SETGROUPS.rawValue: "dropping supplementary groups",
        AIRLOCK_STEP_HOSTNAME.rawValue: "setting the host name",
        AIRLOCK_STEP_MOUNT_PRIVATE.rawValue: "making the mount tree private",
        AIRLOCK_STEP_OPEN_SOURCE.rawValue: "opening a mount source",
        AIRLOCK_STEP_STAGING.rawValue: "mounting the new root",
        AIRLOCK_STEP_MOUNTPOINT.rawValue: "creating a mount point",
        AIRLOCK_STEP_MOUNT.rawValue: "mounting",
        AIRLOCK_STEP_READONLY.rawValue: "making a mount read-only",
        AIRLOCK_STEP_PIVOT_ROOT.rawValue: "pivot_root",
        AIRLOCK_STEP_DETACH_OLD_ROOT.rawValue: "detaching the old root",
        AIRLOCK_STEP_ROOT_READONLY.rawValue: "making the new root read-only",
        AIRLOCK_STEP_CHDIR.rawValue: "changing to the working directory",
        AIRLOCK_STEP_RLIMIT.rawValue: "setting a resource limit",
        AIRLOCK_STEP_CAP_BOUND.rawValue: "dropping the capability bounding set",
        AIRLOCK_STEP_CAP_AMBIENT.rawValue: "clearing ambient capabilities",
        AIRLOCK_STEP_SETGID.rawValue: "setting the gid",
        AIRLOCK_STEP_SETUID.rawValue: "setting the uid",
        AIRLOCK_STEP_CAP_CLEAR.rawValue: "clearing capabilities",
        AIRLOCK_STEP_NO_NEW_PRIVS.rawValue: "setting no_new_privs",
        AIRLOCK_STEP_SIGNALS.rawValue: "setting up the reaper's signals",
        AIRLOCK_STEP_SECCOMP.rawValue: "installing the seccomp filter",
        AIRLOCK_STEP_HANDOFF.rawValue: "handing over the seccomp listener",
        AIRLOCK_STEP_FORK.rawValue: "starting the command's process",
        AIRLOCK_STEP_USER_LIMITS.rawValue:
            "joining the sandbox's cgroup and bounding the host's per-user counters (/proc/sys/user of its namespace)",
    ]

    private func setupError(_ m: airlock_message) -> SandboxError {
        var what = SandboxRun.stepNames[m.step] ?? "step \(m.step)"
        let mounts = request.profile.sandbox.mounts + request.extraMounts
        if [AIRLOCK_STEP_OPEN_SOURCE.rawValue, AIRLOCK_STEP_MOUNTPOINT.rawValue, AIRLOCK_STEP_MOUNT.rawValue,
            AIRLOCK_STEP_READONLY.rawValue].contains(m.step) {
            if m.index >= 0 && Int(m.index) < mounts.count {
                let mount = mounts[Int(m.index)]
                what += " \(mount.source.map { "\($0) → " } ?? "")\(mount.destination) (\(mount.kind.rawValue))"
            } else if m.index <= -2 {
                what += " (a /dev node)"
            }
        }
        return SandboxError(.setup, "sandbox set-up failed while \(what)", errno: m.err)
    }

    // MARK: Supervision

    func supervise() throws(SandboxError) -> SandboxResult {
        // The deadline holds even while this thread is inside a call it performs for the sandbox (CallEmulator),
        // which the sandbox can hold up: a thread of its own kills PID 1 then, and interrupts such a call.
        guard let watchdog = airlock_watchdog_start(pidfd, deadline + 100_000_000) else {
            throw SandboxError(.supervisor, "cannot start the deadline's watchdog thread", errno: errno)
        }
        defer { airlock_watchdog_stop(watchdog) }
        var emulator: CallEmulator? = nil
        // Set-up: wait for the listener (or a failure), copy it, and release the child.
        setup: while listener < 0 {
            guard wait(for: statusFd) else {
                throw SandboxError(.setup, "sandbox set-up did not finish within the deadline")
            }
            for m in readStatus() {
                switch m.type {
                case AIRLOCK_MSG_ERROR.rawValue:
                    throw setupError(m)
                case AIRLOCK_MSG_LISTENER.rawValue:
                    let fd = airlock_pidfd_getfd(pidfd, Int32(m.value))
                    guard fd >= 0 else { throw SandboxError(.supervisor, "pidfd_getfd of the seccomp listener", errno: errno) }
                    listener = fd
                    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                    // Kernel >= 6.6: the notifying task and the supervisor hand the CPU to each other directly.
                    _ = airlock_notify_set_sync_wakeup(fd)
                    // The sandbox's root, taken before PID 1 makes itself non-dumpable on 'G' (an unprivileged
                    // supervisor could not open /proc/PID/root after that).
                    emulator = try CallEmulator(listener: fd, sandboxPid: pid, profile: request.profile)
                    try sendControl("G")
                    break setup
                default:
                    break
                }
            }
            if statusEOF {
                var status: Int32 = 0
                _ = airlock_pidfd_wait(pidfd, &status, 0)
                reaped = true
                throw SandboxError(.setup, "the sandbox's PID 1 died during set-up (\(SandboxRun.describe(status: status)))")
            }
        }

        let notifier = try SeccompNotifier(
            listener: listener, policy: NotifyPolicy(profile: request.profile), arch: arch, start: start,
            maxEvents: limits.traceEvents, maxBytes: limits.traceBytes, phases: request.phases, emulator: emulator
        )
        let observer = request.observation.map { config in
            SandboxObserver(config: config,
                            procMount: (request.profile.sandbox.mounts + request.extraMounts).first { $0.kind == .proc }?.destination,
                            start: start)
        }
        if let observer {
            // The command's launch (its first execve, before anything else ran in it) names its process.
            notifier.onPhase = { [unowned notifier] phase, announcer in
                let launch = notifier.launchedProcess
                observer.phase(phase, announcer: announcer, command: (launch?.hostPid ?? 0, launch?.pid ?? 0))
            }
        }
        let window = UInt64(max(0, request.observation?.windowSeconds ?? 0) * 1e9)
        var commandExited = false
        var windowClosed = false
        var nextSweep: UInt64 = 0
        var stdoutBuffer = OutputBuffer(limit: limits.outputBytes)
        var stderrBuffer = OutputBuffer(limit: limits.outputBytes)
        var exitStatus: Int32? = nil
        var execFailure: Int32? = nil
        var timedOut = false
        var pid1Exited = false
        var pid1ExitedAt: UInt64 = 0
        var commandPid: Int32 = 0
        var outOpen = true, errOpen = true
        var chunk = [UInt8](repeating: 0, count: 65536)

        func drain(_ fd: Int32, _ buffer: inout OutputBuffer, _ open: inout Bool) {
            // At most 1 MiB per round: processes that write as fast as we read must not keep the loop from its
            // deadline and its notifications (the rest is read next round; the pipe holds the writers back).
            var reads = 0
            while open && reads < 16 {
                reads += 1
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 { buffer.append(chunk[0..<n]); continue }
                if n == 0 { open = false }
                if n < 0 && errno == EINTR { continue }
                return
            }
        }

        while true {
            let now = monotonicNow()
            // Once the command's work has ended, the window (never past the deadline) bounds the rest of the run.
            let windowEnd = observer?.workEnded.map { min($0 + window, deadline) }
            if !pid1Exited && !windowClosed, let observer, let windowEnd, let workEnd = observer.workEnded {
                if now >= windowEnd {
                    observer.expire(commandAlive: !commandExited)
                    windowClosed = true
                    _ = airlock_pidfd_send_signal(pidfd, SIGKILL)
                } else if now >= max(nextSweep, workEnd + 20_000_000) {
                    // Not at once: the end announcement was just looked at, and a clean run is over within
                    // milliseconds. What outlives the command sooner than a sweep, PID 1 reports (REMAINING).
                    observer.sweep(commandAlive: !commandExited)
                    nextSweep = now + 20_000_000
                }
            }
            if !pid1Exited && now >= deadline && !timedOut && !windowClosed {
                timedOut = true
                _ = airlock_pidfd_send_signal(pidfd, SIGKILL)
            }
            if pid1Exited && ((!outOpen && !errOpen && statusEOF) || now >= pid1ExitedAt + 2_000_000_000) { break }
            var fds = [
                pollfd(fd: listener, events: Int16(POLLIN), revents: 0),
                pollfd(fd: outOpen ? stdoutFd : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: errOpen ? stderrFd : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: statusEOF ? -1 : statusFd, events: Int16(POLLIN), revents: 0),
                pollfd(fd: pid1Exited ? -1 : pidfd, events: Int16(POLLIN), revents: 0),
            ]
            if notifier.closed { fds[0].fd = -1 }
            var limit = pid1Exited ? pid1ExitedAt + 2_000_000_000 : (timedOut || windowClosed ? now + 2_000_000_000 : deadline)
            if !pid1Exited && !windowClosed, let windowEnd {
                // Look again every 20 ms while the window runs; a sandbox with nothing left ends before that.
                limit = min(windowEnd, now + 20_000_000)
            }
            let timeoutMs = Int32(clamping: limit > now ? (limit - now + 999_999) / 1_000_000 : 0)
            let n = poll(&fds, nfds_t(fds.count), timeoutMs)
            if n < 0 {
                if errno == EINTR { continue }
                throw SandboxError(.supervisor, "poll", errno: errno)
            }
            if fds[0].revents != 0 { notifier.serve(revents: fds[0].revents) }
            if fds[1].revents != 0 { drain(stdoutFd, &stdoutBuffer, &outOpen) }
            if fds[2].revents != 0 { drain(stderrFd, &stderrBuffer, &errOpen) }
            if fds[3].revents != 0 {
                for m in readStatus() {
                    if m.type == AIRLOCK_MSG_EXIT.rawValue {
                        exitStatus = Int32(truncatingIfNeeded: m.value)
                        commandExited = true
                        // PID 1 lives on only while processes remain. Unobserved, they go with the command, as
                        // they always did; observed, they get the window.
                        if let observer {
                            observer.commandExited()
                        } else if !pid1Exited {
                            _ = airlock_pidfd_send_signal(pidfd, SIGKILL)
                        }
                    }
                    if m.type == AIRLOCK_MSG_STARTED.rawValue { commandPid = Int32(truncatingIfNeeded: m.value) }
                    if m.type == AIRLOCK_MSG_REMAINING.rawValue { observer?.processesRemained() }
                    if m.type == AIRLOCK_MSG_EXEC_FAILED.rawValue { execFailure = m.err }
                }
            }
            if fds[4].revents != 0 && !pid1Exited {
                pid1Exited = true
                pid1ExitedAt = monotonicNow()
            }
        }
        var pid1Status: Int32 = 0
        if airlock_pidfd_wait(pidfd, &pid1Status, 0) == 1 { reaped = true }
        for m in readStatus() where m.type == AIRLOCK_MSG_EXIT.rawValue { exitStatus = Int32(truncatingIfNeeded: m.value) }

        if let e = execFailure {
            let command = request.argv[0]
            if e == ENOENT || e == ENOTDIR {
                throw SandboxError(.commandNotFound, "command '\(command)' not found inside the sandbox (is its directory mounted by the profile?)", errno: e)
            }
            throw SandboxError(.commandNotExecutable, "command '\(command)' could not be executed inside the sandbox", errno: e)
        }

        var result = SandboxResult(
            exitCode: nil, signal: nil, timedOut: timedOut, stdout: stdoutBuffer.bytes, stdoutDropped: stdoutBuffer.dropped,
            stderr: stderrBuffer.bytes, stderrDropped: stderrBuffer.dropped, trace: notifier.recorder.events,
            traceDropped: notifier.recorder.dropped, traceDroppedBytes: notifier.recorder.droppedBytes,
            durationNs: monotonicNow() - start
        )
        result.commandPid = commandPid
        result.observation = observer?.report
        if let cgroup {
            // Removed only once PID 1 is reaped: its death has then ended every other process of the namespace.
            if reaped {
                (result.cgroup, result.limitsHit) = cgroup.finish()
            } else {
                let (usage, hits) = cgroup.usage()
                (result.cgroup, result.limitsHit) = (.applied(usage), hits)
            }
        } else {
            result.cgroup = .unavailable(cgroupUnavailable)
        }
        let status = exitStatus ?? pid1Status
        if airlock_wifexited(status) != 0 && exitStatus != nil {
            result.exitCode = airlock_wexitstatus(status)
        } else if airlock_wifsignaled(status) != 0 {
            result.signal = SyscallDecoder.signalName(UInt64(airlock_wtermsig(status)))
        } else if exitStatus == nil {
            // PID 1 ended without the command's status: it was killed (deadline, or from outside).
            result.signal = "SIGKILL"
        }
        return result
    }

    /// Waits until `fd` is readable or the deadline passes.
    private func wait(for fd: Int32) -> Bool {
        while true {
            let now = monotonicNow()
            if now >= deadline { return false }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, Int32(clamping: (deadline - now) / 1_000_000 + 1))
            if n > 0 { return true }
            if n < 0 && errno != EINTR { return false }
        }
    }

    static func describe(status: Int32) -> String {
        if airlock_wifexited(status) != 0 { return "exit code \(airlock_wexitstatus(status))" }
        if airlock_wifsignaled(status) != 0 { return "killed by \(SyscallDecoder.signalName(UInt64(airlock_wtermsig(status))))" }
        return "status \(status)"
    }
}

/// A bounded capture of one output stream: keeps the first `limit` bytes and counts the rest.
struct OutputBuffer {
    let limit: Int
    var bytes: [UInt8] = []
    var dropped = 0

    init(limit: Int) { self.limit = limit }

    mutating func append(_ chunk: ArraySlice<UInt8>) {
        let room = max(0, limit - bytes.count)
        bytes.append(contentsOf: chunk.prefix(room))
        dropped += max(0, chunk.count - room)
    }
}
