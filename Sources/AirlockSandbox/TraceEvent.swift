public import AirlockJSON

/// One sensitive system call the sandbox saw: a notification the supervisor answered.
public struct TraceEvent: Sendable, Equatable {
    /// What the supervisor answered.
    public enum Action: String, Sendable {
        /// The call went ahead (the mount tree and the filter still bound what it can do).
        case allowed
        /// The call failed with `errno`.
        case denied
        /// The calling process was killed.
        case killed
    }

    /// 1, 2, 3… in the order the supervisor received the notifications.
    public var seq: Int
    /// Nanoseconds since the sandbox was created (monotonic clock).
    public var timeNs: UInt64
    /// The caller's PID inside the sandbox (0 if it could not be read).
    public var pid: Int32
    /// The caller's PID on the host.
    public var hostPid: Int32
    /// The system call's name.
    public var syscall: String
    /// What the supervisor answered.
    public var action: Action
    /// The errno returned to the caller when denied (`"EACCES"`).
    public var errno: String?
    /// Which rule decided: `launch`, a notify rule's id, or `syscalls[N]` for a profile rule.
    public var rule: String?
    /// Where the harness was when the call was made (`startup`, `load`, `probe`); nil for `airlock exec`.
    public var phase: String?
    /// The decoded arguments.
    public var args: TraceArguments
    /// What the call returned, when the supervisor performed it itself (see `Performed`); nil when the kernel
    /// refused or continued it.
    public var performed: Performed?

    /// The outcome of a call the supervisor performed on the caller's behalf: exactly what the caller got.
    public enum Performed: Sendable, Equatable {
        /// The call succeeded with this value (a new descriptor's number, a byte count, 0).
        case returned(Int64)
        /// The call failed with this errno (`ENOENT`).
        case failed(String)
    }

    /// Creates an event.
    public init(
        seq: Int, timeNs: UInt64, pid: Int32, hostPid: Int32, syscall: String, action: Action, errno: String?,
        rule: String?, phase: String? = nil, args: TraceArguments, performed: Performed? = nil
    ) {
        self.seq = seq
        self.timeNs = timeNs
        self.pid = pid
        self.hostPid = hostPid
        self.syscall = syscall
        self.action = action
        self.errno = errno
        self.rule = rule
        self.phase = phase
        self.args = args
        self.performed = performed
    }
}

/// Decoded arguments of a traced system call; only the fields that apply are present.
public struct TraceArguments: Sendable, Equatable {
    /// A path argument, resolved against the caller's working directory or directory fd when relative.
    public var path: String?
    /// The second path of rename/link/symlink.
    public var path2: String?
    /// What the path named when the supervisor resolved it beneath the sandbox's root: the object's own name,
    /// symlinks followed (only for calls the supervisor performed).
    public var resolved: String?
    /// Likewise for `path2`.
    public var resolved2: String?
    /// True when the kernel carried out an allowed call after the supervisor had read its arguments (a later
    /// `execve` a profile allows): the arguments are what was read, which the caller could have changed since.
    public var continued: Bool?
    /// A directory fd argument other than `AT_FDCWD`.
    public var dirfd: Int32?
    /// Open flags (`O_WRONLY|O_CREAT|O_TRUNC`) or other flag words.
    public var flags: String?
    /// A mode argument, octal.
    public var mode: String?
    /// execve's argv.
    public var argv: [String]?
    /// True when argv was cut at the supervisor's bound: entries left out, or an entry shortened.
    public var argvTruncated: Bool?
    /// Socket address family (`inet`, `inet6`, `unix`, …).
    public var family: String?
    /// Socket type (`stream`, `dgram`, `raw`, …).
    public var socketType: String?
    /// IP address, or the AF_UNIX path (`@name` for the abstract namespace).
    public var address: String?
    /// IP port.
    public var port: Int?
    /// A file descriptor argument.
    public var fd: Int32?
    /// The target of a signal (a PID inside the sandbox; -1 means every process).
    public var target: Int64?
    /// The signal's name.
    public var signal: String?
    /// Other numeric arguments, when nothing better is known (refused calls).
    public var raw: [String]?
    /// Why some argument could not be read (the caller's memory was unreadable, or changed while we read it).
    public var unreadable: String?
    /// The fields the supervisor shortened to keep the event within its bounds (`path`, `path2`, `argv`,
    /// `address`, `unreadable`): their values are prefixes of what the caller passed. Set by the supervisor, never
    /// from what the caller sends, so a caller cannot fake or hide it.
    public var truncated: [String]?

