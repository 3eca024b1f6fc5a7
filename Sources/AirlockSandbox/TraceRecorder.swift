internal import AirlockJSON
import AirlockTrace

/// Keeps one sandbox's trace within its budgets: a number of events (`Limits.traceEvents`), a number of bytes of
/// the trace as JSON (`Limits.traceBytes`), and a bound on each event's path and argv.
///
/// A payload controls how many calls it makes and what their arguments hold. Without these bounds a loop of refused
/// `execve`s, each with 64 KiB of control bytes in argv (six bytes each once JSON-escaped), grew one report to a
/// gigabyte and the supervisor past its memory. Sizes are counted as the report writes them (`JSON.serializedCount`),
/// never as raw bytes. Past the budgets, events are answered as before and counted (`dropped`, `droppedBytes`); the
/// first event of each new kind of refusal is still kept, from a reserve of the byte budget, so flooding the trace
/// with one behaviour cannot push the evidence of another out of it.
struct TraceRecorder {
    /// Most bytes one path argument (`path`, `path2`) takes in the JSON trace, quotes and escapes included.
    static let maxPathBytes = 4096
    /// Most bytes one argv entry takes in the JSON trace.
    static let maxArgBytes = 4096
    /// Most bytes argv as a whole takes in the JSON trace (entries past it are left out).
    static let maxArgvBytes = 16384
    /// Most bytes any other string argument (an address, a name) takes.
    static let maxOtherBytes = 1024
    /// Most events kept past `maxEvents` for kinds of refusal not yet in the trace.
    static let refusedReserve = 1024
    /// Most kinds of refusal remembered. The kinds are bounded by rules × system calls × actions × phases anyway;
    /// this keeps the set bounded whatever a profile holds.
    static let maxKinds = 4096

    /// Events kept, in order.
    private(set) var events: [TraceEvent] = []
    /// Events answered but not kept: a budget was spent.
    private(set) var dropped = 0
    /// Bytes the dropped events would have taken in the JSON trace (after their own bounds).
    private(set) var droppedBytes = 0
    /// Bytes the kept events take in the JSON trace (the members of the `trace` array, without separators).
    private(set) var bytes = 0

    /// Allowed calls of the runtime's start-up counted, not kept (`SeccompNotifier`'s quiet phase): importing torch
    /// makes some 1,300, which would crowd the trace and the report.
    private(set) var quieted = 0

    let maxEvents: Int
    let maxBytes: Int
    /// Bytes of `maxBytes` only the first event of a new kind of refusal may use.
    let reserveBytes: Int
    private var kinds = Set<String>()

    /// A recorder keeping at most `maxEvents` events (plus the new-kind reserve) in at most `maxBytes` bytes.
    init(maxEvents: Int, maxBytes: Int) {
        self.maxEvents = max(0, maxEvents)
        self.maxBytes = max(0, maxBytes)
        reserveBytes = self.maxBytes / 8
    }

    /// Counts an allowed call of the runtime's start-up instead of keeping it.
    mutating func countQuiet() { quieted += 1 }

    /// Bounds `event`'s arguments, then keeps it if the budgets allow; counts it otherwise.
    mutating func record(_ event: TraceEvent) {
        var event = event
        TraceRecorder.bound(&event.args)
        let size = TraceRecorder.serializedCount(event)
        // Refusals and phase announcements have kinds; allowed calls are all alike for this purpose.
        var isNewKind = false
        if event.action != .allowed || event.rule == .phase {
            let kind =
                "\(event.rule?.description ?? "")\u{0}\(event.syscall)\u{0}\(event.action.rawValue)\u{0}\(event.phase ?? "")"
            if !kinds.contains(kind) && kinds.count < TraceRecorder.maxKinds {
                kinds.insert(kind)
                isNewKind = true
            }
        }
        let fitsOrdinary = events.count < maxEvents && bytes + size <= maxBytes - reserveBytes
        let fitsReserve =
            isNewKind && events.count < maxEvents + TraceRecorder.refusedReserve && bytes + size <= maxBytes
        guard fitsOrdinary || fitsReserve else {
            dropped += 1
            droppedBytes += size
            return
        }
        bytes += size
        events.append(event)
    }

    // MARK: Size of one event

