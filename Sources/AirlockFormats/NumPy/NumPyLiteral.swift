/// A value of the Python literal subset found in `.npy` headers: strings, integers, True/False/None, tuples, lists
/// and dicts. Parsed without evaluating anything, with an explicit stack (nesting is bounded, never recursion).
enum NumPyLiteral: Equatable {
    case string(String)
    case int(Int)
    case bool(Bool)
    case none
    case tuple([NumPyLiteral])
    case list([NumPyLiteral])
    /// Pairs in source order; duplicates kept (Python keeps the last).
    case dict([(NumPyLiteral, NumPyLiteral)])

    static func == (a: NumPyLiteral, b: NumPyLiteral) -> Bool {
        switch (a, b) {
        case (.string(let x), .string(let y)): x == y
        case (.int(let x), .int(let y)): x == y
        case (.bool(let x), .bool(let y)): x == y
        case (.none, .none): true
        case (.tuple(let x), .tuple(let y)), (.list(let x), .list(let y)): x == y
        case (.dict(let x), .dict(let y)): x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    /// A short Python-like rendering, for evidence.
    var rendered: String {
        switch self {
        case .string(let s): "'\(s)'"
        case .int(let i): String(i)
        case .bool(let b): b ? "True" : "False"
        case .none: "None"
        case .tuple(let items): "(" + items.map(\.rendered).joined(separator: ", ") + (items.count == 1 ? ",)" : ")")
        case .list(let items): "[" + items.map(\.rendered).joined(separator: ", ") + "]"
        case .dict(let pairs): "{" + pairs.map { "\($0.0.rendered): \($0.1.rendered)" }.joined(separator: ", ") + "}"
        }
    }

    struct SyntaxError: Error {
        var offset: Int
        var reason: String
    }

    /// Parses one literal filling `bytes` (surrounding whitespace allowed). `latin1` decodes string bytes as
    /// Latin-1 (format versions 1 and 2), otherwise as UTF-8 (version 3). `longSuffix` accepts Python 2's `3L`.
    static func parse(_ bytes: [UInt8], maxDepth: Int, latin1: Bool, longSuffix: Bool) throws(SyntaxError)
        -> NumPyLiteral
    {
        var p = LiteralParser(bytes: bytes, latin1: latin1, longSuffix: longSuffix)
        return try p.run(maxDepth: maxDepth)
    }
}

private struct LiteralParser {
    let bytes: [UInt8]
    let latin1: Bool
    let longSuffix: Bool
    var at = 0

    enum Token: Equatable {
        case open(UInt8)  // ( [ {
        case close(UInt8)  // ) ] }
        case comma
        case colon
        case value(NumPyLiteral)
        case end
    }

    struct Frame {
        var opener: UInt8
        var items: [NumPyLiteral] = []
        var keys: [NumPyLiteral] = []
        var pendingKey: NumPyLiteral?
        var sawComma = false
    }

    init(bytes: [UInt8], latin1: Bool, longSuffix: Bool) {
        self.bytes = bytes
        self.latin1 = latin1
        self.longSuffix = longSuffix
    }

    func fail(_ reason: String, _ offset: Int? = nil) -> NumPyLiteral.SyntaxError {
        NumPyLiteral.SyntaxError(offset: offset ?? at, reason: reason)
    }

    mutating func run(maxDepth: Int) throws(NumPyLiteral.SyntaxError) -> NumPyLiteral {
        enum State { case value, valueOrClose, afterItem, colon }
        var stack: [Frame] = []
        var state = State.value
        while true {
            let tokenOffset = skipSpaceOffset()
            let token = try next()
            var produced: NumPyLiteral?
            switch state {
            case .value, .valueOrClose:
                switch token {
                case .open(let c):
                    guard stack.count < maxDepth else {
                        throw fail("nested deeper than \(maxDepth) levels", tokenOffset)
                    }
                    if let top = stack.last, top.opener == UInt8(ascii: "{"), top.pendingKey == nil,
                        c != UInt8(ascii: "(")
                    {
                        throw fail("unhashable dict key", tokenOffset)
                    }
                    stack.append(Frame(opener: c))
                    state = .valueOrClose
                    continue
                case .close(let c):
                    guard state == .valueOrClose, let top = stack.last, matches(top.opener, c), top.pendingKey == nil
                    else {
                        throw fail("unexpected closing bracket", tokenOffset)
                    }
                    produced = close(stack.removeLast())
                case .value(let v):
                    produced = v
                default:
                    throw fail("expected a value", tokenOffset)
                }
            case .colon:
                guard token == .colon else { throw fail("expected ':'", tokenOffset) }
                state = .value
                continue
            case .afterItem:
                guard var top = stack.popLast() else { throw fail("unexpected data after the value", tokenOffset) }
                switch token {
                case .comma:
                    top.sawComma = true
                    stack.append(top)
                    state = .valueOrClose
                    continue
                case .close(let c) where matches(top.opener, c):
                    produced = close(top)
                default:
                    throw fail("expected ',' or a closing bracket", tokenOffset)
                }
            }
            guard let value = produced else { continue }
            guard var top = stack.popLast() else {
                let endOffset = skipSpaceOffset()
                guard endOffset == bytes.count else { throw fail("unexpected data after the value", endOffset) }
                return value
            }
            if top.opener == UInt8(ascii: "{") {
                if let key = top.pendingKey {
                    top.keys.append(key)
                    top.items.append(value)
                    top.pendingKey = nil
                    state = .afterItem
                } else {
                    if case .list = value { throw fail("unhashable dict key", tokenOffset) }
                    if case .dict = value { throw fail("unhashable dict key", tokenOffset) }
                    top.pendingKey = value
                    state = .colon
                }
            } else {
                top.items.append(value)
                state = .afterItem
            }
            stack.append(top)
        }
    }

    func matches(_ opener: UInt8, _ closer: UInt8) -> Bool {
        (opener == UInt8(ascii: "(") && closer == UInt8(ascii: ")"))
            || (opener == UInt8(ascii: "[") && closer == UInt8(ascii: "]"))
            || (opener == UInt8(ascii: "{") && closer == UInt8(ascii: "}"))
    }

    func close(_ frame: Frame) -> NumPyLiteral {
        switch frame.opener {
        case UInt8(ascii: "["): return .list(frame.items)
        case UInt8(ascii: "{"): return .dict(Array(zip(frame.keys, frame.items)))
        default: return frame.items.count == 1 && !frame.sawComma ? frame.items[0] : .tuple(frame.items)
        }
    }

    mutating func skipSpaceOffset() -> Int {
        while at < bytes.count, [0x20, 0x09, 0x0A, 0x0D, 0x0C].contains(bytes[at]) { at += 1 }
        return at
    }

    mutating func next() throws(NumPyLiteral.SyntaxError) -> Token {
        _ = skipSpaceOffset()
        guard at < bytes.count else { return .end }
        let c = bytes[at]
        switch c {
        case UInt8(ascii: "("), UInt8(ascii: "["), UInt8(ascii: "{"):
            at += 1
            return .open(c)
        case UInt8(ascii: ")"), UInt8(ascii: "]"), UInt8(ascii: "}"):
            at += 1
            return .close(c)
        case UInt8(ascii: ","):
            at += 1
            return .comma
        case UInt8(ascii: ":"):
            at += 1
            return .colon
        case UInt8(ascii: "'"), UInt8(ascii: "\""):
            return .value(.string(try string()))
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .value(.int(try integer()))
        default:
            for (word, value) in [("True", NumPyLiteral.bool(true)), ("False", .bool(false)), ("None", .none)] {
                let w = Array(word.utf8)
                if at + w.count <= bytes.count, Array(bytes[at..<at + w.count]) == w,
                    at + w.count == bytes.count || !isIdentifier(bytes[at + w.count])
                {
                    at += w.count
                    return .value(value)
                }
            }
            throw fail("unexpected character")
        }
    }

    func isIdentifier(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b >= 0x80
    }

    mutating func integer() throws(NumPyLiteral.SyntaxError) -> Int {
        let start = at
        var negative = false
        if bytes[at] == UInt8(ascii: "-") {
            negative = true
            at += 1
            while at < bytes.count, bytes[at] == 0x20 || bytes[at] == 0x09 { at += 1 }
        }
        var value = 0
        var digits = 0
        while at < bytes.count, bytes[at] >= 0x30, bytes[at] <= 0x39 {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int(bytes[at] - 0x30))
            guard !o1, !o2 else { throw fail("integer too large", start) }
            value = s
            digits += 1
            at += 1
        }
        guard digits > 0 else { throw fail("expected a digit") }
        // Python 3 refuses leading zeros in a decimal literal other than 0 itself.
        if digits > 1, bytes[at - digits] == UInt8(ascii: "0") { throw fail("leading zero in an integer", start) }
        if longSuffix, at < bytes.count, bytes[at] == UInt8(ascii: "L") { at += 1 }
        if at < bytes.count, isIdentifier(bytes[at]) || bytes[at] == UInt8(ascii: ".") {
            throw fail("not an integer literal", start)
        }
        return negative ? -value : value
    }

    mutating func string() throws(NumPyLiteral.SyntaxError) -> String {
        let quote = bytes[at]
        let start = at
        at += 1
        var scalars = String.UnicodeScalarView()
        var raw: [UInt8] = []  // UTF-8 bytes not yet decoded (version 3)
        func flush(_ raw: inout [UInt8], into scalars: inout String.UnicodeScalarView) -> Bool {
            guard !raw.isEmpty else { return true }
            guard let s = String(validating: raw, as: UTF8.self) else { return false }
            scalars.append(contentsOf: s.unicodeScalars)
            raw.removeAll()
            return true
        }
        while true {
            guard at < bytes.count else { throw fail("unterminated string", start) }
            let c = bytes[at]
            if c == quote {
                at += 1
                break
            }
            if c == 0x0A || c == 0x0D { throw fail("newline in a string") }
            if c != UInt8(ascii: "\\") {
                if latin1 {
                    scalars.append(Unicode.Scalar(c))
                } else {
                    raw.append(c)
                }
                at += 1
                continue
            }
            guard flush(&raw, into: &scalars) else { throw fail("string is not valid UTF-8", start) }
            at += 1
            guard at < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[at]
            at += 1
            switch e {
            case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): scalars.append(Unicode.Scalar(e))
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "0"): scalars.append("\u{0}")
            case UInt8(ascii: "x"), UInt8(ascii: "u"), UInt8(ascii: "U"):
                let n = e == UInt8(ascii: "x") ? 2 : e == UInt8(ascii: "u") ? 4 : 8
                var v: UInt32 = 0
                for _ in 0..<n {
                    guard at < bytes.count, let d = hexDigit(bytes[at]) else { throw fail("bad hex escape") }
                    v = v << 4 | d
                    at += 1
                }
                guard let u = Unicode.Scalar(v) else { throw fail("invalid code point") }
                scalars.append(u)
            default:
                throw fail("unsupported escape")
            }
        }
        guard flush(&raw, into: &scalars) else { throw fail("string is not valid UTF-8", start) }
        return String(scalars)
    }

    func hexDigit(_ c: UInt8) -> UInt32? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(c - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(c - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(c - UInt8(ascii: "A") + 10)
        default: nil
        }
    }
}
