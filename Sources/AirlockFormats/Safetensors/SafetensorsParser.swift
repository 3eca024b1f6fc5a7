import AirlockJSON

/// One tensor entry of a safetensors header, as declared.
public struct SafetensorsTensor: Sendable, Equatable {
    /// The tensor's name (the header key).
    public var name: String
    /// The dtype string as written (`F32`, `BF16`, …), known or not.
    public var dtype: String
    /// Dimensions; empty for a scalar.
    public var shape: [Int]
    /// Start of the tensor's bytes, relative to the start of the data section.
    public var begin: Int
    /// End (exclusive) of the tensor's bytes, relative to the start of the data section.
    public var end: Int
}

/// What a safetensors file declares, and what is wrong with it.
public struct SafetensorsReport: Sendable {
    /// Declared header length N (the u64 at offset 0), when the file has 8 bytes.
    public var headerLength: UInt64?
    /// File offset of the data section (8 + N), when N fits in the file.
    public var dataOffset: Int?
    /// Bytes in the data section.
    public var dataSize: Int = 0
    /// Tensor entries that parsed well enough to be listed, in header order.
    public var tensors: [SafetensorsTensor] = []
    /// Number of tensor entries in the header (every key but `__metadata__`), well-formed or not.
    public var tensorCount: Int = 0
    /// Sum of `end − begin` over the listed tensors.
    public var totalTensorBytes: Int = 0
    /// Distinct dtype strings used, sorted.
    public var dtypes: [String] = []
    /// `__metadata__` keys, in header order.
    public var metadataKeys: [String] { metadata.map(\.0) }
    /// `__metadata__` members whose value is a string, in header order.
    public var metadata: [(String, String)] = []
    /// Everything noticed, in file order as far as possible.
    public var observations: [Observation] = []
    /// Whether the header was read as JSON at all (false: the facts above are empty).
    public var headerParsed = false

    public init() {}
}

/// A strict reader of safetensors headers: `u64 N`, N bytes of JSON, then the tensor bytes.
///
/// Follows the reference implementation (huggingface/safetensors 0.8, checked against its Python wheel) where it
/// is strict, and reports where it is lenient and the format's text is not (leading whitespace before `{`, unknown
/// fields in an entry) because such differences between readers are room for a file to mean two things.
///
/// Dtypes and sizes in bits (safetensors 0.8): BOOL 8, F4 4, F6_E2M3 6, F6_E3M2 6, U8 8, I8 8, F8_E5M2 8,
/// F8_E4M3 8, F8_E8M0 8, F8_E4M3FNUZ 8, F8_E5M2FNUZ 8, I16 16, U16 16, F16 16, BF16 16, I32 32, U32 32, F32 32,
/// C64 64, F64 64, I64 64, U64 64. For sub-byte types the element count × bits must be a whole number of bytes.
public enum SafetensorsParser {
    /// The reference implementation's `MAX_HEADER_SIZE`.
    public static let maxHeaderLength = 100_000_000
    /// Deepest JSON nesting accepted in a header (a well-formed header needs 3).
    public static let maxHeaderDepth = 16
    /// Most observations kept; the rest are counted in one `safetensors.observations-truncated`.
    public static let maxObservations = 512

    /// Size in bits of one element of `dtype`, or nil for an unknown dtype.
    public static func bits(of dtype: String) -> Int? {
        switch dtype {
        case "F4": 4
        case "F6_E2M3", "F6_E3M2": 6
        case "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ": 8
        case "I16", "U16", "F16", "BF16": 16
        case "I32", "U32", "F32": 32
        case "C64", "F64", "I64", "U64": 64
        default: nil
        }
    }

    /// Whether the bytes look like safetensors: a header length that fits in the file, then `{` (after optional
    /// JSON whitespace, which the reference reader accepts).
    public static func looks(_ view: ByteView) -> Bool {
        guard let n64 = view.le(UInt64.self, at: 0), n64 >= 2, n64 <= UInt64(view.count - 8) else { return false }
        var at = 8
        let end = 8 + Int(n64)
        while at < end, let b = view.byte(at: at), isJSONSpace(b) { at += 1 }
        return at < end && view.byte(at: at) == UInt8(ascii: "{")
    }

    /// Reads the header and checks every entry against the data section.
    public static func parse(_ view: ByteView, budget: ScanBudget = .standard) -> SafetensorsReport {
        var report = SafetensorsReport()
        var log = ObservationLog(prefix: "safetensors", cap: SafetensorsParser.maxObservations)
        read(view, budget: budget, into: &report, log: &log)
        report.observations = log.finish()
        return report
    }

