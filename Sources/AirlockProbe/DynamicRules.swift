public import AirlockAnalysis
internal import AirlockFormats
public import AirlockSandbox

/// What the loader harness said about how it ended, read from its exit status and its last `airlock-harness:` lines.
///
/// The model runs in the harness's process and can forge all of this. That is harmless by construction: a forged
/// outcome can make its report worse, or make it look as if it did nothing — never remove what the supervisor
/// recorded in the trace.
public struct HarnessOutcome: Sendable, Equatable {
    /// How it ended, when not cleanly; nil when the object loaded (and was probed).
    public var outcome: VerdictPolicy.Outcome?
    /// The harness's or the system's explanation (`MemoryError: …`, `killed by SIGSEGV`).
    public var detail: String?
    /// The last phase reached (`startup`, `load`, `probe`).
    public var phase: String
    /// What the model left running after it loaded (`threads=1 processes=0`), when anything.
    public var leftBehind: String? = nil

    /// Reads a finished detonation.
    public static func read(_ result: SandboxResult, phases: [String]) -> HarnessOutcome {
        let phase = phases.last { p in result.trace.contains { $0.phase == p } } ?? phases.first ?? "startup"
        let err = harnessLines(result.stderr)
        // The kernel's word, not the harness's: the whole sandbox ran into its cgroup's memory or pids limit (an
        // OOM kill looks like any SIGKILL, and a refused fork like any error, from inside).
        if !result.limitsHit.isEmpty {
            let detail = result.limitsHit.map(\.detail).joined(separator: "; ")
            return HarnessOutcome(outcome: .resourceExhausted, detail: detail, phase: phase)
        }
        if result.timedOut { return HarnessOutcome(outcome: .timeout, detail: "the deadline passed in phase \(phase)", phase: phase) }
        if let signal = result.signal {
            let outcome: VerdictPolicy.Outcome = signal == "SIGXCPU" ? .cpuLimit : .crashed
            return HarnessOutcome(outcome: outcome, detail: "killed by \(signal)", phase: phase)
        }
        switch result.exitCode ?? -1 {
        case 0:
            if harnessLines(result.stdout).contains(where: { $0.hasPrefix("loaded ") }) {
                let left = err.last { $0.hasPrefix("left-behind ") }.map { String($0.dropFirst("left-behind ".count)) }
                return HarnessOutcome(outcome: nil, detail: nil, phase: phase, leftBehind: left)
            }
            return HarnessOutcome(outcome: .earlyExit, detail: "exit code 0 before the loader returned", phase: phase)
        case 3:
            if let line = err.last(where: { $0.hasPrefix("load-error ") }) {
                return HarnessOutcome(outcome: .loadError, detail: String(line.dropFirst("load-error ".count)), phase: phase)
            }
            if let line = err.last(where: { $0.hasPrefix("probe-error ") }) {
                return HarnessOutcome(outcome: .probeError, detail: String(line.dropFirst("probe-error ".count)), phase: phase)
            }
        case 4:
            if let line = err.last(where: { $0.hasPrefix("resource-exhausted ") }) {
                return HarnessOutcome(outcome: .resourceExhausted, detail: String(line.dropFirst("resource-exhausted ".count)), phase: phase)
            }
        default:
            break
        }
        return HarnessOutcome(outcome: .earlyExit, detail: "exit code \(result.exitCode ?? -1) before the loader returned", phase: phase)
    }

    /// Lines starting `airlock-harness: `, without the prefix (the last 64 KiB of output at most).
    static func harnessLines(_ bytes: [UInt8]) -> [String] {
        let prefix = "airlock-harness: "
        return String(decoding: bytes.suffix(65536), as: UTF8.self).split(separator: "\n")
            .filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }
}

/// Turns a detonation's trace and outcome into findings with `source: dynamic`, by the verdict policy. Every
/// behaviour finding names the trace events (`seq`) that prove it.
public enum DynamicRules {
    /// Most `seq` numbers listed in one finding's evidence.
    static let maxSeqs = 32

    /// Findings for a finished detonation.
    public static func findings(_ result: SandboxResult, outcome: HarnessOutcome, policy: VerdictPolicy) -> [Finding] {
        var groups: [(rule: VerdictPolicy.Rule, events: [TraceEvent])] = []
        for event in result.trace where event.action != .allowed {
            guard let rule = classify(event, policy: policy) else { continue }
            if let i = groups.firstIndex(where: { $0.rule == rule }) {
                groups[i].events.append(event)
            } else {
                groups.append((rule, [event]))
            }
        }
        var out = groups.map { finding($0.rule, $0.events) }
        if let kind = outcome.outcome, let rule = policy.outcomes[kind], kind == .probeError || policy.modelPhases.contains(outcome.phase) {
            var evidence = Evidence(details: [("phase", outcome.phase)])
            if let detail = outcome.detail { evidence.details.append(("detail", detail)) }
            if let last = result.trace.last { evidence.details.append(("lastSeq", String(last.seq))) }
            out.append(Finding(rule: rule.finding, severity: rule.severity, source: .dynamic,
                               message: rule.message + (outcome.detail.map { ": \($0)" } ?? ""), evidence: evidence))
        }
        if let left = outcome.leftBehind, let rule = policy.outcomes[.leftBehind] {
            out.append(Finding(rule: rule.finding, severity: rule.severity, source: .dynamic, message: "\(rule.message): \(left)",
                               evidence: Evidence(details: [("phase", outcome.phase), ("detail", left)])))
        }
        if result.traceDropped > 0, let rule = policy.outcomes[.traceTruncated] {
            out.append(Finding(rule: rule.finding, severity: rule.severity, source: .dynamic,
                               message: "\(rule.message): \(result.traceDropped) events not kept",
                               evidence: Evidence(details: [("dropped", String(result.traceDropped))])))
        }
        return out
    }

    /// The policy rule a refused event falls under; nil for phase announcements and ignored calls.
    static func classify(_ event: TraceEvent, policy: VerdictPolicy) -> VerdictPolicy.Rule? {
        guard let id = event.rule, id != "phase", id != "launch" else { return nil }
        guard let phase = event.phase, policy.modelPhases.contains(phase) else {
            // Before `load` the harness has not opened the model: the runtime was refused something.
            return id.hasPrefix("syscalls[") && policy.refusedIgnored.contains(event.syscall) ? nil : policy.startup
        }
        if id.hasPrefix("syscalls[") {
            if policy.refusedIgnored.contains(event.syscall) { return nil }
            var rule = policy.refused
            if policy.refusedCritical.contains(event.syscall) { rule.severity = .critical }
            return rule
        }
        return policy.behaviour[id] ?? policy.otherDenied
    }

    /// One finding for a group of events: the first event's arguments as evidence, every `seq` (up to a bound).
    static func finding(_ rule: VerdictPolicy.Rule, _ events: [TraceEvent]) -> Finding {
        let first = events[0]
        var details: [(String, String)] = [("phase", first.phase ?? "startup"), ("syscall", first.syscall)]
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
        return Finding(rule: rule.finding, severity: rule.severity, source: .dynamic, message: message, evidence: evidence)
    }

    /// When a call was made, in words: behaviour in `probe` came from using the loaded object, not from loading it.
    static func phaseWords(_ phase: String?) -> String {
        switch phase {
        case "load": " while the model was being loaded"
        case "probe": " when the loaded model was used"
        case nil, "startup": " during the runtime's start-up"
        case let other?: " in phase \(other)"
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
        if let argv = a.argv { summary.append("[" + argv.prefix(8).map { $0.count > 80 ? String($0.prefix(80)) + "…" : $0 }.joined(separator: " ") + "]") }
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
