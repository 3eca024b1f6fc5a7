#if canImport(Glibc)
    import Glibc
#endif

/// CPython's `_pickle` readings of the protocol-0 number lines: which lines `INT`, `LONG`, `FLOAT`, `GET` and `PUT`
/// accept, and the value when it fits in 64 bits. `a..<b` is the line without its newline (`p[b]` is `\n`).
enum PickleNumbers {
    /// What a number line reads as.
    enum IntText: Equatable {
        /// The unpickler raises.
        case invalid
        /// An int that fits in 64 bits.
        case value(Int64)
        /// A valid int too large for 64 bits.
        case big
        /// `INT` with a two-character line worth 0 or 1 (`I01`, `I 1`, `I+1`, `I-0` …): `True` or `False`.
        case bool(Bool)
    }

    @inline(__always) static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || (c >= 0x09 && c <= 0x0D) }

    @inline(__always) static func digit(_ c: UInt8, _ base: Int) -> Int? {
        let d: Int
        switch c {
        case 0x30...0x39: d = Int(c &- 0x30)
        case 0x61...0x7A: d = Int(c &- 0x61) &+ 10
        case 0x41...0x5A: d = Int(c &- 0x41) &+ 10
        default: return nil
        }
        return d < base ? d : nil
    }

    /// `INT`: `strtol(s, &end, 0)` when it stops at the newline or a NUL without overflow, else `int(s, 0)`.
    static func int(_ p: UnsafeRawBufferPointer, _ a: Int, _ b: Int) -> IntText {
        guard b > a else { return .invalid }
        var i = a
        while i < b && isSpace(p[i]) { i &+= 1 }
        var negative = false
        if i < b && (p[i] == 0x2B || p[i] == 0x2D) {
            negative = p[i] == 0x2D
            i &+= 1
        }
        var base = 10
        if i < b && p[i] == 0x30 {
            if i &+ 2 < b && (p[i &+ 1] | 0x20) == 0x78 && digit(p[i &+ 2], 16) != nil {
                base = 16
                i &+= 2
            } else {
                base = 8
            }
        }
        let digitsStart = i
        var v: UInt64 = 0
        var overflow = false
        while i < b, let d = digit(p[i], base) {
            let (m, o1) = v.multipliedReportingOverflow(by: UInt64(base))
            let (s, o2) = m.addingReportingOverflow(UInt64(d))
            overflow = overflow || o1 || o2
            v = s
            i &+= 1
        }
        let end = i == digitsStart ? a : i
        let stop: UInt8 = end < b ? p[end] : 0x0A
        if let value = signed(v, negative: negative, overflow: overflow), stop == 0x0A || stop == 0 {
            if b &- a == 2 && (value == 0 || value == 1) { return .bool(value == 1) }
            return .value(value)
        }
        return pyLong(p, a, b, base: 0)
    }

    /// A magnitude with its sign as an `Int64` (`-2⁶³` included), or nil when it does not fit.
    static func signed(_ magnitude: UInt64, negative: Bool, overflow: Bool) -> Int64? {
        guard !overflow else { return nil }
        if negative { return magnitude <= 1 << 63 ? Int64(bitPattern: 0 &- magnitude) : nil }
        return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
    }

    /// `LONG`: one `L` before the newline is dropped (Python 2's spelling), then `int(s, 0)`.
    static func long(_ p: UnsafeRawBufferPointer, _ a: Int, _ b: Int) -> IntText {
        guard b > a else { return .invalid }
        return pyLong(p, a, p[b &- 1] == 0x4C ? b &- 1 : b, base: 0)
    }

    /// `PyLong_FromString(s, NULL, base)` for base 0 or 10: the C string ends at the first NUL.
    static func pyLong(_ p: UnsafeRawBufferPointer, _ a: Int, _ b: Int, base requested: Int) -> IntText {
        var end = a
        while end < b && p[end] != 0 { end &+= 1 }
        var i = a
        while i < end && isSpace(p[i]) { i &+= 1 }
        var negative = false
        if i < end && (p[i] == 0x2B || p[i] == 0x2D) {
            negative = p[i] == 0x2D
            i &+= 1
        }
        guard i < end else { return .invalid }
        var base = requested
        var zerosOnly = false
        if requested == 0 {
            base = 10
            if p[i] == 0x30 {
                let next = i &+ 1 < end ? p[i &+ 1] | 0x20 : 0
                switch next {
                case 0x78: base = 16
                case 0x6F: base = 8
                case 0x62: base = 2
                default: zerosOnly = true
                }
                if base != 10 {
                    i &+= 2
                    if i < end && p[i] == 0x5F { i &+= 1 }
                }
            }
        }
        var v: UInt64 = 0
        var overflow = false
        var digits = 0
        var lastUnderscore = false
        while i < end {
            let c = p[i]
            if c == 0x5F {
                guard digits > 0, !lastUnderscore else { return .invalid }
                lastUnderscore = true
                i &+= 1
                continue
            }
            guard let d = digit(c, base) else { break }
            if zerosOnly && d != 0 { return .invalid }
            lastUnderscore = false
            digits &+= 1
            let (m, o1) = v.multipliedReportingOverflow(by: UInt64(base))
            let (s, o2) = m.addingReportingOverflow(UInt64(d))
            overflow = overflow || o1 || o2
            v = s
            i &+= 1
        }
        guard digits > 0, !lastUnderscore else { return .invalid }
        while i < end && isSpace(p[i]) { i &+= 1 }
        guard i == end else { return .invalid }
        // sys.int_info.default_max_str_digits: longer decimal strings raise.
        if base == 10 && digits > 4300 { return .invalid }
        return signed(v, negative: negative, overflow: overflow).map { .value($0) } ?? .big
    }

    /// `FLOAT`: `PyOS_string_to_double` (no spaces, no underscores; `inf`, `infinity`, `nan` in any case; overflow
    /// raises) stopping at the newline or a NUL. The value, or nil when the unpickler raises.
    static func float(_ p: UnsafeRawBufferPointer, _ a: Int, _ b: Int) -> Double? {
        guard b > a else { return nil }
        var i = a
        if p[i] == 0x2B || p[i] == 0x2D { i &+= 1 }
        func word(_ w: String) -> Bool {
            let u = Array(w.utf8)
            guard i &+ u.count <= b else { return false }
            for k in 0..<u.count where p[i &+ k] | 0x20 != u[k] { return false }
            return true
        }
        var special = false
        if word("infinity") {
            i &+= 8
            special = true
        } else if word("inf") || word("nan") {
            i &+= 3
            special = true
        } else {
            var mantissa = 0
            while i < b && p[i] >= 0x30 && p[i] <= 0x39 {
                i &+= 1
                mantissa &+= 1
            }
            if i < b && p[i] == 0x2E {
                i &+= 1
                while i < b && p[i] >= 0x30 && p[i] <= 0x39 {
                    i &+= 1
                    mantissa &+= 1
                }
            }
            guard mantissa > 0 else { return nil }
            if i < b && (p[i] | 0x20) == 0x65 {
                var j = i &+ 1
                if j < b && (p[j] == 0x2B || p[j] == 0x2D) { j &+= 1 }
                if j < b && p[j] >= 0x30 && p[j] <= 0x39 {
                    while j < b && p[j] >= 0x30 && p[j] <= 0x39 { j &+= 1 }
                    i = j
                }
            }
        }
        guard i == b || p[i] == 0 else { return nil }
        let len = i &- a
        // A valid spelling over 1 MiB: accepted without copying it (whether it overflows is not decided).
        guard len <= 1 << 20 else { return .nan }
        let value = withUnsafeTemporaryAllocation(of: CChar.self, capacity: len &+ 1) { buf -> Double in
            for k in 0..<len { buf[k] = CChar(bitPattern: p[a &+ k]) }
            buf[len] = 0
            return strtod(buf.baseAddress!, nil)
        }
        if value.isInfinite && !special { return nil }
        return value
    }

    /// Whether the unpickler accepts the line of a number opcode (`GET`/`PUT` read base 10 and need an index ≥ 0).
    static func lineOK(_ p: UnsafeRawBufferPointer, _ a: Int, _ b: Int, _ op: UInt8) -> Bool {
        switch op {
        case Op.INT: return int(p, a, b) != .invalid
        case Op.LONG: return long(p, a, b) != .invalid
        case Op.FLOAT: return float(p, a, b) != nil
        default:
            switch b > a ? pyLong(p, a, b, base: 10) : .invalid {
            case .value(let v): return v >= 0
            default: return false
            }
        }
    }
}