    private static func read(
        _ view: ByteView, budget: ScanBudget, into report: inout SafetensorsReport, log: inout ObservationLog
    ) {
        guard let n64 = view.le(UInt64.self, at: 0) else {
            log.add(
                "safetensors.truncated", "the file is shorter than the 8-byte header length", offset: 0,
                ("size", String(view.count)))
            return
        }
        report.headerLength = n64
        guard n64 <= UInt64(maxHeaderLength) else {
            log.add(
                "safetensors.header-too-large", "the declared header length is over \(maxHeaderLength) bytes",
                offset: 0,
                ("headerLength", String(n64)))
            return
        }
        let n = Int(n64)
        guard n <= view.count - 8 else {
            log.add(
                "safetensors.truncated", "the declared header runs past the end of the file", offset: 0,
                ("headerLength", String(n)), ("size", String(view.count)))
            return
        }
        guard n <= budget.maxHeldBytes else {
            log.add(
                "safetensors.budget-exceeded", "the header is larger than this scan may hold in memory", offset: 0,
                ("headerLength", String(n)), ("maxHeldBytes", String(budget.maxHeldBytes)))
            return
        }
        let dataOffset = 8 + n
        report.dataOffset = dataOffset
        report.dataSize = view.count - dataOffset
        guard let header = view.bytes(8, n) else { return }

        var first = 0
        while first < header.count, isJSONSpace(header[first]) { first += 1 }
        if first < header.count, first > 0, header[first] == UInt8(ascii: "{") {
            log.add(
                "safetensors.header-leading-space",
                "the header has whitespace before '{' (the format requires '{' first; the reference reader accepts it)",
                offset: 8, ("bytes", String(first)))
        }

        let json: JSON
        do {
            // A header of up to 100 MB: the scan's deadline is asked every few thousand values.
            json = try JSON.parse(
                header, maxDepth: maxHeaderDepth, stop: budget.deadline.map { d in { d.stopped() != nil } })
        } catch {
            if budget.deadline?.interrupted != nil { return }  // the report becomes an error (`ScanDeadline`)
            if error.reason.hasPrefix("duplicate key") {
                log.add(
                    "safetensors.duplicate-key", "the header has a key twice: \(error.reason)", offset: 8 + error.offset
                )
            } else if error.reason.hasPrefix("nested deeper") {
                log.add(
                    "safetensors.nesting-too-deep", "the header nests deeper than \(maxHeaderDepth) levels",
                    offset: 8 + error.offset)
            } else {
                log.add(
                    "safetensors.invalid-json", "the header is not valid JSON: \(error.reason)",
                    offset: 8 + error.offset)
            }
            return
        }
        guard case .object(let members) = json else {
            log.add("safetensors.header-not-object", "the header is JSON but not an object", offset: 8)
            return
        }
        report.headerParsed = true

        var dtypes = Set<String>()
        for (index, (name, value)) in members.enumerated() {
            if index & 0xFFF == 0 && budget.expired { return }  // the report becomes an error (`ScanDeadline`)
            if name == "__metadata__" {
                readMetadata(value, into: &report, log: &log)
                continue
            }
            report.tensorCount += 1
            guard let tensor = readEntry(name, value, dataSize: report.dataSize, dataOffset: dataOffset, log: &log)
            else { continue }
            dtypes.insert(tensor.dtype)
            report.tensors.append(tensor)
            report.totalTensorBytes &+= tensor.end - tensor.begin
        }
        report.dtypes = dtypes.sorted()
        checkLayout(report.tensors, dataSize: report.dataSize, dataOffset: dataOffset, log: &log)
        return
    }

    private static func readMetadata(_ value: JSON, into report: inout SafetensorsReport, log: inout ObservationLog) {
        switch value {
        case .null:
            return  // The reference reader accepts null as "no metadata".
        case .object(let pairs):
            for (key, v) in pairs {
                if case .string(let s) = v {
                    report.metadata.append((key, s))
                } else {
                    report.metadata.append((key, ""))
                    log.add(
                        "safetensors.metadata-not-string", "__metadata__[\"\(key)\"] is not a string", offset: nil,
                        ("key", key), ("type", typeName(v)))
                }
            }
        default:
            log.add(
                "safetensors.metadata-not-object", "__metadata__ is not an object", offset: nil,
                ("type", typeName(value)))
        }
    }

