#if canImport(Glibc)
    import Glibc
#endif

/// Byte-level decoders for protocol-0 strings and the few string functions the machine folds. All bounded by `limit`.
enum PickleText {
    static func contains(_ p: UnsafeRawBufferPointer, _ a: Int, _ b: Int, _ byte: UInt8) -> Bool {
        guard let base = p.baseAddress, a >= 0, b <= p.count, a < b else { return false }
        return memchr(base + a, Int32(byte), b - a) != nil
    }

    static func hexValue(_ c: UInt8) -> UInt32? {
        switch c {
        case 0x30...0x39: UInt32(c - 0x30)
        case 0x61...0x66: UInt32(c - 0x61 + 10)
        case 0x41...0x46: UInt32(c - 0x41 + 10)
        default: nil
        }
    }

    static func appendUTF8(_ cp: UInt32, _ out: inout [UInt8]) {
        switch cp {
        case 0..<0x80:
            out.append(UInt8(cp))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | (cp >> 6)))
            out.append(UInt8(0x80 | (cp & 0x3F)))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | (cp >> 12)))
            out.append(UInt8(0x80 | ((cp >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (cp & 0x3F)))
        case 0x10000..<0x110000:
            out.append(UInt8(0xF0 | (cp >> 18)))
            out.append(UInt8(0x80 | ((cp >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((cp >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (cp & 0x3F)))
        default:
            out += [0xEF, 0xBF, 0xBD]
        }
    }

    /// Decodes `p[a..<b]`: `unicode` = raw-unicode-escape (UNICODE opcode, result UTF-8), otherwise Python's
    /// `escape_decode` (STRING opcode, result bytes). Stops after `limit` output bytes.
    static func decode(
        _ p: UnsafeRawBufferPointer, _ a: Int, _ b: Int, unicode: Bool, limit: Int, into out: inout [UInt8]
    ) {
        var i = a
        while i < b && out.count < limit {
            let c = p[i]
            if c != 0x5C || i + 1 >= b {
                if unicode { appendUTF8(UInt32(c), &out) } else { out.append(c) }
                i += 1
                continue
            }
            let e = p[i + 1]
            if unicode {
                let width = e == 0x75 ? 4 : e == 0x55 ? 8 : 0
                if width > 0 && b - (i + 2) >= width {
                    var cp: UInt32 = 0
                    var ok = true
                    for k in 0..<width {
                        guard let h = hexValue(p[i + 2 + k]) else {
                            ok = false
                            break
                        }
                        cp = cp << 4 | h
                    }
                    if ok {
                        appendUTF8(cp, &out)
                        i += 2 + width
                        continue
                    }
                }
                out.append(0x5C)
                i += 1
                continue
            }
            i += 2
            switch e {
            case 0x6E: out.append(0x0A)
            case 0x74: out.append(0x09)
            case 0x72: out.append(0x0D)
            case 0x61: out.append(0x07)
            case 0x62: out.append(0x08)
            case 0x66: out.append(0x0C)
            case 0x76: out.append(0x0B)
            case 0x5C, 0x27, 0x22: out.append(e)
            case 0x0A: break
            case 0x78:
                if b - i >= 2, let h = hexValue(p[i]), let l = hexValue(p[i + 1]) {
                    out.append(UInt8(h << 4 | l))
                    i += 2
                } else {
                    out += [0x5C, e]
                }
            case 0x30...0x37:
                var v = UInt32(e - 0x30)
                var k = 0
                while k < 2 && i < b && p[i] >= 0x30 && p[i] <= 0x37 {
                    v = v << 3 | UInt32(p[i] - 0x30)
                    i += 1
                    k += 1
                }
                out.append(UInt8(truncatingIfNeeded: v))
            default:
                out += [0x5C, e]
            }
        }
    }

    static func rot13(_ c: UInt8) -> UInt8 {
        switch c {
        case 0x41...0x5A: (c - 0x41 + 13) % 26 + 0x41
        case 0x61...0x7A: (c - 0x61 + 13) % 26 + 0x61
        default: c
        }
    }

    /// `str.encode('latin1')` of UTF-8 text; nil when a code point does not fit in a byte.
    static func latin1(_ s: UnsafeRawBufferPointer, limit: Int) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(Swift.min(s.count, limit))
        var i = 0
        while i < s.count && out.count < limit {
            let c = s[i]
            if c < 0x80 {
                out.append(c)
                i += 1
            } else if c & 0xE0 == 0xC0, i + 1 < s.count {
                let cp = UInt32(c & 0x1F) << 6 | UInt32(s[i + 1] & 0x3F)
                guard cp <= 0xFF else { return nil }
                out.append(UInt8(cp))
                i += 2
            } else {
                return nil
            }
        }
        return out
    }

    /// `base64.b64decode` without validation: characters outside the alphabet are skipped.
    static func base64(_ s: UnsafeRawBufferPointer, limit: Int) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(Swift.min(s.count / 4 * 3, limit))
        var acc: UInt32 = 0
        var bits = 0
        for c in s {
            let v: UInt32
            switch c {
            case 0x41...0x5A: v = UInt32(c - 0x41)
            case 0x61...0x7A: v = UInt32(c - 0x61 + 26)
            case 0x30...0x39: v = UInt32(c - 0x30 + 52)
            case 0x2B, 0x2D: v = 62
            case 0x2F, 0x5F: v = 63
            case 0x3D: return out
            default: continue
            }
            acc = (acc << 6 | v) & 0xFFFFFF
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
                if out.count >= limit { return out }
            }
        }
        return out
    }

    /// `bytes.fromhex`: pairs of hex digits, whitespace skipped.
    static func hex(_ s: UnsafeRawBufferPointer, limit: Int) -> [UInt8]? {
        var out: [UInt8] = []
        var high: UInt32?
        for c in s {
            if c == 0x20 || c == 0x0A || c == 0x09 || c == 0x0D { continue }
            guard let v = hexValue(c) else { return nil }
            if let h = high {
                out.append(UInt8(h << 4 | v))
                high = nil
                if out.count >= limit { break }
            } else {
                high = v
            }
        }
        return out
    }
}
