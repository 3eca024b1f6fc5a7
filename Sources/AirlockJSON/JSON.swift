public import AirlockSystem

/// A small, strict JSON parser (RFC 8259) with hard bounds on nesting, and a writer.
///
/// Used for sandbox profiles, model-file headers (safetensors, NumPy, Keras) and every report Airlock prints.
/// `JSONDecoder` and `Codable` cost about a millisecond of the Swift runtime's protocol-conformance lookups at
/// start-up, most of the CLI's budget, and a parser for hostile headers must have bounds of its own. Duplicate keys
/// are an error: which one wins is otherwise up to the reader, and a document must mean one thing.
public enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    /// A number, kept as its literal text so 64-bit integers stay exact.
    case number(String)
    case string(String)
    case array([JSON])
    /// Members in document order.
    case object([(String, JSON)])

    public static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.number(let x), .number(let y)): x == y
        case (.string(let x), .string(let y)): x == y
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)):
            x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    /// Why a document is not acceptable JSON, with the byte offset.
    public struct SyntaxError: AirlockError {
        /// Byte offset of the problem.
        public let offset: Int
        /// What is wrong.
        public let reason: String
        public var code: String { "malformed" }
        public var description: String { "not valid JSON at byte \(offset): \(reason)" }
    }

    /// Which JSON a parse accepts.
    public enum Dialect: Sendable {
        /// RFC 8259, duplicate keys refused.
        case strict
        /// What Python's `json.loads` accepts, for files that Python loaders read (Keras configs, Hugging Face
        /// configs): `NaN`, `Infinity` and `-Infinity` as numbers (kept as that text), duplicate keys with the last
        /// value winning (at the first key's place, as in a `dict`), lone surrogate escapes (kept as U+FFFD), and
        /// bytes in UTF-16 or UTF-32 or with a UTF-8 byte-order mark (`json.loads` of `bytes` detects them).
        case python
    }

    /// Values parsed between two calls of a parse's `stop`.
    public static let stopInterval = 4096

    /// Parses `bytes` as one JSON value. Nesting deeper than `maxDepth` is refused. `stop`, when given, is asked
    /// every `stopInterval` values (and before the first); once it answers true the parse fails ("stopped"): the
    /// caller's deadline passed.
    public static func parse(
        _ bytes: [UInt8], maxDepth: Int = 64, dialect: Dialect = .strict, stop: (() -> Bool)? = nil
    ) throws(SyntaxError) -> JSON {
        if let stop, stop() { throw SyntaxError(offset: 0, reason: "stopped before the parse began") }
        let bytes = dialect == .python ? pythonDecoded(bytes, stop: stop) : bytes
        if let stop, bytes.count > 1 << 20, stop() {
            throw SyntaxError(offset: 0, reason: "stopped: the deadline passed")
        }
        var parser = JSONParser(bytes: bytes, maxDepth: maxDepth, python: dialect == .python)
        parser.stop = stop
        parser.skipSpace()
        let value = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.at == bytes.count else {
            throw SyntaxError(offset: parser.at, reason: "unexpected data after the value")
        }
        return value
    }

    /// `bytes` as UTF-8, transcoded the way Python's `json.detect_encoding` reads `bytes` given to `json.loads`:
    /// a UTF-8 byte-order mark is dropped; UTF-16 and UTF-32 (by their mark, or by the zero bytes around the first
    /// characters) are transcoded. Bytes that do not transcode are returned as they are (the parse then fails).
    static func pythonDecoded(_ b: [UInt8], stop: (() -> Bool)? = nil) -> [UInt8] {
        if b.starts(with: [0xEF, 0xBB, 0xBF]) { return Array(b.dropFirst(3)) }
        let n = b.count
        var unit = 0
        var big = false
        var skip = 0
        if b.starts(with: [0xFF, 0xFE, 0, 0]) || b.starts(with: [0, 0, 0xFE, 0xFF]) {
            (unit, big, skip) = (4, b[0] == 0, 4)
        } else if b.starts(with: [0xFF, 0xFE]) || b.starts(with: [0xFE, 0xFF]) {
            (unit, big, skip) = (2, b[0] == 0xFE, 2)
        } else if n >= 4 && b[0] == 0 && b[1] == 0 {
            (unit, big) = (4, true)
        } else if n >= 4 && b[0] == 0 {
            (unit, big) = (2, true)
        } else if n >= 4 && b[1] == 0 && b[2] == 0 && b[3] == 0 {
            (unit, big) = (4, false)
        } else if n >= 2 && b[1] == 0 {
            (unit, big) = (2, false)
        } else {
            return b
        }
        var out: [UInt8] = []
        out.reserveCapacity(n / unit)
        var i = skip
        var units: [UInt16] = []
        if unit == 2 {
            units.reserveCapacity(n / 2)
            while i + 1 < n {
                // A transcoding `stop` ends early returns the bytes as they are (the caller asks `stop` again).
                if i & 0x1FFFFF == 0, let stop, stop() { return b }
                units.append(big ? UInt16(b[i]) << 8 | UInt16(b[i + 1]) : UInt16(b[i + 1]) << 8 | UInt16(b[i]))
                i += 2
            }
            guard i == n else { return b }
            var it = units.makeIterator()
            var decoder = UTF16()
            var decoded = 0
            loop: while true {
                decoded &+= 1
                if decoded & 0xFFFFF == 0, let stop, stop() { return b }
                switch decoder.decode(&it) {
                case .scalarValue(let u): UTF8.encode(u) { out.append($0) }
                case .emptyInput: break loop
                case .error: UTF8.encode("\u{FFFD}") { out.append($0) }
                }
            }
            return out
        }
        while i + 3 < n {
            if i & 0x3FFFFF == 0, let stop, stop() { return b }
            let v =
                big
                ? UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
                : UInt32(b[i + 3]) << 24 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 1]) << 8 | UInt32(b[i])
            guard let u = Unicode.Scalar(v) else { return b }
            UTF8.encode(u) { out.append($0) }
            i += 4
        }
        return i == n ? out : b
    }
}

