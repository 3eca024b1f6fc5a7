public import AirlockJSON

/// One world of a probe (`detonation.worlds`, docs/probe.md "Worlds"): what it was, whether it ran and what it
/// found.
public struct WorldRunSummary: Sendable, Equatable {
    /// Why a world planned for the probe did not run, or was cut short.
    public enum Cut: String, Sendable {
        /// An earlier world's verdict was already `malicious`.
        case stoppedEarly = "stopped-early"
        /// The probe's time budget (`--world-budget`) was spent: not started, or its deadline was shortened and
        /// ended it.
        case budget
    }

    /// Its name (`now`, `gpu-next-month`, …).
    public var name: String
    /// Seconds its wall clock was ahead of the host's.
    public var dateOffsetSeconds: Int64
    /// Whether it was a GPU host.
    public var gpu: Bool
    /// Whether credentials were planted in it.
    public var credentials: Bool
    /// Whether its sleeps and timers returned at once.
    public var skipsSleeps: Bool
    /// Whether the detonation ran in it.
    public var ran: Bool
    /// Its own verdict: what its detonation found (its dynamic findings, or `error` when it could not run), without
    /// the static analysis all worlds share; nil when it did not run.
    public var verdict: Verdict?
    /// Wall-clock milliseconds of its detonation (0 when it did not run).
    public var durationMs: Double
    /// Why it did not run, or was cut short; nil when it ran whole.
    public var cut: Cut?
    /// Whether a warm sandbox ran it.
    public var warm: Bool

    /// Creates a summary.
    public init(
        name: String, dateOffsetSeconds: Int64, gpu: Bool, credentials: Bool, skipsSleeps: Bool, ran: Bool,
        verdict: Verdict?, durationMs: Double, cut: Cut? = nil, warm: Bool = false
    ) {
        self.name = name
        self.dateOffsetSeconds = dateOffsetSeconds
        self.gpu = gpu
        self.credentials = credentials
        self.skipsSleeps = skipsSleeps
        self.ran = ran
        self.verdict = verdict
        self.durationMs = durationMs
        self.cut = cut
        self.warm = warm
    }

    /// Whether the budget cut it (not started, or ended by a deadline the budget shortened).
    public var cutByBudget: Bool { cut == .budget }

    /// The member of `detonation.worlds`.
    public var json: JSON {
        .object([
            ("name", .string(name)), ("dateOffsetSeconds", .int(Int(dateOffsetSeconds))), ("gpu", .bool(gpu)),
            ("credentials", .bool(credentials)), ("skipsSleeps", .bool(skipsSleeps)), ("ran", .bool(ran)),
            ("verdict", .optional(verdict?.rawValue)), ("durationMs", .double((durationMs * 1000).rounded() / 1000)),
            ("cutByBudget", .bool(cutByBudget)), ("cut", .optional(cut?.rawValue)), ("warm", .bool(warm)),
        ])
    }

    /// A summary read back from its JSON; nil when `value` is not one.
    public init?(json value: JSON) {
        guard case .object(let m) = value else { return nil }
        func field(_ key: String) -> JSON? { m.first { $0.0 == key }?.1 }
        func bool(_ key: String) -> Bool? { if case .bool(let b)? = field(key) { b } else { nil } }
        guard case .string(let name)? = field("name"), case .number(let offset)? = field("dateOffsetSeconds"),
            let offsetSeconds = Int64(offset), let gpu = bool("gpu"), let credentials = bool("credentials"),
            let skipsSleeps = bool("skipsSleeps"), let ran = bool("ran")
        else { return nil }
        var verdict: Verdict? = nil
        if case .string(let v)? = field("verdict") {
            guard let read = Verdict(rawValue: v) else { return nil }
            verdict = read
        }
        var cut: Cut? = nil
        if case .string(let c)? = field("cut") {
            guard let read = Cut(rawValue: c) else { return nil }
            cut = read
        }
        var durationMs = 0.0
        if case .number(let n)? = field("durationMs") { durationMs = Double(n) ?? 0 }
        self.init(
            name: name, dateOffsetSeconds: offsetSeconds, gpu: gpu, credentials: credentials, skipsSleeps: skipsSleeps,
            ran: ran, verdict: verdict, durationMs: durationMs, cut: cut, warm: bool("warm") ?? false)
    }

    /// The world in words for the text report: `gpu-next-month malicious 1.2 s`, `next-year not run (stopped-early)`.
    public var line: String {
        guard ran, let verdict else { return "\(name) not run (\(cut?.rawValue ?? "?"))" }
        let seconds = (durationMs / 100).rounded() / 10
        return "\(name) \(verdict.rawValue) \(seconds) s" + (cut.map { " (cut: \($0.rawValue))" } ?? "")
    }
}
