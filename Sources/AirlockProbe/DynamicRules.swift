public import AirlockAnalysis
internal import AirlockFormats
public import AirlockSandbox

/// How the loader harness ended, decided from what the supervisor observed: the phase markers in the trace (ordered
/// with every other notification), the `end` marker announced by the harness's main thread, the exit status, and what
/// was still running afterwards (`ObservationReport`).
///
/// The model runs in the harness's process and can print or suppress anything, so the harness's `airlock-harness:`
/// lines only add detail: they choose between outcomes that are findings anyway (`load-error` rather than
/// `early-exit`), and a `left-behind` line adds a finding. They never make a report cleaner: "loaded" is never read,
/// and a `probe-error` (low) is believed only in the probe phase the supervisor saw.
public struct HarnessOutcome: Sendable, Equatable {
    /// How it ended, when not cleanly; nil when the object loaded (and was probed).
    public var outcome: VerdictPolicy.Outcome?
    /// The harness's or the system's explanation (`MemoryError: …`, `killed by SIGSEGV`).
    public var detail: String?
    /// The last phase reached (`startup`, `load`, `probe`, `end`).
    public var phase: String
    /// What the harness said the model left running (`threads=1`), when it said anything.
    public var leftBehind: String? = nil
    /// What the supervisor saw running after the loader returned or exited, one entry per item (`process 3 sleep`).
    public var observedLeft: [String] = []

    /// The `leftBehind` member of the report: the supervisor's observation, else the harness's words.
    public var leftBehindSummary: String? {
        observedLeft.isEmpty ? leftBehind : observedLeft.joined(separator: ", ")
    }

    /// Reads a finished detonation; `phases` are the phases the harness was to announce, in order.
    public static func read(_ result: SandboxResult, phases: [String]) -> HarnessOutcome {
        let phase = phases.last { p in result.trace.contains { $0.phase == p } } ?? phases.first ?? "startup"
        let err = harnessLines(result.stderr)
        var out = HarnessOutcome(outcome: nil, detail: nil, phase: phase)
        out.leftBehind = err.last { $0.hasPrefix("left-behind ") }.map { String($0.dropFirst("left-behind ".count)) }
        out.observedLeft = observed(result.observation)
        let ended = endReached(result, phases: phases)
        func ending(_ outcome: VerdictPolicy.Outcome?, _ detail: String?) -> HarnessOutcome {
            var o = out
            o.outcome = outcome
            o.detail = detail
            return o
        }
        // The kernel's word, not the harness's: the whole sandbox ran into its cgroup's memory or pids limit (an
        // OOM kill looks like any SIGKILL, and a refused fork like any error, from inside).
        if !result.limitsHit.isEmpty {
            return ending(.resourceExhausted, result.limitsHit.map(\.detail).joined(separator: "; "))
        }
        if result.timedOut { return ending(.timeout, "the deadline passed in phase \(phase)") }
        if result.observation?.windowExpired == true && result.exitCode == nil {
            // The supervisor ended the run: the loader was still running when the observation window closed. That is
            // left-behind evidence (observedLeft), and a loader that never returned as well.
            return ending(ended ? nil : .earlyExit, ended ? nil : "still running without the loader returning when the observation window ended")
        }
        if let signal = result.signal {
            return ending(signal == "SIGXCPU" ? .cpuLimit : .crashed, "killed by \(signal)")
        }
        let code = result.exitCode ?? -1
        if ended {
            return code == 0 ? out : ending(.earlyExit, "exit code \(code) after the loader returned (a finalizer, handler or thread ended the process)")
        }
        let reached = { (p: String) in result.trace.contains { $0.rule == "phase" && $0.phase == p } }
        switch code {
        case 3:
            if let line = err.last(where: { $0.hasPrefix("probe-error ") }), reached("probe") {
                return ending(.probeError, String(line.dropFirst("probe-error ".count)))
            }
            if let line = err.last(where: { $0.hasPrefix("load-error ") }) {
                return ending(.loadError, String(line.dropFirst("load-error ".count)))
            }
        case 4:
            if let line = err.last(where: { $0.hasPrefix("resource-exhausted ") }) {
                return ending(.resourceExhausted, String(line.dropFirst("resource-exhausted ".count)))
            }
        default:
            break
        }
        let why = reached("end") ? "exit code \(code), and the end of loading was not announced by the loader in order" : "exit code \(code) before the loader returned"
        return ending(.earlyExit, why)
    }

    /// Whether the loader returned: the last of `phases` was announced by the command's main thread (the harness
    /// announces it there; a model's thread or child cannot stand in), after every earlier phase in order. The model
    /// runs on that thread too and could announce it itself, but then it has ended its own detonation with
    /// everything it started still observed.
    static func endReached(_ result: SandboxResult, phases: [String]) -> Bool {
        let announced = result.trace.filter { $0.rule == "phase" }
        guard let last = phases.last, let end = announced.first(where: { $0.phase == last }) else { return false }
        guard result.observation?.endAnnouncedNs != nil || result.observation == nil else { return false }
        guard result.commandPid == 0 || end.pid == result.commandPid else { return false }
        return announced.compactMap(\.phase) == Array(phases.dropFirst())
    }

    /// The supervisor's observation, one line per item.
    static func observed(_ o: ObservationReport?) -> [String] {
        guard let o else { return [] }
        var lines = o.left.map { item -> String in
            switch item.kind {
            case .process: item.pid == 0 ? "processes (\(item.name))" : "process \(item.pid) (\(item.name))"
            case .thread: "thread \(item.pid) (\(item.name))"
            case .timer: "timer: \(item.name)"
            case .command: "the loader's process \(item.pid) (\(item.name)) had not exited"
            }
        }
        // The report's `observation` member has every entry; a finding's message stays readable.
        let more = lines.count - 8 + o.leftDropped
        if more > 0 { lines = lines.prefix(8) + ["\(more) more"] }
        return lines
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
        if let left = outcome.leftBehindSummary, let rule = policy.outcomes[.leftBehind] {
            // The supervisor's own observation when it has one; the harness's words only ever add this finding.
            var details = [("phase", outcome.phase), ("detail", left),
                           ("observedBy", outcome.observedLeft.isEmpty ? "harness" : "supervisor")]
            if let o = result.observation {
                if !o.firedSignals.isEmpty { details.append(("firedSignals", o.firedSignals.joined(separator: " "))) }
                if o.windowExpired { details.append(("window", "expired: the sandbox was killed with these still running")) }
            }
            if let last = result.trace.last { details.append(("lastSeq", String(last.seq))) }
            out.append(Finding(rule: rule.finding, severity: rule.severity, source: .dynamic, message: "\(rule.message): \(left)",
                               evidence: Evidence(details: details)))
        }
        if result.traceDropped > 0, let rule = policy.outcomes[.traceTruncated] {
            out.append(Finding(rule: rule.finding, severity: rule.severity, source: .dynamic,
                               message: "\(rule.message): \(result.traceDropped) events not kept",
                               evidence: Evidence(details: [("dropped", String(result.traceDropped)),
                                                            ("droppedBytes", String(result.traceDroppedBytes))])))
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
        case "end": " after the loader returned (a delayed payload)"
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
