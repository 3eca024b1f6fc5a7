#if canImport(Glibc)
    import Glibc
#endif

/// Cheap content sniffing for pickles.
public enum PickleDetector {
    /// Whether `view` plausibly starts with a pickle: `PROTO` 0–5, or a protocol-0/1 opcode sequence. The first
    /// opcodes (at most 64) are decoded with their arguments and a stack-depth check, so text and binary data are
    /// rejected early; a prefix that imports something before it breaks still counts.
    public static func looksLikePickle(_ view: ByteView) -> Bool {
        view.withUnsafeBytes { PickleLint.plausible($0) }
    }
}

/// A bounded, allocation-free validity check of a pickle's first opcodes.
enum PickleLint {
    /// Bytes that can start a pickle: opcodes that need nothing on the stack.
    static let startByte: [Bool] = {
        var t = [Bool](repeating: false, count: 256)
        for b: UInt8 in [
            Op.MARK, Op.FLOAT, Op.INT, Op.BININT, Op.BININT1, Op.LONG, Op.BININT2, Op.NONE, Op.PERSID,
            Op.STRING, Op.BINSTRING, Op.SHORT_BINSTRING, Op.UNICODE, Op.BINUNICODE, Op.GLOBAL,
            Op.EMPTY_DICT, Op.GET, Op.BINGET, Op.LONG_BINGET, Op.EMPTY_LIST, Op.EMPTY_TUPLE, Op.BINFLOAT,
            Op.PROTO, Op.EXT1, Op.EXT2, Op.EXT4, Op.NEWTRUE, Op.NEWFALSE, Op.LONG1, Op.LONG4,
            Op.BINBYTES, Op.SHORT_BINBYTES, Op.SHORT_BINUNICODE, Op.BINUNICODE8, Op.BINBYTES8,
            Op.EMPTY_SET, Op.FRAME, Op.BYTEARRAY8, Op.NEXT_BUFFER,
        ] {
            t[Int(b)] = true
        }
        return t
    }()

    /// Finds `\n` in `p[from..<from+limit]` (clipped to the end); the index of the newline or nil.
    @inline(__always)
    static func newline(_ p: UnsafeRawBufferPointer, from: Int, limit: Int) -> Int? {
        guard let base = p.baseAddress, from < p.count else { return nil }
        let n = Swift.min(limit, p.count - from)
        guard let hit = memchr(base + from, 0x0A, n) else { return nil }
        return from + (UnsafeRawPointer(hit) - (base + from))
    }

