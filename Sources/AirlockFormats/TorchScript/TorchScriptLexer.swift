/// Tokens of TorchScript source, enough to read dotted names, strings and numbers: whitespace, comments and line
/// continuations are skipped, so nothing placed between the parts of a name hides it.
struct TorchScriptLexer {
    enum Token {
        case identifier(String)
        case dot
        /// A string literal's content (at most `maxString` bytes kept), escapes left as written.
        case string(String)
        /// An integer literal, saturated at `UInt64.max`.
        case number(UInt64)
        case other(UInt8)
    }

    static let maxString = 4_096
    static let maxIdentifier = 256

    let view: ByteView
    private var offset = 0
    /// The current line, from 1.
    private(set) var line = 1
    /// Whether the last token was the first on its line.
    private(set) var tokenStartedLine = false
    /// Whether the text stopped early: a NUL byte or a string that never closes.
    private(set) var truncated = false
    private var lineHasToken = false

    init(_ view: ByteView) { self.view = view }

    private func byte(_ at: Int) -> UInt8? { view.byte(at: at) }

    static func isIdentifier(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x30 && b <= 0x39) || b == 0x5F || b >= 0x80
    }

    /// The next token and the line it starts on; nil at the end.
    mutating func next() -> (Token, Int)? {
        while let b = byte(offset) {
            switch b {
            case 0:
                truncated = true
                offset = view.count
                return nil
            case 0x0A:
                line += 1
                lineHasToken = false
                offset += 1
            case 0x20, 0x09, 0x0D, 0x0C:
                offset += 1
            case UInt8(ascii: "\\") where byte(offset + 1) == 0x0A || byte(offset + 1) == 0x0D:
                offset += 1  // a continuation: the newline is skipped as whitespace, the line counted
            case UInt8(ascii: "#"):
                while let c = byte(offset), c != 0x0A { offset += 1 }
            default:
                tokenStartedLine = !lineHasToken
                lineHasToken = true
                let start = line
                return (token(b), start)
            }
        }
        return nil
    }

    private mutating func token(_ b: UInt8) -> Token {
        if b == UInt8(ascii: ".") && !(byte(offset + 1).map { $0 >= 0x30 && $0 <= 0x39 } ?? false) {
            offset += 1
            return .dot
        }
        if b == UInt8(ascii: "\"") || b == UInt8(ascii: "'") { return string(b) }
        if b >= 0x30 && b <= 0x39 { return number() }
        if Self.isIdentifier(b) {
            var bytes: [UInt8] = []
            while let c = byte(offset), Self.isIdentifier(c) {
                if bytes.count < Self.maxIdentifier { bytes.append(c) }
                offset += 1
            }
            return .identifier(String(decoding: bytes, as: UTF8.self))
        }
        offset += 1
        return .other(b)
    }

    private mutating func string(_ quote: UInt8) -> Token {
        let triple = byte(offset + 1) == quote && byte(offset + 2) == quote
        offset += triple ? 3 : 1
        var content: [UInt8] = []
        while let c = byte(offset) {
            if c == UInt8(ascii: "\\") {
                if content.count < Self.maxString { content.append(c) }
                if byte(offset + 1) == 0x0A { line += 1 }
                offset += 2
                continue
            }
            if c == quote && (!triple || (byte(offset + 1) == quote && byte(offset + 2) == quote)) {
                offset += triple ? 3 : 1
                return .string(String(decoding: content, as: UTF8.self))
            }
            if c == 0x0A {
                guard triple else { break }
                line += 1
            }
            if c == 0 { break }
            if content.count < Self.maxString { content.append(c) }
            offset += 1
        }
        truncated = true
        offset = view.count
        return .string(String(decoding: content, as: UTF8.self))
    }

    private mutating func number() -> Token {
        var value: UInt64 = 0
        var radix: UInt64 = 10
        var digits = 0
        if byte(offset) == UInt8(ascii: "0"), let x = byte(offset + 1), x == UInt8(ascii: "x") || x == UInt8(ascii: "X")
        {
            radix = 16
            offset += 2
        }
        var valid = true
        while let c = byte(offset), Self.isIdentifier(c) || c == UInt8(ascii: ".") {
            offset += 1
            if c == UInt8(ascii: "_") { continue }
            let d: UInt64
            switch c {
            case 0x30...0x39: d = UInt64(c - 0x30)
            case 0x61...0x66 where radix == 16: d = UInt64(c - 0x61 + 10)
            case 0x41...0x46 where radix == 16: d = UInt64(c - 0x41 + 10)
            default:
                valid = false
                continue
            }
            digits += 1
            let (m, o1) = value.multipliedReportingOverflow(by: radix)
            let (a, o2) = m.addingReportingOverflow(d)
            value = o1 || o2 ? UInt64.max : a
        }
        return valid && digits > 0 ? .number(value) : .other(UInt8(ascii: "0"))
    }
}
