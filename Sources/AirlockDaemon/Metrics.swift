internal import AirlockSystem
internal import AirlockAnalysis
internal import AirlockTrace
public import AirlockJSON

#if canImport(Glibc)
    import Glibc
#endif

/// Counters and latencies of a running daemon, for `status` (JSON) and `metrics` (Prometheus text;
/// MetricsExport.swift writes both).
///
/// Every collection here is bounded whatever clients send: label values come from the daemon's own vocabulary
/// (methods, reply codes, reasons, lanes, the configured runtimes), anything else is counted under `"?"` or
/// `"other"`, and latencies and memory peaks are kept in fixed histograms and fixed-size rings.
public final class Metrics: @unchecked Sendable {
    let monitor = Monitor()
    let started = monotonicNs()
    /// "method outcome" → requests.
    var requests: [String: Int] = [:]
    var verdicts: [String: Int] = ["clean": 0, "suspicious": 0, "malicious": 0, "error": 0]
    /// Reply code → refusals.
    var refusals: [String: Int] = [:]
    /// Reply code → reason → refusals.
    var refusalReasons: [String: [String: Int]] = [:]
    /// Reason → answers that covered part of the request (a folder past its budget).
    var partials: [String: Int] = [:]
    /// Seconds, the last `window` answered probe/scan requests (the status' `latencyMs`, the summary's quantiles).
    var latencies = RecentValues(capacity: 4096)
    /// Every answered probe/scan request's latency (the summary's `_sum` and `_count`).
    var latencyTotal = Histogram(bounds: [])
    /// "method lane" → latency histogram.
    var latencyByLane: [String: Histogram] = [:]
    /// Runtime → sandbox memory peaks, bytes.
    var memoryPeaks: [String: MemoryPeaks] = [:]
    var queued = 0
    var busy = 0
    var connections = 0
    /// Worker threads.
    public let workers: Int
    /// Queue capacity.
    public let queueCapacity: Int
    /// The warm sandboxes' part of the status (`WarmPool.status`); set once, before any thread reads it.
    var warmStatus: (@Sendable () -> JSON)? = nil
    /// Warm sandboxes ready per runtime (`WarmPool.readyByRuntime`); set once, before any thread reads it.
    var warmReady: (@Sendable () -> [String: Int])? = nil
    /// Where the HTTP metrics endpoint listens (`status.metricsListen`); set once, before any thread reads it.
    var endpoint: String? = nil
    /// The worker pool's lanes (`WorkerPool.snapshot`); set once, before any thread reads it.
    var lanes: (@Sendable () -> [LaneSnapshot])? = nil

    /// The last Prometheus text rendered for `prometheus(maxAge:)`, with when (monotonic ns); under `renderLock`.
    var rendered: (at: UInt64, text: String)? = nil
    let renderLock = Monitor()

    /// How long a rendered Prometheus text is served again, seconds (`prometheus(maxAge:)`).
    static let renderSeconds = 0.1
    /// The most distinct label values one family keeps; more are counted under `"other"`.
    static let maxLabelValues = 64
    /// The longest label value kept, bytes; longer ones are cut.
    static let maxLabelBytes = 64
    /// Memory peaks kept per runtime for the recent quantiles.
    static let recentPeaks = 256
    /// Methods counted by name; anything else a client sends is `"?"`.
    static let methods: Set<String> = Set(DaemonRequest.Method.allCases.map(\.rawValue)).union(["connect", "frame"])

    /// One runtime's sandbox memory peaks.
    struct MemoryPeaks {
        var histogram = Histogram(bounds: Histogram.memoryBounds)
        var recent = RecentValues(capacity: Metrics.recentPeaks)
    }

    /// Metrics for a daemon with `workers` threads and a queue of `queueCapacity`.
    public init(workers: Int, queueCapacity: Int) {
        self.workers = workers
        self.queueCapacity = queueCapacity
    }

    func setQueue(_ depth: Int, busy: Int) {
        monitor.locked {
            queued = depth
            self.busy = busy
        }
    }
    func setConnections(_ n: Int) { monitor.locked { connections = n } }

    /// One answered request: its method, the verdicts of its reports, its latency, the lane that answered it.
    func answered(method: String, verdicts reported: [String], seconds: Double, lane: String = "detonation") {
        monitor.locked {
            let method = Metrics.method(method)
            requests["\(method) ok", default: 0] += 1
            for v in reported { verdicts[v, default: 0] += 1 }
            latencies.append(seconds)
            latencyTotal.observe(seconds)
            let key = "\(method) \(Metrics.label(lane))"
            if latencyByLane[key] != nil || latencyByLane.count < Metrics.maxLabelValues {
                latencyByLane[key, default: Histogram(bounds: Histogram.latencyBounds)].observe(seconds)
            }
        }
    }

    /// The sandbox memory peaks of a request's reports (`detonation.cgroup.memoryPeakBytes`), by the runtime that
    /// loaded each; reports without a detonation, a cgroup or a peak add nothing.
    func detonated(_ reports: [Report]) {
        let peaks = reports.compactMap { report -> (String, Double)? in
            guard let detonation = report.detonation, case .applied(let usage) = detonation.cgroup,
                let peak = usage.memoryPeakBytes
            else { return nil }
            return (detonation.runtime?.name ?? "", Double(peak))
        }
        guard !peaks.isEmpty else { return }
        monitor.locked {
            for (runtime, bytes) in peaks {
                var key = Metrics.label(runtime)
                if memoryPeaks[key] == nil && memoryPeaks.count >= Metrics.maxLabelValues { key = "other" }
                memoryPeaks[key, default: MemoryPeaks()].histogram.observe(bytes)
                memoryPeaks[key, default: MemoryPeaks()].recent.append(bytes)
            }
        }
    }

    /// One request refused or failed with `code`; the reason is the code's own name.
    func refused(method: String, code: ReplyCode) {
        refused(method: method, code: code, reason: code.rawValue)
    }

    /// One request refused or failed with `code`, for `reason` (a word of the daemon's: `queue-full`,
    /// `peer-connections`, `uid-range-exhausted`, …; never text a client chose).
    func refused(method: String, code: ReplyCode, reason: String) {
        monitor.locked {
            requests["\(Metrics.method(method)) \(code.rawValue)", default: 0] += 1
            refusals[code.rawValue, default: 0] += 1
            var reasons = refusalReasons[code.rawValue] ?? [:]
            Metrics.count(Metrics.label(reason), in: &reasons)
            refusalReasons[code.rawValue] = reasons
        }
    }

    /// One answer that covered part of what was asked, for `reason` (`folder-budget`).
    func partial(reason: String) {
        monitor.locked { Metrics.count(Metrics.label(reason), in: &partials) }
    }

    /// A method as counted: one of the protocol's (or `connect`, `frame`), else `"?"`.
    static func method(_ name: String) -> String { methods.contains(name) ? name : "?" }

    /// A label value cut to `maxLabelBytes` (at a character boundary).
    static func label(_ value: String) -> String {
        guard value.utf8.count > maxLabelBytes else { return value }
        var out = ""
        for c in value {
            if out.utf8.count + String(c).utf8.count > maxLabelBytes { break }
            out.append(c)
        }
        return out
    }

    /// Adds one to `key`, or to `"other"` once `maxLabelValues` keys exist.
    static func count(_ key: String, in counts: inout [String: Int]) {
        if counts[key] != nil || counts.count < maxLabelValues {
            counts[key, default: 0] += 1
        } else {
            counts["other", default: 0] += 1
        }
    }
}
