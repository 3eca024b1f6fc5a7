public import AirlockJSON

/// How a detonation ran, as a report carries it (the `detonation` member, docs/report.schema.json): typed here and
/// written to JSON, and read back from it, only by `json` and `init?(json:)`.
///
/// The probe fills it from what the sandbox returned (`Detonation` in AirlockProbe). The parts whose types belong to
/// the sandbox module — the observation, the limits hit, the cgroup — arrive already in their JSON form: this module
/// knows nothing of the sandbox, and a report read back from airlockd has only their JSON anyway.
public struct DetonationSummary: Sendable, Equatable {
    /// The harness's command line inside the sandbox.
    public var argv: [String]
    /// How the loader ended: `loaded`, or one of the policy's outcomes (`timeout`, `load-error`, …).
    public var outcome: String
    /// The last phase reached.
    public var phaseReached: String
    /// What the model left running, in words, when anything.
    public var leftBehind: String?
    /// What the supervisor saw running after the loader returned (null when not observed).
    public var observation: JSON
    /// The loader's exit code, when it exited.
    public var exitCode: Int?
    /// The signal that ended it, when one did.
    public var signal: String?
    /// Whether the deadline ended it.
    public var timedOut: Bool
    /// Wall-clock time of the sandbox run.
    public var durationMs: Double
    /// The end of the harness's standard output and error.
    public var stdoutTail: String
    public var stderrTail: String
    /// Notifications answered but not kept, and the bytes of JSON they would have taken.
    public var traceDropped: Int
    public var traceDroppedBytes: Int
    /// Limits of the whole sandbox it ran into.
    public var limitsHit: [JSON]
    /// The sandbox's cgroup and what it used.
    public var cgroup: JSON
    /// How many events the trace held when it was left out of a reply or a stored report (`Report.fit`).
    public var traceOmitted: Int? = nil

    /// Creates a summary.
    public init(
        argv: [String], outcome: String, phaseReached: String, leftBehind: String?, observation: JSON, exitCode: Int?,
        signal: String?, timedOut: Bool, durationMs: Double, stdoutTail: String, stderrTail: String, traceDropped: Int,
        traceDroppedBytes: Int, limitsHit: [JSON], cgroup: JSON, traceOmitted: Int? = nil
    ) {
        self.argv = argv
        self.outcome = outcome
        self.phaseReached = phaseReached
        self.leftBehind = leftBehind
        self.observation = observation
        self.exitCode = exitCode
        self.signal = signal
        self.timedOut = timedOut
        self.durationMs = durationMs
        self.stdoutTail = stdoutTail
        self.stderrTail = stderrTail
        self.traceDropped = traceDropped
        self.traceDroppedBytes = traceDroppedBytes
        self.limitsHit = limitsHit
        self.cgroup = cgroup
        self.traceOmitted = traceOmitted
    }

    /// The `detonation` member of the report.
    public var json: JSON {
        var members: [(String, JSON)] = [
            ("argv", .array(argv.map(JSON.string))),
            ("outcome", .string(outcome)),
            ("phaseReached", .string(phaseReached)),
            ("leftBehind", .optional(leftBehind)),
            ("observation", observation),
            ("exitCode", exitCode.map(JSON.int) ?? .null),
            ("signal", .optional(signal)),
            ("timedOut", .bool(timedOut)),
            ("durationMs", .double(durationMs)),
            ("stdoutTail", .string(stdoutTail)),
            ("stderrTail", .string(stderrTail)),
            ("traceDropped", .int(traceDropped)),
            ("traceDroppedBytes", .int(traceDroppedBytes)),
            ("limitsHit", .array(limitsHit)),
            ("cgroup", cgroup),
        ]
        if let traceOmitted { members.append(("traceOmitted", .int(traceOmitted))) }
        return .object(members)
    }

    /// A summary read back from its JSON (a report from airlockd, a stored report); nil when `value` is not one.
    public init?(json value: JSON) {
        guard case .object(let m) = value else { return nil }
        func field(_ key: String) -> JSON? { m.first { $0.0 == key }?.1 }
        func string(_ key: String) -> String? { if case .string(let s)? = field(key) { s } else { nil } }
        func int(_ key: String) -> Int? { if case .number(let n)? = field(key) { Int(n) } else { nil } }
        guard case .array(let argvItems)? = field("argv"), let outcome = string("outcome"),
            let phaseReached = string("phaseReached"), case .bool(let timedOut)? = field("timedOut")
        else { return nil }
        var limitsHit: [JSON] = []
        if case .array(let items)? = field("limitsHit") { limitsHit = items }
        var durationMs = 0.0
        if case .number(let n)? = field("durationMs") { durationMs = Double(n) ?? 0 }
        self.init(
            argv: argvItems.compactMap { if case .string(let s) = $0 { s } else { nil } }, outcome: outcome,
            phaseReached: phaseReached, leftBehind: string("leftBehind"), observation: field("observation") ?? .null,
            exitCode: int("exitCode"), signal: string("signal"), timedOut: timedOut, durationMs: durationMs,
            stdoutTail: string("stdoutTail") ?? "", stderrTail: string("stderrTail") ?? "",
            traceDropped: int("traceDropped") ?? 0, traceDroppedBytes: int("traceDroppedBytes") ?? 0,
            limitsHit: limitsHit, cgroup: field("cgroup") ?? .null, traceOmitted: int("traceOmitted"))
    }
}
