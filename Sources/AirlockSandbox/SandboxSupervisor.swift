internal import CSandbox
import AirlockTrace
import AirlockSystem
#if canImport(Glibc)
    import Glibc
#endif

/// One sandbox from spawn to reaping: it clones PID 1 (`SpawnSpecification`), maps its ids, takes its seccomp
/// listener, then serves notifications, drains output, reads the status channel and keeps the deadline until PID 1
/// is gone. Owns every descriptor it opens; if it is released early, it kills and reaps PID 1 (and so the whole
/// namespace) first.
final class SandboxSupervisor {
    private let request: SandboxRequest
    private let limits: Limits
    private let arch: UInt32
    private let start: UInt64
    /// The deadline (monotonic ns); a held sandbox's moves from its idle bound to its work's on release.
    private var deadline: UInt64
    private var watchdog: OpaquePointer?
    private let pid: pid_t
    private let pidfd: FileDescriptor
    private let ends: SandboxPipes.ParentEnds
    private let status: StatusChannel
    private var listener: FileDescriptor?
    private var reaped = false
    /// The sandbox's cgroup; released (and removed) after `deinit` has killed and reaped the tree.
    private let cgroup: SandboxCgroup?
    private let cgroupUnavailable: String
    /// The command sees ordinary rlimits (a drawn world with a cgroup): its CPU seconds are kept here, from the
    /// cgroup's usage, polled every 100 ms.
    private let watchesCPU: Bool
    /// The emulated network, when the profile has an `emulate` rule and the sandbox's namespace could be entered.
    private var network: NetworkSink?
    /// The world's clock, when it changes anything (`ClockEmulator`).
    private let clock: ClockEmulator?

    /// Builds the sandbox and lets PID 1 go on to its set-up; `supervise` then runs it.
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
        deadline = start + UInt64((request.hold?.idleSeconds ?? limits.timeoutSeconds) * 1e9)

