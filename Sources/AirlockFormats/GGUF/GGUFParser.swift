/// One tensor info record of a GGUF file.
public struct GGUFTensorInfo: Sendable, Equatable {
    /// Tensor name (decoded as UTF-8, invalid sequences replaced).
    public var name: String
    /// Dimensions as declared, innermost first (ggml's `ne`).
    public var dims: [UInt64]
    /// ggml type id.
    public var type: UInt32
    /// Offset of the data relative to the start of the data section.
    public var offset: UInt64
    /// Data size in bytes, when the type is known and the size does not overflow.
    public var size: Int?
    /// File offset of this record.
    public var recordOffset: Int
}

/// What a GGUF file declares, and what is wrong with it.
public struct GGUFReport: Sendable {
    /// Format version, when present.
    public var version: UInt32?
    /// Declared tensor count.
    public var tensorCount: UInt64?
    /// Declared metadata key/value count.
    public var kvCount: UInt64?
    /// Metadata keys read, in file order (kept up to the scan budget).
    public var metadataKeys: [String] = []
    /// `general.architecture`, when it is a string.
    public var architecture: String?
    /// `general.alignment` when valid, else the default 32.
    public var alignment = 32
    /// File offset of the tensor data section, when the header was read to its end.
    public var dataOffset: Int?
    /// Tensor info records read (kept up to the scan budget).
    public var tensors: [GGUFTensorInfo] = []
    /// Chat templates (`tokenizer.chat_template` and `tokenizer.chat_template.<name>`): the key, and the file offset
    /// and length of the template's bytes (at most `GGUFParser.maxTemplates`).
    public var chatTemplates: [(key: String, offset: Int, length: Int)] = []
    /// Everything noticed.
    public var observations: [Observation] = []

    public init() {}
}

/// A bounded reader of GGUF (versions 1–3): header, metadata, tensor infos, and the data section's layout.
///
/// Counts are never trusted for allocation: records are read one at a time until the count or the file ends.
/// Arrays (which may nest) are walked with an explicit stack of bounded depth, and element counts are checked
/// against the remaining bytes before anything is skipped. Version 1 used 32-bit counts and lengths; 2 and 3 use
/// 64-bit ones. Only little-endian files are read.
///
/// ggml type sizes (block elements, bytes per block), from ggml's type traits:
/// F32 0 (1, 4), F16 1 (1, 2), Q4_0 2 (32, 18), Q4_1 3 (32, 20), Q5_0 6 (32, 22), Q5_1 7 (32, 24), Q8_0 8 (32, 34),
/// Q8_1 9 (32, 36), Q2_K 10 (256, 84), Q3_K 11 (256, 110), Q4_K 12 (256, 144), Q5_K 13 (256, 176),
/// Q6_K 14 (256, 210), Q8_K 15 (256, 292), IQ2_XXS 16 (256, 66), IQ2_XS 17 (256, 74), IQ3_XXS 18 (256, 98),
/// IQ1_S 19 (256, 50), IQ4_NL 20 (32, 18), IQ3_S 21 (256, 110), IQ2_S 22 (256, 82), IQ4_XS 23 (256, 136),
/// I8 24 (1, 1), I16 25 (1, 2), I32 26 (1, 4), I64 27 (1, 8), F64 28 (1, 8), IQ1_M 29 (256, 56), BF16 30 (1, 2),
/// TQ1_0 34 (256, 54), TQ2_0 35 (256, 66), MXFP4 39 (32, 17). Ids 4, 5 (Q4_2, Q4_3), 31–33 and 36–38 (repacked
/// layouts) were removed from ggml and are reported as unknown, as is anything else.
/// (gguf-py lists Q8_1 as 40 bytes; ggml's `block_q8_1` is 36. Q8_1 is an intermediate type not found in files.)
public enum GGUFParser {
    /// `GGUF`.
    public static let magic: [UInt8] = Array("GGUF".utf8)
    /// Deepest array-of-arrays nesting followed.
    public static let maxArrayDepth = 8
    /// ggml's `GGML_MAX_DIMS`.
    public static let maxDims = 4
    /// ggml's `GGML_MAX_NAME`: names must be shorter.
    public static let maxNameLength = 64
    /// Most observations kept.
    public static let maxObservations = 512
    /// Most chat templates located.
    public static let maxTemplates = 64

