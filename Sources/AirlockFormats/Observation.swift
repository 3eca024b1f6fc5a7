/// Something a parser noticed about the bytes: a fact, not yet a verdict. `AirlockAnalysis` turns observations
/// into findings with severities; parsers never decide what is malicious.
public struct Observation: Sendable, Equatable {
    /// A stable identifier: `<format>.<what>`, such as `zip.duplicate-name` or `pickle.truncated`.
    public var kind: String
    /// A sentence for people.
    public var message: String
    /// Where and what.
    public var evidence: Evidence

    /// Creates an observation.
    public init(_ kind: String, _ message: String, _ evidence: Evidence = Evidence()) {
        self.kind = kind
        self.message = message
        self.evidence = evidence
    }
}

/// Where an observation was made and what it concerns. Only the fields that apply are set.
public struct Evidence: Sendable, Equatable {
    /// Byte offset in the file or member.
    public var offset: Int?
    /// Archive member name (`archive/data.pkl`).
    public var member: String?
    /// A Python global, `module.name`.
    public var global: String?
    /// Constant arguments of a call, as Python-like literals.
    public var args: [String]?
    /// Anything else, as ordered name/value pairs.
    public var details: [(String, String)]
    /// The trace events (`seq`) that prove a dynamic finding.
    public var seq: [Int]?

    /// Creates evidence.
    public init(
        offset: Int? = nil, member: String? = nil, global: String? = nil, args: [String]? = nil,
        details: [(String, String)] = []
    ) {
        self.offset = offset
        self.member = member
        self.global = global
        self.args = args
        self.details = details
    }

    public static func == (a: Evidence, b: Evidence) -> Bool {
        a.offset == b.offset && a.member == b.member && a.global == b.global && a.args == b.args
            && a.seq == b.seq && a.details.count == b.details.count
            && zip(a.details, b.details).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }
}

/// Observations with a cap, so that a hostile file cannot make a report large: past `cap`, they are counted and
/// summed up in one `<prefix>.observations-truncated` observation.
struct ObservationLog {
    let prefix: String
    let cap: Int
    var items: [Observation] = []
    var dropped = 0

    init(prefix: String, cap: Int) {
        self.prefix = prefix
        self.cap = cap
    }

    mutating func add(_ kind: String, _ message: String, offset: Int?, _ details: (String, String)...) {
        guard items.count < cap else {
            dropped += 1
            return
        }
        items.append(Observation(kind, message, Evidence(offset: offset, details: details)))
    }

    func finish() -> [Observation] {
        guard dropped > 0 else { return items }
        return items + [
            Observation(
                "\(prefix).observations-truncated", "\(dropped) more observations were not kept",
                Evidence(details: [("dropped", String(dropped))]))
        ]
    }
}

/// Bounds on the work one analysis may do, so that no input can make the scanner slow or large.
public struct ScanBudget: Sendable {
    /// Most opcodes, records or fields processed in one stream.
    public var maxOperations: Int
    /// Most bytes held in memory for decoded values (strings, decompressed members) at once.
    public var maxHeldBytes: Int
    /// Most entries of a pickle memo, stack, or a container's children that are tracked.
    public var maxEntries: Int
    /// Deepest nesting followed (pickles inside bytes, archives inside archives).
    public var maxNesting: Int
    /// Largest archive member decompressed, in bytes.
    public var maxInflatedBytes: Int
    /// When the work must stop whatever is left (`ScanDeadline`); nil: it runs until the other bounds end it.
    public var deadline: ScanDeadline? = nil

    /// Creates a budget.
    public init(
        maxOperations: Int = 100_000_000, maxHeldBytes: Int = 32 << 20, maxEntries: Int = 1_000_000,
        maxNesting: Int = 4, maxInflatedBytes: Int = 256 << 20
    ) {
        self.maxOperations = maxOperations
        self.maxHeldBytes = maxHeldBytes
        self.maxEntries = maxEntries
        self.maxNesting = maxNesting
        self.maxInflatedBytes = maxInflatedBytes
    }

    /// The defaults.
    public static let standard = ScanBudget()
}
