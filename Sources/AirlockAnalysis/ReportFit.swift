internal import AirlockFormats
internal import AirlockJSON

extension Report {
    /// Most findings a report keeps when reports must shrink to fit (`fit`), the most severe first.
    public static let findingsKeptWhenFitting = 8

    /// Bytes the report takes in a daemon's reply: its JSON and its trace lines (docs/protocol.md).
    public var replySize: Int {
        json.serializedCount + traceLines.reduce(2) { $0 + JSON.serializedCount(of: $1) + 1 }
    }

    /// Shrinks `reports` until `size` of them all (plus one separator each) is at most `limit`, keeping every
    /// verdict: first the traces are left out, the largest report first, each marked (`detonation.traceOmitted`, and
    /// a trace line that says so); then, if that is not enough, all but the most severe findings, noted in a
    /// finding. Used where many reports travel or are stored together (a folder through airlockd, intake's report),
    /// so a reply or a file is bounded and never fails for its size. Returns whether they fit.
    @discardableResult
    public static func fit(_ reports: inout [Report], within limit: Int, size: (Report) -> Int = { $0.replySize })
        -> Bool
    {
        var sizes = reports.map { size($0) + 1 }
        var total = sizes.reduce(0, +)
        guard total > limit else { return true }
        for i in reports.indices.sorted(by: { sizes[$0] > sizes[$1] }) where total > limit {
            guard !reports[i].trace.isEmpty || !reports[i].traceLines.isEmpty else { continue }
            reports[i].omitTrace()
            let now = size(reports[i]) + 1
            total += now - sizes[i]
            sizes[i] = now
        }
        for i in reports.indices.sorted(by: { sizes[$0] > sizes[$1] }) where total > limit {
            guard reports[i].findings.filter({ $0.rule != omittedRule }).count > findingsKeptWhenFitting else {
                continue
            }
            reports[i].omitFindings()
            let now = size(reports[i]) + 1
            total += now - sizes[i]
            sizes[i] = now
        }
        return total <= limit
    }

    /// Leaves the trace out; `detonation.traceOmitted` says how many events it held. The verdict and the findings
    /// (which name the events by `seq`) stay.
    mutating func omitTrace() {
        let n = trace.count
        trace = []
        traceLines = [
            "(trace left out of this reply to keep it within its size: \(n) events; probe the file alone to see them)"
        ]
        if n > 0 { detonation?.traceOmitted = n }
    }

    /// Keeps the most severe findings and says how many were left out; the verdict, decided from all of them, stays.
    mutating func omitFindings() {
        limitFindings(to: Report.findingsKeptWhenFitting)
    }
}