    /// Whether a metadata key holds a chat template that loaders render with Jinja.
    public static func isChatTemplate(_ key: String) -> Bool {
        key == "tokenizer.chat_template" || key.hasPrefix("tokenizer.chat_template.")
    }

    /// (block elements, bytes per block) for a ggml type, or nil when unknown.
    public static func typeSize(_ type: UInt32) -> (block: Int, bytes: Int)? {
        switch type {
        case 0: (1, 4)
        case 1: (1, 2)
        case 2: (32, 18)
        case 3: (32, 20)
        case 6: (32, 22)
        case 7: (32, 24)
        case 8: (32, 34)
        case 9: (32, 36)
        case 10: (256, 84)
        case 11: (256, 110)
        case 12: (256, 144)
        case 13: (256, 176)
        case 14: (256, 210)
        case 15: (256, 292)
        case 16: (256, 66)
        case 17: (256, 74)
        case 18: (256, 98)
        case 19: (256, 50)
        case 20: (32, 18)
        case 21: (256, 110)
        case 22: (256, 82)
        case 23: (256, 136)
        case 24: (1, 1)
        case 25: (1, 2)
        case 26: (1, 4)
        case 27: (1, 8)
        case 28: (1, 8)
        case 29: (256, 56)
        case 30: (1, 2)
        case 34: (256, 54)
        case 35: (256, 66)
        case 39: (32, 17)
        default: nil
        }
    }

    /// The name of a ggml type id, or nil when unknown.
    public static func typeName(_ type: UInt32) -> String? {
        let names: [UInt32: String] = [
            0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
            11: "Q3_K",
            12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S",
            20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
            29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
        ]
        return names[type]
    }

    /// Whether the bytes start with `GGUF`.
    public static func looks(_ view: ByteView) -> Bool { view.starts(with: magic) }

    public static func parse(_ view: ByteView, budget: ScanBudget = .standard) -> GGUFReport {
        var r = Reader(view: view, budget: budget)
        r.run()
        r.report.observations = r.log.finish()
        return r.report
    }

    /// Why reading stopped early.
    struct Stop: Error {}

    struct Reader {
        let view: ByteView
        let budget: ScanBudget
        var at = 0
        var wide = true  // 64-bit counts and lengths (v2+)
        var report = GGUFReport()
        var log = ObservationLog(prefix: "gguf", cap: GGUFParser.maxObservations)
        var operations = 0
        var heldBytes = 0
        var keysSeen = Set<String>()
        var namesSeen = Set<String>()
        var tracking = true
        var tensorCount: UInt64 = 0
        var kvCount: UInt64 = 0

        init(view: ByteView, budget: ScanBudget) {
            self.view = view
            self.budget = budget
        }

        var remaining: Int { view.count - at }

        mutating func truncated(_ what: String) -> Stop {
            log.add("gguf.truncated", "the file ends inside \(what)", offset: at, ("size", String(view.count)))
            return Stop()
        }

        mutating func tick() throws(Stop) {
            operations += 1
            if operations > budget.maxOperations {
                log.add(
                    "gguf.budget-exceeded", "more records than this scan may read", offset: at,
                    ("maxOperations", String(budget.maxOperations)))
                throw Stop()
            }
            // The deadline every 64 Ki records: the report becomes an error (`ScanDeadline`).
            if operations & 0xFFFF == 0 && budget.expired { throw Stop() }
        }

        mutating func u32(_ what: String) throws(Stop) -> UInt32 {
            guard let v = view.le(UInt32.self, at: at) else { throw truncated(what) }
            at += 4
            return v
        }

