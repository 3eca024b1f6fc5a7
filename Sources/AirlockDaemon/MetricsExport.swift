internal import AirlockSystem
public import AirlockJSON

/// The metrics as the `status` reply (JSON) and as the `metrics` reply (Prometheus' text exposition format 0.0.4).
/// docs/protocol.md lists the members and families.
extension Metrics {
    /// The pool's lanes and the warm sandboxes ready, read before the metrics' lock (the pool takes that lock while
    /// it holds its own).
    private func outside() -> (lanes: [LaneSnapshot], warm: JSON, warmReady: [String: Int]) {
        (lanes?() ?? [], warmStatus?() ?? .null, warmReady?() ?? [:])
    }

    private static func sortedObject(_ counts: [String: Int]) -> JSON {
        .object(counts.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })
    }

    /// The `status` reply's value; `extra` members (the daemon's runtimes) are appended.
    public func status(version: String, adding extra: [(String, JSON)] = []) -> JSON {
        let (lanes, warm, warmReady) = outside()
        let now = monotonicNs()
        return monitor.locked {
            let q = latencies.quantiles([0.5, 0.9, 0.99])
            let ms = { (s: Double) in JSON.double((s * 1e6).rounded() / 1e3) }
            let total = requests.values.reduce(0, +)
            var byRuntime: [String: Int] = [:]
            for lane in lanes { for (runtime, n) in lane.queuedByRuntime { byRuntime[runtime, default: 0] += n } }
            let laneJSON = lanes.map { lane -> JSON in
                .object([
                    ("name", .string(lane.name)), ("capacity", .int(lane.capacity)),
                    ("queueDepth", .int(lane.queuedByRuntime.values.reduce(0, +))),
                    ("queuedByRuntime", Metrics.sortedObject(lane.queuedByRuntime)),
                    ("busyWorkers", .int(lane.workers.filter(\.busy).count)),
                    ("workers", .array(lane.workers.map { Metrics.json($0, now: now) })),
                ])
            }
            let memory = memoryPeaks.sorted { $0.key < $1.key }.map { runtime, peaks -> (String, JSON) in
                let r = peaks.recent.quantiles([0.5, 0.9, 0.99])
                return (
                    runtime,
                    .object([
                        ("detonations", .int(Int(peaks.histogram.count))),
                        ("maxBytes", .int(Int(peaks.histogram.max))),
                        ("p50Bytes", .int(Int(r[0]))), ("p90Bytes", .int(Int(r[1]))), ("p99Bytes", .int(Int(r[2]))),
                        ("samples", .int(peaks.recent.values.count)),
                    ])
                )
            }
            return .object(
                [
                    ("version", .string(version)),
                    ("uptimeSeconds", .double(Double(now - started) / 1e9)),
                    ("workers", .int(workers)), ("busyWorkers", .int(busy)),
                    ("queueDepth", .int(queued)), ("queueCapacity", .int(queueCapacity)),
                    ("connections", .int(connections)),
                    ("requests", .int(total)),
                    ("verdicts", Metrics.sortedObject(verdicts)),
                    ("refused", Metrics.sortedObject(refusals)),
                    (
                        "latencyMs",
                        .object([
                            ("p50", ms(q[0])), ("p90", ms(q[1])), ("p99", ms(q[2])),
                            ("max", ms(latencies.values.max() ?? 0)), ("samples", .int(latencies.values.count)),
                        ])
                    ),
                    ("warm", warm),
                    ("lanes", .array(laneJSON)),
                    ("queueByRuntime", Metrics.sortedObject(byRuntime)),
                    (
                        "refusedReasons",
                        .object(
                            refusalReasons.sorted { $0.key < $1.key }.map { ($0.key, Metrics.sortedObject($0.value)) })
                    ),
                    ("partial", Metrics.sortedObject(partials)),
                    ("sandboxMemory", .object(memory)),
                    ("warmReady", Metrics.sortedObject(warmReady)),
                    ("metricsListen", endpoint.map(JSON.string) ?? .null),
                ] + extra)
        }
    }

    /// A worker's entry: `{"state": "idle"}` or `{"state": "busy", "method", "runtime", "busySeconds"}`.
    private static func json(_ worker: WorkerState, now: UInt64) -> JSON {
        guard worker.busy else { return .object([("state", .string("idle"))]) }
        let since = worker.busySinceNs.map { now > $0 ? Double(now - $0) / 1e9 : 0 } ?? 0
        return .object([
            ("state", .string("busy")), ("method", worker.method.map(JSON.string) ?? .null),
            ("runtime", worker.runtime.map(JSON.string) ?? .null),
            ("busySeconds", .double((since * 1e3).rounded() / 1e3)),
        ])
    }

    /// The Prometheus text, rendered again only when the last rendering is older than `maxAge` seconds: a client
    /// that loops on `metrics` requests (or on the HTTP endpoint) costs the daemon a few renderings a second, not
    /// one per request (a rendering takes milliseconds; the I/O thread answers `metrics` requests itself).
    public func prometheus(maxAge: Double) -> String {
        renderLock.locked {
            let now = monotonicNs()
            if let (at, text) = rendered, now >= at, Double(now - at) / 1e9 < maxAge { return text }
            let text = prometheus()
            rendered = (now, text)
            return text
        }
    }

    /// The metrics in Prometheus' text exposition format 0.0.4.
    public func prometheus() -> String {
        let (lanes, _, warmReady) = outside()
        let now = monotonicNs()
        return monitor.locked {
            var out = PrometheusText()
            typealias Labels = [(String, String)]
            func gauge(_ name: String, _ help: String, _ value: Int) {
                out.family(name, "gauge", help, [([], String(value))])
            }
            out.family(
                "airlockd_requests_total", "counter",
                "Requests answered, by method and outcome (ok or the error code).",
                requests.sorted { $0.key < $1.key }.map { key, n in
                    let space = key.firstIndex(of: " ") ?? key.endIndex
                    let outcome = space < key.endIndex ? String(key[key.index(after: space)...]) : ""
                    return ([("method", String(key[..<space])), ("outcome", outcome)], String(n))
                })
            out.family(
                "airlockd_verdicts_total", "counter", "Reports sent, by verdict.",
                verdicts.sorted { $0.key < $1.key }.map { ([("verdict", $0.key)], String($0.value)) })
            out.family(
                "airlockd_refusals_total", "counter", "Requests and connections refused, by reply code and reason.",
                refusalReasons.sorted { $0.key < $1.key }.flatMap { code, reasons in
                    reasons.sorted { $0.key < $1.key }.map { ([("code", code), ("reason", $0.key)], String($0.value)) }
                })
            out.family(
                "airlockd_partial_answers_total", "counter",
                "Answers that covered part of the request (the rest reported as not examined), by reason.",
                partials.sorted { $0.key < $1.key }.map { ([("reason", $0.key)], String($0.value)) })
            gauge("airlockd_queue_depth", "Requests waiting for a worker.", queued)
            gauge("airlockd_queue_capacity", "Requests that may wait before the daemon answers busy.", queueCapacity)
            gauge("airlockd_workers", "Worker threads.", workers)
            gauge("airlockd_workers_busy", "Worker threads handling a request.", busy)
            gauge("airlockd_connections", "Open client connections.", connections)
            out.family(
                "airlockd_lane_queue_depth", "gauge", "Requests waiting, by lane and by the runtime they name.",
                lanes.flatMap { lane in
                    lane.queuedByRuntime.sorted { $0.key < $1.key }.map {
                        ([("lane", lane.name), ("runtime", $0.key)], String($0.value))
                    }
                })
            out.family(
                "airlockd_lane_queue_capacity", "gauge", "Requests that may wait in each lane.",
                lanes.map { ([("lane", $0.name)], String($0.capacity)) })
            out.family(
                "airlockd_lane_workers", "gauge", "Worker threads of each lane, by state (busy or idle).",
                lanes.flatMap { lane -> [(labels: Labels, value: String)] in
                    let busy = lane.workers.filter(\.busy).count
                    return [
                        ([("lane", lane.name), ("state", "busy")], String(busy)),
                        ([("lane", lane.name), ("state", "idle")], String(lane.workers.count - busy)),
                    ]
                })
            out.family(
                "airlockd_worker_busy_seconds", "gauge",
                "How long each worker thread has been handling its request (0 when idle).",
                lanes.flatMap { lane in
                    lane.workers.enumerated().map { i, w -> (labels: Labels, value: String) in
                        let since = w.busySinceNs.map { w.busy && now > $0 ? Double(now - $0) / 1e9 : 0 } ?? 0
                        return ([("lane", lane.name), ("worker", String(i))], PrometheusText.number(since))
                    }
                })
            let q = latencies.quantiles([0.5, 0.9, 0.99])
            out.family(
                "airlockd_request_duration_seconds", "summary",
                "Latency of answered probe and scan requests: quantiles over the last 4096, sum and count since start.",
                [
                    ([("quantile", "0.5")], PrometheusText.number(q[0])),
                    ([("quantile", "0.9")], PrometheusText.number(q[1])),
                    ([("quantile", "0.99")], PrometheusText.number(q[2])),
                ])
            out.append("airlockd_request_duration_seconds_sum \(PrometheusText.number(latencyTotal.sum))\n")
            out.append("airlockd_request_duration_seconds_count \(latencyTotal.count)\n")
            out.histograms(
                "airlockd_request_latency_seconds",
                "Latency of answered probe and scan requests, from arrival to answer, by method and lane.",
                latencyByLane.sorted { $0.key < $1.key }.map { key, h in
                    let parts = key.split(separator: " ", maxSplits: 1).map(String.init)
                    return ([("method", parts[0]), ("lane", parts.count > 1 ? parts[1] : "")], h)
                })
            out.histograms(
                "airlockd_sandbox_memory_peak_bytes",
                "Most memory each detonation's sandbox held at once (its cgroup's peak), by runtime.",
                memoryPeaks.sorted { $0.key < $1.key }.map { ([("runtime", $0.key)], $0.value.histogram) })
            out.family(
                "airlockd_sandbox_memory_peak_max_bytes", "gauge", "The largest sandbox memory peak, by runtime.",
                memoryPeaks.sorted { $0.key < $1.key }.map {
                    ([("runtime", $0.key)], PrometheusText.number($0.value.histogram.max))
                })
            out.family(
                "airlockd_warm_ready", "gauge", "Warm sandboxes ready for a model, by runtime.",
                warmReady.sorted { $0.key < $1.key }.map { ([("runtime", $0.key)], String($0.value)) })
            out.family(
                "airlockd_uptime_seconds", "gauge", "Seconds since the daemon started.",
                [([], PrometheusText.number(Double(now - started) / 1e9))])
            return out.text
        }
    }
}