    static func plausible(_ p: UnsafeRawBufferPointer, maxOps: Int = 64) -> Bool {
        let n = p.count
        guard n >= 2, startByte[Int(p[0])] else { return false }
        let startedWithProto = p[0] == Op.PROTO
        if startedWithProto && p[1] > 5 { return false }
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: maxOps + 1) { marks -> Bool in
            var markCount = 0
            var cur = 0  // stack items above the innermost mark
            var pos = 0
            var ops = 0
            var sawImport = false
            func fail() -> Bool { sawImport }
            while ops < maxOps {
                guard pos < n else { return sawImport || startedWithProto }
                let op = p[pos]
                pos += 1
                ops += 1
                let remaining = n - pos
                // Arguments.
                switch op {
                case Op.MARK, Op.STOP, Op.POP, Op.POP_MARK, Op.DUP, Op.NONE, Op.BINPERSID, Op.REDUCE, Op.APPEND,
                    Op.BUILD,
                    Op.DICT, Op.EMPTY_DICT, Op.APPENDS, Op.LIST, Op.EMPTY_LIST, Op.OBJ, Op.SETITEM, Op.TUPLE,
                    Op.EMPTY_TUPLE, Op.SETITEMS, Op.NEWOBJ, Op.TUPLE1, Op.TUPLE2, Op.TUPLE3, Op.NEWTRUE, Op.NEWFALSE,
                    Op.EMPTY_SET, Op.ADDITEMS, Op.FROZENSET, Op.NEWOBJ_EX, Op.STACK_GLOBAL, Op.MEMOIZE, Op.NEXT_BUFFER,
                    Op.READONLY_BUFFER:
                    break
                case Op.BININT1, Op.BINGET, Op.BINPUT, Op.EXT1:
                    guard remaining >= 1 else { return sawImport || startedWithProto }
                    pos += 1
                case Op.PROTO:
                    guard remaining >= 1 else { return sawImport || startedWithProto }
                    guard p[pos] <= 5 else { return fail() }
                    pos += 1
                case Op.BININT2, Op.EXT2:
                    guard remaining >= 2 else { return sawImport || startedWithProto }
                    pos += 2
                case Op.BININT, Op.LONG_BINGET, Op.LONG_BINPUT, Op.EXT4:
                    guard remaining >= 4 else { return sawImport || startedWithProto }
                    pos += 4
                case Op.BINFLOAT:
                    guard remaining >= 8 else { return sawImport || startedWithProto }
                    pos += 8
                case Op.FRAME:
                    guard remaining >= 8 else { return sawImport || startedWithProto }
                    let len = p.loadUnaligned(fromByteOffset: pos, as: UInt64.self).littleEndian
                    guard len <= UInt64(remaining - 8) else { return fail() }
                    pos += 8
                case Op.SHORT_BINSTRING, Op.SHORT_BINBYTES, Op.SHORT_BINUNICODE, Op.LONG1:
                    guard remaining >= 1 else { return sawImport || startedWithProto }
                    let len = Int(p[pos])
                    guard len <= remaining - 1 else { return sawImport || startedWithProto }
                    pos += 1 + len
                case Op.BINSTRING, Op.BINUNICODE, Op.BINBYTES, Op.LONG4:
                    guard remaining >= 4 else { return sawImport || startedWithProto }
                    let raw = p.loadUnaligned(fromByteOffset: pos, as: UInt32.self).littleEndian
                    if (op == Op.BINSTRING || op == Op.LONG4) && raw >= 0x8000_0000 { return fail() }
                    guard UInt64(raw) <= UInt64(remaining - 4) else { return sawImport || startedWithProto }
                    pos += 4 + Int(raw)
                case Op.BINUNICODE8, Op.BINBYTES8, Op.BYTEARRAY8:
                    guard remaining >= 8 else { return sawImport || startedWithProto }
                    let raw = p.loadUnaligned(fromByteOffset: pos, as: UInt64.self).littleEndian
                    guard raw <= UInt64(remaining - 8) else { return sawImport || startedWithProto }
                    pos += 8 + Int(raw)
                case Op.INT, Op.LONG, Op.GET, Op.PUT, Op.FLOAT:
                    // CPython reads the whole line, however long, and accepts what strtol/int()/float() accept.
                    guard let nl = newline(p, from: pos, limit: remaining) else { return sawImport || startedWithProto }
                    guard PickleNumbers.lineOK(p, pos, nl, op) else { return fail() }
                    pos = nl + 1
                case Op.STRING:
                    guard let nl = newline(p, from: pos, limit: remaining) else { return sawImport || startedWithProto }
                    guard nl - pos >= 2, p[pos] == 0x27 || p[pos] == 0x22, p[nl - 1] == p[pos] else { return fail() }
                    pos = nl + 1
                case Op.UNICODE, Op.PERSID:
                    guard let nl = newline(p, from: pos, limit: remaining) else { return sawImport || startedWithProto }
                    pos = nl + 1
                case Op.GLOBAL, Op.INST:
                    // No length limit: protocol 4 resolves dotted attribute paths of any length.
                    guard let nl1 = newline(p, from: pos, limit: remaining) else {
                        return sawImport || startedWithProto
                    }
                    guard nameOK(p, pos, nl1) else { return fail() }
                    guard let nl2 = newline(p, from: nl1 + 1, limit: n - nl1 - 1) else {
                        return sawImport || startedWithProto
                    }
                    guard nameOK(p, nl1 + 1, nl2) else { return fail() }
                    pos = nl2 + 1
                default:
                    return fail()
                }
                // Stack effects.
                @inline(__always) func popMark() -> Bool {
                    guard markCount > 0 else { return false }
                    markCount -= 1
                    cur = marks[markCount]
                    return true
                }
                switch op {
                case Op.MARK:
                    marks[markCount] = cur
                    markCount += 1
                    cur = 0
                case Op.STOP:
                    return cur >= 1 && ops >= 2 ? true : fail()
                case Op.POP:
                    if cur > 0 { cur -= 1 } else if !popMark() { return fail() }
                case Op.POP_MARK:
                    guard popMark() else { return fail() }
                case Op.DUP, Op.BUILD, Op.READONLY_BUFFER, Op.PUT, Op.BINPUT, Op.LONG_BINPUT, Op.MEMOIZE, Op.BINPERSID:
                    guard cur >= 1 else { return fail() }
                    if op == Op.DUP { cur += 1 }
                    if op == Op.BUILD {
                        guard cur >= 2 else { return fail() }
                        cur -= 1
                    }
                case Op.REDUCE, Op.NEWOBJ, Op.STACK_GLOBAL, Op.TUPLE2:
                    guard cur >= 2 else { return fail() }
                    cur -= 1
                    if op == Op.STACK_GLOBAL { sawImport = true }
                case Op.NEWOBJ_EX, Op.TUPLE3:
                    guard cur >= 3 else { return fail() }
                    cur -= 2
                case Op.TUPLE1:
                    guard cur >= 1 else { return fail() }
                case Op.APPEND:
                    guard cur >= 2 else { return fail() }
                    cur -= 1
                case Op.SETITEM:
                    guard cur >= 3 else { return fail() }
                    cur -= 2
                case Op.APPENDS, Op.SETITEMS, Op.ADDITEMS:
                    guard popMark(), cur >= 1 else { return fail() }
                case Op.LIST, Op.TUPLE, Op.DICT, Op.FROZENSET, Op.INST:
                    guard popMark() else { return fail() }
                    cur += 1
                    if op == Op.INST { sawImport = true }
                case Op.OBJ:
                    guard cur >= 1, popMark() else { return fail() }
                    cur += 1
                case Op.PROTO, Op.FRAME:
                    break
                default:
                    // Everything else pushes one value.
                    cur += 1
                    if op == Op.GLOBAL || op == Op.EXT1 || op == Op.EXT2 || op == Op.EXT4 { sawImport = true }
                }
            }
            return true
        }
    }

    /// A module or attribute name line: no control characters, no spaces, not empty.
    static func nameOK(_ p: UnsafeRawBufferPointer, _ from: Int, _ to: Int) -> Bool {
        guard to > from else { return false }
        for i in from..<to where p[i] <= 0x20 || p[i] == 0x7F { return false }
        return true
    }
}