    /// Whether openat2's `open_how` asks for a write (not encoded: the flags text says it).
    var openHowWrites: Bool? = nil

    /// No arguments.
    public init() {}

}

extension TraceEvent {
    /// The event as the JSON trace contract writes it: `seq`, `timeNs`, `pid`, `hostPid`, `syscall`, `action`, then
    /// `errno`, `rule` and `phase` when known, and `args`.
    public var json: JSON {
        var members: [(String, JSON)] = [
            ("seq", .int(seq)), ("timeNs", .int(timeNs)), ("pid", .int(pid)), ("hostPid", .int(hostPid)),
            ("syscall", .string(syscall)), ("action", .string(action.rawValue)),
        ]
        if let errno { members.append(("errno", .string(errno))) }
        if let rule { members.append(("rule", .string(rule))) }
        if let phase { members.append(("phase", .string(phase))) }
        members.append(("args", args.json))
        switch performed {
        case .returned(let v)?: members.append(("performed", .object([("returned", .int(v))])))
        case .failed(let e)?: members.append(("performed", .object([("errno", .string(e))])))
        case nil: break
        }
        return .object(members)
    }
}

extension TraceArguments {
    /// The arguments that apply, as a JSON object.
    public var json: JSON {
        var m: [(String, JSON)] = []
        if let path { m.append(("path", .string(path))) }
        if let path2 { m.append(("path2", .string(path2))) }
        if let resolved { m.append(("resolved", .string(resolved))) }
        if let resolved2 { m.append(("resolved2", .string(resolved2))) }
        if let continued { m.append(("continued", .bool(continued))) }
        if let dirfd { m.append(("dirfd", .int(dirfd))) }
        if let flags { m.append(("flags", .string(flags))) }
        if let mode { m.append(("mode", .string(mode))) }
        if let argv { m.append(("argv", .array(argv.map(JSON.string)))) }
        if let argvTruncated { m.append(("argvTruncated", .bool(argvTruncated))) }
        if let family { m.append(("family", .string(family))) }
        if let socketType { m.append(("socketType", .string(socketType))) }
        if let address { m.append(("address", .string(address))) }
        if let port { m.append(("port", .int(port))) }
        if let fd { m.append(("fd", .int(fd))) }
        if let target { m.append(("target", .int(target))) }
        if let signal { m.append(("signal", .string(signal))) }
        if let raw { m.append(("raw", .array(raw.map(JSON.string)))) }
        if let unreadable { m.append(("unreadable", .string(unreadable))) }
        if let truncated { m.append(("truncated", .array(truncated.map(JSON.string)))) }
        return .object(m)
    }
}

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
    /// Wall-clock time from spawn to the end, nanoseconds.
    public var durationNs: UInt64
    /// The command's PID inside the sandbox (2), 0 when it never started.
    public var commandPid: Int32 = 0
    /// What the supervisor saw running after the command's work ended, when the request asked for an observation.
    public var observation: ObservationReport? = nil
    /// The sandbox's own cgroup (its memory and pids limits and what it used), or why it had none.
    public var cgroup: SandboxCgroupStatus = .unavailable("not set up")
    /// The limits of the whole sandbox it ran into (memory, pids): the run was cut short by the host's bounds.
    public var limitsHit: [ResourceLimitHit] = []
}
