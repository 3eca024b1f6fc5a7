public import AirlockAnalysis
internal import AirlockJSON
public import AirlockSandbox
public import AirlockTrace
public import AirlockSystem

/// A verdict policy that could not be read, or that does not fit the profile it is to judge: the message names the
/// file and the field, or the rule id.
public struct PolicyError: AirlockError {
    /// What is wrong, and where.
    public let message: String
    /// Creates an error.
    public init(_ message: String) { self.message = message }
    public var code: String { "policy" }
    public var description: String { message }
}

/// How a detonation's trace and outcome become findings (`Profiles/policy.json`, documented in docs/policy.md).
///
/// Refused calls in the model's phases (`load`, `probe`, `end`) are judged by the profile rule that refused them; how the
/// loader ended (deadline, exhausted resources, a crash, an exception) by its outcome. Each finding's severity then
/// decides the verdict as for static findings: critical is malicious, high or medium suspicious.
public struct VerdictPolicy: Sendable {
    /// What one kind of behaviour or outcome becomes.
    public struct Rule: Sendable, Equatable {
        /// Finding rule id (`dynamic.exec`).
        public var finding: String
        /// Its severity.
        public var severity: Severity
        /// The finding's message, to which the evidence is appended.
        public var message: String
    }

    /// How a detonation can end other than by loading cleanly.
    public enum Outcome: String, Sendable, CaseIterable {
        case timeout
        case resourceExhausted = "resource-exhausted"
        case cpuLimit = "cpu-limit"
        case crashed
        case earlyExit = "early-exit"
        case loadError = "load-error"
        case probeError = "probe-error"
        case leftBehind = "left-behind"
        case traceTruncated = "trace-truncated"
    }

    /// Phases whose behaviour belongs to the model.
    public var modelPhases: Set<HarnessPhase>
    /// A rule of the trace (a profile's notify rule, or one of the supervisor's own) → what a refusal by it means.
    public var behaviour: [TraceRule: Rule]
    /// Calls the profile refuses outright (`syscalls[N]` rules).
    public var refused: Rule
    /// Refused calls that are critical rather than `refused.severity`.
    public var refusedCritical: Set<String>
    /// Refused calls that runtimes make on their own, not findings.
    public var refusedIgnored: Set<String>
    /// A refusal by a profile rule the policy does not name.
    public var otherDenied: Rule
    /// Refusals before the model's phases (the runtime's, a profile problem).
    public var startup: Rule
    /// Outcome → what it means.
    public var outcomes: [Outcome: Rule]
    /// How long the sandbox stays observed after the loader returned (or exited) while the model left something
    /// running: long enough for a delayed payload to act where the trace sees it. Nothing waits when nothing is left.
    public var observationSeconds: Double
    /// The default of `observationSeconds`.
    public static let defaultObservationSeconds = 2.0
    /// A read of a planted credential in the model's phases (`honeytokens.read`): `dynamic.secrets`.
    public var honeytokenRead = VerdictPolicy.defaultHoneytokenRead
    /// A planted credential's value in what left the sandbox (`honeytokens.sent`): `dynamic.exfiltration`.
    public var honeytokenSent = VerdictPolicy.defaultHoneytokenSent
    /// `honeytokenRead` when the policy does not say: reading credentials is what a thief does.
    public static let defaultHoneytokenRead = Rule(
        finding: "dynamic.secrets", severity: .critical, message: "read a planted credential (a honeytoken)")
    /// `honeytokenSent` when the policy does not say.
    public static let defaultHoneytokenSent = Rule(
        finding: "dynamic.exfiltration", severity: .critical,
        message: "sent a planted credential (a honeytoken) out of the process")