    /// The bytes `event.json` takes when serialized, counted without building it: this runs for every notification.
    static func serializedCount(_ e: TraceEvent) -> Int {
        var members = Members()
        members.add("seq", digits(e.seq))
        members.add("timeNs", digits(e.timeNs))
        members.add("pid", digits(e.pid))
        members.add("hostPid", digits(e.hostPid))
        members.add("syscall", JSON.serializedCount(of: e.syscall))
        members.add("action", JSON.serializedCount(of: e.action.rawValue))
        if let v = e.errno { members.add("errno", JSON.serializedCount(of: v)) }
        if let v = e.rule { members.add("rule", JSON.serializedCount(of: v.description)) }
        if let v = e.phase { members.add("phase", JSON.serializedCount(of: v)) }
        let a = e.args
        var args = Members()
        if let v = a.path { args.add("path", JSON.serializedCount(of: v)) }
        if let v = a.path2 { args.add("path2", JSON.serializedCount(of: v)) }
        if let v = a.resolved { args.add("resolved", JSON.serializedCount(of: v)) }
        if let v = a.resolved2 { args.add("resolved2", JSON.serializedCount(of: v)) }
        if let v = a.continued { args.add("continued", v ? 4 : 5) }
        if let v = a.dirfd { args.add("dirfd", digits(v)) }
        if let v = a.flags { args.add("flags", JSON.serializedCount(of: v)) }
        if let v = a.mode { args.add("mode", JSON.serializedCount(of: v)) }
        if let v = a.argv { args.add("argv", strings(v)) }
        if let v = a.argvTruncated { args.add("argvTruncated", v ? 4 : 5) }
        if let v = a.family { args.add("family", JSON.serializedCount(of: v)) }
        if let v = a.socketType { args.add("socketType", JSON.serializedCount(of: v)) }
        if let v = a.address { args.add("address", JSON.serializedCount(of: v)) }
        if let v = a.port { args.add("port", digits(v)) }
        if let v = a.fd { args.add("fd", digits(v)) }
        if let v = a.target { args.add("target", digits(v)) }
        if let v = a.signal { args.add("signal", JSON.serializedCount(of: v)) }
        if let v = a.raw { args.add("raw", strings(v)) }
        if let v = a.unreadable { args.add("unreadable", JSON.serializedCount(of: v)) }
        if let v = a.truncated { args.add("truncated", strings(v)) }
        members.add("args", args.total)
        switch e.performed {
        case .returned(let v)?: members.add("performed", 2 + "returned".utf8.count + 3 + digits(v))
        case .failed(let errno)?: members.add("performed", 2 + "errno".utf8.count + 3 + JSON.serializedCount(of: errno))
        case nil: break
        }
        return members.total
    }

    /// Running size of a JSON object: braces, separators, keys (plain ASCII here) and values.
    private struct Members {
        private var bytes = 2
        private var count = 0
        mutating func add(_ key: String, _ value: Int) {
            bytes += (count > 0 ? 1 : 0) + key.utf8.count + 3 + value
            count += 1
        }
        var total: Int { bytes }
    }

    private static func digits<T: BinaryInteger>(_ v: T) -> Int { String(v).utf8.count }

    private static func strings(_ items: [String]) -> Int {
        items.reduce(2 + max(0, items.count - 1)) { $0 + JSON.serializedCount(of: $1) }
    }

    // MARK: Bounds of one event

    /// Shortens what a caller controls in `a` to the per-event bounds; names what was shortened in `a.truncated`.
    static func bound(_ a: inout TraceArguments) {
        var cut: [String] = []
        let paths: [(String, WritableKeyPath<TraceArguments, String?>)] = [
            ("path", \.path), ("path2", \.path2), ("resolved", \.resolved), ("resolved2", \.resolved2),
        ]
        for (name, key) in paths {
            if let p = a[keyPath: key], let short = prefix(p, encodedAtMost: maxPathBytes) {
                a[keyPath: key] = short
                cut.append(name)
            }
        }
        if let argv = a.argv {
            var kept: [String] = []
            var total = 2
            var shortened = false
            for arg in argv {
                var entry = arg
                if let short = prefix(arg, encodedAtMost: maxArgBytes) {
                    entry = short
                    shortened = true
                }
                let cost = JSON.serializedCount(of: entry) + (kept.isEmpty ? 0 : 1)
                if total + cost > maxArgvBytes {
                    shortened = true
                    break
                }
                total += cost
                kept.append(entry)
            }
            if shortened {
                a.argv = kept
                a.argvTruncated = true
                cut.append("argv")
            }
        }
        for (name, keyPath) in [("address", \TraceArguments.address), ("unreadable", \TraceArguments.unreadable)] {
            if let s = a[keyPath: keyPath], let short = prefix(s, encodedAtMost: maxOtherBytes) {
                a[keyPath: keyPath] = short
                cut.append(name)
            }
        }
        if !cut.isEmpty { a.truncated = (a.truncated ?? []) + cut }
    }

    /// The longest prefix of `s`, cut between characters' scalars, that takes at most `limit` bytes as a JSON string
    /// (quotes included); nil when `s` itself fits. Reads at most about `limit` bytes of `s`.
    static func prefix(_ s: String, encodedAtMost limit: Int) -> String? {
        var used = 2
        var end = s.unicodeScalars.startIndex
        for scalar in s.unicodeScalars {
            let cost: Int
            if scalar.isASCII {
                cost = JSON.serializedCount(of: UInt8(scalar.value))
            } else {
                cost = UTF8.width(scalar)
            }
            if used + cost > limit { return String(s.unicodeScalars[..<end]) }
            used += cost
            end = s.unicodeScalars.index(after: end)
        }
        return nil
    }
}