        mutating func u64(_ what: String) throws(Stop) -> UInt64 {
            guard let v = view.le(UInt64.self, at: at) else { throw truncated(what) }
            at += 8
            return v
        }

        /// A count or length: u32 in version 1, u64 after.
        mutating func count(_ what: String) throws(Stop) -> UInt64 {
            wide ? try u64(what) : UInt64(try u32(what))
        }

        /// Skips `n` elements of `size` bytes, checked against the rest of the file.
        mutating func skip(_ n: UInt64, size: Int, _ what: String) throws(Stop) {
            let (total, o) = n.multipliedReportingOverflow(by: UInt64(size))
            guard !o, total <= UInt64(remaining) else {
                log.add(
                    "gguf.truncated", "\(what) declares \(n) elements of \(size) bytes; \(remaining) bytes remain",
                    offset: at, ("count", String(n)), ("remaining", String(remaining)))
                throw Stop()
            }
            at += Int(total)
        }

        /// A string's bytes (length checked against the rest of the file); the offset is left after it.
        mutating func string(_ what: String) throws(Stop) -> ByteView {
            let start = at
            let n = try count("the length of \(what)")
            guard n <= UInt64(remaining), let s = view.slice(at, Int(n)) else {
                at = start
                log.add(
                    "gguf.truncated", "\(what) declares \(n) bytes; \(remaining - (wide ? 8 : 4)) remain",
                    offset: start,
                    ("length", String(n)))
                throw Stop()
            }
            at += Int(n)
            return s
        }

        static func text(_ s: ByteView) -> String { s.withUnsafeBytes { String(decoding: $0, as: UTF8.self) } }

        static func fixedSize(_ type: UInt32) -> Int? {
            switch type {
            case 0, 1, 7: 1
            case 2, 3: 2
            case 4, 5, 6: 4
            case 10, 11, 12: 8
            default: nil
            }
        }

        mutating func run() {
            do {
                try header()
                try metadata()
                try tensorInfos()
                layout()
            } catch {
                // An observation has been made; the facts gathered so far stay in the report.
            }
        }

        mutating func header() throws(Stop) {
            guard view.starts(with: GGUFParser.magic) else {
                log.add("gguf.bad-magic", "the file does not start with GGUF", offset: 0)
                throw Stop()
            }
            at = 4
            let version = try u32("the version")
            report.version = version
            guard (1...3).contains(version) else {
                let swapped = version.byteSwapped
                log.add(
                    "gguf.unsupported-version", "version \(version) is not 1, 2 or 3", offset: 4,
                    ("version", String(version)),
                    ("byteOrder", (1...3).contains(swapped) ? "big-endian" : "unknown"))
                throw Stop()
            }
            wide = version >= 2
            tensorCount = try count("the tensor count")
            report.tensorCount = tensorCount
            kvCount = try count("the metadata count")
            report.kvCount = kvCount
            // Lower bounds on a record's size, to tell a lying count from a truncated file.
            let minKV: UInt64 = wide ? 8 + 4 + 1 : 4 + 4 + 1
            let minTensor: UInt64 = wide ? 8 + 4 + 4 + 8 : 4 + 4 + 4 + 8
            let (a, o1) = kvCount.multipliedReportingOverflow(by: minKV)
            let (b, o2) = tensorCount.multipliedReportingOverflow(by: minTensor)
            let (c, o3) = a.addingReportingOverflow(b)
            if o1 || o2 || o3 || c > UInt64(remaining) {
                log.add(
                    "gguf.count-exceeds-file", "the declared counts need more bytes than the file has", offset: 8,
                    ("tensorCount", String(tensorCount)), ("kvCount", String(kvCount)),
                    ("remaining", String(remaining)))
            }
        }

