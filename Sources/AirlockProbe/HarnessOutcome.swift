public import AirlockSandbox
import AirlockTrace

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
    /// The last phase reached.
    public var phase: HarnessPhase
    /// What the harness said the model left running (`threads=1`), when it said anything.
    public var leftBehind: String? = nil
    /// What the supervisor saw running after the loader returned or exited, one entry per item (`process 3 sleep`).
    public var observedLeft: [String] = []

    /// Creates an outcome.
    public init(
        outcome: VerdictPolicy.Outcome?, detail: String?, phase: HarnessPhase, leftBehind: String? = nil,
        observedLeft: [String] = []
    ) {
        self.outcome = outcome
        self.detail = detail
        self.phase = phase
        self.leftBehind = leftBehind
        self.observedLeft = observedLeft
    }

    /// The `leftBehind` member of the report: the supervisor's observation, else the harness's words.
    public var leftBehindSummary: String? {
        observedLeft.isEmpty ? leftBehind : observedLeft.joined(separator: ", ")
    }

    /// Reads a finished detonation; `phases` are the phases the harness was to announce, in order.
    /// `prefix` is the run's line prefix (`HarnessSettings.linePrefix`).
    public static func read(_ result: SandboxResult, phases: [HarnessPhase], prefix: String) -> HarnessOutcome {
        let phase = phases.last { p in result.trace.contains { $0.phase == p.rawValue } } ?? phases.first ?? .startup
        let lines = HarnessProtocol.lines(result.stderr, prefix: prefix)
        var out = HarnessOutcome(outcome: nil, detail: nil, phase: phase)
        out.leftBehind = HarnessProtocol.details(.leftBehind, in: lines).last
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
        if result.timedOut { return ending(.timeout, "the deadline passed in phase \(phase.rawValue)") }
        if result.observation?.windowExpired == true && result.exitCode == nil {
            // The supervisor ended the run: the loader was still running when the observation window closed. That is
            // left-behind evidence (observedLeft), and a loader that never returned as well.
            return ending(
                ended ? nil : .earlyExit,
                ended ? nil : "still running without the loader returning when the observation window ended")
        }
        if let signal = result.signal {
            return ending(signal == "SIGXCPU" ? .cpuLimit : .crashed, "killed by \(signal)")
        }
        let code = result.exitCode ?? -1
        if ended {
            return code == 0
                ? out
                : ending(
                    .earlyExit,
                    "exit code \(code) after the loader returned (a finalizer, handler or thread ended the process)")
        }
        let reached = { (p: HarnessPhase) in result.trace.contains { $0.rule == .phase && $0.phase == p.rawValue } }
        switch HarnessProtocol.ExitCode(rawValue: code) {
        case .raised?:
            if let detail = HarnessProtocol.details(.probeError, in: lines).last, reached(.probe) {
                return ending(.probeError, detail)
            }
            if let detail = HarnessProtocol.details(.loadError, in: lines).last {
                return ending(.loadError, detail)
            }
        case .exhausted?:
            if let detail = HarnessProtocol.details(.resourceExhausted, in: lines).last {
                return ending(.resourceExhausted, detail)
            }
        default:
            break
        }
        let why =
            reached(.end)
            ? "exit code \(code), and the end of loading was not announced by the loader in order"
            : "exit code \(code) before the loader returned"
        return ending(.earlyExit, why)
    }

    /// Whether the loader returned: the last of `phases` was announced by the command's main thread (the harness
    /// announces it there; a model's thread or child cannot stand in), after every earlier phase in order. The model
    /// runs on that thread too and could announce it itself, but then it has ended its own detonation with
    /// everything it started still observed.
    static func endReached(_ result: SandboxResult, phases: [HarnessPhase]) -> Bool {
        let announced = result.trace.filter { $0.rule == .phase }
        guard let last = phases.last, let end = announced.first(where: { $0.phase == last.rawValue }) else {
            return false
        }
        guard result.observation?.endAnnouncedNs != nil || result.observation == nil else { return false }
        guard result.commandPid == 0 || end.pid == result.commandPid else { return false }
        return announced.compactMap(\.phase) == phases.dropFirst().map(\.rawValue)
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
}
