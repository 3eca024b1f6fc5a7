/// What a `.npy` array declares, and what is wrong with it.
public struct NumPyReport: Sendable {
    /// Format version (major, minor), when the preamble is there.
    public var version: (major: UInt8, minor: UInt8)?
    /// Declared header length (the u16 or u32 after the version).
    public var headerLength: Int?
    /// Offset of the array data (after the header), when the header fits in the file.
    public var dataOffset: Int?
    /// The `descr` value: the type string for a simple dtype, a Python-like rendering for a structured one.
    public var descr: String?
    /// Whether `descr` is a structured (list) dtype.
    public var structured = false
    /// `fortran_order`.
    public var fortranOrder: Bool?
    /// `shape`; empty for a 0-d array.
    public var shape: [Int]?
    /// Bytes per element, when every part of the dtype is known and holds no objects.
    public var itemSize: Int?
    /// Product of `shape`, when it does not overflow.
    public var elementCount: Int?
    /// `elementCount × itemSize`, when both are known and it does not overflow.
    public var expectedDataSize: Int?
    /// Bytes after the header.
    public var dataSize: Int?
    /// Whether the dtype holds Python objects (`O`, anywhere in a structured dtype).
    public var hasObjects = false
    /// For object arrays: where the pickle that numpy writes as the data starts. Scan it with the pickle scanner.
    public var pickleOffset: Int?
    /// Everything noticed.
    public var observations: [Observation] = []

    public init() {}
}