        mutating func hold(_ bytes: Int) -> Bool {
            guard tracking else { return false }
            heldBytes += bytes + 32
            if heldBytes > budget.maxHeldBytes || keysSeen.count + namesSeen.count >= budget.maxEntries {
                tracking = false
                log.add(
                    "gguf.budget-exceeded", "too many names to remember; duplicates are no longer checked", offset: at,
                    ("maxHeldBytes", String(budget.maxHeldBytes)))
                return false
            }
            return true
        }

        mutating func metadata() throws(Stop) {
            var i: UInt64 = 0
            while i < kvCount {
                try tick()
                let recordStart = at
                let key = Reader.text(try string("a metadata key"))
                if hold(key.utf8.count) {
                    if !keysSeen.insert(key).inserted {
                        log.add(
                            "gguf.duplicate-key", "the metadata key \"\(key)\" appears twice", offset: recordStart,
                            ("key", key))
                    }
                    report.metadataKeys.append(key)
                }
                let valueType = try u32("a metadata value type")
                switch valueType {
                case 8:
                    let s = try string("a string value")
                    if key == "general.architecture" { report.architecture = Reader.text(s) }
                    if GGUFParser.isChatTemplate(key), report.chatTemplates.count < GGUFParser.maxTemplates {
                        report.chatTemplates.append((key, at - s.count, s.count))
                    }
                case 9:
                    try array(key: key)
                default:
                    guard let size = Reader.fixedSize(valueType) else {
                        log.add(
                            "gguf.unknown-value-type", "metadata \"\(key)\" has value type \(valueType)",
                            offset: at - 4,
                            ("key", key), ("type", String(valueType)))
                        throw Stop()
                    }
                    let valueOffset = at
                    try skip(1, size: size, "a value")
                    if key == "general.alignment" {
                        alignment(type: valueType, at: valueOffset)
                    }
                }
                if key == "general.architecture" && valueType != 8 {
                    log.add(
                        "gguf.bad-metadata", "general.architecture is not a string", offset: recordStart,
                        ("type", String(valueType)))
                }
                if GGUFParser.isChatTemplate(key) && valueType != 8 {
                    log.add(
                        "gguf.bad-metadata", "\(key) is not a string", offset: recordStart, ("key", key),
                        ("type", String(valueType)))
                }
                if key == "general.alignment" && (valueType == 8 || valueType == 9) {
                    alignment(type: valueType, at: recordStart)
                }
                i += 1
            }
        }

        mutating func alignment(type: UInt32, at offset: Int) {
            guard type == 4, let v = view.le(UInt32.self, at: offset) else {
                log.add(
                    "gguf.bad-alignment", "general.alignment is not a uint32; the default 32 is used", offset: offset,
                    ("type", String(type)))
                return
            }
            guard v != 0, v & (v - 1) == 0 else {
                log.add(
                    "gguf.bad-alignment", "general.alignment \(v) is not a power of two; the default 32 is used",
                    offset: offset,
                    ("alignment", String(v)))
                return
            }
            report.alignment = Int(v)
        }

        /// An array value (after its type tag): element type, count, elements. Nested arrays use an explicit stack.
        mutating func array(key: String) throws(Stop) {
            struct Frame {
                var type: UInt32
                var remaining: UInt64
            }
            var stack: [Frame] = []
            // Reads an array header and either skips fixed-size elements or pushes a frame.
            func open(_ r: inout Reader, _ stack: inout [Frame]) throws(Stop) {
                let headerOffset = r.at
                let type = try r.u32("an array element type")
                let n = try r.count("an array length")
                if let size = Reader.fixedSize(type) {
                    try r.skip(n, size: size, "an array of \"\(key)\"")
                    return
                }
                let minElement: Int
                switch type {
                case 8: minElement = r.wide ? 8 : 4
                case 9: minElement = r.wide ? 12 : 8
                default:
                    r.log.add(
                        "gguf.unknown-value-type", "an array in \"\(key)\" has element type \(type)",
                        offset: headerOffset,
                        ("key", key), ("type", String(type)))
                    throw Stop()
                }
                let (need, o) = n.multipliedReportingOverflow(by: UInt64(minElement))
                guard !o, need <= UInt64(r.remaining) else {
                    r.log.add(
                        "gguf.truncated", "an array of \"\(key)\" declares \(n) elements; \(r.remaining) bytes remain",
                        offset: headerOffset, ("count", String(n)), ("remaining", String(r.remaining)))
                    throw Stop()
                }
                if type == 9 {
                    guard stack.count + 1 < GGUFParser.maxArrayDepth else {
                        r.log.add(
                            "gguf.nesting-too-deep",
                            "arrays in \"\(key)\" nest deeper than \(GGUFParser.maxArrayDepth)",
                            offset: headerOffset, ("key", key))
                        throw Stop()
                    }
                }
                if n > 0 { stack.append(Frame(type: type, remaining: n)) }
            }
            try open(&self, &stack)
            while let top = stack.last {
                try tick()
                if top.remaining == 0 {
                    stack.removeLast()
                    continue
                }
                stack[stack.count - 1].remaining -= 1
                if top.type == 8 {
                    _ = try string("an array string")
                } else {
                    try open(&self, &stack)
                }
            }
        }

