public import AirlockAnalysis
internal import AirlockFormats
internal import AirlockSandbox
internal import AirlockTrace

/// Turns a detonation's trace and outcome into findings with `source: dynamic`, by the verdict policy. Every
/// behaviour finding names the trace events (`seq`) that prove it.
public enum DynamicRules {
    /// Most `seq` numbers listed in one finding's evidence.
    static let maxSeqs = 32

    /// Findings for a finished detonation: its refusals grouped by the policy rule they fall under, then how it
    /// ended, what it left running and whether its trace was cut.
    public static func findings(_ detonation: Detonation, policy: VerdictPolicy) -> [Finding] {
        let result = detonation.result, outcome = detonation.outcome
        var groups: [(rule: VerdictPolicy.Rule, events: [TraceEvent])] = []
        for event in result.trace where event.action != .allowed || emulatedUse(event, policy) {
            guard let rule = classify(event, policy: policy) else { continue }
            if let i = groups.firstIndex(where: { $0.rule == rule }) {
                groups[i].events.append(event)
            } else {
                groups.append((rule, [event]))
            }
        }
        var out = groups.map { withNetworkEvidence(finding($0.rule, $0.events), $0.events, result) }
        out += HoneytokenFindings.findings(detonation, world: detonation.world, policy: policy)
        let phase = outcome.phase.rawValue
        if let kind = outcome.outcome, let rule = policy.outcomes[kind],
            kind == .probeError || policy.modelPhases.contains(outcome.phase)
        {
            var evidence = Evidence(details: [("phase", phase)])
            if let detail = outcome.detail { evidence.details.append(("detail", detail)) }
            if let last = result.trace.last { evidence.details.append(("lastSeq", String(last.seq))) }
            out.append(
                Finding(
                    rule: rule.finding, severity: rule.severity, source: .dynamic,
                    message: rule.message + (outcome.detail.map { ": \($0)" } ?? ""), evidence: evidence))
        }
        if let left = outcome.leftBehindSummary, let rule = policy.outcomes[.leftBehind] {
            // The supervisor's own observation when it has one; the harness's words only ever add this finding.
            var details = [
                ("phase", phase), ("detail", left),
                ("observedBy", outcome.observedLeft.isEmpty ? "harness" : "supervisor"),
            ]
            if let o = result.observation {
                if !o.firedSignals.isEmpty { details.append(("firedSignals", o.firedSignals.joined(separator: " "))) }
                if o.windowExpired {
                    details.append(("window", "expired: the sandbox was killed with these still running"))
                }
            }
            if let last = result.trace.last { details.append(("lastSeq", String(last.seq))) }
            out.append(
                Finding(
                    rule: rule.finding, severity: rule.severity, source: .dynamic, message: "\(rule.message): \(left)",
                    evidence: Evidence(details: details)))
        }
        if result.traceDropped > 0, let rule = policy.outcomes[.traceTruncated] {
            out.append(
                Finding(
                    rule: rule.finding, severity: rule.severity, source: .dynamic,
                    message: "\(rule.message): \(result.traceDropped) events not kept",
                    evidence: Evidence(details: [
                        ("dropped", String(result.traceDropped)),
                        ("droppedBytes", String(result.traceDroppedBytes)),
                    ])))
        }
        return out
    }

    /// An allowed inet/inet6 socket call of a notify rule the policy names, made in a model phase: a call the emulated
    /// network answered (`emulate`, which only such calls can have), the behaviour whether or not it was refused.
    /// Other allowed calls are never findings; start-up's own calls are not the model's.
    static func emulatedUse(_ event: TraceEvent, _ policy: VerdictPolicy) -> Bool {
        guard event.action == .allowed, let rule = event.rule, case .notify = rule, policy.behaviour[rule] != nil,
            ["connect", "bind", "listen", "sendto", "sendmsg"].contains(event.syscall),
            event.args.family == "inet" || event.args.family == "inet6",
            let phase = event.phase.flatMap(HarnessPhase.init(rawValue:))
        else {
            return false
        }
        return policy.modelPhases.contains(phase)
    }

