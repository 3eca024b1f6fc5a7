/// One import a pickle performs: a `GLOBAL`, `STACK_GLOBAL` or `INST` opcode, in stream order.
public struct PickleGlobal: Sendable, Equatable {
    /// The module, as written in the stream (`os`, `__builtin__`, `logging.config`).
    public var module: String
    /// The attribute, as written; protocol-4 names may be dotted (`path.join`, `Profile.run`).
    public var name: String
    /// Offset of the opcode in the scanned view.
    public var offset: Int
    /// `GLOBAL`, `STACK_GLOBAL` or `INST`.
    public var opcode: String

    public init(module: String, name: String, offset: Int, opcode: String) {
        self.module = module
        self.name = name
        self.offset = offset
        self.opcode = opcode
    }

    /// `module.name`.
    public var fullName: String { module + "." + name }
}

/// One call a pickle makes while it loads: `REDUCE`, `NEWOBJ`, `NEWOBJ_EX`, `INST`, `OBJ` or `BUILD`.
public struct PickleCall: Sendable, Equatable {
    /// `module.name` of what is called when the scanner knows it (through the memo, `getattr` and `__import__` too),
    /// otherwise `<unknown>`. For `BUILD`, the class of the object (or the callable that produced it).
    public var callee: String
    /// Constant arguments rendered as short Python-like literals (`'abc'`, `1`, `b'..'`, `None`, `(...)`,
    /// `<unknown>`); `NEWOBJ_EX` keyword arguments as `name=value`; a last `...` when some were not kept.
    public var args: [String]
    /// Offset of the opcode in the scanned view.
    public var offset: Int
    /// The opcode's name.
    public var opcode: String

    public init(callee: String, args: [String], offset: Int, opcode: String) {
        self.callee = callee
        self.args = args
        self.offset = offset
        self.opcode = opcode
    }
}

/// What the symbolic pickle machine found in one view.
public struct PickleReport: Sendable {
    /// Every import, in stream order (after `ScanBudget.maxEntries` records, only imports not seen before).
    public var imports: [PickleGlobal]
    /// Every call with its constant arguments, in stream order (same bound as imports).
    public var calls: [PickleCall]
    /// Anomalies and facts: `pickle.truncated`, `pickle.invalid-opcode`, `pickle.trailing-data`, `pickle.budget`,
    /// `pickle.ext-code`, `pickle.dynamic-global`, `pickle.stack-underflow`, `pickle.memo-miss`, …
    public var observations: [Observation]
    /// Pickles found back to back in the view (each `STOP` followed by more pickle starts another).
    public var streams: Int
    /// The version of the first `PROTO` opcode, nil for protocols 0 and 1.
    public var protocolVersion: Int?
    /// Opcodes executed over all streams (not counting nested pickles).
    public var opcodeCount: Int
    /// Pickles found inside bytes or str values, scanned recursively (up to `ScanBudget.maxNesting`).
    public var nested: [PickleReport]
    /// Offset of each nested pickle's first byte in this view, parallel to `nested`.
    public var nestedOffsets: [Int]
    /// Just past the last `STOP` when the scan ended cleanly (trailing data starts here); otherwise where it stopped.
    public var endOffset: Int
    /// Whether the first pickle ended with `STOP` (a complete pickle, not bytes that merely start like one).
    public var complete: Bool

    public init(
        imports: [PickleGlobal] = [], calls: [PickleCall] = [], observations: [Observation] = [], streams: Int = 0,
        protocolVersion: Int? = nil, opcodeCount: Int = 0, nested: [PickleReport] = [], nestedOffsets: [Int] = [],
        endOffset: Int = 0, complete: Bool = true
    ) {
        self.imports = imports
        self.calls = calls
        self.observations = observations
        self.streams = streams
        self.protocolVersion = protocolVersion
        self.opcodeCount = opcodeCount
        self.nested = nested
        self.nestedOffsets = nestedOffsets
        self.endOffset = endOffset
        self.complete = complete
    }

    /// This report's imports followed by those of every nested report, depth first (an explicit work list, no recursion).
    public var allImports: [PickleGlobal] {
        var out: [PickleGlobal] = []
        var work: [PickleReport] = [self]
        while let r = work.popLast() {
            out += r.imports
            work += r.nested.reversed()
        }
        return out
    }

    /// This report's calls followed by those of every nested report.
    public var allCalls: [PickleCall] {
        var out: [PickleCall] = []
        var work: [PickleReport] = [self]
        while let r = work.popLast() {
            out += r.calls
            work += r.nested.reversed()
        }
        return out
    }
}
