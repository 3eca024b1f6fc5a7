/// A file-system name or a relative path (`/`-separated names) exactly as the kernel gave it: bytes, never decoded.
///
/// Linux names are any bytes but `/` and NUL; they need not be UTF-8. Decoding one into a `String` and encoding it
/// again to look the file up loses the difference between `w\xff.pkl` and `w\xef\xbf\xbd.pkl` (the UTF-8 of U+FFFD,
/// which is what the decoder puts in place of `\xff`): two entries, one file examined. So a name read from a
/// directory stays a `FileName` until it is handed back to a system call (`withCString`), and it is equal, hashed and
/// ordered by its bytes: `é` as one code point (NFC) and as `e` + combining accent (NFD) are two names, as they are
/// two files on disk, where a `String` would call them equal.
///
/// Reports and manifests show a name in its *escaped* form (`escaped`), which is lossless and injective: every byte
/// that is not part of valid UTF-8, and every byte of a character that could forge or hide text on a terminal or in
/// a line-based report (C0 and C1 controls, DEL, bidirectional and invisible formatting characters), is written
/// `\xHH` (two upper-case hex digits); a backslash is written `\\`; everything else is the name's own UTF-8.
/// `init(escaped:)` reverses it, and accepts only the one canonical escaped form of each name.
public struct FileName: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The name's bytes, without a terminating NUL.
    public let bytes: [UInt8]

    /// The name made of `bytes`.
    public init(bytes: some Sequence<UInt8>) {
        self.bytes = Array(bytes)
    }

    /// The name whose bytes are the UTF-8 of `text` (a name given on a command line or in a policy).
    public init(_ text: String) {
        bytes = Array(text.utf8)
    }

    /// The name `escaped` denotes, or nil when it is not the canonical escaped form of a name: an unknown escape,
    /// `\x` without two hex digits, a character that should have been escaped, an escape of a byte that should not
    /// have been, or a NUL (no file-system name holds one).
    public init?(escaped: String) {
        var out: [UInt8] = []
        out.reserveCapacity(escaped.utf8.count)
        var it = escaped.utf8.makeIterator()
        while let b = it.next() {
            guard b == 0x5C else {
                out.append(b)
                continue
            }
            switch it.next() {
            case 0x5C?:
                out.append(0x5C)
            case 0x78?:
                guard let h = it.next().flatMap(FileName.hexValue), let l = it.next().flatMap(FileName.hexValue) else {
                    return nil
                }
                out.append(h << 4 | l)
            default:
                return nil
            }
        }
        guard !out.contains(0) else { return nil }
        self.bytes = out
        // One spelling per name: `\x41` for `A`, a raw newline, or lower-case hex would let two different strings
        // stand for the same file (two manifest entries, one file).
        guard self.escaped.utf8.elementsEqual(escaped.utf8) else { return nil }
    }

    /// The escaped form (see the type's documentation): what reports, manifests and messages show.
    public var escaped: String {
        if isPlain { return String(decoding: bytes, as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        FileName.scan(bytes) { range, scalar in
            if let scalar, !FileName.mustEscape(scalar) {
                if scalar == "\\" { out += [0x5C, 0x5C] } else { out += bytes[range] }
            } else {
                for b in bytes[range] { out += [0x5C, 0x78, FileName.hexDigit(b >> 4), FileName.hexDigit(b & 0xF)] }
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The escaped form.
    public var description: String { escaped }

    /// `text` with each control or formatting character (those `escaped` escapes) written as `\xHH` per UTF-8 byte,
    /// and nothing else changed. Not reversible (a backslash stays one): for text that is not a name — a message
    /// quoting what a model holds — about to be printed for people, so it cannot forge lines or terminal output.
    /// Names already escaped pass through unchanged.
    public static func escapingControls(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: mustEscape) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if mustEscape(scalar) {
                for b in String(scalar).utf8 {
                    out += "\\x" + String(decoding: [hexDigit(b >> 4), hexDigit(b & 0xF)], as: UTF8.self)
                }
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Printable ASCII without a backslash: shown as it is, valid and safe (most names; no scan needed).
    private var isPlain: Bool { bytes.allSatisfy { $0 >= 0x20 && $0 < 0x7F && $0 != 0x5C } }

    /// Whether the bytes are valid UTF-8.
    public var isValidUTF8: Bool {
        if isPlain { return true }
        var valid = true
        FileName.scan(bytes) { _, scalar in if scalar == nil { valid = false } }
        return valid
    }

    /// Whether the name holds a control character (a newline, an escape sequence, C1 controls) or a bidirectional
    /// or invisible formatting character: what could make its display forge output or read as another name.
    public var hasUnsafeCharacters: Bool {
        if isPlain { return false }
        var unsafe = false
        FileName.scan(bytes) { _, scalar in if let scalar, FileName.mustEscape(scalar) { unsafe = true } }
        return unsafe
    }

    /// The name decoded with every invalid byte replaced by U+FFFD. Lossy: only for finding names that *look* the
    /// same (`String` equality is Unicode canonical equivalence), never to identify a file.
    public var lookalikeKey: String { String(decoding: bytes, as: UTF8.self) }

    /// The path `self/child`.
    public func appending(_ child: FileName) -> FileName {
        bytes.isEmpty ? child : FileName(bytes: bytes + [0x2F] + child.bytes)
    }

    /// The `/`-separated components, empty ones left out.
    public var components: [FileName] {
        bytes.split(separator: 0x2F, omittingEmptySubsequences: true).map { FileName(bytes: $0) }
    }

    /// The last component (the name itself for a name without `/`).
    public var lastComponent: FileName {
        guard let slash = bytes.lastIndex(of: 0x2F) else { return self }
        return FileName(bytes: bytes[(slash + 1)...])
    }

    /// Whether this path is `other` or lies beneath it (`other` + `/` + more).
    public func isWithin(_ other: FileName) -> Bool {
        guard bytes.count >= other.bytes.count, bytes.starts(with: other.bytes) else { return false }
        return bytes.count == other.bytes.count || bytes[other.bytes.count] == 0x2F
    }

    /// Whether the name starts with `prefix` (compared as UTF-8 bytes).
    public func hasPrefix(_ prefix: String) -> Bool { bytes.starts(with: prefix.utf8) }

    /// The name with `suffix`'s UTF-8 appended (`name.ID`, `name.json`).
    public func appending(suffix: String) -> FileName { FileName(bytes: bytes + Array(suffix.utf8)) }

    /// Whether the name ends with `suffix` (compared as UTF-8 bytes).
    public func hasSuffix(_ suffix: String) -> Bool {
        let s = Array(suffix.utf8)
        return bytes.count >= s.count && bytes[(bytes.count - s.count)...].elementsEqual(s)
    }

    /// Calls `body` with the name as a C string, for a system call. A name holding a NUL cannot be passed as it is
    /// (the kernel would see a shorter, other name): `body` then gets the empty string, which no call resolves
    /// (ENOENT), so such a name fails closed.
    public func withCString<R>(_ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        let terminated = bytes.contains(0) ? [0] : bytes + [0]
        return try terminated.withUnsafeBufferPointer { buffer in
            try buffer.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
        }
    }

    /// Orders by bytes (as `ls` in the C locale does).
    public static func < (a: FileName, b: FileName) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }

    // MARK: - UTF-8

    /// Calls `visit` for each valid UTF-8 sequence (its byte range and scalar) and each byte that starts no valid
    /// sequence (its range, nil), in order. Strict RFC 3629: no overlong forms, surrogates or values past U+10FFFF,
    /// as Swift's own validation.
    static func scan(_ bytes: [UInt8], _ visit: (Range<Int>, Unicode.Scalar?) -> Void) {
        var i = 0
        while i < bytes.count {
            let b0 = bytes[i]
            var length = 0
            var low: UInt8 = 0x80, high: UInt8 = 0xBF
            switch b0 {
            case 0x00...0x7F: length = 1
            case 0xC2...0xDF: length = 2
            case 0xE0:
                length = 3
                low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED:
                length = 3
                high = 0x9F
            case 0xF0:
                length = 4
                low = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4:
                length = 4
                high = 0x8F
            default: length = 0
            }
            var valid = length > 0 && i + length <= bytes.count
            if valid && length > 1 {
                valid =
                    (low...high).contains(bytes[i + 1])
                    && bytes[(i + 2)..<(i + length)].allSatisfy { $0 & 0xC0 == 0x80 }
            }
            guard valid else {
                visit(i..<(i + 1), nil)
                i += 1
                continue
            }
            var value = UInt32(length == 1 ? b0 : b0 & (0xFF >> (length + 1)))
            for b in bytes[(i + 1)..<(i + length)] { value = value << 6 | UInt32(b & 0x3F) }
            visit(i..<(i + length), Unicode.Scalar(value))
            i += length
        }
    }

    /// Characters shown escaped: controls, and formatting characters that reorder or hide text (a name that reads
    /// as another, or a line that looks like a verdict).
    static func mustEscape(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x00...0x1F, 0x7F...0x9F: return true  // C0, DEL, C1
        case 0xAD, 0x061C, 0x180E: return true  // soft hyphen, Arabic letter mark, Mongolian vowel separator
        case 0x200B...0x200F, 0x2028...0x202E, 0x2060...0x206F: return true  // zero-width, separators, bidi
        case 0xFEFF, 0xFFF9...0xFFFB, 0xE0000...0xE007F: return true  // BOM, annotations, tags
        default: return false
        }
    }

    private static func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x41 + v - 10 }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10  // accepted here, refused by the canonical-form check
        default: return nil
        }
    }
}