        mutating func tensorInfos() throws(Stop) {
            var i: UInt64 = 0
            while i < tensorCount {
                try tick()
                let recordStart = at
                let nameView = try string("a tensor name")
                let name = Reader.text(nameView)
                if nameView.count >= GGUFParser.maxNameLength {
                    log.add(
                        "gguf.name-too-long",
                        "tensor name is \(nameView.count) bytes; ggml allows \(GGUFParser.maxNameLength - 1)",
                        offset: recordStart, ("tensor", String(name.prefix(80))), ("length", String(nameView.count)))
                }
                if hold(nameView.count), !namesSeen.insert(name).inserted {
                    log.add(
                        "gguf.duplicate-tensor", "the tensor \"\(name)\" appears twice", offset: recordStart,
                        ("tensor", name))
                }
                let nDims = try u32("a tensor's dimension count")
                if nDims > UInt32(GGUFParser.maxDims) {
                    log.add(
                        "gguf.too-many-dims",
                        "tensor \"\(name)\" has \(nDims) dimensions; ggml allows \(GGUFParser.maxDims)",
                        offset: at - 4, ("tensor", name), ("dims", String(nDims)))
                }
                let dimSize = wide ? 8 : 4
                let (need, o) = Int(nDims).multipliedReportingOverflow(by: dimSize)
                guard !o, need <= remaining else { throw truncated("the dimensions of tensor \"\(name)\"") }
                var dims: [UInt64] = []
                dims.reserveCapacity(min(Int(nDims), 16))
                // Only the first 16 are kept (and more than 4 is already reported); the rest are skipped unread.
                for d in 0..<min(Int(nDims), 16) {
                    let v =
                        wide
                        ? view.le(UInt64.self, at: at + d * 8) ?? 0 : UInt64(view.le(UInt32.self, at: at + d * 4) ?? 0)
                    dims.append(v)
                }
                at += need
                let type = try u32("a tensor type")
                let offset = try u64("a tensor offset")
                var info = GGUFTensorInfo(
                    name: name, dims: dims, type: type, offset: offset, size: nil, recordOffset: recordStart)
                if nDims <= UInt32(GGUFParser.maxDims) {
                    info.size = size(of: info)
                }
                if offset % UInt64(report.alignment) != 0 {
                    log.add(
                        "gguf.misaligned",
                        "tensor \"\(name)\" data offset \(offset) is not a multiple of \(report.alignment)",
                        offset: recordStart, ("tensor", name), ("tensorOffset", String(offset)),
                        ("alignment", String(report.alignment)))
                }
                if report.tensors.count < budget.maxEntries { report.tensors.append(info) }
                i += 1
            }
        }

