internal import AirlockSystem
public import AirlockJSON

#if canImport(Glibc)
    import Glibc
#endif

/// Counters and latencies of a running daemon, for `status` (JSON) and `metrics` (Prometheus text).
public final class Metrics: @unchecked Sendable {
    private let monitor = Monitor()
    private let started = monotonicNs()
    private var requests: [String: Int] = [:]  // "method outcome"
    private var verdicts: [String: Int] = ["clean": 0, "suspicious": 0, "malicious": 0, "error": 0]
    private var refusals: [String: Int] = [:]  // reply code
    private var latencies: [Double] = []  // seconds, the last `window` answered probe/scan requests
    private var next = 0
    private let window = 4096
    private var queued = 0
    private var busy = 0
    private var connections = 0
    /// Worker threads.
    public let workers: Int
    /// Queue capacity.
    public let queueCapacity: Int
    /// The warm sandboxes' part of the status (`WarmPool.status`); set once, before any thread reads it.
    var warmStatus: (@Sendable () -> JSON)? = nil

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

    /// One answered request: its method, the verdicts of its reports, its latency.
    func answered(method: String, verdicts reported: [String], seconds: Double) {
        monitor.locked {
            requests["\(method) ok", default: 0] += 1
            for v in reported { verdicts[v, default: 0] += 1 }
            if latencies.count < window { latencies.append(seconds) } else { latencies[next] = seconds }
            next = (next + 1) % window
        }
    }

    /// One request refused or failed with `code`.
    func refused(method: String, code: ReplyCode) {
        monitor.locked {
            requests["\(method) \(code.rawValue)", default: 0] += 1
            refusals[code.rawValue, default: 0] += 1
        }
    }

    /// One request refused with `code` for `reason` (which limit: `queue-full`, `peer-connections`, …). Until the
    /// metrics count reasons, the reason is not kept.
    func refused(method: String, code: ReplyCode, reason: String) {
        refused(method: method, code: code)
    }

    private func quantiles() -> (p50: Double, p90: Double, p99: Double, max: Double, count: Int) {
        let sorted = latencies.sorted()
        guard !sorted.isEmpty else { return (0, 0, 0, 0, 0) }
        func q(_ p: Double) -> Double {
            sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
        }
        return (q(0.5), q(0.9), q(0.99), sorted.last!, sorted.count)
    }

    /// The `status` reply's value; `extra` members (the daemon's runtimes) are appended.
    public func status(version: String, adding extra: [(String, JSON)] = []) -> JSON {
        let warm = warmStatus?() ?? .null
        return monitor.locked {
            let q = quantiles()
            let ms = { (s: Double) in JSON.double((s * 1e6).rounded() / 1e3) }
            let total = requests.values.reduce(0, +)
            return .object(
                [
                    ("version", .string(version)),
                    ("uptimeSeconds", .double(Double(monotonicNs() - started) / 1e9)),
                    ("workers", .int(workers)), ("busyWorkers", .int(busy)),
                    ("queueDepth", .int(queued)), ("queueCapacity", .int(queueCapacity)),
                    ("connections", .int(connections)),
                    ("requests", .int(total)),
                    ("verdicts", .object(verdicts.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })),
                    ("refused", .object(refusals.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })),
                    (
                        "latencyMs",
                        .object([
                            ("p50", ms(q.p50)), ("p90", ms(q.p90)), ("p99", ms(q.p99)), ("max", ms(q.max)),
                            ("samples", .int(q.count)),
                        ])
                    ),
                    ("warm", warm),
                ] + extra)
        }
    }

    /// The metrics in Prometheus' text exposition format.
    public func prometheus() -> String {
        monitor.locked {
            let q = quantiles()
            var out = ""
            func metric(_ name: String, _ type: String, _ help: String, _ samples: [(String, String)]) {
                out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
                for (labels, value) in samples { out += "\(name)\(labels) \(value)\n" }
            }
            metric(
                "airlockd_requests_total", "counter",
                "Requests answered, by method and outcome (ok or the error code).",
                requests.sorted { $0.key < $1.key }.map { key, n in
                    let parts = key.split(separator: " ")
                    return ("{method=\"\(parts[0])\",outcome=\"\(parts.count > 1 ? parts[1] : "")\"}", String(n))
                })
            metric(
                "airlockd_verdicts_total", "counter", "Reports sent, by verdict.",
                verdicts.sorted { $0.key < $1.key }.map { ("{verdict=\"\($0.key)\"}", String($0.value)) })
            metric("airlockd_queue_depth", "gauge", "Requests waiting for a worker.", [("", String(queued))])
            metric(
                "airlockd_queue_capacity", "gauge", "Requests that may wait before the daemon answers busy.",
                [("", String(queueCapacity))])
            metric("airlockd_workers", "gauge", "Worker threads.", [("", String(workers))])
            metric("airlockd_workers_busy", "gauge", "Worker threads handling a request.", [("", String(busy))])
            metric("airlockd_connections", "gauge", "Open client connections.", [("", String(connections))])
            metric(
                "airlockd_request_duration_seconds", "summary",
                "Latency of answered probe and scan requests (last 4096).",
                [
                    ("{quantile=\"0.5\"}", String(q.p50)), ("{quantile=\"0.9\"}", String(q.p90)),
                    ("{quantile=\"0.99\"}", String(q.p99)),
                ])
            metric(
                "airlockd_uptime_seconds", "gauge", "Seconds since the daemon started.",
                [("", String(Double(monotonicNs() - started) / 1e9))])
            return out
        }
    }
}
