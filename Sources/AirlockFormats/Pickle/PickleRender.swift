#if canImport(Glibc)
    import Glibc
#endif

/// A bounded output buffer for rendering.
struct RenderOut {
    var bytes: [UInt8] = []
    let cap: Int
    var truncated = false

    init(cap: Int) {
        self.cap = cap
        bytes.reserveCapacity(Swift.min(cap, 64))
    }

    var full: Bool { bytes.count >= cap }

    mutating func put(_ b: UInt8) {
        if bytes.count < cap { bytes.append(b) } else { truncated = true }
    }

    mutating func put(_ s: String) {
        for b in s.utf8 { put(b) }
    }

    func finish() -> String {
        String(decoding: bytes, as: UTF8.self) + (truncated ? "..." : "")
    }
}

/// Rendering of symbolic values as short Python-like literals. Recursion is bounded by `renderDepth`, a constant.
extension PickleMachine {
    static let renderCap = 200
    static let renderDepth = 4

    func render(_ v: PVal, _ p: UnsafeRawBufferPointer) -> String {
        var out = RenderOut(cap: PickleMachine.renderCap)
        renderValue(v, p, level: 0, &out)
        return out.finish()
    }

    /// NEWOBJ_EX keyword arguments as `name=value`.
    func renderKeywords(_ kw: PVal, _ p: UnsafeRawBufferPointer) -> [String] {
        guard let ci = containerIndex(kw), containers[ci].kind == .dict else { return ["**" + render(kw, p)] }
        let kids = Array(children(ci))
        var out: [String] = []
        var i = 0
        while i + 1 < kids.count {
            let key = stringValue(kids[i], p) ?? render(kids[i], p)
            out.append(key + "=" + render(kids[i + 1], p))
            i += 2
        }
        if containers[ci].count > kids.count / 2 { out.append("...") }
        return out
    }

    func renderValue(_ v: PVal, _ p: UnsafeRawBufferPointer, level: Int, _ out: inout RenderOut) {
        if out.full {
            out.truncated = true
            return
        }
        switch v.tag {
        case .unknown:
            out.put("<unknown>")
        case .const:
            switch PVal.Const(rawValue: v.payload) {
            case .none?: out.put("None")
            case .falseValue?: out.put("False")
            case .trueValue?: out.put("True")
            case .persistent?: out.put("<persistent>")
            case .buffer?: out.put("<buffer>")
            case nil: out.put("<unknown>")
            }
        case .int:
            out.put(String(v.intValue))
        case .bigInt:
            if let i = v.index, i < bigInts.count { out.put(String(bigInts[i])) } else { out.put("<int>") }
        case .float:
            out.put(PickleMachine.formatDouble(v.floatValue))
        case .strSpan, .bytesSpan, .bytearraySpan:
            let o = v.spanOffset
            let l = Swift.min(v.spanLength, PickleMachine.renderCap + 1)
            guard o >= 0, o <= p.count, l <= p.count - o else {
                out.put("<unknown>")
                return
            }
            let content = UnsafeRawBufferPointer(rebasing: p[o..<o + l])
            let truncated = v.spanLength > l
            switch v.tag {
            case .strSpan: PickleMachine.putStr(content, truncated, &out)
            case .bytesSpan: PickleMachine.putBytes(content, truncated, &out)
            default:
                out.put("bytearray(")
                PickleMachine.putBytes(content, truncated, &out)
                out.put(")")
            }
        case .strOwned, .bytesOwned:
            guard let i = v.index, i < owned.count else {
                out.put("<unknown>")
                return
            }
            owned[i].withUnsafeBytes {
                if v.tag == .strOwned {
                    PickleMachine.putStr($0, false, &out)
                } else {
                    PickleMachine.putBytes($0, false, &out)
                }
            }
        case .callable:
            out.put(name(v.payload) ?? "<unknown>")
        case .module:
            out.put("<module '" + (name(v.payload) ?? "?") + "'>")
        case .callResult, .instance:
            if let n = name(v.payload) { out.put(n + "(...)") } else { out.put("<unknown>") }
        case .container:
            renderContainer(v, p, level: level, &out)
        case .object:
            if let i = objectIndex(v), let n = name(objects[i].cls) {
                out.put(n + "(...)")
            } else {
                out.put("<unknown>")
            }
        }
    }