    /// A finding about calls that opened flows into the emulated network, with where the first went and what it sent
    /// (and the other destinations, up to a bound) as evidence.
    static func withNetworkEvidence(_ finding: Finding, _ events: [TraceEvent], _ result: SandboxResult) -> Finding {
        let seqs = Set(events.map(\.seq))
        // Flows that carried bytes first, the resolver's queries last: what was sent where says the most.
        let all = result.network.filter { $0.seq.map(seqs.contains) ?? false }
        let flows =
            all.filter { $0.port != 53 && !$0.bytes.isEmpty } + all.filter { $0.port != 53 && $0.bytes.isEmpty }
            + all.filter { $0.port == 53 }
        guard let first = flows.first else { return finding }
        var f = finding
        let phases = Set(events.compactMap(\.phase))
        let asked = result.dnsQuestions.filter { $0.phase.map(phases.contains) ?? false }.map(\.name)
        var seen = Set<String>()
        let names = asked.filter { seen.insert($0).inserted }.prefix(8)
        if !names.isEmpty { f.evidence.details.append(("dnsQuestions", names.joined(separator: ", "))) }
        let attempt = Detonation.attempt(first)
        f.message += " → \(attempt.destination): \(attempt.sentSummary)"
        f.evidence.details.append(("destination", attempt.destination))
        f.evidence.details.append(("sent", attempt.sentSummary))
        if let text = attempt.text, !text.isEmpty {
            f.evidence.details.append(("sentText", String(text.prefix(512))))
        } else if let b64 = attempt.base64, !b64.isEmpty {
            f.evidence.details.append(("sentBase64", String(b64.prefix(512))))
        }
        let others = flows.dropFirst().prefix(8).map { Detonation.attempt($0).destination }
        if !others.isEmpty { f.evidence.details.append(("alsoTo", others.joined(separator: ", "))) }
        return f
    }

    /// The policy rule a refused event falls under; nil for phase announcements, the launch and ignored calls.
    static func classify(_ event: TraceEvent, policy: VerdictPolicy) -> VerdictPolicy.Rule? {
        guard let rule = event.rule, rule != .phase, rule != .launch else { return nil }
        let refusedOutright = if case .refused = rule { true } else { false }
        guard let phase = event.phase.flatMap(HarnessPhase.init(rawValue:)), policy.modelPhases.contains(phase) else {
            // Before `load` the harness has not opened the model: the runtime was refused something.
            return refusedOutright && policy.refusedIgnored.contains(event.syscall) ? nil : policy.startup
        }
        if refusedOutright {
            if policy.refusedIgnored.contains(event.syscall) { return nil }
            var judged = policy.refused
            if policy.refusedCritical.contains(event.syscall) { judged.severity = .critical }
            return judged
        }
        return policy.behaviour[rule] ?? policy.otherDenied
    }

    /// One finding for a group of events: the first event's arguments as evidence, every `seq` (up to a bound).
    static func finding(_ rule: VerdictPolicy.Rule, _ events: [TraceEvent]) -> Finding {
        let first = events[0]
        var details: [(String, String)] = [
            ("phase", first.phase ?? HarnessPhase.startup.rawValue), ("syscall", first.syscall),
        ]
        if let errno = first.errno { details.append(("errno", errno)) }
        if events.count > maxSeqs { details.append(("events", String(events.count))) }
        let what = describe(first)
        details += what.details
        var message = rule.message + phaseWords(first.phase) + ": \(first.syscall)"
        if !what.summary.isEmpty { message += " \(what.summary)" }
        message += " (\(first.action.rawValue)"
        if events.count > 1 { message += "; \(events.count) such calls" }
        message += ")"
        var evidence = Evidence(args: first.args.argv, details: details)
        evidence.seq = events.prefix(maxSeqs).map(\.seq)
        return Finding(
            rule: rule.finding, severity: rule.severity, source: .dynamic, message: message, evidence: evidence)
    }

    /// When a call was made, in words: behaviour in `probe` came from using the loaded object, not from loading it.
    static func phaseWords(_ phase: String?) -> String {
        guard let phase else { return " during the runtime's start-up" }
        switch HarnessPhase(rawValue: phase) {
        case .startup?: return " during the runtime's start-up"
        case .load?: return " while the model was being loaded"
        case .probe?: return " when the loaded model was used"
        case .end?: return " after the loader returned (a delayed payload)"
        case nil: return " in phase \(phase)"
        }
    }

    /// The arguments that say what the call was about, for the message and the evidence.
    static func describe(_ e: TraceEvent) -> (summary: String, details: [(String, String)]) {
        let a = e.args
        var details: [(String, String)] = []
        var summary: [String] = []
        if let path = a.path {
            details.append(("path", path))
            summary.append(path)
        }
        if let path2 = a.path2 { details.append(("path2", path2)) }
        if let flags = a.flags { details.append(("flags", flags)) }
        if let argv = a.argv {
            summary.append(
                "[" + argv.prefix(8).map { $0.count > 80 ? String($0.prefix(80)) + "…" : $0 }.joined(separator: " ")
                    + "]")
        }
        if let address = a.address {
            let at = a.port.map { "\(address):\($0)" } ?? address
            details.append(("address", at))
            summary.append(at)
        }
        if let family = a.family { details.append(("family", family)) }
        if let target = a.target {
            details.append(("target", String(target)))
            summary.append("pid \(target)" + (a.signal.map { " \($0)" } ?? ""))
        }
        return (summary.joined(separator: " "), details)
    }
}
