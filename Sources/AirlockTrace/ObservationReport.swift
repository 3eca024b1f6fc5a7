public import AirlockJSON

/// One thing the supervisor saw running after the command's work ended.
public struct LeftBehind: Sendable, Equatable {
    /// What it is.
    public enum Kind: String, Sendable {
        /// A process of the sandbox other than PID 1 and the command.
        case process
        /// A thread of the command it did not have at the baseline.
        case thread
        /// A pending timer: a POSIX timer, or a handler for a timer signal (`SIGALRM`, `SIGVTALRM`, `SIGPROF`)
        /// installed after the baseline (`alarm` and `setitimer` are not visible from outside; their handler is).
        case timer
        /// The command itself, still running when the window ended.
        case command
    }

    /// What it is.
    public var kind: Kind
    /// Its PID (thread id for threads) inside the sandbox; for threads and timers the host's when the profile mounts
    /// no procfs; 0 for processes that only PID 1's report shows.
    public var pid: Int32
    /// Its command name (`/proc/PID/comm`), or the timer's description (`SIGALRM handler`).
    public var name: String
    /// When the supervisor first saw it, nanoseconds since the sandbox started.
    public var timeNs: UInt64

    /// Creates an entry.
    public init(kind: Kind, pid: Int32, name: String, timeNs: UInt64) {
        self.kind = kind
        self.pid = pid
        self.name = name
        self.timeNs = timeNs
    }
}

/// What the supervisor observed after the command's work ended (`SandboxResult.observation`).
public struct ObservationReport: Sendable, Equatable {
    /// When `endPhase` was announced by the command's main thread, nanoseconds since the start; nil otherwise.
    public var endAnnouncedNs: UInt64?
    /// When the command's work ended (the end phase or its exit); nil when it never did (the deadline came first).
    public var workEndedNs: UInt64?
    /// Everything seen running after that, first sighting first (at most `SandboxObserver.maxEntries`).
    public var left: [LeftBehind]
    /// Sightings not kept beyond the bound.
    public var leftDropped: Int
    /// Whether the window ended with something still running and the supervisor killed the sandbox.
    public var windowExpired: Bool
    /// Timer signals the supervisor delivered early to the command (`SIGALRM`): a handler waiting for a timer then
    /// runs while the sandbox still watches.
    public var firedSignals: [String]

    /// Creates a report.
    public init(
        endAnnouncedNs: UInt64? = nil, workEndedNs: UInt64? = nil, left: [LeftBehind] = [], leftDropped: Int = 0,
        windowExpired: Bool = false, firedSignals: [String] = []
    ) {
        self.endAnnouncedNs = endAnnouncedNs
        self.workEndedNs = workEndedNs
        self.left = left
        self.leftDropped = leftDropped
        self.windowExpired = windowExpired
        self.firedSignals = firedSignals
    }
}

extension ObservationReport {
    /// The `observation` member of a report's `detonation`: times in milliseconds with three decimals
    /// (`endAnnouncedMs`, `workEndedMs`, null when unknown), `windowExpired`, `firedSignals`, `left` (each
    /// `{kind, pid, name, timeMs}`) and `leftDropped`. `init(json:)` reads it back.
    public var json: JSON {
        let ms = { (ns: UInt64) in JSON.double(ObservationReport.milliseconds(ns)) }
        let entries = left.map { item -> JSON in
            .object([
                ("kind", .string(item.kind.rawValue)), ("pid", .int(Int(item.pid))), ("name", .string(item.name)),
                ("timeMs", ms(item.timeNs)),
            ])
        }
        return .object([
            ("endAnnouncedMs", endAnnouncedNs.map(ms) ?? .null),
            ("workEndedMs", workEndedNs.map(ms) ?? .null),
            ("windowExpired", .bool(windowExpired)),
            ("firedSignals", .array(firedSignals.map(JSON.string))),
            ("left", .array(entries)),
            ("leftDropped", .int(leftDropped)),
        ])
    }

    /// Reads a report back from `json`, strictly (every member, of its type). The times come back to the
    /// microsecond the JSON keeps, so the report writes the same JSON again.
    public init(json value: JSON, path: String = "") throws(TraceFormatError) {
        let f = TraceField.top(value, path: path)
        let o = try f.object(allowed: [
            "endAnnouncedMs", "workEndedMs", "windowExpired", "firedSignals", "left", "leftDropped",
        ])
        var left: [LeftBehind] = []
        for item in try f.required(o, "left").array() {
            let m = try item.object(allowed: ["kind", "pid", "name", "timeMs"])
            let kindField = try item.required(m, "kind")
            guard let kind = LeftBehind.Kind(rawValue: try kindField.string()) else {
                throw kindField.invalid("expected process, thread, timer or command")
            }
            left.append(
                LeftBehind(
                    kind: kind, pid: try item.required(m, "pid").integer(),
                    name: try item.required(m, "name").string(),
                    timeNs: try ObservationReport.nanoseconds(try item.required(m, "timeMs"))))
        }
        self.init(
            endAnnouncedNs: try f.required(o, "endAnnouncedMs").nonNull.map(ObservationReport.nanoseconds),
            workEndedNs: try f.required(o, "workEndedMs").nonNull.map(ObservationReport.nanoseconds), left: left,
            leftDropped: try f.required(o, "leftDropped").integer(),
            windowExpired: try f.required(o, "windowExpired").bool(),
            firedSignals: try f.required(o, "firedSignals").strings())
    }

    /// Nanoseconds as the milliseconds the JSON keeps: three decimals.
    static func milliseconds(_ ns: UInt64) -> Double { (Double(ns) / 1e3).rounded() / 1e3 }

    /// Milliseconds from the JSON as nanoseconds; `milliseconds` gives the same number back.
    static func nanoseconds(_ f: TraceField) throws(TraceFormatError) -> UInt64 {
        let ms = try f.double()
        // Below 2^53 ns (104 days) a double holds every nanosecond: far beyond any sandbox's deadline.
        guard ms >= 0, ms < 9e9 else { throw f.invalid("expected milliseconds from 0 to 9e9") }
        return UInt64((ms * 1e6).rounded())
    }
}