        clock = ClockEmulator(request.world?.clock)
        if let clock, !ClockEmulator.supported {
            throw SandboxError(
                .profile,
                "this machine's vDSO cannot be patched (only x86-64's is): a world's clock (\(clock.clock)) cannot be kept"
            )
        }
        // Every /proc/<pid> the supervisor opens names a pid of its own PID namespace: under another namespace's
        // /proc (and no private one mounted at start, `ProcMount`) they would be other processes. Refuse first.
        if let problem = ProcMount.problem() { throw SandboxError(.spawn, problem) }
        let specification = try SpawnSpecification(
            request: request, limits: limits, program: program.with(clock: clock?.clock))
        (cgroup, cgroupUnavailable) = try SandboxSupervisor.makeCgroup(request.profile, limits)
        let (parent, child) = try SandboxPipes.open()
        defer { child.close() }
        do {
            (pid, pidfd) = try specification.spawn(cgroup: cgroup, child: child)
            watchesCPU = specification.ordinaryRlimits
        } catch {
            parent.close()
            throw error
        }
        ends = parent
        status = StatusChannel(fd: parent.status)
        // From here on a failure leaves deinit to kill and reap PID 1.
        // /proc/<pid> is PID 1 (the pidfd says so, and PID 1 stays unreaped until deinit) before its ns/net, root and
        // maps are opened by path below and in `takeListener`.
        try ProcMount.openProcess(pid, pidfd: pidfd).close()
        if request.profile.sandbox.notify.contains(where: { $0.action == .emulate }) {
            // Set up while PID 1 builds its root; the command starts only after (`takeListener`).
            network = NetworkSink.start(sandboxPid: pid, start: start)
        }
        try mapIDs()
    }

    deinit {
        _ = network?.finish()
        if !reaped {
            _ = airlock_pidfd_send_signal(pidfd.rawValue, SIGKILL)
            var status: Int32 = 0
            _ = airlock_pidfd_wait(pidfd.rawValue, &status, 0)
        }
        pidfd.close()
        ends.close()
        listener?.close()
    }

    // MARK: Set-up

    /// The whole sandbox's memory and pids limits (`SandboxCgroup`); without one, a run goes on only when the
    /// profile allows it, and its result says why there was none.
    private static func makeCgroup(
        _ profile: Profile, _ limits: Limits
    ) throws(SandboxError) -> (SandboxCgroup?, String) {
        do throws(CgroupUnavailable) {
            return (try SandboxCgroup(limits: limits), "not set up")
        } catch {
            if profile.sandbox.cgroup == .required {
                throw SandboxError(
                    .cgroup,
                    "the sandbox needs a cgroup of its own (memory and pids limits), and none could be made: "
                        + error.reason
                )
            }
            return (nil, error.reason)
        }
    }

    /// Maps the sandbox's ids to unprivileged host ids, then lets PID 1 go on.
    private func mapIDs() throws(SandboxError) {
        let user = request.profile.sandbox.user
        let host = user.hostIDs
        if geteuid() != 0 { try writeProc("setgroups", "deny") }
        try writeProc("uid_map", "\(user.uid) \(host.uid) 1\n", hostID: host.uid)
        try writeProc("gid_map", "\(user.gid) \(host.gid) 1\n", hostID: host.gid)
        try sendControl("M")
    }

    /// Whether `id` is one of the ids this process's user namespace maps (`/proc/self/uid_map` or `gid_map`, named
    /// by `file`); true when that cannot be read, so that only a certain absence is reported.
    private static func mapsHere(_ id: UInt32, _ file: String) -> Bool {
        guard let bytes = try? FileBytes.read("/proc/self/\(file)", limit: 65536, what: file) else { return true }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ").compactMap { UInt64($0) }
            if fields.count == 3 && UInt64(id) >= fields[0] && UInt64(id) < fields[0] + fields[2] { return true }
        }
        return false
    }

    /// Writes PID 1's `file` (uid_map, gid_map, setgroups) through a `/proc/<pid>` the pidfd vouched for
    /// (`ProcMount.openProcess`): never into another process's.
    private func writeProc(_ file: String, _ text: String, hostID: UInt32? = nil) throws(SandboxError) {
        let directory = try ProcMount.openProcess(pid, pidfd: pidfd)
        defer { directory.close() }
        do throws(SystemCallError) {
            try FileDescriptor.open(file, O_WRONLY | O_NOFOLLOW, relativeTo: directory).closeAfter {
                (fd) throws(SystemCallError) in
                let n = text.withCString { write(fd.rawValue, $0, strlen($0)) }
                guard n == text.utf8.count else { throw SystemCallError("write /proc/\(pid)/\(file)") }
            }
        } catch {
            if let hostID, error.errnoValue.rawValue == EPERM, !SandboxSupervisor.mapsHere(hostID, file) {
                throw SandboxError(
                    .spawn,
                    "\(error.operation): host id \(hostID) is not mapped in the user namespace airlock runs in "
                        + "(/proc/self/\(file)), so no sandbox can be given it: run airlock as root of the initial user "
                        + "namespace, or in a user namespace that maps that id (the profile's user.hostUid/hostGid)",
                    errno: error.errnoValue)
            }
            throw SandboxError(.spawn, error.operation, error)
        }
    }

    private func sendControl(_ byte: Character) throws(SandboxError) {
        var b = byte.asciiValue!
        guard write(ends.control.rawValue, &b, 1) == 1 else {
            throw SandboxError(.setup, "the sandbox's PID 1 went away during set-up", errno: .current)
        }
    }

    /// Waits for PID 1's set-up to end: a failure is thrown as the step that failed; on success the seccomp listener
    /// is copied out of PID 1, the call emulator made, and PID 1 released to start the command.
    private func awaitListener() throws(SandboxError) -> (FileDescriptor, CallEmulator) {
        while true {
            guard wait(for: status.fd) else {
                throw SandboxError(.setup, "sandbox set-up did not finish within the deadline")
            }
            for message in status.read() {
                switch message {
                case .setupFailed(let step, let errno, let index):
                    throw StatusChannel.setupError(
                        step: step, errno: errno, index: index,
                        mounts: request.profile.sandbox.mounts + request.extraMounts
                    )
                case .listener(let childFD):
                    return try takeListener(childFD)
                default:
                    break
                }
            }
            if status.atEOF {
                var wait: Int32 = 0
                _ = airlock_pidfd_wait(pidfd.rawValue, &wait, 0)
                reaped = true
                throw SandboxError(
                    .setup, "the sandbox's PID 1 died during set-up (\(SandboxSupervisor.describe(status: wait)))"
                )
            }
        }
    }

    private func takeListener(_ childFD: Int32) throws(SandboxError) -> (FileDescriptor, CallEmulator) {
        let copied = airlock_pidfd_getfd(pidfd.rawValue, childFD)
        guard copied >= 0 else {
            throw SandboxError(.supervisor, "pidfd_getfd of the seccomp listener", errno: .current)
        }
        let fd = FileDescriptor(copied)
        listener = fd
        _ = fcntl(fd.rawValue, F_SETFD, FD_CLOEXEC)
        // Kernel >= 6.6: the notifying task and the supervisor hand the CPU to each other directly.
        _ = airlock_notify_set_sync_wakeup(fd.rawValue)
        // The sandbox's root, taken before PID 1 makes itself non-dumpable on 'G' (an unprivileged supervisor could
        // not open /proc/PID/root after that).
        let emulator = try CallEmulator(listener: fd, sandboxPid: pid, profile: request.profile)
        try sendControl("G")
        return (fd, emulator)
    }

    /// Waits until `fd` is readable or the deadline passes.
    private func wait(for fd: FileDescriptor) -> Bool {
        while true {
            let now = monotonicNow()
            if now >= deadline { return false }
            var p = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, Int32(clamping: (deadline - now) / 1_000_000 + 1))
            if n > 0 { return true }
            if n < 0 && errno != EINTR { return false }
        }
    }

    // MARK: Supervision

    /// Runs the sandbox to its end and returns what happened.
    func supervise() throws(SandboxError) -> SandboxResult {
        // The deadline holds even while this thread is inside a call it performs for the sandbox (CallEmulator),
        // which the sandbox can hold up: a thread of its own kills PID 1 then, and interrupts such a call.
        defer { request.hold?.end() }
        guard let watchdog = airlock_watchdog_start(pidfd.rawValue, deadline + 100_000_000) else {
            throw SandboxError(.supervisor, "cannot start the deadline's watchdog thread", errno: .current)
        }
        self.watchdog = watchdog
        defer {
            self.watchdog = nil
            airlock_watchdog_stop(watchdog)
        }
        let (listener, emulator) = try awaitListener()
        let notifier = try SeccompNotifier(
            listener: listener,
            policy: NotifyPolicy(profile: request.profile, runtimeTrees: request.runtimeTrees, world: request.world),
            arch: arch, start: start,
            maxEvents: limits.traceEvents, maxBytes: limits.traceBytes, phases: request.phases, emulator: emulator,
            quietPhase: request.quietPhase, network: network
        )
        notifier.phaseMarkers = request.phaseMarkers
        notifier.clock = clock
        let observer = makeObserver(notifier)
        var run = RunState(
            stdout: CapturedOutput(fd: ends.stdout, limit: limits.outputBytes),
            stderr: CapturedOutput(fd: ends.stderr, limit: limits.outputBytes),
            window: UInt64(max(0, request.observation?.windowSeconds ?? 0) * 1e9)
        )
        run.holding = request.hold != nil
        try serve(notifier, observer, &run)
        var pid1Status: Int32 = 0
        if airlock_pidfd_wait(pidfd.rawValue, &pid1Status, 0) == 1 { reaped = true }
        for case .exited(let exit) in status.read() { run.exitStatus = exit }
        if let failure = run.execFailure { throw commandError(failure) }
        return result(run, pid1Status: pid1Status, notifier, observer)
    }

    /// What the supervision loop knows about the run so far.
    private struct RunState {
        var stdout: CapturedOutput
        var stderr: CapturedOutput
        /// How long the observation window lasts once the command's work has ended.
        let window: UInt64
        var commandExited = false
        var windowClosed = false
        var nextSweep: UInt64 = 0
        var exitStatus: Int32? = nil
        var execFailure: Errno? = nil
        var timedOut = false
        var pid1Exited = false
        var pid1ExitedAt: UInt64 = 0
        var commandPid: Int32 = 0
        /// Whether a held sandbox's hold is still to be watched (it is neither released nor discarded yet).
        var holding = false
        /// When a held sandbox was released (monotonic ns).
        var releasedAt: UInt64? = nil
        /// When the sandbox's CPU time is read next (`watchesCPU`), and whether it ran past the profile's.
        var nextCPUCheck: UInt64 = 0
        var cpuExceeded: Double? = nil
    }

    private func makeObserver(_ notifier: SeccompNotifier) -> SandboxObserver? {
        guard let config = request.observation else { return nil }
        let mounts = request.profile.sandbox.mounts + request.extraMounts
        let observer = SandboxObserver(
            config: config, procMount: mounts.first { $0.kind == .proc }?.destination, start: start
        )
        // The command's launch (its first execve, before anything else ran in it) names its process.
        notifier.onPhase = { [unowned notifier] phase, announcer in
            let launch = notifier.launchedProcess
            observer.phase(phase, announcer: announcer, command: (launch?.hostPid ?? 0, launch?.pid ?? 0))
        }
        return observer
    }

    /// The poll loop: notifications, output, status messages and PID 1's end, with the observation window and the
    /// deadline checked each round. Returns once PID 1 has exited and everything it said has been read (or two
    /// seconds after it exited, whichever is first).
    private func serve(
        _ notifier: SeccompNotifier, _ observer: SandboxObserver?, _ run: inout RunState
    ) throws(SandboxError) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let now = monotonicNow()
            // Once the command's work has ended, the window (never past the deadline) bounds the rest of the run.
            let windowEnd = observer?.workEnded.map { min($0 + run.window, deadline) }
            if let observer, let windowEnd { watchWindow(observer, until: windowEnd, now: now, &run) }
            if !run.pid1Exited && now >= deadline && !run.timedOut && !run.windowClosed {
                run.timedOut = true
                _ = airlock_pidfd_send_signal(pidfd.rawValue, SIGKILL)
            }
            if watchesCPU && !run.pid1Exited && now >= run.nextCPUCheck { checkCPU(&run, now: now) }
            if run.pid1Exited {
                let everythingRead = !run.stdout.isOpen && !run.stderr.isOpen && status.atEOF
                if everythingRead || now >= run.pid1ExitedAt + 2_000_000_000 { return }
            }
            var fds = [
                pollfd(fd: notifier.closed ? -1 : listenerFD, events: Int16(POLLIN), revents: 0),
                pollfd(fd: run.stdout.isOpen ? ends.stdout.rawValue : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: run.stderr.isOpen ? ends.stderr.rawValue : -1, events: Int16(POLLIN), revents: 0),
                pollfd(fd: status.atEOF ? -1 : status.fd.rawValue, events: Int16(POLLIN), revents: 0),
                pollfd(fd: run.pid1Exited ? -1 : pidfd.rawValue, events: Int16(POLLIN), revents: 0),
                pollfd(fd: run.holding ? request.hold?.fd.rawValue ?? -1 : -1, events: Int16(POLLIN), revents: 0),
            ]
            let n = poll(&fds, nfds_t(fds.count), pollTimeout(run, windowEnd: windowEnd, now: now))
            if n < 0 {
                if errno == EINTR { continue }
                throw SandboxError(.supervisor, "poll", errno: .current)
            }
            // The release first: the work's first notification must meet the work's deadline and phases.
            if fds[5].revents != 0 { takeHold(notifier, &run) }
            if fds[0].revents != 0 { notifier.serve(revents: fds[0].revents) }
            if fds[1].revents != 0 { run.stdout.drain(using: &chunk) }
            if fds[2].revents != 0 { run.stderr.drain(using: &chunk) }
            if fds[3].revents != 0 { handle(status.read(), observer, &run) }
            if fds[4].revents != 0 && !run.pid1Exited {
                run.pid1Exited = true
                run.pid1ExitedAt = monotonicNow()
            }
        }
    }

    private var listenerFD: Int32 { listener?.rawValue ?? -1 }

    /// The profile's CPU seconds, for the whole sandbox, when the command's `RLIMIT_CPU` is unlimited: past them the
    /// sandbox is killed, as the rlimit would have.
    private func checkCPU(_ run: inout RunState, now: UInt64) {
        run.nextCPUCheck = now + 100_000_000
        guard run.cpuExceeded == nil, let used = cgroup?.cpuSeconds(), used > Double(limits.cpuSeconds) else { return }
        run.cpuExceeded = used
        _ = airlock_pidfd_send_signal(pidfd.rawValue, SIGKILL)
    }

    /// A held sandbox's hold changed: released, its deadline becomes its work's (and its phases, when the release
    /// names them); discarded, it is killed.
    private func takeHold(_ notifier: SeccompNotifier, _ run: inout RunState) {
        guard let hold = request.hold else { return }
        switch hold.take() {
        case .released(let at, let release):
            run.holding = false
            run.releasedAt = at
            var timeout = limits.timeoutSeconds
            if let t = release.timeoutSeconds, t > 0, t <= 86_400 { timeout = t }
            deadline = at + UInt64(timeout * 1e9)
            airlock_watchdog_rearm(watchdog, deadline + 100_000_000)
            if let phases = release.phases { notifier.replacePhases(phases) }
        case .discarded:
            run.holding = false
            if !run.pid1Exited { _ = airlock_pidfd_send_signal(pidfd.rawValue, SIGKILL) }
        case .waiting, .ended:
            break
        }
    }

    /// Once the command's work has ended: sweeps for what it left every 20 ms, and kills the sandbox when the window
    /// closes.
    private func watchWindow(_ observer: SandboxObserver, until windowEnd: UInt64, now: UInt64, _ run: inout RunState) {
        guard !run.pid1Exited && !run.windowClosed, let workEnd = observer.workEnded else { return }
        if now >= windowEnd {
            observer.expire(commandAlive: !run.commandExited)
            run.windowClosed = true
            _ = airlock_pidfd_send_signal(pidfd.rawValue, SIGKILL)
        } else if now >= max(run.nextSweep, workEnd + 20_000_000) {
            // Not at once: the end announcement was just looked at, and a clean run is over within milliseconds.
            // What outlives the command sooner than a sweep, PID 1 reports (REMAINING).
            observer.sweep(commandAlive: !run.commandExited)
            run.nextSweep = now + 20_000_000
        }
    }

    /// How long the next poll may wait: until the deadline, two seconds of grace after a kill or PID 1's exit, and
    /// 20 ms at most while the observation window runs.
    private func pollTimeout(_ run: RunState, windowEnd: UInt64?, now: UInt64) -> Int32 {
        var limit: UInt64
        if run.pid1Exited {
            limit = run.pid1ExitedAt + 2_000_000_000
        } else {
            limit = run.timedOut || run.windowClosed ? now + 2_000_000_000 : deadline
        }
        if watchesCPU && !run.pid1Exited { limit = min(limit, max(run.nextCPUCheck, now + 1_000_000)) }
        if !run.pid1Exited && !run.windowClosed, let windowEnd {
            // Look again every 20 ms while the window runs; a sandbox with nothing left ends before that.
            limit = min(windowEnd, now + 20_000_000)
        }
        return Int32(clamping: limit > now ? (limit - now + 999_999) / 1_000_000 : 0)
    }

    private func handle(_ messages: [StatusMessage], _ observer: SandboxObserver?, _ run: inout RunState) {
        for message in messages {
            switch message {
            case .exited(let status):
                run.exitStatus = status
                run.commandExited = true
                // PID 1 lives on only while processes remain. Unobserved, they go with the command, as they always
                // did; observed, they get the window.
                if let observer {
                    observer.commandExited()
                } else if !run.pid1Exited {
                    _ = airlock_pidfd_send_signal(pidfd.rawValue, SIGKILL)
                }
            case .started(let pid): run.commandPid = pid
            case .remaining: observer?.processesRemained()
            case .execFailed(let errno): run.execFailure = errno
            case .setupFailed, .listener: break
            }
        }
    }

    // MARK: The result

    private func commandError(_ failure: Errno) -> SandboxError {
        let command = request.argv[0]
        if failure.rawValue == ENOENT || failure.rawValue == ENOTDIR {
            return SandboxError(
                .commandNotFound,
                "command '\(command)' not found inside the sandbox (is its directory mounted by the profile?)",
                errno: failure
            )
        }
        return SandboxError(
            .commandNotExecutable, "command '\(command)' could not be executed inside the sandbox", errno: failure
        )
    }

    private func result(
        _ run: RunState, pid1Status: Int32, _ notifier: SeccompNotifier, _ observer: SandboxObserver?
    ) -> SandboxResult {
        var result = SandboxResult(
            exitCode: nil, signal: nil, timedOut: run.timedOut, stdout: run.stdout.buffer.bytes,
            stdoutDropped: run.stdout.buffer.dropped, stderr: run.stderr.buffer.bytes,
            stderrDropped: run.stderr.buffer.dropped, trace: notifier.recorder.events,
            traceDropped: notifier.recorder.dropped, traceDroppedBytes: notifier.recorder.droppedBytes,
            durationNs: monotonicNow() - start
        )
        result.commandPid = run.commandPid
        result.traceQuieted = notifier.recorder.quieted
        result.releasedNs = run.releasedAt.map { $0 > start ? $0 - start : 0 }
        result.observation = observer?.report
        if let network {
            (result.network, result.dnsQuestions) = NetworkRecord.exchanges(network.finish(), trace: result.trace)
        }
        result.clock = clock.map { ClockOutcome(skippedNs: $0.skippedNs, unpatchedProcesses: $0.unpatched) }
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
        result.ordinaryRlimits = watchesCPU
        if request.world != nil && !watchesCPU {
            result.rlimitsNote =
                cgroup == nil
                ? "no cgroup (\(cgroupUnavailable)): the profile's rlimits are shown, and keep its limits"
                : "the cgroup's CPU time cannot be read: the profile's rlimits are shown, and keep its limits"
        }
        if let used = run.cpuExceeded {
            result.limitsHit.append(
                ResourceLimitHit(
                    resource: .cpu, limit: limits.cpuSeconds,
                    detail: "the sandbox's \(limits.cpuSeconds) CPU seconds (airlock.limits.cpuSeconds, all its "
                        + "processes together, read from its cgroup) were used up (\(Int(used)) s): it was killed"))
        }
        let status = run.exitStatus ?? pid1Status
        if airlock_wifexited(status) != 0 && run.exitStatus != nil {
            result.exitCode = airlock_wexitstatus(status)
        } else if airlock_wifsignaled(status) != 0 {
            result.signal = SyscallDecoder.signalName(UInt64(airlock_wtermsig(status)))
        } else if run.exitStatus == nil {
            // PID 1 ended without the command's status: it was killed (deadline, or from outside).
            result.signal = "SIGKILL"
        }
        return result
    }

    static func describe(status: Int32) -> String {
        if airlock_wifexited(status) != 0 { return "exit code \(airlock_wexitstatus(status))" }
        if airlock_wifsignaled(status) != 0 {
            return "killed by \(SyscallDecoder.signalName(UInt64(airlock_wtermsig(status))))"
        }
        return "status \(status)"
    }
}
