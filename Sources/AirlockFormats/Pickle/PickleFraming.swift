/// The bytes CPython's C unpickler consumes when it reads a pickle from a file object without `peek` (`io.BytesIO`:
/// `torch.load` of a ZIP member, `pickle.load` of an in-memory buffer). `FRAME` loads the frame into a buffer and
/// rewinds; when an opcode needs more bytes than the buffer still holds, the C reader drops the rest of the buffer and
/// reads its argument fresh from the file, after the frame. `pickle.loads` of bytes reads everything in place, which is
/// how the machine reads; where the two differ the machine notes `pickle.frame-divergence` and the scanner reads the
/// stream a second time as it would be consumed from a file.
struct FileReading {
    /// The consumed bytes, `FRAME` opcodes left out.
    var bytes: [UInt8] = []
    /// Pieces of `bytes` that are contiguous in the source: (offset in `bytes`, offset in the source).
    var segments: [(out: Int, source: Int)] = []
    /// Most bytes kept: the reading stops before an argument that would pass it.
    var cap = 0

    /// The source offset of `offset` in `bytes`.
    func sourceOffset(_ offset: Int) -> Int {
        var lo = 0
        var hi = segments.count
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if segments[mid].out <= offset { lo = mid } else { hi = mid }
        }
        guard lo < segments.count else { return offset }
        return segments[lo].source + (offset - segments[lo].out)
    }

    @discardableResult
    mutating func copy(_ p: UnsafeRawBufferPointer, _ from: Int, _ count: Int) -> Bool {
        guard count > 0 else { return true }
        guard count <= cap - bytes.count else { return false }
        if let last = segments.last, last.source + (bytes.count - last.out) == from {
            // Contiguous with the previous piece.
        } else {
            segments.append((bytes.count, from))
        }
        bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: p[from..<from + count]))
        return true
    }

    /// Reads `p` as the C unpickler reads a file, stopping at an invalid opcode, the end, or `cap` output bytes.
    static func read(_ p: UnsafeRawBufferPointer, cap: Int) -> FileReading {
        var out = FileReading()
        out.cap = cap
        var reader = Reader(p: p)
        while reader.pos < p.count {
            guard let opAt = reader.read(1) else { break }
            let op = p[opAt]
            if op == Op.FRAME {
                guard let lenAt = reader.read(8) else { break }
                let len = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: lenAt, as: UInt64.self))
                guard len <= UInt64(p.count), let start = reader.read(Int(len)) else { break }
                reader.pos = start
                reader.bufferEnd = start + Int(len)
                continue
            }
            guard out.copy(p, opAt, 1), reader.arguments(op, into: &out) else { break }
            if op == Op.STOP { reader.pos = Swift.max(reader.pos, reader.bufferEnd) }
        }
        return out
    }

    /// The C reader's buffer over the file: `pos` is the next byte, `bufferEnd` the end of what a FRAME buffered.
    struct Reader {
        let p: UnsafeRawBufferPointer
        var pos = 0
        var bufferEnd = 0

        /// Where `n` bytes come from, or nil past the end.
        mutating func read(_ n: Int) -> Int? {
            if n <= bufferEnd - pos {
                defer { pos += n }
                return pos
            }
            if pos < bufferEnd { pos = bufferEnd }
            guard n <= p.count - pos else { return nil }
            defer {
                pos += n
                bufferEnd = pos
            }
            return pos
        }

        /// A line (with its newline), or nil when none ends before the end of the file.
        mutating func readLine() -> (Int, Int)? {
            if pos < bufferEnd {
                if let nl = PickleLint.newline(p, from: pos, limit: bufferEnd - pos) {
                    defer { pos = nl + 1 }
                    return (pos, nl + 1 - pos)
                }
                pos = bufferEnd
            }
            guard let nl = PickleLint.newline(p, from: pos, limit: p.count - pos) else { return nil }
            defer {
                pos = nl + 1
                bufferEnd = pos
            }
            return (pos, nl + 1 - pos)
        }

        mutating func fixed(_ n: Int, _ out: inout FileReading) -> Int? {
            guard let at = read(n), out.copy(p, at, n) else { return nil }
            return at
        }

        /// A length field of `width` bytes, then that many bytes.
        mutating func counted(_ width: Int, _ out: inout FileReading) -> Bool {
            guard let at = fixed(width, &out) else { return false }
            var len: UInt64 = 0
            for i in 0..<width { len |= UInt64(p[at + i]) << (8 * UInt64(i)) }
            guard len <= UInt64(p.count) else { return false }
            return fixed(Int(len), &out) != nil
        }

        mutating func line(_ out: inout FileReading) -> Bool {
            guard let (at, n) = readLine() else { return false }
            return out.copy(p, at, n)
        }

        /// Copies the arguments of `op`; false at the end or on a byte that is no opcode.
        mutating func arguments(_ op: UInt8, into out: inout FileReading) -> Bool {
            switch op {
            case Op.BININT1, Op.BINGET, Op.BINPUT, Op.EXT1, Op.PROTO: return fixed(1, &out) != nil
            case Op.BININT2, Op.EXT2: return fixed(2, &out) != nil
            case Op.BININT, Op.LONG_BINGET, Op.LONG_BINPUT, Op.EXT4: return fixed(4, &out) != nil
            case Op.BINFLOAT: return fixed(8, &out) != nil
            case Op.SHORT_BINSTRING, Op.SHORT_BINBYTES, Op.SHORT_BINUNICODE, Op.LONG1: return counted(1, &out)
            case Op.BINSTRING, Op.BINUNICODE, Op.BINBYTES, Op.LONG4: return counted(4, &out)
            case Op.BINUNICODE8, Op.BINBYTES8, Op.BYTEARRAY8: return counted(8, &out)
            case Op.INT, Op.LONG, Op.FLOAT, Op.STRING, Op.UNICODE, Op.GET, Op.PUT, Op.PERSID: return line(&out)
            case Op.GLOBAL, Op.INST: return line(&out) && line(&out)
            case Op.MARK, Op.STOP, Op.POP, Op.POP_MARK, Op.DUP, Op.NONE, Op.BINPERSID, Op.REDUCE, Op.APPEND,
                Op.BUILD, Op.DICT, Op.EMPTY_DICT, Op.APPENDS, Op.LIST, Op.EMPTY_LIST, Op.OBJ, Op.SETITEM, Op.TUPLE,
                Op.EMPTY_TUPLE, Op.SETITEMS, Op.NEWOBJ, Op.TUPLE1, Op.TUPLE2, Op.TUPLE3, Op.NEWTRUE, Op.NEWFALSE,
                Op.EMPTY_SET, Op.ADDITEMS, Op.FROZENSET, Op.NEWOBJ_EX, Op.STACK_GLOBAL, Op.MEMOIZE, Op.NEXT_BUFFER,
                Op.READONLY_BUFFER:
                return true
            default: return false
            }
        }
    }
}

