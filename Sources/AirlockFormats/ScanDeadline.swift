internal import AirlockSystem
import Synchronization

/// A flag set once when nobody wants a piece of work any more (airlockd: the client hung up). Set from any thread,
/// read lock-free by the thread doing the work.
public final class Cancellation: Sendable {
    private let flag = Atomic<Bool>(false)

    /// A flag not set.
    public init() {}

    /// Sets the flag; it stays set.
    public func cancel() { flag.store(true, ordering: .releasing) }

    /// Whether `cancel()` was called.
    public var isCancelled: Bool { flag.load(ordering: .acquiring) }
}

/// How long static work on input an attacker controls may run: a monotonic deadline (nil: none) and a `Cancellation`
/// (nil: none). The hashing loops, the parsers' loops over a file's records, members and decompressed bytes, and the
/// folder walks ask `stopped()` often enough that no more than a fraction of a second passes between two questions;
/// once it answers, the work stops and the report is an error (`StaticScanner`: error code `timeout` or `cancelled`),
/// never a verdict from part of the file. Cheap to ask: a clock read and an atomic load.
public final class ScanDeadline: Sendable {
    /// Why work stopped.
    public enum Stop: String, Sendable {
        /// The deadline passed.
        case timeout
        /// The work was cancelled (its client left).
        case cancelled
    }

    /// The monotonic time (ns) after which work stops; nil: no deadline.
    public let deadlineNs: UInt64?
    /// The seconds the deadline was given, for messages.
    public let seconds: Double?
    /// The cancellation this deadline also obeys.
    public let cancellation: Cancellation?
    /// The first stop a check saw, sticky: 0 none, else `Stop`'s index + 1.
    private let seen = Atomic<UInt8>(0)

    /// A deadline `seconds` after `start` (monotonic ns; now when nil), obeying `cancellation` too.
    public init(seconds: Double?, cancellation: Cancellation? = nil, start: UInt64? = nil) {
        self.seconds = seconds
        self.cancellation = cancellation
        deadlineNs = seconds.map { (start ?? monotonicNs()) &+ UInt64(max(0, min($0, 1e9)) * 1e9) }
    }

    /// A deadline `seconds` from now with the same cancellation, or this one when it comes sooner (nil: this one).
    public func narrowed(seconds: Double?) -> ScanDeadline {
        guard let seconds else { return self }
        let fresh = ScanDeadline(seconds: seconds, cancellation: cancellation)
        if let mine = deadlineNs, let theirs = fresh.deadlineNs, mine <= theirs { return self }
        return fresh
    }

    /// Whether the work must stop now, and why; the first answer other than nil is remembered (`interrupted`).
    public func stopped() -> Stop? {
        if let first = interrupted { return first }
        let stop: Stop?
        if cancellation?.isCancelled == true {
            stop = .cancelled
        } else if let deadlineNs, monotonicNs() >= deadlineNs {
            stop = .timeout
        } else {
            stop = nil
        }
        if let stop {
            _ = seen.compareExchange(expected: 0, desired: stop == .timeout ? 1 : 2, ordering: .acquiringAndReleasing)
            return interrupted
        }
        return nil
    }

    /// The deadline of the static work running on this thread (`StaticScanner` binds it), for code that has no
    /// `ScanBudget` to carry one (the decompressors).
    @TaskLocal public static var current: ScanDeadline? = nil

    /// `stopped() != nil`.
    public var expired: Bool { stopped() != nil }

    /// Why work was stopped, if a check ever said so (without looking at the clock again): work that saw no stop ran
    /// whole.
    public var interrupted: Stop? {
        switch seen.load(ordering: .acquiring) {
        case 1: .timeout
        case 2: .cancelled
        default: nil
        }
    }

    /// What the report says about the stop.
    public func message(_ stop: Stop, what: String) -> String {
        switch stop {
        case .timeout:
            "\(what) was not finished: the deadline (\(seconds.map { "\($0)" } ?? "?") s) passed; not analysed whole"
        case .cancelled: "\(what) was not finished: the work was cancelled (its client left); not analysed whole"
        }
    }
}

extension ScanBudget {
    /// Whether the work this budget bounds must stop (its `deadline` passed or was cancelled).
    @inline(__always) public var expired: Bool { deadline?.stopped() != nil }
}
