public import AirlockJSON
public import AirlockTrace

/// How a detonation ran, as a report carries it (the `detonation` member, docs/report.schema.json): typed here and
/// written to JSON, and read back from it, only by `json` and `init?(json:)`.
///
/// The probe fills it from what the sandbox returned (`Detonation` in AirlockProbe). The observation, the limits hit
/// and the cgroup are the sandbox's own values (AirlockTrace, which writes and reads their JSON), so a report read
/// back from airlockd carries them typed as the one made here does.
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
    public var observation: ObservationReport?
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
    public var limitsHit: [ResourceLimitHit]
    /// The sandbox's cgroup and what it used.
    public var cgroup: SandboxCgroupStatus
    /// How many events the trace held when it was left out of a reply or a stored report (`Report.fit`).
    public var traceOmitted: Int? = nil
    /// The Python the model was loaded with.
    public var runtime: RuntimeSummary? = nil
    /// Calls allowed during the runtime's start-up, counted and not listed in the trace.
    public var startupAllowed: Int = 0
    /// Whether a warm sandbox ran it (started before the model and handed it; docs/sandbox.md, "Warm start"):
    /// written only when true.
    public var warm = false
    /// The host the sandbox pretended to be (`detonation.world`); nil: the profile as written.
    public var world: WorldSummary? = nil
    /// The attempts the detonation made into the emulated network, in order (written only when there are some).
    public var network: [NetworkAttempt] = []
    /// The names it asked the emulated DNS for, in order (written only when there are some).
    public var dnsQuestions: [DNSAsked] = []
    /// The worlds of the probe, in the order they were planned (docs/probe.md, "Worlds"): written only when any.
    public var worlds: [WorldRunSummary] = []
    /// The world whose detonation this summary, the trace and the timings are: the one with the worst verdict (the
    /// first of them on a tie).
    public var traceWorld: String? = nil
    /// Whether the probe stopped before its last world because one was `malicious`.
    public var stoppedEarly = false

    /// Creates a summary.
    public init(
        argv: [String], outcome: String, phaseReached: String, leftBehind: String?, observation: ObservationReport?,
        exitCode: Int?,
        signal: String?, timedOut: Bool, durationMs: Double, stdoutTail: String, stderrTail: String, traceDropped: Int,
        traceDroppedBytes: Int, limitsHit: [ResourceLimitHit], cgroup: SandboxCgroupStatus, traceOmitted: Int? = nil,
        runtime: RuntimeSummary? = nil, startupAllowed: Int = 0, warm: Bool = false, world: WorldSummary? = nil,
        network: [NetworkAttempt] = [], dnsQuestions: [DNSAsked] = []
    ) {
        self.world = world
        self.network = network
        self.dnsQuestions = dnsQuestions
        self.warm = warm
        self.runtime = runtime
        self.startupAllowed = startupAllowed
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
            ("observation", observation?.json ?? .null),
            ("exitCode", exitCode.map(JSON.int) ?? .null),
            ("signal", .optional(signal)),
            ("timedOut", .bool(timedOut)),
            ("durationMs", .double(durationMs)),
            ("stdoutTail", .string(stdoutTail)),
            ("stderrTail", .string(stderrTail)),
            ("traceDropped", .int(traceDropped)),
            ("traceDroppedBytes", .int(traceDroppedBytes)),
            ("limitsHit", .array(limitsHit.map(\.json))),
            ("cgroup", cgroup.json),
            ("runtime", runtime?.json ?? .null),
            ("startupAllowed", .int(startupAllowed)),
        ]
        if let traceOmitted { members.append(("traceOmitted", .int(traceOmitted))) }
        if warm { members.append(("warm", .bool(true))) }
        if let world { members.append(("world", world.json)) }
        if !network.isEmpty { members.append(("network", .array(network.map(\.json)))) }
        if !dnsQuestions.isEmpty { members.append(("dnsQuestions", .array(dnsQuestions.map(\.json)))) }
        if !worlds.isEmpty {
            members.append(("worlds", .array(worlds.map(\.json))))
            members.append(("traceWorld", .optional(traceWorld)))
            members.append(("stoppedEarly", .bool(stoppedEarly)))
        }
        return .object(members)
    }

    /// A summary read back from its JSON (a report from airlockd, a stored report); nil when `value` is not one. The
    /// observation, the limits hit and the cgroup are read strictly (`init(json:)` of their types).
    public init?(json value: JSON) {
        guard case .object(let m) = value else { return nil }
        func field(_ key: String) -> JSON? { m.first { $0.0 == key }?.1 }
        func string(_ key: String) -> String? { if case .string(let s)? = field(key) { s } else { nil } }
        func int(_ key: String) -> Int? { if case .number(let n)? = field(key) { Int(n) } else { nil } }
        guard case .array(let argvItems)? = field("argv"), let outcome = string("outcome"),
            let phaseReached = string("phaseReached"), case .bool(let timedOut)? = field("timedOut")
        else { return nil }
        var limitsHit: [ResourceLimitHit] = []
        if case .array(let items)? = field("limitsHit") {
            for (i, item) in items.enumerated() {
                guard let hit = try? ResourceLimitHit(json: item, path: "limitsHit[\(i)]") else { return nil }
                limitsHit.append(hit)
            }
        }
        var observation: ObservationReport? = nil
        if let member = field("observation"), member != .null {
            guard let read = try? ObservationReport(json: member, path: "observation") else { return nil }
            observation = read
        }
        guard let cgroupMember = field("cgroup"),
            let cgroup = try? SandboxCgroupStatus(json: cgroupMember, path: "cgroup")
        else { return nil }
        var durationMs = 0.0
        if case .number(let n)? = field("durationMs") { durationMs = Double(n) ?? 0 }
        self.init(
            argv: argvItems.compactMap { if case .string(let s) = $0 { s } else { nil } }, outcome: outcome,
            phaseReached: phaseReached, leftBehind: string("leftBehind"), observation: observation,
            exitCode: int("exitCode"), signal: string("signal"), timedOut: timedOut, durationMs: durationMs,
            stdoutTail: string("stdoutTail") ?? "", stderrTail: string("stderrTail") ?? "",
            traceDropped: int("traceDropped") ?? 0, traceDroppedBytes: int("traceDroppedBytes") ?? 0,
            limitsHit: limitsHit, cgroup: cgroup, traceOmitted: int("traceOmitted"))
        startupAllowed = int("startupAllowed") ?? 0
        if let member = field("runtime"), member != .null {
            guard let runtime = RuntimeSummary(json: member) else { return nil }
            self.runtime = runtime
        }
        if case .bool(true)? = field("warm") { warm = true }
        if let member = field("world") { world = WorldSummary(json: member) }
        if case .array(let items)? = field("network") {
            for item in items {
                guard let attempt = NetworkAttempt(json: item) else { return nil }
                network.append(attempt)
            }
        }
        if case .array(let items)? = field("dnsQuestions") {
            for item in items {
                guard let question = DNSAsked(json: item) else { return nil }
                dnsQuestions.append(question)
            }
        }
        if case .array(let items)? = field("worlds") {
            for item in items.prefix(64) {
                guard let world = WorldRunSummary(json: item) else { return nil }
                worlds.append(world)
            }
        }
        traceWorld = string("traceWorld")
        if case .bool(true)? = field("stoppedEarly") { stoppedEarly = true }
    }
}

/// The host a detonation's sandbox pretended to be, as the report names it: `{"name": …, "hostname": …, "user": …}`.
public struct WorldSummary: Sendable, Equatable {
    /// The world's short name (`now`, `gpu`, …).
    public var name: String
    /// Its host name.
    public var hostname: String
    /// Its user's login name.
    public var user: String

    /// Creates a summary.
    public init(name: String, hostname: String, user: String) {
        self.name = name
        self.hostname = hostname
        self.user = user
    }

    /// The report's object.
    public var json: JSON {
        .object([("name", .string(name)), ("hostname", .string(hostname)), ("user", .string(user))])
    }

    /// Reads it back; nil for anything else.
    public init?(json value: JSON) {
        guard case .object(let m) = value else { return nil }
        func string(_ key: String) -> String? {
            if case .string(let s)? = m.first(where: { $0.0 == key })?.1 { s } else { nil }
        }
        guard let name = string("name"), let hostname = string("hostname"), let user = string("user") else {
            return nil
        }
        self.init(name: name, hostname: hostname, user: user)
    }
}
