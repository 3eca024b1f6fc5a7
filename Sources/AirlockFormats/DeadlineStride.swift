/// A `ScanDeadline` asked at intervals of a loop's progress (bytes, records, tokens, values) rather than at every
/// step: `stop(at:)` reads the clock only when `position` has moved `every` units past the last question. With no
/// deadline it never stops. Loops over input an attacker sizes (a byte search over a mapped file, a central
/// directory, a template's tokens) use it so that the time between two questions stays a small fraction of a second.
public struct DeadlineStride {
    /// The deadline asked; nil: none.
    public let deadline: ScanDeadline?
    /// Units of progress between two questions.
    public let every: Int
    private var next: Int

    /// Asks `deadline` (by default the one bound to this thread, `ScanDeadline.current`) every `every` units.
    public init(_ deadline: ScanDeadline? = ScanDeadline.current, every: Int) {
        self.deadline = deadline
        self.every = max(1, every)
        next = 0
    }

    /// Whether the work must stop, asking the deadline when `position` is `every` past the last question (a
    /// position that moves backwards, as a new loop's, is asked at once).
    @inline(__always) public mutating func stop(at position: Int) -> Bool {
        guard let deadline else { return false }
        guard position >= next || position < next &- every else { return false }
        next = position &+ every
        return deadline.stopped() != nil
    }

    /// Whether the work must stop now (the clock is read).
    public var stopped: Bool { deadline?.stopped() != nil }
}