private struct JSONParser {
    let bytes: [UInt8]
    let maxDepth: Int
    /// Python's `json` dialect (`JSON.Dialect.python`).
    let python: Bool
    var at = 0
    /// Asked every `JSON.stopInterval` values (`JSON.parse`).
    var stop: (() -> Bool)?
    var values = 0

    init(bytes: [UInt8], maxDepth: Int, python: Bool) {
        self.bytes = bytes
        self.maxDepth = maxDepth
        self.python = python
    }

    func fail(_ reason: String) -> JSON.SyntaxError { JSON.SyntaxError(offset: at, reason: reason) }

    mutating func skipSpace() {
        while at < bytes.count, bytes[at] == 0x20 || bytes[at] == 0x0A || bytes[at] == 0x0D || bytes[at] == 0x09 {
            at += 1
        }
    }

    mutating func expect(_ literal: StaticString, _ value: JSON) throws(JSON.SyntaxError) -> JSON {
        let count = literal.utf8CodeUnitCount
        guard at + count <= bytes.count else { throw fail("truncated literal") }
        let start = literal.utf8Start
        for i in 0..<count where bytes[at + i] != start[i] { throw fail("unknown literal") }
        at += count
        return value
    }

    mutating func value(depth: Int) throws(JSON.SyntaxError) -> JSON {
        guard depth < maxDepth else { throw fail("nested deeper than \(maxDepth) levels") }
        values &+= 1
        if values % JSON.stopInterval == 0, let stop, stop() { throw fail("stopped: the deadline passed") }
        guard at < bytes.count else { throw fail("unexpected end of input") }
        switch bytes[at] {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "N") where python: return try expect("NaN", .number("NaN"))
        case UInt8(ascii: "I") where python: return try expect("Infinity", .number("Infinity"))
        case UInt8(ascii: "-") where python && at + 1 < bytes.count && bytes[at + 1] == UInt8(ascii: "I"):
            return try expect("-Infinity", .number("-Infinity"))
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw fail("unexpected character")
        }
    }

    mutating func object(depth: Int) throws(JSON.SyntaxError) -> JSON {
        at += 1
        var members: [(String, JSON)] = []
        // Key → index in `members`.
        var seen: [String: Int] = [:]
        skipSpace()
        if at < bytes.count && bytes[at] == UInt8(ascii: "}") {
            at += 1
            return .object(members)
        }
        while true {
            skipSpace()
            guard at < bytes.count, bytes[at] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let keyOffset = at
            let key = try string()
            let earlier = seen[key]
            if earlier != nil && !python {
                throw JSON.SyntaxError(offset: keyOffset, reason: "duplicate key \"\(key)\"")
            }
            skipSpace()
            guard at < bytes.count, bytes[at] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            at += 1
            skipSpace()
            let v = try value(depth: depth + 1)
            if let earlier {
                members[earlier].1 = v
            } else {
                seen[key] = members.count
                members.append((key, v))
            }
            skipSpace()
            guard at < bytes.count else { throw fail("unexpected end of input in an object") }
            if bytes[at] == UInt8(ascii: ",") {
                at += 1
                continue
            }
            guard bytes[at] == UInt8(ascii: "}") else { throw fail("expected ',' or '}'") }
            at += 1
            return .object(members)
        }
    }

    mutating func array(depth: Int) throws(JSON.SyntaxError) -> JSON {
        at += 1
        var items: [JSON] = []
        skipSpace()
        if at < bytes.count && bytes[at] == UInt8(ascii: "]") {
            at += 1
            return .array(items)
        }
        while true {
            skipSpace()
            items.append(try value(depth: depth + 1))
            skipSpace()
            guard at < bytes.count else { throw fail("unexpected end of input in an array") }
            if bytes[at] == UInt8(ascii: ",") {
                at += 1
                continue
            }
            guard bytes[at] == UInt8(ascii: "]") else { throw fail("expected ',' or ']'") }
            at += 1
            return .array(items)
        }
    }

    mutating func number() throws(JSON.SyntaxError) -> JSON {
        let start = at
        if bytes[at] == UInt8(ascii: "-") { at += 1 }
        func digits(_ p: inout JSONParser) -> Int {
            let s = p.at
            while p.at < p.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(p.bytes[p.at]) { p.at += 1 }
            return p.at - s
        }
        guard at < bytes.count else { throw fail("truncated number") }
        if bytes[at] == UInt8(ascii: "0") {
            at += 1
        } else if digits(&self) == 0 {
            throw fail("expected a digit")
        }
        if at < bytes.count && bytes[at] == UInt8(ascii: ".") {
            at += 1
            guard digits(&self) > 0 else { throw fail("expected a digit after '.'") }
        }
        if at < bytes.count && (bytes[at] == UInt8(ascii: "e") || bytes[at] == UInt8(ascii: "E")) {
            at += 1
            if at < bytes.count && (bytes[at] == UInt8(ascii: "+") || bytes[at] == UInt8(ascii: "-")) { at += 1 }
            guard digits(&self) > 0 else { throw fail("expected a digit in the exponent") }
        }
        return .number(String(decoding: bytes[start..<at], as: UTF8.self))
    }

    mutating func string() throws(JSON.SyntaxError) -> String {
        at += 1
        // Most strings have no escape: they are the bytes up to the quote, validated and copied once.
        let start = at
        // In chunks of 1 MiB, `stop` asked between them: one string may be most of a large file.
        while true {
            let chunkEnd = min(bytes.count, at + (1 << 20))
            while at < chunkEnd, bytes[at] != UInt8(ascii: "\""), bytes[at] != UInt8(ascii: "\\"), bytes[at] >= 0x20 {
                at += 1
            }
            guard at == chunkEnd, at < bytes.count else { break }
            if let stop, stop() { throw fail("stopped: the deadline passed") }
        }
        if at < bytes.count, bytes[at] == UInt8(ascii: "\"") {
            at += 1
            guard let s = String(validating: bytes[start..<(at - 1)], as: UTF8.self) else {
                throw fail("string is not valid UTF-8")
            }
            return s
        }
        var out = Array(bytes[start..<at])
        var steps = 0
        while true {
            guard at < bytes.count else { throw fail("unterminated string") }
            steps &+= 1
            if steps & 0xFFFFF == 0, let stop, stop() { throw fail("stopped: the deadline passed") }
            let c = bytes[at]
            if c == UInt8(ascii: "\"") {
                at += 1
                break
            }
            if c < 0x20 { throw fail("control character in a string") }
            if c != UInt8(ascii: "\\") {
                out.append(c)
                at += 1
                continue
            }
            at += 1
            guard at < bytes.count else { throw fail("unterminated escape") }
            let e = bytes[at]
            at += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800...0xDBFF).contains(scalar) {
                    let paired =
                        at + 1 < bytes.count && bytes[at] == UInt8(ascii: "\\") && bytes[at + 1] == UInt8(ascii: "u")
                    let mark = at
                    var low: UInt32 = 0
                    if paired {
                        at += 2
                        low = try hex4()
                    }
                    if paired && (0xDC00...0xDFFF).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if python {
                        // Python keeps the lone surrogate in its str; what follows is read on its own.
                        at = mark
                        scalar = 0xFFFD
                    } else {
                        throw fail("unpaired surrogate")
                    }
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    guard python else { throw fail("unpaired surrogate") }
                    scalar = 0xFFFD
                }
                guard let u = Unicode.Scalar(scalar) else { throw fail("invalid code point") }
                out.append(contentsOf: Array(String(Character(u)).utf8))
            default:
                throw fail("unknown escape")
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
        return s
    }

    mutating func hex4() throws(JSON.SyntaxError) -> UInt32 {
        guard at + 4 <= bytes.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[at]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("bad hex digit in \\u escape")
            }
            v = v << 4 | d
            at += 1
        }
        return v
    }
}