    private static func readEntry(
        _ name: String, _ value: JSON, dataSize: Int, dataOffset: Int, log: inout ObservationLog
    ) -> SafetensorsTensor? {
        guard case .object(let fields) = value else {
            log.add(
                "safetensors.bad-entry", "tensor \"\(name)\" is not an object", offset: nil, ("tensor", name),
                ("type", typeName(value)))
            return nil
        }
        var dtypeValue: JSON?
        var shapeValue: JSON?
        var offsetsValue: JSON?
        for (key, v) in fields {
            switch key {
            case "dtype": dtypeValue = v
            case "shape": shapeValue = v
            case "data_offsets": offsetsValue = v
            default:
                log.add(
                    "safetensors.unknown-field", "tensor \"\(name)\" has a field \"\(key)\" that readers ignore",
                    offset: nil,
                    ("tensor", name), ("field", key))
            }
        }
        guard case .string(let dtype)? = dtypeValue else {
            log.add(
                "safetensors.bad-entry", "tensor \"\(name)\" has no dtype string", offset: nil, ("tensor", name),
                ("field", "dtype"))
            return nil
        }
        guard case .array(let shapeItems)? = shapeValue else {
            log.add(
                "safetensors.bad-entry", "tensor \"\(name)\" has no shape array", offset: nil, ("tensor", name),
                ("field", "shape"))
            return nil
        }
        guard case .array(let offsetItems)? = offsetsValue else {
            log.add(
                "safetensors.bad-entry", "tensor \"\(name)\" has no data_offsets array", offset: nil, ("tensor", name),
                ("field", "data_offsets"))
            return nil
        }
        var shape: [Int] = []
        shape.reserveCapacity(min(shapeItems.count, 64))
        for item in shapeItems {
            guard let d = nonNegativeInt(item) else {
                log.add(
                    "safetensors.bad-shape", "tensor \"\(name)\" has a shape entry that is not a non-negative integer",
                    offset: nil,
                    ("tensor", name), ("value", item.serialized()))
                return nil
            }
            shape.append(d)
        }
        guard offsetItems.count == 2, let begin = nonNegativeInt(offsetItems[0]),
            let end = nonNegativeInt(offsetItems[1])
        else {
            log.add(
                "safetensors.bad-offsets", "tensor \"\(name)\" data_offsets is not two non-negative integers",
                offset: nil,
                ("tensor", name), ("value", JSON.array(offsetItems).serialized()))
            return nil
        }
        guard begin <= end else {
            log.add(
                "safetensors.bad-offsets", "tensor \"\(name)\" ends before it begins", offset: nil,
                ("tensor", name), ("begin", String(begin)), ("end", String(end)))
            return nil
        }
        let tensor = SafetensorsTensor(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
        if end > dataSize {
            log.add(
                "safetensors.offset-out-of-bounds", "tensor \"\(name)\" ends past the data section", offset: nil,
                ("tensor", name), ("end", String(end)), ("dataSize", String(dataSize)))
        }
        guard let bits = bits(of: dtype) else {
            log.add(
                "safetensors.unknown-dtype", "tensor \"\(name)\" has an unknown dtype \"\(dtype)\"", offset: nil,
                ("tensor", name), ("dtype", dtype))
            return tensor
        }
        var elements = 1
        var overflow = false
        for d in shape {
            let (p, o) = elements.multipliedReportingOverflow(by: d)
            if o {
                overflow = true
                break
            }
            elements = p
        }
        var totalBits = 0
        if !overflow {
            let (b, o) = elements.multipliedReportingOverflow(by: bits)
            overflow = o
            totalBits = b
        }
        if overflow {
            log.add(
                "safetensors.size-overflow", "tensor \"\(name)\": shape × dtype size overflows", offset: nil,
                ("tensor", name), ("shape", shape.map(String.init).joined(separator: "x")), ("dtype", dtype))
        } else if totalBits % 8 != 0 {
            log.add(
                "safetensors.size-mismatch", "tensor \"\(name)\": the sub-byte elements do not fill whole bytes",
                offset: nil,
                ("tensor", name), ("bits", String(totalBits)))
        } else if totalBits / 8 != end - begin {
            log.add(
                "safetensors.size-mismatch", "tensor \"\(name)\": shape × dtype size is not data_offsets' length",
                offset: nil,
                ("tensor", name), ("expected", String(totalBits / 8)), ("declared", String(end - begin)))
        }
        return tensor
    }

    /// Entries sorted by offset must tile the data section exactly: from 0, no gaps, no overlaps, to the end.
    private static func checkLayout(
        _ tensors: [SafetensorsTensor], dataSize: Int, dataOffset: Int, log: inout ObservationLog
    ) {
        let sorted = tensors.sorted { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var cursor = 0
        var previous: String?
        for t in sorted {
            if t.begin > cursor {
                log.add(
                    "safetensors.gap", "\(t.begin - cursor) bytes before tensor \"\(t.name)\" belong to no tensor",
                    offset: dataOffset &+ cursor, ("tensor", t.name), ("begin", String(cursor)),
                    ("end", String(t.begin)))
            } else if t.begin < cursor {
                log.add(
                    "safetensors.overlap", "tensor \"\(t.name)\" overlaps \"\(previous ?? "")\"",
                    offset: dataOffset &+ t.begin, ("tensor", t.name), ("other", previous ?? ""),
                    ("begin", String(t.begin)), ("previousEnd", String(cursor)))
            }
            if t.end >= cursor {
                cursor = t.end
                previous = t.name
            }
        }
        if cursor < dataSize {
            log.add(
                "safetensors.trailing-data", "\(dataSize - cursor) bytes after the last tensor belong to no tensor",
                offset: dataOffset &+ cursor, ("bytes", String(dataSize - cursor)))
        }
    }

    /// A JSON number that is a plain non-negative integer fitting in `Int` (no sign, fraction or exponent).
    static func nonNegativeInt(_ value: JSON) -> Int? {
        guard case .number(let text) = value, !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            return nil
        }
        return Int(text)
    }

    static func typeName(_ value: JSON) -> String {
        switch value {
        case .null: "null"
        case .bool: "bool"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    static func isJSONSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 }

}
