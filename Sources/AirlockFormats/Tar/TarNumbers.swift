/// Header fields read as CPython's `tarfile` reads them (`nti`, `nts`, `int()`), so that a legacy PyTorch tar or a
/// pandas `compression="tar"` file is seen as `torch.load` and `pandas.read_pickle` see it.
enum TarNumbers {
    /// A parsed numeric field: its value, and whether a stricter reader (GNU tar, libarchive) would read the same.
    struct Field {
        var value: Int
        var canonical: Bool
    }

    /// `nti`: base-256 when the first byte is 0x80 (positive) or 0xFF (negative); otherwise the text up to the first
    /// NUL, ASCII only, `int(text.strip() or "0", 8)`. Nil where Python raises (the header is invalid).
    /// A value past `Int` saturates (Python's is unbounded; it is a size past any file either way).
    static func nti(_ field: [UInt8]) -> Field? {
        guard let first = field.first else { return nil }
        if first == 0x80 || first == 0xFF {
            var value = 0
            var saturated = false
            for b in field.dropFirst() {
                if value > Int.max >> 8 { saturated = true }
                value = saturated ? Int.max : value << 8 | Int(b)
            }
            if first == 0xFF {
                // -(256^(n-1) - n): negative unless every following byte is 0xFF... which is -1 still.
                let count = field.count - 1
                if count >= 8 { return Field(value: -1, canonical: false) }  // a negative number, bounded
                return Field(value: value - (1 << (8 * count)), canonical: false)
            }
            return Field(value: value, canonical: true)
        }
        let text = field.firstIndex(of: 0).map { Array(field[..<$0]) } ?? field
        guard text.allSatisfy({ $0 < 0x80 }) else { return nil }
        let strict = isStrictOctal(field)
        let stripped = strip(text[...])
        if stripped.isEmpty { return Field(value: 0, canonical: strict) }
        guard let v = pythonInt(stripped, base: 8) else { return nil }
        return Field(value: v, canonical: strict)
    }

    /// GNU tar's reading: leading spaces, octal digits, then only spaces and NULs.
    static func isStrictOctal(_ field: [UInt8]) -> Bool {
        var i = 0
        while i < field.count, field[i] == 0x20 { i += 1 }
        while i < field.count, field[i] >= 0x30 && field[i] <= 0x37 { i += 1 }
        while i < field.count, field[i] == 0x20 || field[i] == 0 { i += 1 }
        return i == field.count
    }

    /// Python's `str.strip()` whitespace in ASCII: space, `\t\n\v\f\r`, and `\x1c`–`\x1f`.
    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (b >= 0x09 && b <= 0x0D) || (b >= 0x1C && b <= 0x1F) }

    static func strip(_ s: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var s = s
        while let f = s.first, isSpace(f) { s.removeFirst() }
        while let l = s.last, isSpace(l) { s.removeLast() }
        return s
    }

    /// `int(text, base)` for base 8 or 10 over ASCII: a sign, `0o` (base 8), digits with single `_` between them.
    /// Nil where Python raises `ValueError`; saturates at `Int.max` / `Int.min`.
    static func pythonInt(_ text: ArraySlice<UInt8>, base: Int) -> Int? {
        var s = strip(text)
        var negative = false
        if let f = s.first, f == 0x2B || f == 0x2D {
            negative = f == 0x2D
            s.removeFirst()
        }
        var underscoreAllowed = false
        if base == 8, s.count >= 2, s.first == 0x30, s.dropFirst().first == 0x6F || s.dropFirst().first == 0x4F {
            s.removeFirst(2)
            underscoreAllowed = true  // int("0o_17", 8) is 15
        }
        guard !s.isEmpty else { return nil }
        var value = 0
        var saturated = false
        var lastWasDigit = false
        for b in s {
            if b == 0x5F {
                guard lastWasDigit || underscoreAllowed else { return nil }
                lastWasDigit = false
                underscoreAllowed = false
                continue
            }
            let d = Int(b) - 0x30
            guard d >= 0, d < base else { return nil }
            lastWasDigit = true
            underscoreAllowed = false
            if value > (Int.max - d) / base { saturated = true }
            if !saturated { value = value * base + d }
        }
        guard lastWasDigit else { return nil }  // a trailing "_"
        if saturated { return negative ? Int.min : Int.max }
        return negative ? -value : value
    }

    /// `int(value)` of a pax value (already UTF-8 text): Unicode decimal digits count, as in Python.
    static func paxInt(_ value: String) -> Int? {
        var ascii: [UInt8] = []
        for scalar in value.unicodeScalars {
            if scalar.isASCII {
                ascii.append(UInt8(scalar.value))
            } else if scalar.properties.numericType == .decimal, let n = scalar.properties.numericValue {
                ascii.append(UInt8(0x30 + Int(n)))
            } else if scalar.properties.isWhitespace {
                ascii.append(0x20)
            } else {
                return nil
            }
        }
        return pythonInt(ascii[...], base: 10)
    }

    /// `nts`: the bytes up to the first NUL, as text.
    static func nts(_ bytes: ArraySlice<UInt8>) -> String {
        let cut = bytes.firstIndex(of: 0).map { bytes[..<$0] } ?? bytes
        return String(decoding: cut, as: UTF8.self)
    }

    /// `posixpath.normpath`, which `TarFile._getmember(normalize=True)` compares link targets with.
    static func normpath(_ path: String) -> String {
        if path.isEmpty { return "." }
        let leading = path.hasPrefix("//") && !path.hasPrefix("///") ? 2 : (path.hasPrefix("/") ? 1 : 0)
        var parts: [Substring] = []
        for comp in path.split(separator: "/", omittingEmptySubsequences: true) {
            if comp == "." { continue }
            if comp == ".." {
                if let last = parts.last, last != ".." {
                    parts.removeLast()
                    continue
                }
                if leading > 0 { continue }
            }
            parts.append(comp)
        }
        let joined = String(repeating: "/", count: leading) + parts.joined(separator: "/")
        return joined.isEmpty ? "." : joined
    }
}