extension JSON {
    /// Compact JSON text, members in the order given, strings escaped as RFC 8259 requires (and `/` left alone).
    public func serialized() -> String {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Indented JSON text (two spaces per level, one member or item per line) for documents people read and review,
    /// such as manifests; arrays of scalars stay on one line.
    public func pretty() -> String {
        var out: [UInt8] = []
        writePretty(into: &out, indent: 0)
        out.append(UInt8(ascii: "\n"))
        return String(decoding: out, as: UTF8.self)
    }

    private func writePretty(into out: inout [UInt8], indent: Int) {
        func newline(_ level: Int) {
            out.append(UInt8(ascii: "\n"))
            out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: level * 2))
        }
        switch self {
        case .array(let items) where !items.isEmpty && items.contains(where: { $0.isContainer }):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(indent + 1)
                item.writePretty(into: &out, indent: indent + 1)
            }
            newline(indent)
            out.append(UInt8(ascii: "]"))
        case .object(let members) where !members.isEmpty:
            out.append(UInt8(ascii: "{"))
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                newline(indent + 1)
                JSON.writeString(key, into: &out)
                out.append(contentsOf: ": ".utf8)
                value.writePretty(into: &out, indent: indent + 1)
            }
            newline(indent)
            out.append(UInt8(ascii: "}"))
        default:
            write(into: &out)
        }
    }

    private var isContainer: Bool {
        switch self {
        case .array, .object: true
        default: false
        }
    }

    private func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let n): out.append(contentsOf: n.utf8)
        case .string(let s): JSON.writeString(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSON.writeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                value.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func writeString(_ s: String, into out: inout [UInt8]) {
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20, 0x7F:
                out.append(contentsOf: Array("\\u00".utf8))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// The number of bytes `serialized()` writes, counted without writing them: what a budget on encoded reports
    /// and replies needs, where control bytes grow six-fold (`\u0001`).
    public var serializedCount: Int {
        switch self {
        case .null: return 4
        case .bool(let b): return b ? 4 : 5
        case .number(let n): return n.utf8.count
        case .string(let s): return JSON.serializedCount(of: s)
        case .array(let items):
            var n = 2 + max(0, items.count - 1)
            for item in items { n += item.serializedCount }
            return n
        case .object(let members):
            var n = 2 + max(0, members.count - 1)
            for (key, value) in members { n += JSON.serializedCount(of: key) + 1 + value.serializedCount }
            return n
        }
    }

    /// The bytes `s` takes as a JSON string, quotes included.
    public static func serializedCount(of s: String) -> Int {
        var n = 2
        for byte in s.utf8 { n += serializedCount(of: byte) }
        return n
    }

    /// The bytes one UTF-8 code unit takes inside a JSON string.
    @inline(__always)
    public static func serializedCount(of byte: UInt8) -> Int {
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x0A, 0x0D, 0x09: 2
        case 0..<0x20, 0x7F: 6
        default: 1
        }
    }

    /// Compact JSON text as UTF-8 bytes, written once (no intermediate `String`): for replies and files that may be
    /// megabytes long.
    public func serializedBytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(serializedCount)
        write(into: &out)
        return out
    }

    /// Appends the compact JSON text to `out` (what `serialized()` returns, as bytes).
    public func serialize(into out: inout [UInt8]) {
        write(into: &out)
    }

    /// A number value from an integer.
    public static func int<T: BinaryInteger>(_ v: T) -> JSON { .number(String(v)) }

    /// A number value from a finite double (non-finite values become null).
    public static func double(_ v: Double) -> JSON { v.isFinite ? .number(String(v)) : .null }

    /// A string value, or null.
    public static func optional(_ s: String?) -> JSON { s.map(JSON.string) ?? .null }
}