    /// Reads a policy document; `name` is used in messages.
    public init(json bytes: [UInt8], name: String) throws(PolicyError) {
        let root: JSON
        do {
            root = try JSON.parse(bytes)
        } catch {
            throw PolicyError("policy \(name): \(error)")
        }
        let fail: @Sendable (String) -> PolicyError = { PolicyError("policy \(name): \($0)") }
        let top = try JSONField(value: root, path: "", fail: fail).object(allowed: [
            "comment", "version", "modelPhases", "behaviour", "refused", "otherDenied", "startup", "outcomes",
            "observationSeconds", "honeytokens",
        ])
        func required(_ fields: [String: JSONField<PolicyError>], _ key: String, in path: String) throws(PolicyError)
            -> JSONField<PolicyError>
        {
            guard let f = fields[key] else { throw fail("field \(path.isEmpty ? key : "\(path).\(key)"): missing") }
            return f
        }
        func rule(_ field: JSONField<PolicyError>, extra: Set<String> = []) throws(PolicyError) -> Rule {
            let m = try field.object(allowed: Set(["comment", "finding", "severity", "message"]).union(extra))
            let severityText = try required(m, "severity", in: field.path).string()
            guard let severity = Severity(rawValue: severityText) else {
                throw fail(
                    "field \(field.path).severity: '\(severityText)' is not one of \(Severity.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            let finding = try required(m, "finding", in: field.path).string()
            guard !finding.isEmpty else { throw fail("field \(field.path).finding: empty") }
            return Rule(
                finding: finding, severity: severity, message: try required(m, "message", in: field.path).string())
        }
        let version: Int = try required(top, "version", in: "").integer()
        guard version == 1 else {
            throw fail("field version: \(version) is not supported (this airlock reads version 1)")
        }
        modelPhases = []
        for item in try required(top, "modelPhases", in: "").array() {
            let name = try item.string()
            guard let phase = HarnessPhase(rawValue: name) else {
                throw fail(
                    "field \(item.path): '\(name)' is not one of \(HarnessPhase.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            modelPhases.insert(phase)
        }
        // What runs after the loader returned is the model's too (its timers, threads, finalizers): a policy that
        // left `end` out would file a delayed payload under the runtime's start-up.
        for phase in [HarnessPhase.load, .end] where !modelPhases.contains(phase) {
            throw fail("field modelPhases: must contain '\(phase.rawValue)' (behaviour in it belongs to the model)")
        }
        observationSeconds = try top["observationSeconds"]?.double() ?? VerdictPolicy.defaultObservationSeconds
        // The loader's own exit after `end` falls inside the window too: a window too short for it would report
        // every clean load as having left the loader running.
        guard observationSeconds >= 0.5 && observationSeconds <= 60 else {
            throw fail("field observationSeconds: \(observationSeconds) is not in [0.5, 60]")
        }
        behaviour = [:]
        for item in try required(top, "behaviour", in: "").array() {
            let m = try item.object(allowed: ["comment", "rule", "finding", "severity", "message"])
            let id = try required(m, "rule", in: item.path).string()
            let traceRule = TraceRule(id)
            // The ones a refusal never carries: `syscalls[N]` is `refused`'s, `launch` and `phase` are never refused.
            switch traceRule {
            case .launch, .phase, .refused:
                throw fail("field \(item.path).rule: '\(id)' is not a rule that refuses by name")
            default:
                break
            }
            guard behaviour[traceRule] == nil else { throw fail("field \(item.path).rule: '\(id)' is named twice") }
            behaviour[traceRule] = try rule(item, extra: ["rule"])
        }
        let refusedField = try required(top, "refused", in: "")
        refused = try rule(refusedField, extra: ["critical", "ignore"])
        let refusedMembers = try refusedField.object(allowed: [
            "comment", "finding", "severity", "message", "critical", "ignore",
        ])
        refusedCritical = Set(try refusedMembers["critical"]?.strings() ?? [])
        refusedIgnored = Set(try refusedMembers["ignore"]?.strings() ?? [])
        otherDenied = try rule(try required(top, "otherDenied", in: ""))
        startup = try rule(try required(top, "startup", in: ""))
        if let tokens = top["honeytokens"] {
            let m = try tokens.object(allowed: ["comment", "read", "sent"])
            honeytokenRead = try rule(try required(m, "read", in: "honeytokens"))
            honeytokenSent = try rule(try required(m, "sent", in: "honeytokens"))
        }
        let outcomeFields = try required(top, "outcomes", in: "").object(allowed: Set(Outcome.allCases.map(\.rawValue)))
        outcomes = [:]
        for outcome in Outcome.allCases {
            outcomes[outcome] = try rule(try required(outcomeFields, outcome.rawValue, in: "outcomes"))
        }
    }

    /// Loads the policy at `path`, or `policy.json` from the profile directories when `path` is nil, and checks it
    /// against `profile`, the profile whose traces it will judge (`check(against:)`).
    public static func load(_ path: String? = nil, for profile: Profile) throws(PolicyError) -> VerdictPolicy {
        let file: String
        if let path {
            file = path
        } else {
            guard let found = ProfileLocator.locate("policy.json") else {
                throw PolicyError(
                    "no policy.json in \(ProfileLocator.searchDirectories().joined(separator: ", ")) (set AIRLOCK_PROFILE_DIR)"
                )
            }
            file = found
        }
        let bytes: [UInt8]
        do {
            bytes = try BoundedFile.read(file, limit: 1 << 20, what: "policy")
        } catch {
            throw PolicyError(error.description)
        }
        let policy = try VerdictPolicy(json: bytes, name: file)
        try policy.check(against: profile, name: file)
        return policy
    }

    /// Checks that this policy and `profile` speak of the same rules: every `behaviour[].rule` is one the profile's
    /// notify rules (or the supervisor itself) can put in a trace, and every notify rule of the profile that refuses
    /// is named. Either mismatch would move refusals silently to `otherDenied` (a rule renamed in the profile drops
    /// from critical to high), so it is an error naming the rule id. `name` names the policy in the message.
    public func check(against profile: Profile, name: String) throws(PolicyError) {
        let notify = profile.sandbox.notify
        for rule in notify where TraceRule.isReserved(rule.id) {
            throw PolicyError(
                "profile \(profile.name): notify rule '\(rule.id)' takes an id the supervisor uses itself")
        }
        var producible = Set(notify.map { TraceRule.notify($0.id) }).union(TraceRule.supervisorRefusals)
        if profile.sandbox.notifyDefault != .allow { producible.insert(.notifyDefault) }
        for rule in behaviour.keys.sorted(by: { $0.description < $1.description }) where !producible.contains(rule) {
            throw PolicyError(
                "policy \(name): behaviour rule '\(rule)' is not a notify rule of profile \(profile.name), nor one the supervisor makes (\(TraceRule.supervisorRefusals.map(\.description).joined(separator: ", ")))"
            )
        }
        for rule in notify where rule.action != .allow && behaviour[.notify(rule.id)] == nil {
            throw PolicyError(
                "policy \(name): profile \(profile.name)'s notify rule '\(rule.id)' refuses calls but has no behaviour entry (they would all be otherDenied)"
            )
        }
    }
}
