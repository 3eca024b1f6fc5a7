/// A Prometheus histogram with fixed bucket bounds: a count per bucket, the sum and the count of every observation.
/// Its memory is fixed by its bounds, whatever is observed.
struct Histogram: Sendable {
    /// The buckets' upper bounds, ascending (the `+Inf` bucket is implicit).
    let bounds: [Double]
    /// Observations per bucket, not cumulative; the last one is `+Inf`'s own.
    private(set) var counts: [UInt64]
    /// The sum of every observation.
    private(set) var sum = 0.0
    /// Observations.
    private(set) var count: UInt64 = 0
    /// The largest observation (0 before any).
    private(set) var max = 0.0

    /// An empty histogram over `bounds` (sorted and made unique here).
    init(bounds: [Double]) {
        self.bounds = Array(Set(bounds.filter { $0.isFinite })).sorted()
        counts = [UInt64](repeating: 0, count: self.bounds.count + 1)
    }

    /// Counts `value`; a value that is not finite is ignored (it would poison `_sum`).
    mutating func observe(_ value: Double) {
        guard value.isFinite else { return }
        // The first bound at or above the value (`le` is inclusive); binary search, the bounds being sorted.
        var low = 0
        var high = bounds.count
        while low < high {
            let mid = (low + high) / 2
            if bounds[mid] < value { low = mid + 1 } else { high = mid }
        }
        counts[low] += 1
        sum += value
        count += 1
        if count == 1 || value > max { max = value }
    }

    /// The cumulative counts, one per bound and then `+Inf` (which equals `count`).
    var cumulative: [(le: String, count: UInt64)] {
        var out: [(String, UInt64)] = []
        var running: UInt64 = 0
        for (i, bound) in bounds.enumerated() {
            running += counts[i]
            out.append((PrometheusText.number(bound), running))
        }
        out.append(("+Inf", running + counts[bounds.count]))
        return out
    }

    /// Request latencies, seconds: 1 ms to 5 min.
    static let latencyBounds: [Double] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
    ]
    /// Sandbox memory peaks, bytes: 16 MiB to 16 GiB by powers of two.
    static let memoryBounds: [Double] = (24...34).map { Double(UInt64(1) << UInt64($0)) }
}

/// The last `capacity` values seen, for quantiles over recent activity (a ring: fixed memory).
struct RecentValues: Sendable {
    let capacity: Int
    private(set) var values: [Double] = []
    private var next = 0

    init(capacity: Int) { self.capacity = Swift.max(1, capacity) }

    mutating func append(_ value: Double) {
        if values.count < capacity {
            values.append(value)
        } else {
            values[next] = value
        }
        next = (next + 1) % capacity
    }

    /// The nearest-rank quantiles `ps` of the values held (0 each when none).
    func quantiles(_ ps: [Double]) -> [Double] {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return ps.map { _ in 0 } }
        return ps.map { p in
            sorted[Swift.min(sorted.count - 1, Swift.max(0, Int((Double(sorted.count) * p).rounded(.up)) - 1))]
        }
    }
}

/// Prometheus' text exposition format 0.0.4, written once per family: `# HELP` and `# TYPE` then its samples.
struct PrometheusText {
    private(set) var text = ""

    /// Appends lines written by hand (a summary's `_sum` and `_count` after its quantiles).
    mutating func append(_ lines: String) { text += lines }

    /// A family of samples, each with its labels (name, value; escaped here) and its value.
    mutating func family(
        _ name: String, _ type: String, _ help: String, _ samples: [(labels: [(String, String)], value: String)]
    ) {
        text += "# HELP \(name) \(PrometheusText.escapeHelp(help))\n# TYPE \(name) \(type)\n"
        for sample in samples { text += "\(name)\(PrometheusText.labels(sample.labels)) \(sample.value)\n" }
    }

    /// One histogram family: for every labelled histogram its cumulative `_bucket`s up to `+Inf`, `_sum` and
    /// `_count`.
    mutating func histograms(
        _ name: String, _ help: String, _ histograms: [(labels: [(String, String)], histogram: Histogram)]
    ) {
        text += "# HELP \(name) \(PrometheusText.escapeHelp(help))\n# TYPE \(name) histogram\n"
        for (labels, h) in histograms {
            for (le, n) in h.cumulative {
                text += "\(name)_bucket\(PrometheusText.labels(labels + [("le", le)])) \(n)\n"
            }
            text += "\(name)_sum\(PrometheusText.labels(labels)) \(PrometheusText.number(h.sum))\n"
            text += "\(name)_count\(PrometheusText.labels(labels)) \(h.count)\n"
        }
    }

    /// `{a="x",b="y"}`, or nothing without labels; values escaped (backslash, double quote, line feed).
    static func labels(_ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return "" }
        return "{" + labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
    }

    static func escapeLabel(_ value: String) -> String {
        var out = ""
        for c in value.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func escapeHelp(_ value: String) -> String {
        value.replacingAll("\\", with: "\\\\").replacingAll("\n", with: "\\n")
    }

    /// A sample value: integers without a fraction, others as Swift prints them, `NaN`/`+Inf`/`-Inf` as Prometheus
    /// spells them.
    static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}

extension String {
    fileprivate func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