    func renderContainer(_ v: PVal, _ p: UnsafeRawBufferPointer, level: Int, _ out: inout RenderOut) {
        let kind: PKind
        var kids: ArraySlice<PVal> = []
        var count = -1
        if let ci = containerIndex(v) {
            kind = containers[ci].kind
            kids = children(ci)
            count = containers[ci].count
        } else {
            kind = PKind(rawValue: UInt8(truncatingIfNeeded: v.payload & 0xFF)) ?? .list
        }
        let (open, close): (String, String)
        switch kind {
        case .list: (open, close) = ("[", "]")
        case .tuple: (open, close) = ("(", ")")
        case .dict: (open, close) = ("{", "}")
        case .set:
            if count == 0 {
                out.put("set()")
                return
            }
            (open, close) = ("{", "}")
        case .frozenset:
            if count == 0 {
                out.put("frozenset()")
                return
            }
            (open, close) = ("frozenset({", "})")
        }
        out.put(open)
        if level >= PickleMachine.renderDepth || count < 0 {
            if count != 0 { out.put("...") }
            out.put(close)
            return
        }
        var shown = 0
        if kind == .dict {
            var i = kids.startIndex
            while i + 1 < kids.endIndex {
                if shown > 0 { out.put(", ") }
                renderValue(kids[i], p, level: level + 1, &out)
                out.put(": ")
                renderValue(kids[i + 1], p, level: level + 1, &out)
                shown += 1
                i += 2
            }
        } else {
            for k in kids {
                if shown > 0 { out.put(", ") }
                renderValue(k, p, level: level + 1, &out)
                shown += 1
            }
        }
        if count > shown { out.put(shown > 0 ? ", ..." : "...") }
        if kind == .tuple && count == 1 && shown == 1 { out.put(",") }
        out.put(close)
    }

    /// Python's `repr` of a str (prefix `content`).
    static func putStr(_ content: UnsafeRawBufferPointer, _ truncated: Bool, _ out: inout RenderOut) {
        putQuoted(content, truncated, bytes: false, &out)
    }

    /// Python's `repr` of bytes (prefix `content`).
    static func putBytes(_ content: UnsafeRawBufferPointer, _ truncated: Bool, _ out: inout RenderOut) {
        putQuoted(content, truncated, bytes: true, &out)
    }

    /// The quoting both share; bytes escape everything outside printable ASCII, str only control characters.
    private static func putQuoted(
        _ content: UnsafeRawBufferPointer, _ truncated: Bool, bytes: Bool, _ out: inout RenderOut
    ) {
        let hasSingle = content.contains(0x27)
        let hasDouble = content.contains(0x22)
        let quote: UInt8 = hasSingle && !hasDouble ? 0x22 : 0x27
        if bytes { out.put("b") }
        out.put(quote)
        for c in content {
            if out.full { break }
            switch c {
            case 0x5C: out.put("\\\\")
            case quote:
                out.put(0x5C)
                out.put(c)
            case 0x0A: out.put("\\n")
            case 0x0D: out.put("\\r")
            case 0x09: out.put("\\t")
            case 0..<0x20, 0x7F: out.put("\\x" + Op.hex2(c))
            case 0x80...0xFF where bytes: out.put("\\x" + Op.hex2(c))
            default: out.put(c)
            }
        }
        if truncated { out.truncated = true }
        out.put(quote)
    }

    /// Python-like `repr` of a float: 15 significant digits (the machine keeps 48 bits of mantissa).
    static func formatDouble(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        var s = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 48) { buf -> String in
            guard let base = buf.baseAddress else { return "0" }
            _ = withVaList([d]) { vsnprintf(base, 48, "%.15g", $0) }
            return String(cString: base)
        }
        if s.allSatisfy({ $0 == "-" || ("0"..."9").contains($0) }) { s += ".0" }
        return s
    }
}
