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
    /// Which rule decided: the launch, a notify rule of the profile, a `syscalls[N]` rule, the supervisor itself.
    public var rule: TraceRule?
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
        rule: TraceRule?, phase: String? = nil, args: TraceArguments, performed: Performed? = nil
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

    /// Whether openat2's `open_how` asks for a write (not encoded: the flags text says it). Set by the sandbox's
    /// decoder, read by its notify policy.
    package var openHowWrites: Bool? = nil

    /// No arguments.
    public init() {}

}

extension TraceEvent {
    /// The event as the JSON trace contract writes it: `seq`, `timeNs`, `pid`, `hostPid`, `syscall`, `action`, then
    /// `errno`, `rule` and `phase` when known, `args`, and `performed` when the supervisor performed the call.
    /// `init(json:)` reads it back.
    public var json: JSON {
        var members: [(String, JSON)] = [
            ("seq", .int(seq)), ("timeNs", .int(timeNs)), ("pid", .int(pid)), ("hostPid", .int(hostPid)),
            ("syscall", .string(syscall)), ("action", .string(action.rawValue)),
        ]
        if let errno { members.append(("errno", .string(errno))) }
        if let rule { members.append(("rule", .string(rule.description))) }
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
    /// The arguments that apply, as a JSON object; `init(json:)` reads it back.
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

extension TraceEvent {
    /// Reads an event back from `json`, strictly: every member it has must be one `json` writes, of its type, and
    /// every member `json` always writes must be there. `path` names where the event sits (`trace[3]`), for errors.
    public init(json value: JSON, path: String = "") throws(TraceFormatError) {
        let f = TraceField.top(value, path: path)
        let o = try f.object(allowed: [
            "seq", "timeNs", "pid", "hostPid", "syscall", "action", "errno", "rule", "phase", "args", "performed",
        ])
        let actionField = try f.required(o, "action")
        guard let action = Action(rawValue: try actionField.string()) else {
            throw actionField.invalid("expected allowed, denied or killed")
        }
        var performed: Performed? = nil
        if let p = o["performed"] {
            let members = try p.object(allowed: ["returned", "errno"])
            switch (members["returned"], members["errno"]) {
            case (let returned?, nil): performed = .returned(try returned.integer())
            case (nil, let errno?): performed = .failed(try errno.string())
            default: throw p.invalid("expected one of returned and errno")
            }
        }
        self.init(
            seq: try f.required(o, "seq").integer(), timeNs: try f.required(o, "timeNs").integer(),
            pid: try f.required(o, "pid").integer(), hostPid: try f.required(o, "hostPid").integer(),
            syscall: try f.required(o, "syscall").string(), action: action, errno: try o["errno"]?.string(),
            rule: try o["rule"].map { (r: TraceField) throws(TraceFormatError) in TraceRule(try r.string()) },
            phase: try o["phase"]?.string(), args: try TraceArguments(field: try f.required(o, "args")),
            performed: performed)
    }
}

extension TraceArguments {
    /// Reads arguments back from `json` (see `TraceEvent.init(json:)`).
    public init(json value: JSON, path: String = "") throws(TraceFormatError) {
        try self.init(field: TraceField.top(value, path: path))
    }

    init(field f: TraceField) throws(TraceFormatError) {
        let o = try f.object(allowed: [
            "path", "path2", "resolved", "resolved2", "continued", "dirfd", "flags", "mode", "argv", "argvTruncated",
            "family", "socketType", "address", "port", "fd", "target", "signal", "raw", "unreadable", "truncated",
        ])
        self.init()
        path = try o["path"]?.string()
        path2 = try o["path2"]?.string()
        resolved = try o["resolved"]?.string()
        resolved2 = try o["resolved2"]?.string()
        continued = try o["continued"]?.bool()
        dirfd = try o["dirfd"]?.integer()
        flags = try o["flags"]?.string()
        mode = try o["mode"]?.string()
        argv = try o["argv"]?.strings()
        argvTruncated = try o["argvTruncated"]?.bool()
        family = try o["family"]?.string()
        socketType = try o["socketType"]?.string()
        address = try o["address"]?.string()
        port = try o["port"]?.integer()
        fd = try o["fd"]?.integer()
        target = try o["target"]?.integer()
        signal = try o["signal"]?.string()
        raw = try o["raw"]?.strings()
        unreadable = try o["unreadable"]?.string()
        truncated = try o["truncated"]?.strings()
    }
}