extension PickleScanner {
    /// Most bytes read a second time as a file reader consumes them.
    static let fileReadingCap = 64 << 20

    /// When the machine saw a frame divergence, reads the view again as the C unpickler reads a file and adds what
    /// only that reading shows (imports, calls and nested pickles, at their offsets in the view).
    static func addFileReading(
        _ report: inout PickleReport, _ view: ByteView, budget: ScanBudget, member: String?,
        depth: Int
    ) {
        guard report.observations.contains(where: { $0.kind == "pickle.frame-divergence" }) else { return }
        let reading = view.withUnsafeBytes { FileReading.read($0, cap: fileReadingCap) }
        let second = ByteView(reading.bytes)
        var machine = PickleMachine(view: second, budget: budget, member: member, depth: depth)
        let other = second.withUnsafeBytes { machine.scanAll($0) }
        report.merge(other, offset: reading.sourceOffset)
    }
}

extension PickleReport {
    /// Adds the imports, calls and nested pickles of another reading of the same bytes that this one lacks, their
    /// offsets mapped back to this view.
    mutating func merge(_ other: PickleReport, offset: (Int) -> Int) {
        let seenImports = Set(imports.map { "\($0.offset) \($0.fullName)" })
        for var g in other.imports {
            g.offset = offset(g.offset)
            if !seenImports.contains("\(g.offset) \(g.fullName)") { imports.append(g) }
        }
        let seenCalls = Set(calls.map { "\($0.offset) \($0.callee)" })
        for var c in other.calls {
            c.offset = offset(c.offset)
            if !seenCalls.contains("\(c.offset) \(c.callee)") { calls.append(c) }
        }
        let seenNested = Set(nestedOffsets)
        for (sub, at) in zip(other.nested, other.nestedOffsets) where !seenNested.contains(offset(at)) {
            nested.append(sub)
            nestedOffsets.append(offset(at))
        }
    }
}