        mutating func size(of t: GGUFTensorInfo) -> Int? {
            guard let (block, bytes) = GGUFParser.typeSize(t.type) else {
                log.add(
                    "gguf.unknown-type", "tensor \"\(t.name)\" has ggml type \(t.type), unknown or removed",
                    offset: t.recordOffset,
                    ("tensor", t.name), ("type", String(t.type)))
                return nil
            }
            var elements: UInt64 = 1
            for d in t.dims {
                let (p, o) = elements.multipliedReportingOverflow(by: d)
                guard !o, p <= UInt64(Int64.max) else {
                    log.add(
                        "gguf.size-overflow", "tensor \"\(t.name)\": the element count overflows",
                        offset: t.recordOffset,
                        ("tensor", t.name), ("dims", t.dims.map(String.init).joined(separator: "x")))
                    return nil
                }
                elements = p
            }
            let ne0 = t.dims.first ?? 1
            guard ne0 % UInt64(block) == 0 else {
                log.add(
                    "gguf.bad-shape",
                    "tensor \"\(t.name)\": the first dimension \(ne0) is not a multiple of the block size \(block)",
                    offset: t.recordOffset, ("tensor", t.name), ("type", GGUFParser.typeName(t.type) ?? String(t.type)))
                return nil
            }
            let (total, o) = (elements / UInt64(block)).multipliedReportingOverflow(by: UInt64(bytes))
            guard !o, total <= UInt64(Int.max) else {
                log.add(
                    "gguf.size-overflow", "tensor \"\(t.name)\": the byte size overflows", offset: t.recordOffset,
                    ("tensor", t.name))
                return nil
            }
            return Int(total)
        }

        /// Data section: starts at the next multiple of the alignment; every tensor inside it, aligned, no overlaps.
        mutating func layout() {
            let alignment = report.alignment
            let (padded, o) = at.addingReportingOverflow(alignment - 1)
            guard !o else { return }
            let dataOffset = padded - padded % alignment
            let dataSize = max(0, view.count - dataOffset)
            if dataOffset > view.count, report.tensors.contains(where: { ($0.size ?? 1) > 0 }) {
                log.add(
                    "gguf.truncated", "the file ends before the tensor data section", offset: view.count,
                    ("dataOffset", String(dataOffset)))
                return
            }
            report.dataOffset = dataOffset
            var placed: [(begin: UInt64, end: UInt64, name: String)] = []
            for t in report.tensors {
                guard let size = t.size else { continue }
                let (end, o) = t.offset.addingReportingOverflow(UInt64(size))
                guard !o, end <= UInt64(dataSize) else {
                    log.add(
                        "gguf.out-of-bounds", "tensor \"\(t.name)\" data lies past the end of the file",
                        offset: t.recordOffset,
                        ("tensor", t.name), ("tensorOffset", String(t.offset)), ("size", String(size)),
                        ("dataSize", String(dataSize)))
                    continue
                }
                placed.append((t.offset, end, t.name))
            }
            placed.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
            var cursor: UInt64 = 0
            var previous = ""
            let slack = UInt64(alignment)
            for p in placed {
                if p.begin < cursor {
                    log.add(
                        "gguf.overlap", "tensor \"\(p.name)\" overlaps \"\(previous)\"",
                        offset: dataOffset &+ Int(p.begin),
                        ("tensor", p.name), ("other", previous))
                } else if p.begin - cursor >= slack {
                    log.add(
                        "gguf.gap", "\(p.begin - cursor) bytes before tensor \"\(p.name)\" belong to no tensor",
                        offset: dataOffset &+ Int(cursor), ("bytes", String(p.begin - cursor)))
                }
                if p.end >= cursor {
                    cursor = p.end
                    previous = p.name
                }
            }
            if UInt64(dataSize) > cursor, UInt64(dataSize) - cursor >= slack {
                log.add(
                    "gguf.trailing-data",
                    "\(UInt64(dataSize) - cursor) bytes after the last tensor belong to no tensor",
                    offset: dataOffset &+ Int(cursor), ("bytes", String(UInt64(dataSize) - cursor)))
            }
        }
    }
}
