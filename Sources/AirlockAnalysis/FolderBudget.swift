public import AirlockNames
public import AirlockFormats
internal import AirlockSystem

#if canImport(Glibc)
    import Glibc
#endif

/// How much of a folder one scan or probe walks: at most `maxEntries` entries (files, links, special files and
/// folders, each counted once) and, when `seconds` is set, no new entry started after that long. What is left is
/// reported as not examined (`FolderBudget.rule`), never dropped in silence, and keeps the folder from being `clean`.
public struct FolderBudget: Sendable, Equatable {
    /// Most entries walked.
    public var maxEntries: Int
    /// Seconds the walk may take, from its start; nil: no time budget.
    public var seconds: Double?
    /// The deadline of the whole request the walk is part of (`ScanDeadline`: a time and a cancellation), asked
    /// before every entry like `seconds`, and given to the hashing threads; nil: none.
    public var deadline: ScanDeadline? = nil
    /// Seconds the hashing of each file ahead of its analysis (`DigestPrefetch`) may take, from its start, like the
    /// analysis's own deadline for that file (`airlock probe --timeout`); nil: none.
    public var fileSeconds: Double? = nil

    /// A budget.
    public init(maxEntries: Int, seconds: Double? = nil) {
        self.maxEntries = min(max(0, maxEntries), FolderBudget.maxEntriesLimit)
        self.seconds = seconds
    }

    /// Equal limits and the same deadline object.
    public static func == (a: FolderBudget, b: FolderBudget) -> Bool {
        a.maxEntries == b.maxEntries && a.seconds == b.seconds && a.deadline === b.deadline
            && a.fileSeconds == b.fileSeconds
    }

    /// The local CLI's: 100,000 entries (what a folder scan always stopped at), no time budget.
    public static let local = FolderBudget(maxEntries: 100_000)
    /// Most entries any budget allows: names are kept in memory for the name-order walk (at most 4096 bytes each).
    public static let maxEntriesLimit = 10_000_000
    /// The rule of the finding that records what was not examined.
    public static let rule = "folder.not-examined"
    /// Most not-examined names listed in the record.
    public static let maxSample = 10

    /// Which budget ran out.
    public enum Exhausted: String, Sendable {
        /// `maxEntries` entries were walked.
        case entries
        /// `seconds` passed.
        case time
    }
}

/// A folder budget being spent by one walk, and the record of where it ran out. Checked before every entry (a clock
/// read and a count): the walk stops at the first entry the budget does not cover.
public final class FolderMeter {
    /// The budget.
    public let budget: FolderBudget
    /// The monotonic time (ns) after which no entry is started; nil without a time budget.
    let deadline: UInt64?
    /// Entries taken so far.
    public private(set) var taken = 0
    /// Which budget ran out; nil while there is some left.
    public private(set) var exhausted: FolderBudget.Exhausted?
    /// Entries known not to have been examined (at least: folders not entered are counted as one entry each).
    public private(set) var notExamined = 0
    /// The first entries not examined, relative to the folder, escaped (at most `FolderBudget.maxSample`).
    public private(set) var sample: [String] = []

    /// The listing of one folder on the walk's path, outermost first (`FolderWalk`): its names, the index of the next
    /// one to visit, and how many more it held than are listed.
    final class Listing {
        var names: [FileName]
        var more: Int
        var next = 0
        init(names: [FileName], more: Int) {
            self.names = names
            self.more = more
        }
    }
    /// The folders being walked, outermost first.
    var listings: [Listing] = []

    /// Drops the names the budget can no longer reach, counting them in their listing's `more`: in walk order (the
    /// deepest folder's names first, then its parent's after it, …) only the first entries the budget has left (and
    /// `FolderBudget.maxSample` to name what is left out) can be visited. So the names held along a path of nested
    /// folders stay about twice the budget, not the budget once per level.
    func trimListings() {
        var left = max(0, budget.maxEntries - taken) + FolderBudget.maxSample
        for listing in listings.reversed() {
            let pending = listing.names.count - listing.next
            if pending <= left {
                left -= pending
                continue
            }
            let end = listing.next + left
            listing.more += listing.names.count - end
            listing.names = Array(listing.names[..<end])  // a new buffer: removeSubrange would keep the capacity
            left = 0
        }
    }

    /// A meter for a walk that starts now, or at `start` (monotonic ns) for a budget shared by several walks.
    public init(_ budget: FolderBudget, start: UInt64? = nil) {
        self.budget = budget
        deadline = budget.seconds.map { (start ?? monotonicNs()) &+ UInt64(max(0, $0) * 1e9) }
    }

    /// Whether the budget covers one more entry; takes it if so. Once it says no, it always does.
    public func take() -> Bool {
        guard exhausted == nil else { return false }
        if taken >= budget.maxEntries {
            exhausted = .entries
            return false
        }
        if let deadline, monotonicNs() >= deadline {
            exhausted = .time
            return false
        }
        if budget.deadline?.stopped() != nil {
            exhausted = .time
            return false
        }
        taken += 1
        return true
    }

    /// Whether the time budget has run out (for work between entries, such as listing a huge folder).
    public var pastDeadline: Bool {
        if budget.deadline?.stopped() != nil { return true }
        guard let deadline else { return false }
        return monotonicNs() >= deadline
    }

    /// Records `names` (relative to the folder) as not examined, and `uncounted` more whose names are not known.
    public func skip(_ names: some Sequence<FileName>, uncounted: Int = 0) {
        for name in names {
            notExamined += 1
            if sample.count < FolderBudget.maxSample { sample.append(name.escaped) }
        }
        notExamined += uncounted
        if exhausted == nil { exhausted = taken >= budget.maxEntries ? .entries : .time }
    }

    /// The report on what was not examined, for the folder shown as `folder`: verdict `error` (the folder was not
    /// analysed whole), so no policy that passes only `clean` (nor `suspicious`) passes it. Nil when the walk was
    /// complete.
    public func report(folder: String) -> Report? {
        guard let exhausted else { return nil }
        let why =
            exhausted == .entries
            ? "its entry budget (\(budget.maxEntries) entries) ran out"
            : budget.deadline?.interrupted == .cancelled
                ? "the work was cancelled (its client left)"
                : budget.deadline?.interrupted == .timeout
                    ? "the request's deadline (\(budget.deadline?.seconds.map { "\($0)" } ?? "?") s) passed"
                    : "its time budget (\(budget.seconds.map { "\($0)" } ?? "?") s) ran out"
        let first = sample.first ?? "?"
        let message =
            "\(notExamined == 0 ? "some" : "at least \(notExamined)") entries of the folder were not examined: \(why)"
            + " after \(taken) entries; the first not examined: \(first)"
        var details: [(String, String)] = [
            ("budget", exhausted.rawValue), ("examined", String(taken)), ("notExamined", String(notExamined)),
            ("limit", exhausted == .entries ? String(budget.maxEntries) : "\(budget.seconds ?? 0)"),
        ]
        for (i, name) in sample.enumerated() { details.append(("notExamined\(i + 1)", name)) }
        let finding = Finding(
            rule: FolderBudget.rule, severity: .low, message: message, evidence: Evidence(details: details))
        let target = ReportTarget(path: folder, size: 0, sha256: nil, format: "folder")
        return Report(target: target, findings: [finding], error: ("not-examined", message))
    }
}
