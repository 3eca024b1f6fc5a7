/// Strict base64 (RFC 4648 §4, the standard alphabet with `=` padding), without Foundation.
///
/// Decoding refuses anything a canonical encoder would not write: characters outside the alphabet (whitespace
/// included), a length that is not a multiple of four, padding anywhere but the end, and non-zero bits left over in the
/// last character. One byte string has exactly one accepted encoding.
enum Base64 {
    private static let alphabet: [UInt8] = Array(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Alphabet character → 6-bit value; 0xFF for everything else (including `=`).
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = UInt8(i) }
        return table
    }()

    /// The bytes `text` encodes, or nil when it is not strict, canonical base64.
    static func decode(_ text: [UInt8]) -> [UInt8]? {
        guard text.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count / 4 * 3)
        let pad = UInt8(ascii: "=")
        var q = 0
        while q < text.count {
            let isLast = q == text.count - 4
            let v0 = values[Int(text[q])], v1 = values[Int(text[q + 1])]
            guard v0 != 0xFF, v1 != 0xFF else { return nil }
            if isLast, text[q + 2] == pad {
                // "xx==": one byte; the four bits the padding stands for must be zero.
                guard text[q + 3] == pad, v1 & 0x0F == 0 else { return nil }
                out.append(v0 << 2 | v1 >> 4)
            } else if isLast, text[q + 3] == pad {
                // "xxx=": two bytes; the two left-over bits must be zero.
                let v2 = values[Int(text[q + 2])]
                guard v2 != 0xFF, v2 & 0x03 == 0 else { return nil }
                out.append(v0 << 2 | v1 >> 4)
                out.append(v1 << 4 | v2 >> 2)
            } else {
                let v2 = values[Int(text[q + 2])], v3 = values[Int(text[q + 3])]
                guard v2 != 0xFF, v3 != 0xFF else { return nil }
                out.append(v0 << 2 | v1 >> 4)
                out.append(v1 << 4 | v2 >> 2)
                out.append(v2 << 6 | v3)
            }
            q += 4
        }
        return out
    }

    /// The standard, padded base64 text of `bytes`.
    static func encode(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
            out.append(alphabet[Int(n & 63)])
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(contentsOf: [UInt8(ascii: "="), UInt8(ascii: "=")])
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
            out.append(UInt8(ascii: "="))
        }
        return out
    }
}

/// Lower-case hex text and its parsing.
enum Hex {
    private static let digits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Lower-case hex of `bytes`.
    static func encode<S: Sequence<UInt8>>(_ bytes: S) -> String {
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of `text` (upper or lower case, nothing else), or nil; `count` is the number of bytes expected.
    static func decode(_ text: String, count: Int) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count == count * 2 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(count)
        var i = 0
        while i < utf8.count {
            guard let hi = nibble(utf8[i]), let lo = nibble(utf8[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