/// A reader of NumPy `.npy` files (format versions 1.0, 2.0 and 3.0), and of single `.npz` members.
///
/// The header is a Python dict literal. It is parsed by a small strict parser for the literal subset numpy writes
/// (strings, integers, booleans, None, tuples, lists, dicts), never evaluated. Headers longer than numpy's own
/// `_MAX_HEADER_SIZE` (10 000 bytes, which `np.load` refuses unless told otherwise) are reported; longer than
/// `maxHeaderLength` are not parsed.
public enum NumPyParser {
    /// `\x93NUMPY`.
    public static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]
    /// numpy's `_MAX_HEADER_SIZE`: larger headers are refused by `np.load` by default.
    public static let numpyMaxHeaderLength = 10_000
    /// Largest header parsed at all.
    public static let maxHeaderLength = 1 << 20
    /// Deepest literal nesting accepted (structured dtypes nest: fields of fields).
    public static let maxNesting = 32
    /// Most observations kept.
    public static let maxObservations = 256

    /// Whether the bytes start with the `.npy` magic.
    public static func looks(_ view: ByteView) -> Bool { view.starts(with: magic) }

    public static func parse(_ view: ByteView, budget: ScanBudget = .standard) -> NumPyReport {
        var report = NumPyReport()
        var log = ObservationLog(prefix: "numpy", cap: NumPyParser.maxObservations)
        read(view, budget: budget, into: &report, log: &log)
        report.observations = log.finish()
        return report
    }

    private static func read(
        _ view: ByteView, budget: ScanBudget, into report: inout NumPyReport, log: inout ObservationLog
    ) {

        guard view.starts(with: magic) else {
            log.add("numpy.bad-magic", "the file does not start with \\x93NUMPY", offset: 0)
            return
        }
        guard let major = view.byte(at: 6), let minor = view.byte(at: 7) else {
            log.add("numpy.truncated", "the file ends inside the version", offset: view.count)
            return
        }
        report.version = (major, minor)
        guard minor == 0, (1...3).contains(major) else {
            log.add(
                "numpy.unsupported-version", "format version \(major).\(minor) is not 1.0, 2.0 or 3.0", offset: 6,
                ("version", "\(major).\(minor)"))
            return
        }
        let lengthSize = major == 1 ? 2 : 4
        let length: Int
        if major == 1 {
            guard let l = view.le(UInt16.self, at: 8) else {
                log.add("numpy.truncated", "the file ends inside the header length", offset: view.count)
                return
            }
            length = Int(l)
        } else {
            guard let l = view.le(UInt32.self, at: 8) else {
                log.add("numpy.truncated", "the file ends inside the header length", offset: view.count)
                return
            }
            length = Int(l)
        }
        report.headerLength = length
        let headerStart = 8 + lengthSize
        if length > numpyMaxHeaderLength {
            log.add(
                "numpy.header-too-large",
                "the header is longer than numpy's default limit of \(numpyMaxHeaderLength) bytes",
                offset: 8, ("headerLength", String(length)))
        }
        guard length <= maxHeaderLength, length <= budget.maxHeldBytes else {
            log.add(
                "numpy.header-too-large", "the header is too long to parse", offset: 8,
                ("headerLength", String(length)), ("limit", String(min(maxHeaderLength, budget.maxHeldBytes))))
            return
        }
        guard let header = view.bytes(headerStart, length) else {
            log.add(
                "numpy.truncated", "the header runs past the end of the file", offset: 8,
                ("headerLength", String(length)), ("size", String(view.count)))
            return
        }
        let dataOffset = headerStart + length
        report.dataOffset = dataOffset
        report.dataSize = view.count - dataOffset

        let literal: NumPyLiteral
        do {
            literal = try NumPyLiteral.parse(header, maxDepth: maxNesting, latin1: major < 3, longSuffix: major < 3)
        } catch {
            log.add(
                "numpy.bad-header", "the header is not a Python literal numpy writes: \(error.reason)",
                offset: headerStart + error.offset)
            return
        }
        guard case .dict(let pairs) = literal else {
            log.add("numpy.bad-header", "the header is not a dict", offset: headerStart)
            return
        }

        // Python keeps the last of duplicate keys; a second reader might keep the first.
        var values: [String: NumPyLiteral] = [:]
        var extra: [String] = []
        for (key, value) in pairs {
            guard case .string(let name) = key else {
                extra.append(key.rendered)
                continue
            }
            if values.updateValue(value, forKey: name) != nil {
                log.add(
                    "numpy.duplicate-key", "the header has the key '\(name)' twice", offset: headerStart, ("key", name))
            }
            if !["descr", "fortran_order", "shape"].contains(name) { extra.append(name) }
        }
        let missing = ["descr", "fortran_order", "shape"].filter { values[$0] == nil }
        if !extra.isEmpty || !missing.isEmpty {
            log.add(
                "numpy.header-keys", "the header's keys are not exactly descr, fortran_order, shape (numpy refuses it)",
                offset: headerStart, ("extra", extra.joined(separator: ",")),
                ("missing", missing.joined(separator: ",")))
        }

        if let f = values["fortran_order"] {
            if case .bool(let b) = f {
                report.fortranOrder = b
            } else {
                log.add("numpy.bad-header", "fortran_order is not a bool", offset: headerStart, ("value", f.rendered))
            }
        }

        if let s = values["shape"] {
            if case .tuple(let dims) = s {
                var shape: [Int] = []
                var good = true
                for d in dims {
                    guard case .int(let n) = d, n >= 0 else {
                        log.add(
                            "numpy.bad-shape", "a shape entry is not a non-negative integer", offset: headerStart,
                            ("value", d.rendered))
                        good = false
                        break
                    }
                    shape.append(n)
                }
                if good {
                    report.shape = shape
                    var count = 1
                    var overflow = false
                    for d in shape {
                        let (p, o) = count.multipliedReportingOverflow(by: d)
                        if o {
                            overflow = true
                            break
                        }
                        count = p
                    }
                    if overflow {
                        log.add(
                            "numpy.size-overflow", "the product of the shape overflows", offset: headerStart,
                            ("shape", s.rendered))
                    } else {
                        report.elementCount = count
                    }
                }
            } else {
                log.add("numpy.bad-shape", "shape is not a tuple", offset: headerStart, ("value", s.rendered))
            }
        }

        if let d = values["descr"] {
            if case .string(let text) = d {
                report.descr = text
            } else {
                report.descr = d.rendered
                report.structured = true
            }
            var info = DescrInfo()
            measure(d, &info, log: &log, headerStart: headerStart)
            report.hasObjects = info.hasObjects
            if info.hasObjects {
                report.pickleOffset = dataOffset
                log.add(
                    "numpy.object-dtype", "the array holds Python objects: its data is a pickle", offset: dataOffset,
                    ("descr", report.descr ?? ""))
            } else if !info.unknown {
                if info.overflow {
                    log.add("numpy.size-overflow", "the dtype's item size overflows", offset: headerStart)
                } else {
                    report.itemSize = info.size
                }
            }
        }

        if let count = report.elementCount, let item = report.itemSize, let dataSize = report.dataSize {
            let (total, o) = count.multipliedReportingOverflow(by: item)
            if o {
                log.add(
                    "numpy.size-overflow", "shape × item size overflows", offset: headerStart,
                    ("elements", String(count)), ("itemSize", String(item)))
            } else {
                report.expectedDataSize = total
                if total != dataSize {
                    log.add(
                        "numpy.size-mismatch",
                        total > dataSize
                            ? "the data is shorter than shape × item size"
                            : "there are bytes after the array data",
                        offset: dataOffset, ("expected", String(total)), ("actual", String(dataSize)))
                }
            }
        }
        return
    }

    struct DescrInfo {
        var size = 0
        var hasObjects = false
        var unknown = false
        var overflow = false
    }

    /// Adds the size of `descr` (times `multiplier`) to `info`. Recursion follows the literal's nesting, which the
    /// literal parser has already bounded by `maxNesting`.
    private static func measure(
        _ descr: NumPyLiteral, _ info: inout DescrInfo, multiplier: Int = 1, depth: Int = 0,
        log: inout ObservationLog, headerStart: Int
    ) {
        guard depth <= maxNesting else {
            info.unknown = true
            return
        }
        switch descr {
        case .string(let text):
            switch simpleItemSize(text) {
            case .object:
                info.hasObjects = true
            case .size(let n):
                let (p, o1) = n.multipliedReportingOverflow(by: multiplier)
                let (s, o2) = info.size.addingReportingOverflow(p)
                if o1 || o2 { info.overflow = true } else { info.size = s }
            case .unknown:
                info.unknown = true
                log.add(
                    "numpy.unknown-descr", "the dtype '\(text)' is not one numpy writes", offset: headerStart,
                    ("descr", text))
            }
        case .list(let fields):
            for field in fields {
                guard case .tuple(let parts) = field, parts.count == 2 || parts.count == 3 else {
                    info.unknown = true
                    log.add(
                        "numpy.unknown-descr", "a structured dtype field is not (name, dtype[, shape])",
                        offset: headerStart,
                        ("field", field.rendered))
                    continue
                }
                switch parts[0] {
                case .string: break
                case .tuple(let t) where t.count == 2 && t.allSatisfy({ if case .string = $0 { true } else { false } }):
                    break
                default:
                    log.add(
                        "numpy.unknown-descr", "a structured dtype field name is not a string", offset: headerStart,
                        ("field", field.rendered))
                    info.unknown = true
                }
                var count = multiplier
                if parts.count == 3 {
                    let dims: [NumPyLiteral]
                    switch parts[2] {
                    case .tuple(let t): dims = t
                    case .int: dims = [parts[2]]
                    default:
                        dims = []
                        info.unknown = true
                        log.add(
                            "numpy.unknown-descr", "a structured dtype field shape is not a tuple", offset: headerStart,
                            ("field", field.rendered))
                    }
                    for d in dims {
                        guard case .int(let n) = d, n >= 0 else {
                            info.unknown = true
                            log.add(
                                "numpy.bad-shape", "a field shape entry is not a non-negative integer",
                                offset: headerStart,
                                ("field", field.rendered))
                            break
                        }
                        let (p, o) = count.multipliedReportingOverflow(by: n)
                        if o { info.overflow = true } else { count = p }
                    }
                }
                measure(parts[1], &info, multiplier: count, depth: depth + 1, log: &log, headerStart: headerStart)
            }
        default:
            info.unknown = true
            log.add(
                "numpy.unknown-descr", "descr is neither a type string nor a list of fields", offset: headerStart,
                ("descr", descr.rendered))
        }
    }

    enum SimpleSize: Equatable {
        case size(Int)
        case object
        case unknown
    }

    /// The item size of a type string as `dtype.str` writes it: an optional byte order (`<`, `>`, `|`, `=`), a kind
    /// and a size (`<f4`, `|b1`, `<U10`, `|S3`, `|V8`, `<M8[ns]`, `|O`).
    static func simpleItemSize(_ text: String) -> SimpleSize {
        var chars = Array(text.utf8)
        if let f = chars.first,
            [UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "|"), UInt8(ascii: "=")].contains(f)
        {
            chars.removeFirst()
        }
        guard let kind = chars.first else { return .unknown }
        var rest = Array(chars.dropFirst())
        if kind == UInt8(ascii: "M") || kind == UInt8(ascii: "m") {
            // Datetime units: `M8`, `M8[ns]`, `M8[25s]`.
            if let open = rest.firstIndex(of: UInt8(ascii: "[")) {
                guard rest.last == UInt8(ascii: "]"), open + 2 <= rest.count - 1 else { return .unknown }
                let unit = rest[(open + 1)..<(rest.count - 1)]
                guard unit.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x41 }) else {
                    return .unknown
                }
                rest = Array(rest[..<open])
            }
            return rest == [UInt8(ascii: "8")] ? .size(8) : .unknown
        }
        let digits = String(decoding: rest, as: UTF8.self)
        guard rest.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return .unknown }
        if kind == UInt8(ascii: "O") { return rest.isEmpty || digits == "8" || digits == "4" ? .object : .unknown }
        if kind == UInt8(ascii: "?") { return rest.isEmpty ? .size(1) : .unknown }
        guard !rest.isEmpty, rest.count <= 18, let n = Int(digits) else { return .unknown }
        switch kind {
        case UInt8(ascii: "b"): return n == 1 ? .size(1) : .unknown
        case UInt8(ascii: "i"), UInt8(ascii: "u"): return [1, 2, 4, 8].contains(n) ? .size(n) : .unknown
        case UInt8(ascii: "f"): return [2, 4, 8, 12, 16].contains(n) ? .size(n) : .unknown
        case UInt8(ascii: "c"): return [8, 16, 24, 32].contains(n) ? .size(n) : .unknown
        case UInt8(ascii: "S"), UInt8(ascii: "a"), UInt8(ascii: "V"): return .size(n)
        case UInt8(ascii: "U"):
            let (p, o) = n.multipliedReportingOverflow(by: 4)
            return o ? .unknown : .size(p)
        default: return .unknown
        }
    }

}
