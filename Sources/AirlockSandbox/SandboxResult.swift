public import AirlockTrace

/// What a sandbox run produced.
public struct SandboxResult: Sendable {
    /// The number of `signal` (`SIGTERM` → 15), when a signal ended the command.
    public var signalNumber: Int32? { signal.flatMap(SyscallDecoder.signalNumber) }

    /// The command's exit code, when it exited.
    public var exitCode: Int32?
    /// The signal that ended it (`SIGKILL`), when one did.
    public var signal: String?
    /// Whether the deadline ended it.
    public var timedOut: Bool
    /// Captured standard output, at most `Limits.outputBytes`.
    public var stdout: [UInt8]
    /// Bytes of standard output beyond the bound (read and dropped).
    public var stdoutDropped: Int
    /// Captured standard error, likewise.
    public var stderr: [UInt8]
    /// Bytes of standard error dropped.
    public var stderrDropped: Int
    /// Trace events, at most `Limits.traceEvents` (plus a reserve for new kinds of refusal) in at most
    /// `Limits.traceBytes` bytes of JSON.
    public var trace: [TraceEvent]
    /// Notifications answered but not kept because the trace was full.
    public var traceDropped: Int
    /// Bytes of JSON the events not kept would have taken.
    public var traceDroppedBytes: Int = 0
    /// Allowed calls of the request's `quietPhase` counted and not kept.
    public var traceQuieted: Int = 0
    /// Wall-clock time from spawn to the end, nanoseconds.
    public var durationNs: UInt64
    /// For a held sandbox (`SandboxRequest.hold`): when its work was handed over, nanoseconds from spawn (the trace's
    /// clock); nil when it was not held, or was never released (it waited past its idle bound, was discarded, or
    /// died first).
    public var releasedNs: UInt64? = nil
    /// The command's PID inside the sandbox (2, or a drawn world's `HostWorld.commandPid`), 0 when it never started.
    public var commandPid: Int32 = 0
    /// What the supervisor saw running after the command's work ended, when the request asked for an observation.
    public var observation: ObservationReport? = nil
    /// The sandbox's own cgroup (its memory and pids limits and what it used), or why it had none.
    public var cgroup: SandboxCgroupStatus = .unavailable("not set up")
    /// The limits of the whole sandbox it ran into (memory, pids): the run was cut short by the host's bounds.
    public var limitsHit: [ResourceLimitHit] = []
    /// Whether the command saw ordinary rlimit values (a drawn world), its real limits kept by the cgroup (memory,
    /// pids), the supervisor (CPU seconds, from the cgroup) and the tmpfs sizes (file sizes).
    public var ordinaryRlimits = false
    /// Why a drawn world's command saw the profile's rlimits instead (no cgroup); nil otherwise.
    public var rlimitsNote: String? = nil
    /// What the command sent through the emulated network, flow by flow, in the order they opened.
    public var network: [NetworkExchange] = []
    /// The names the command asked the emulated DNS for, in order.
    public var dnsQuestions: [DNSQuestion] = []
    /// What a world's clock did (`SandboxRequest.world?.clock`); nil without one.
    public var clock: ClockOutcome? = nil
}

/// What a world's clock did in one run (`ClockEmulator`).
public struct ClockOutcome: Sendable, Equatable {
    /// Time the sleeps and waits it skipped would have taken, in nanoseconds (0 unless the clock skips sleeps).
    public var skippedNs: Int64
    /// Processes whose vDSO could not be rewritten (an image that is not the kernel's, or /proc refused): their
    /// vDSO reads show the host's time. 0 in a sound run.
    public var unpatchedProcesses: Int

    /// Creates an outcome.
    public init(skippedNs: Int64, unpatchedProcesses: Int) {
        self.skippedNs = skippedNs
        self.unpatchedProcesses = unpatchedProcesses
    }
}
