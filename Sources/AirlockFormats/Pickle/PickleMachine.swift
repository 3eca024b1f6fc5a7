#if canImport(Glibc)
    import Glibc
#endif

/// How one stream ended.
enum StreamEnd {
    /// `STOP` reached; the next stream may start at the offset.
    case stop(Int)
    /// Truncated, invalid opcode or lying length at the offset.
    case failed(Int)
    /// A budget bound was reached at the offset.
    case budget(Int)
}

/// The symbolic pickle machine: follows the stack, the marks and the memo of CPython's unpickler without executing
/// anything. One loop over the opcodes; every table is bounded by the budget.
struct PickleMachine {
    let view: ByteView
    let budget: ScanBudget
    let member: String?
    let depth: Int
    /// Read as joblib's `NumpyUnpickler` (raw array bytes after each `NumpyArrayWrapper`).
    let joblibArrays: Bool

    // Bounds derived from the budget.
    let stackCap: Int
    let memoCap: Int
    let sparseCap: Int
    let containerCap: Int
    let poolCap: Int
    let recordCap: Int
    let nameCap: Int
    let nestedCap: Int
    static let nameByteCap = 1024
    static let ownedByteCap = 1024
    static let childSlots = 8
    static let observationsPerKind = 16
    static let maxObservations = 256

    // Per stream.
    var stack: [PVal] = []
    var marks: [Int] = []
    var memo: [PVal] = []
    var sparseMemo: [Int: PVal] = [:]
    var memoDropped = 0
    var overflow = false
    /// End of the current frame (0 before any); raw bytes joblib reads inside a frame come after it.
    var frameEnd = 0
    /// Raw bytes joblib read after the current frame while its opcodes were still being read.
    var rawDeferred = 0
    var protoCount = 0

    // Shared by all streams.
    var containers: [PContainer] = []
    var pool: [PVal] = []
    var owned: [[UInt8]] = []
    var bigInts: [Int64] = []
    var names: [String] = []
    var nameIDs: [String: UInt32] = [:]
    var held = 0
    /// Bytes produced by folded decoders (base64, hex, latin1): the same memoized string may be decoded many times.
    var folded = 0

    // Results.
    var imports: [PickleGlobal] = []
    var calls: [PickleCall] = []
    var observations: [Observation] = []
    var observationCounts: [String: Int] = [:]
    var nested: [PickleReport] = []
    var nestedOffsets: [Int] = []
    var opcodeCount = 0
    var protocolVersion: Int?
    var seenImports: Set<String> = []
    var seenCallees: Set<String> = []
    var budgetNotes: Set<String> = []
    /// dtypes and array wrappers, followed by identity.
    var objects: [PObject] = []
    /// Scans of strings that start like a pickle but are not complete pickles: kept only if something that
    /// unpickles is called with the string (keyed by the value's raw bits).
    var pendingNested: [UInt64: (report: PickleReport, offset: Int)] = [:]
    var firstComplete = false
    /// NumPy arrays joblib would read from the stream (raw bytes skipped or object pickles scanned).
    var joblibReads = 0
    /// `copyreg.add_extension(module, name, code)` calls seen: the registry is process-wide, so it outlives a stream.
    var extensions: [UInt32: (String, String)] = [:]

    init(view: ByteView, budget: ScanBudget, member: String?, depth: Int, joblib: Bool = false) {
        self.view = view
        self.joblibArrays = joblib
        self.budget = budget
        self.member = member
        self.depth = depth
        let entries = Swift.max(16, budget.maxEntries)
        stackCap = entries
        memoCap = entries
        sparseCap = Swift.min(entries, 1 << 16)
        containerCap = entries
        poolCap = Swift.min(2 &* entries, Int(UInt32.max))
        recordCap = Swift.min(entries, 1 << 18)
        nameCap = Swift.min(entries, 1 << 16)
        nestedCap = 1024
        stack.reserveCapacity(256)
    }

    // MARK: - Streams

    /// Reads the pickles in `p` back to back. The first `forcedStreams` are read by the machine whatever they look
    /// like (the loader reads that many: legacy `torch.load` reads five); after those, a stream is read only if
    /// `PickleLint.plausible` accepts its start, and the rest is `pickle.trailing-data`.
    mutating func scanAll(_ p: UnsafeRawBufferPointer, forcedStreams: Int = 1) -> PickleReport {
        var pos = 0
        var streams = 0
        var endOffset = 0
        loop: while true {
            if streams > 0 {
                if pos >= p.count { break }
                let rest = UnsafeRawBufferPointer(rebasing: p[pos...])
                if streams >= forcedStreams && !PickleLint.plausible(rest) {
                    let extra = p.count - pos
                    observe(
                        "pickle.trailing-data", "\(extra) bytes after the last pickle are not a pickle", offset: pos,
                        details: [("length", String(extra)), ("afterStreams", String(streams))])
                    break
                }
            }
            streams += 1
            resetStream()
            switch runStream(p, start: pos) {
            case .stop(let next):
                if streams == 1 { firstComplete = true }
                pos = next
                endOffset = next
            case .failed(let at), .budget(let at):
                endOffset = at
                break loop
            }
        }
        return PickleReport(
            imports: imports, calls: calls, observations: observations, streams: streams,
            protocolVersion: protocolVersion, opcodeCount: opcodeCount, nested: nested,
            nestedOffsets: nestedOffsets, endOffset: endOffset, complete: firstComplete)
    }

    mutating func resetStream() {
        stack.removeAll(keepingCapacity: true)
        marks.removeAll(keepingCapacity: true)
        memo.removeAll(keepingCapacity: false)
        sparseMemo.removeAll()
        memoDropped = 0
        overflow = false
        frameEnd = 0
        rawDeferred = 0
        protoCount = 0
    }

    // MARK: - The loop

    /// Bytes scanned between two hand-backs of the mapped pages behind the cursor.
    static let releaseStep = 8 << 20

    mutating func runStream(_ p: UnsafeRawBufferPointer, start: Int) -> StreamEnd {
        let n = p.count
        var pos = start
        let maxOps = budget.maxOperations
        // Pages already read go back to the kernel (they re-fault from the file if a value is rendered later), so a
        // large file does not stay resident on top of the machine's tables.
        var nextRelease = start + PickleMachine.releaseStep
        while true {
            if pos >= nextRelease {
                view.releasePages(0, pos &- PickleMachine.releaseStep / 2)
                nextRelease = pos + PickleMachine.releaseStep
            }
            if rawDeferred != 0 && pos >= frameEnd {
                pos = frameEnd &+ rawDeferred
                rawDeferred = 0
            }
            guard pos < n else {
                observe("pickle.truncated", "the pickle ends without STOP", offset: pos)
                return .failed(pos)
            }
            guard opcodeCount < maxOps else {
                observe("pickle.budget", "more than \(maxOps) opcodes; the rest is not analysed", offset: pos)
                return .budget(pos)
            }
            // The deadline every 64 Ki opcodes (well under a millisecond): the report becomes an error
            // (`ScanDeadline`), so stopping here says nothing about the rest.
            if opcodeCount & 0xFFFF == 0 && budget.expired { return .budget(pos) }
            opcodeCount &+= 1
            let opPos = pos
            let op = p[pos]
            pos &+= 1
            let rem = n &- pos

            switch op {
            // Hot opcodes first.
            case Op.BINFLOAT:
                guard rem >= 8 else { return truncated(opPos, op, need: 8, rem) }
                push(.float(bits: UInt64(bigEndian: p.loadUnaligned(fromByteOffset: pos, as: UInt64.self))))
                pos &+= 8
            case Op.BININT1:
                guard rem >= 1 else { return truncated(opPos, op, need: 1, rem) }
                push(PVal(.int, UInt64(p[pos])))
                pos &+= 1
            case Op.BININT2:
                guard rem >= 2 else { return truncated(opPos, op, need: 2, rem) }
                push(PVal(.int, UInt64(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: pos, as: UInt16.self)))))
                pos &+= 2
            case Op.BININT:
                guard rem >= 4 else { return truncated(opPos, op, need: 4, rem) }
                let v = Int32(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: pos, as: UInt32.self)))
                push(PVal(.int, UInt64(bitPattern: Int64(v))))
                pos &+= 4
            case Op.MEMOIZE:
                guard let top = peek(opPos) else { break }
                memoPut(memo.count &+ sparseMemo.count &+ memoDropped, top)
            case Op.BINPUT:
                guard rem >= 1 else { return truncated(opPos, op, need: 1, rem) }
                if let top = peek(opPos) { memoPut(Int(p[pos]), top) }
                pos &+= 1
            case Op.LONG_BINPUT:
                guard rem >= 4 else { return truncated(opPos, op, need: 4, rem) }
                if let top = peek(opPos) {
                    memoPut(Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: pos, as: UInt32.self))), top)
                }
                pos &+= 4
            case Op.BINGET:
                guard rem >= 1 else { return truncated(opPos, op, need: 1, rem) }
                push(memoGet(Int(p[pos]), opPos))
                pos &+= 1
            case Op.LONG_BINGET:
                guard rem >= 4 else { return truncated(opPos, op, need: 4, rem) }
                push(memoGet(Int(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: pos, as: UInt32.self))), opPos))
                pos &+= 4
            case Op.MARK:
                if marks.count < stackCap { marks.append(stack.count) } else { overflow = true }
            case Op.APPENDS, Op.SETITEMS, Op.ADDITEMS:
                let from = popMark(opPos)
                if from > fence {
                    addItems(to: stack[from &- 1], from: from, to: stack.count, pairs: op == Op.SETITEMS)
                } else {
                    underflow(opPos, op)
                }
                stack.removeSubrange(from..<stack.count)
            case Op.APPEND:
                let v = pop(opPos)
                if let target = peek(opPos) {
                    stack.append(v)
                    addItems(to: target, from: stack.count - 1, to: stack.count, pairs: false)
                    stack.removeLast()
                }
            case Op.SETITEM:
                let v = pop(opPos)
                let k = pop(opPos)
                if let target = peek(opPos) {
                    stack.append(k)
                    stack.append(v)
                    addItems(to: target, from: stack.count - 2, to: stack.count, pairs: true)
                    stack.removeLast(2)
                }
            case Op.SHORT_BINUNICODE, Op.SHORT_BINBYTES, Op.SHORT_BINSTRING:
                guard rem >= 1 else { return truncated(opPos, op, need: 1, rem) }
                let len = Int(p[pos])
                guard len <= rem &- 1 else { return lying(opPos, op, UInt64(len), rem &- 1) }
                pushSpan(op == Op.SHORT_BINBYTES ? .bytesSpan : .strSpan, pos &+ 1, len, p)
                pos &+= 1 &+ len
            case Op.BINUNICODE, Op.BINBYTES, Op.BINSTRING:
                guard rem >= 4 else { return truncated(opPos, op, need: 4, rem) }
                let raw = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: pos, as: UInt32.self))
                if op == Op.BINSTRING && raw >= 0x8000_0000 {
                    observe(
                        "pickle.truncated", "BINSTRING has a negative length", offset: opPos,
                        details: [("opcode", "BINSTRING"), ("length", String(Int32(bitPattern: raw)))])
                    return .failed(opPos)
                }
                guard UInt64(raw) <= UInt64(rem &- 4) else { return lying(opPos, op, UInt64(raw), rem &- 4) }
                pushSpan(op == Op.BINBYTES ? .bytesSpan : .strSpan, pos &+ 4, Int(raw), p)
                pos &+= 4 &+ Int(raw)
            case Op.BINUNICODE8, Op.BINBYTES8, Op.BYTEARRAY8:
                guard rem >= 8 else { return truncated(opPos, op, need: 8, rem) }
                let raw = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: pos, as: UInt64.self))
                guard raw <= UInt64(rem &- 8) else { return lying(opPos, op, raw, rem &- 8) }
                let tag: PVal.Tag = op == Op.BINUNICODE8 ? .strSpan : op == Op.BINBYTES8 ? .bytesSpan : .bytearraySpan
                pushSpan(tag, pos &+ 8, Int(raw), p)
                pos &+= 8 &+ Int(raw)
            case Op.EMPTY_LIST:
                push(newContainer(.list))
            case Op.EMPTY_DICT:
                push(newContainer(.dict))
            case Op.EMPTY_TUPLE:
                push(newContainer(.tuple))
            case Op.EMPTY_SET:
                push(newContainer(.set))
            case Op.TUPLE1, Op.TUPLE2, Op.TUPLE3:
                let k = Int(op &- Op.TUPLE1) &+ 1
                let available = stack.count &- fence
                if available < k {
                    underflow(opPos, op)
                    for _ in available..<k { stack.insert(.unknown, at: stack.count &- available) }
                }
                let t = newContainer(.tuple, from: stack.count &- k, to: stack.count)
                stack.removeLast(k)
                push(t)
            case Op.TUPLE, Op.LIST, Op.DICT, Op.FROZENSET:
                let from = popMark(opPos)
                let kind: PKind = op == Op.TUPLE ? .tuple : op == Op.LIST ? .list : op == Op.DICT ? .dict : .frozenset
                let c = newContainer(kind, from: from, to: stack.count)
                stack.removeSubrange(from..<stack.count)
                push(c)
            case Op.NONE:
                push(.noneValue)
            case Op.NEWTRUE:
                push(.trueValue)
            case Op.NEWFALSE:
                push(.falseValue)
            case Op.POP:
                if stack.count > fence {
                    stack.removeLast()
                } else if !marks.isEmpty {
                    marks.removeLast()
                } else {
                    underflow(opPos, op)
                }
            case Op.POP_MARK:
                let from = popMark(opPos)
                stack.removeSubrange(from..<stack.count)
            case Op.DUP:
                if let top = peek(opPos) { push(top) }
            case Op.STOP:
                _ = pop(opPos)
                return .stop(pos)
            case Op.FRAME:
                guard rem >= 8 else { return truncated(opPos, op, need: 8, rem) }
                let raw = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: pos, as: UInt64.self))
                if opPos < frameEnd { frameDivergence(opPos, "FRAME starts before the current frame ends") }
                frameEnd = raw > UInt64(rem &- 8) ? n : pos &+ 8 &+ Int(raw)
                if raw > UInt64(rem &- 8) {
                    // CPython refuses the whole frame; the scanner keeps reading so that a cut file still shows
                    // what it holds.
                    _ = lying(opPos, op, raw, rem &- 8)
                }
                pos &+= 8
            case Op.PROTO:
                guard rem >= 1 else { return truncated(opPos, op, need: 1, rem) }
                let v = Int(p[pos])
                if protocolVersion == nil { protocolVersion = v }
                protoAnomaly(opPos, start: start, version: v)
                if v > 5 {
                    observe(
                        "pickle.unsupported-protocol", "protocol \(v) is newer than 5", offset: opPos,
                        details: [("version", String(v))])
                }
                pos &+= 1
            case Op.LONG1:
                guard rem >= 1 else { return truncated(opPos, op, need: 1, rem) }
                let len = Int(p[pos])
                guard len <= rem &- 1 else { return lying(opPos, op, UInt64(len), rem &- 1) }
                push(longValue(p, pos &+ 1, len))
                pos &+= 1 &+ len
            case Op.LONG4:
                guard rem >= 4 else { return truncated(opPos, op, need: 4, rem) }
                let raw = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: pos, as: UInt32.self))
                if raw >= 0x8000_0000 {
                    observe(
                        "pickle.truncated", "LONG4 has a negative length", offset: opPos,
                        details: [("opcode", "LONG4"), ("length", String(Int32(bitPattern: raw)))])
                    return .failed(opPos)
                }
                guard UInt64(raw) <= UInt64(rem &- 4) else { return lying(opPos, op, UInt64(raw), rem &- 4) }
                push(longValue(p, pos &+ 4, Int(raw)))
                pos &+= 4 &+ Int(raw)

            // Imports and calls.
            case Op.GLOBAL, Op.INST:
                guard let nl1 = PickleLint.newline(p, from: pos, limit: rem),
                    let nl2 = PickleLint.newline(p, from: nl1 &+ 1, limit: n &- nl1 &- 1)
                else { return truncated(opPos, op, need: 0, rem) }
                let module = text(p, pos, nl1)
                let name = text(p, nl1 &+ 1, nl2)
                pos = nl2 &+ 1
                let g = recordImport(module: module, name: name, offset: opPos, opcode: op)
                if op == Op.GLOBAL {
                    push(g)
                } else {
                    let from = popMark(opPos)
                    recordCall(callee: g, items: from, stack.count, more: 0, kwargs: nil, offset: opPos, opcode: op, p)
                    let made = constructed(g, from: from)
                    stack.removeSubrange(from..<stack.count)
                    push(made)
                }
            case Op.STACK_GLOBAL:
                let nameV = pop(opPos)
                let moduleV = pop(opPos)
                let module = stringValue(moduleV, p)
                let name = stringValue(nameV, p)
                if let module, let name {
                    push(recordImport(module: module, name: name, offset: opPos, opcode: op))
                } else {
                    let m = module ?? "<unknown>"
                    let a = name ?? "<unknown>"
                    _ = recordImport(module: m, name: a, offset: opPos, opcode: op, intern: false)
                    observe(
                        "pickle.dynamic-global", "STACK_GLOBAL with operands that are not constant strings",
                        offset: opPos, global: m + "." + a)
                    push(PVal(.callable, PVal.none32))
                }
            case Op.REDUCE:
                let args = pop(opPos)
                let callable = pop(opPos)
                push(reduce(callable, args, offset: opPos, p))
            case Op.NEWOBJ:
                let args = pop(opPos)
                let cls = pop(opPos)
                let (items, more) = tupleItems(args)
                recordCall(callee: cls, values: items, more: more, kwargs: nil, offset: opPos, opcode: op, p)
                push(instance(of: cls))
            case Op.NEWOBJ_EX:
                let kwargs = pop(opPos)
                let args = pop(opPos)
                let cls = pop(opPos)
                let (items, more) = tupleItems(args)
                recordCall(callee: cls, values: items, more: more, kwargs: kwargs, offset: opPos, opcode: op, p)
                push(instance(of: cls))
            case Op.OBJ:
                let from = popMark(opPos)
                if from < stack.count {
                    let cls = stack[from]
                    recordCall(
                        callee: cls, items: from &+ 1, stack.count, more: 0, kwargs: nil, offset: opPos, opcode: op, p)
                    let made = constructed(cls, from: from &+ 1)
                    stack.removeSubrange(from..<stack.count)
                    push(made)
                } else {
                    underflow(opPos, op)
                    push(PVal(.instance, PVal.none32))
                }
            case Op.BUILD:
                let state = pop(opPos)
                if let obj = peek(opPos) {
                    let calleeID: UInt64
                    switch obj.tag {
                    case .callable, .instance, .callResult: calleeID = obj.payload
                    case .object: calleeID = objectIndex(obj).map { objects[$0].cls } ?? PVal.none32
                    default: calleeID = PVal.none32
                    }
                    recordCall(
                        callee: PVal(.callable, calleeID), values: [state], more: 0, kwargs: nil, offset: opPos,
                        opcode: op, p)
                    if let oi = objectIndex(obj), let end = buildObject(oi, state, at: opPos, pos: &pos, p) {
                        return end
                    }
                    if joblibArrays && obj.tag == .instance && name(obj.payload) == PickleMachine.wrapperClass {
                        joblibReads &+= 1
                        return unknownArray(opPos, "the scanner no longer tracks array wrappers")
                    }
                }
            case Op.EXT1, Op.EXT2, Op.EXT4:
                let width = op == Op.EXT1 ? 1 : op == Op.EXT2 ? 2 : 4
                guard rem >= width else { return truncated(opPos, op, need: width, rem) }
                let code: UInt32 =
                    width == 1
                    ? UInt32(p[pos])
                    : width == 2
                        ? UInt32(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: pos, as: UInt16.self)))
                        : UInt32(littleEndian: p.loadUnaligned(fromByteOffset: pos, as: UInt32.self))
                pos &+= width
                observe(
                    "pickle.ext-code", "\(Op.name(op)) code \(code): copyreg's extension registry is empty by default",
                    offset: opPos, details: [("code", String(code)), ("opcode", Op.name(op))])
                if let (module, name) = extensions[code] {
                    // Registered earlier in the file: EXT imports what the registry names.
                    push(recordImport(module: module, name: name, offset: opPos, opcode: op))
                } else {
                    push(PVal(.callable, PVal.none32))
                }
            case Op.BINPERSID:
                _ = pop(opPos)
                push(PVal(.const, PVal.Const.persistent.rawValue))
            case Op.PERSID:
                guard let nl = PickleLint.newline(p, from: pos, limit: rem) else {
                    return truncated(opPos, op, need: 0, rem)
                }
                pos = nl &+ 1
                push(PVal(.const, PVal.Const.persistent.rawValue))
            case Op.NEXT_BUFFER:
                observe("pickle.out-of-band-buffer", "NEXT_BUFFER refers to out-of-band data", offset: opPos)
                push(PVal(.const, PVal.Const.buffer.rawValue))
            case Op.READONLY_BUFFER:
                _ = peek(opPos)

            // Protocol 0 text opcodes.
            case Op.INT, Op.LONG:
                guard let nl = PickleLint.newline(p, from: pos, limit: rem) else {
                    return truncated(opPos, op, need: 0, rem)
                }
                switch op == Op.INT ? PickleNumbers.int(p, pos, nl) : PickleNumbers.long(p, pos, nl) {
                case .bool(let b): push(b ? .trueValue : .falseValue)
                case .value(let v): push(intValue(v))
                case .big: push(PVal(.bigInt, PVal.none32))
                case .invalid:
                    observe("pickle.malformed-argument", "the unpickler rejects this number line", offset: opPos)
                    push(PVal(.bigInt, PVal.none32))
                }
                pos = nl &+ 1
            case Op.FLOAT:
                guard let nl = PickleLint.newline(p, from: pos, limit: rem) else {
                    return truncated(opPos, op, need: 0, rem)
                }
                if let v = PickleNumbers.float(p, pos, nl) {
                    push(.float(bits: v.bitPattern))
                } else {
                    observe("pickle.malformed-argument", "the unpickler rejects this number line", offset: opPos)
                    push(.float(bits: Double.nan.bitPattern))
                }
                pos = nl &+ 1
            case Op.GET, Op.PUT:
                guard let nl = PickleLint.newline(p, from: pos, limit: rem) else {
                    return truncated(opPos, op, need: 0, rem)
                }
                var idx: Int64?
                if nl > pos, case .value(let v) = PickleNumbers.pyLong(p, pos, nl, base: 10) { idx = v }
                pos = nl &+ 1
                if op == Op.GET {
                    if let idx, idx >= 0, idx <= Int64(Int32.max) {
                        push(memoGet(Int(idx), opPos))
                    } else {
                        observe("pickle.memo-miss", "GET with an unusable index", offset: opPos)
                        push(.unknown)
                    }
                } else if let top = peek(opPos) {
                    if let idx, idx >= 0, idx <= Int64(Int32.max) {
                        memoPut(Int(idx), top)
                    } else {
                        observe("pickle.malformed-argument", "PUT with an unusable index", offset: opPos)
                    }
                }
            case Op.STRING:
                guard let nl = PickleLint.newline(p, from: pos, limit: rem) else {
                    return truncated(opPos, op, need: 0, rem)
                }
                let lineStart = pos
                pos = nl &+ 1
                guard nl &- lineStart >= 2, p[lineStart] == 0x27 || p[lineStart] == 0x22, p[nl &- 1] == p[lineStart]
                else {
                    observe("pickle.malformed-argument", "the STRING argument is not quoted", offset: opPos)
                    push(.unknown)
                    break
                }
                let a = lineStart &+ 1
                let b = nl &- 1
                if !PickleText.contains(p, a, b, 0x5C) {
                    pushSpan(.strSpan, a, b &- a, p)
                } else {
                    pushDecoded(p, a, b, unicode: false, offset: a)
                }
            case Op.UNICODE:
                guard let nl = PickleLint.newline(p, from: pos, limit: rem) else {
                    return truncated(opPos, op, need: 0, rem)
                }
                let a = pos
                pos = nl &+ 1
                var plain = true
                for i in a..<nl where p[i] == 0x5C || p[i] >= 0x80 {
                    plain = false
                    break
                }
                if plain { pushSpan(.strSpan, a, nl &- a, p) } else { pushDecoded(p, a, nl, unicode: true, offset: a) }

            default:
                observe(
                    "pickle.invalid-opcode", "byte 0x\(Op.hex2(op)) is not a pickle opcode", offset: opPos,
                    details: [("byte", "0x" + Op.hex2(op))])
                return .failed(opPos)
            }
            if pos > frameEnd && opPos < frameEnd {
                frameDivergence(opPos, "\(Op.name(op)) and its argument run past the end of the frame")
            }
            if overflow {
                observe(
                    "pickle.budget", "the stack or marks exceed \(stackCap) entries; the rest is not analysed",
                    offset: opPos)
                return .budget(opPos)
            }
        }
    }

    // MARK: - Stack

    var fence: Int { marks.last ?? 0 }

    @inline(__always) mutating func push(_ v: PVal) {
        if stack.count < stackCap { stack.append(v) } else { overflow = true }
    }

    @inline(__always) mutating func pop(_ at: Int) -> PVal {
        if stack.count > fence { return stack.removeLast() }
        underflow(at)
        return .unknown
    }

    /// The top of the stack above the innermost mark, or nil (and an observation) when there is none.
    @inline(__always) mutating func peek(_ at: Int) -> PVal? {
        if stack.count > fence, let top = stack.last { return top }
        underflow(at)
        return nil
    }

    /// Pops the innermost mark; the items above it are `stack[result...]`.
    mutating func popMark(_ at: Int) -> Int {
        guard let m = marks.popLast() else {
            if wants("pickle.stack-underflow") { observe("pickle.stack-underflow", "no MARK on the stack", offset: at) }
            return stack.count
        }
        return Swift.min(m, stack.count)
    }

    mutating func underflow(_ at: Int, _ op: UInt8? = nil) {
        guard wants("pickle.stack-underflow") else { return }
        observe("pickle.stack-underflow", "an opcode needs more values than the stack holds", offset: at)
    }

    // MARK: - Memo

    mutating func memoPut(_ idx: Int, _ v: PVal) {
        if idx < memo.count {
            memo[idx] = v
            return
        }
        if idx == memo.count && memo.count &+ sparseMemo.count < memoCap {
            if !sparseMemo.isEmpty { sparseMemo[idx] = nil }
            memo.append(v)
            while !sparseMemo.isEmpty, let next = sparseMemo.removeValue(forKey: memo.count) { memo.append(next) }
            return
        }
        if sparseMemo[idx] != nil {
            sparseMemo[idx] = v
            return
        }
        if memo.count &+ sparseMemo.count < memoCap && sparseMemo.count < sparseCap {
            sparseMemo[idx] = v
            return
        }
        memoDropped &+= 1
    }

    mutating func memoGet(_ idx: Int, _ at: Int) -> PVal {
        if idx >= 0 && idx < memo.count { return memo[idx] }
        if !sparseMemo.isEmpty, let v = sparseMemo[idx] { return v }
        if memoDropped > 0 {
            noteBudget(
                "memo", "the memo exceeded \(memoCap) entries; values fetched from dropped entries are unknown", at)
        } else if wants("pickle.memo-miss") {
            observe(
                "pickle.memo-miss", "memo index \(idx) was never stored", offset: at, details: [("index", String(idx))])
        }
        return .unknown
    }

    // MARK: - Values

    mutating func pushSpan(_ tag: PVal.Tag, _ offset: Int, _ length: Int, _ p: UnsafeRawBufferPointer) {
        let value: PVal
        if offset < PVal.spanOffsetLimit {
            value = .span(tag, offset: offset, length: length)
        } else {
            let keep = Swift.min(length, PickleMachine.ownedByteCap)
            value = ownedValue(
                Array(UnsafeRawBufferPointer(rebasing: p[offset..<offset &+ keep])), bytes: tag != .strSpan)
        }
        push(value)
        if length >= 2 && PickleLint.startByte[Int(p[offset])] {
            nestedCheck(
                UnsafeRawBufferPointer(rebasing: p[offset..<offset &+ length]), at: offset, slice: (offset, length),
                key: value)
        }
    }

    /// Decodes an escaped protocol-0 string, keeps a prefix, and looks for a pickle in the whole decoded value.
    mutating func pushDecoded(_ p: UnsafeRawBufferPointer, _ a: Int, _ b: Int, unicode: Bool, offset: Int) {
        var out: [UInt8] = []
        let firstDecoded: UInt8? = {
            var probe: [UInt8] = []
            PickleText.decode(p, a, b, unicode: unicode, limit: 1, into: &probe)
            return probe.first
        }()
        let wantFull = firstDecoded.map { PickleLint.startByte[Int($0)] } ?? false
        let limit =
            wantFull ? Swift.max(PickleMachine.ownedByteCap, budget.maxHeldBytes &- held) : PickleMachine.ownedByteCap
        PickleText.decode(p, a, b, unicode: unicode, limit: limit, into: &out)
        let full = out
        if out.count > PickleMachine.ownedByteCap { out.removeSubrange(PickleMachine.ownedByteCap...) }
        let value = ownedValue(out, bytes: false)
        push(value)
        if wantFull && full.count >= 2 {
            full.withUnsafeBytes { nestedCheck($0, at: offset, slice: nil, copy: full, key: value) }
        }
    }

    mutating func ownedValue(_ bytes: [UInt8], bytes isBytes: Bool) -> PVal {
        let tag: PVal.Tag = isBytes ? .bytesOwned : .strOwned
        guard held &+ bytes.count <= budget.maxHeldBytes, owned.count < budget.maxEntries else {
            noteBudget(
                "held", "more than \(budget.maxHeldBytes) bytes of decoded strings; later ones are not kept", nil)
            return PVal(tag, PVal.none32)
        }
        held &+= bytes.count
        owned.append(bytes)
        return PVal(tag, UInt64(owned.count &- 1))
    }

    mutating func intValue(_ v: Int64) -> PVal {
        if let small = PVal.int(v) { return small }
        if bigInts.count < 4096 {
            bigInts.append(v)
            return PVal(.bigInt, UInt64(bigInts.count &- 1))
        }
        return PVal(.bigInt, PVal.none32)
    }

    /// A LONG1/LONG4 value: little-endian two's complement of `len` bytes.
    mutating func longValue(_ p: UnsafeRawBufferPointer, _ at: Int, _ len: Int) -> PVal {
        if len == 0 { return PVal(.int, 0) }
        guard len <= 8 else { return PVal(.bigInt, PVal.none32) }
        var v: UInt64 = 0
        for i in 0..<len { v |= UInt64(p[at &+ i]) << (8 &* UInt64(i)) }
        if len < 8 && p[at &+ len &- 1] & 0x80 != 0 { v |= ~0 << (8 &* UInt64(len)) }
        return intValue(Int64(bitPattern: v))
    }

    /// Line text for names, capped.
    func text(_ p: UnsafeRawBufferPointer, _ a: Int, _ b: Int) -> String {
        let end = Swift.min(b, a &+ PickleMachine.nameByteCap)
        return String(decoding: UnsafeRawBufferPointer(rebasing: p[a..<end]), as: UTF8.self)
    }

    /// The bytes of a str/bytes value (at most `nameByteCap`), or nil for other values.
    func stringBytes(_ v: PVal, _ p: UnsafeRawBufferPointer) -> [UInt8]? {
        switch v.tag {
        case .strSpan, .bytesSpan, .bytearraySpan:
            let o = v.spanOffset
            let l = Swift.min(v.spanLength, PickleMachine.nameByteCap)
            guard o >= 0, o <= p.count, l <= p.count &- o else { return nil }
            return Array(UnsafeRawBufferPointer(rebasing: p[o..<o &+ l]))
        case .strOwned, .bytesOwned:
            guard let i = v.index, i < owned.count else { return nil }
            return owned[i]
        default:
            return nil
        }
    }

    func stringValue(_ v: PVal, _ p: UnsafeRawBufferPointer) -> String? {
        stringBytes(v, p).map { String(decoding: $0, as: UTF8.self) }
    }

    // MARK: - Containers

    mutating func newContainer(_ kind: PKind) -> PVal {
        guard containers.count < containerCap else {
            return PVal(.container, PVal.anonymousBit | UInt64(kind.rawValue))
        }
        containers.append(PContainer(count: 0, first: 0, kind: kind, nchild: 0, cap: 0))
        return PVal(.container, UInt64(containers.count &- 1))
    }

    /// A container built from `stack[from..<to]` (TUPLE, LIST, DICT, FROZENSET, TUPLE1-3).
    mutating func newContainer(_ kind: PKind, from: Int, to: Int) -> PVal {
        let c = newContainer(kind)
        addItems(to: c, from: from, to: to, pairs: kind == .dict)
        return c
    }

    func containerIndex(_ v: PVal) -> Int? {
        guard v.tag == .container, v.payload & PVal.anonymousBit == 0 else { return nil }
        let i = Int(v.payload)
        return i < containers.count ? i : nil
    }

    mutating func addItems(to target: PVal, from: Int, to: Int, pairs: Bool) {
        guard let ci = containerIndex(target), to > from else { return }
        let n = to &- from
        containers[ci].count &+= pairs ? n / 2 : n
        var c = containers[ci]
        // Dicts keep twice as many children (8 pairs): a joblib array wrapper's state has 6.
        let maxSlots = c.kind == .dict ? 2 &* PickleMachine.childSlots : PickleMachine.childSlots
        if Int(c.nchild) &+ n > Int(c.cap) && Int(c.cap) < maxSlots {
            // Grow the block: tuples and frozensets get exactly what they hold (they never grow), mutable containers
            // at least two slots. A block at the end of the pool grows in place; otherwise it moves.
            let immutable = c.kind == .tuple || c.kind == .frozenset
            let want = Swift.min(maxSlots, immutable ? Int(c.nchild) &+ n : Swift.max(2, Int(c.nchild) &+ n))
            let atEnd = c.cap > 0 && Int(c.first) &+ Int(c.cap) == pool.count
            if atEnd {
                let extra = want &- Int(c.cap)
                if pool.count &+ extra <= poolCap {
                    pool.append(contentsOf: repeatElement(PVal.unknown, count: extra))
                    c.cap = UInt8(want)
                }
            } else if pool.count &+ want <= poolCap {
                let newFirst = pool.count
                pool.append(contentsOf: repeatElement(PVal.unknown, count: want))
                for k in 0..<Int(c.nchild) { pool[newFirst &+ k] = pool[Int(c.first) &+ k] }
                c.first = UInt32(truncatingIfNeeded: newFirst)
                c.cap = UInt8(want)
            }
        }
        var i = from
        let base = Int(c.first)
        while c.nchild < c.cap && i < to {
            pool[base &+ Int(c.nchild)] = stack[i]
            c.nchild &+= 1
            i &+= 1
        }
        containers[ci].first = c.first
        containers[ci].cap = c.cap
        containers[ci].nchild = c.nchild
    }

    /// The kept children of a tuple and how many were not kept; nil children for values that are not tuples.
    func tupleItems(_ v: PVal) -> ([PVal], Int) {
        guard v.tag == .container else { return ([v], 0) }
        guard let ci = containerIndex(v) else { return ([], 1) }
        let c = containers[ci]
        guard c.kind == .tuple else { return ([v], 0) }
        let base = Int(c.first)
        var out: [PVal] = []
        out.reserveCapacity(Int(c.nchild))
        for k in 0..<Int(c.nchild) { out.append(pool[base &+ k]) }
        return (out, Swift.max(0, c.count &- Int(c.nchild)))
    }

    func children(_ ci: Int) -> ArraySlice<PVal> {
        let c = containers[ci]
        let base = Int(c.first)
        return pool[base..<base &+ Int(c.nchild)]
    }

    // MARK: - Imports and calls

    mutating func intern(_ s: String) -> UInt32? {
        if let id = nameIDs[s] { return id }
        guard names.count < nameCap else {
            noteBudget("names", "more than \(nameCap) distinct globals", nil)
            return nil
        }
        let id = UInt32(names.count)
        names.append(s)
        nameIDs[s] = id
        held &+= s.utf8.count
        return id
    }

    func name(_ id: UInt64) -> String? {
        guard id != PVal.none32, id < UInt64(names.count) else { return nil }
        return names[Int(id)]
    }

    mutating func recordImport(module: String, name: String, offset: Int, opcode: UInt8, intern doIntern: Bool = true)
        -> PVal
    {
        let full = module + "." + name
        let firstTime = seenImports.insert(full).inserted
        if imports.count < recordCap || (firstTime && imports.count < recordCap &* 2) {
            imports.append(PickleGlobal(module: module, name: name, offset: offset, opcode: Op.name(opcode)))
        } else {
            noteBudget("imports", "more than \(recordCap) imports; only new globals are listed after that", offset)
        }
        guard doIntern, let id = intern(full) else { return PVal(.callable, PVal.none32) }
        return PVal(.callable, UInt64(id))
    }

    /// REDUCE: records the call and folds the few pure functions that build names and strings.
    mutating func reduce(_ callable: PVal, _ args: PVal, offset: Int, _ p: UnsafeRawBufferPointer) -> PVal {
        let (items, more) = tupleItems(args)
        recordCall(callee: callable, values: items, more: more, kwargs: nil, offset: offset, opcode: Op.REDUCE, p)
        guard callable.tag == .callable, let fname = name(callable.payload) else {
            return PVal(.callResult, PVal.none32)
        }
        let result = PVal(.callResult, callable.payload)
        if joblibArrays && fname == PickleMachine.wrapperClass { return constructed(callable, items, more: more) }
        guard more == 0 else { return result }
        if PickleMachine.isDtypeClass(fname) { return newDtype(callable, items, p) ?? result }
        switch fname {
        case "copyreg.add_extension", "copy_reg.add_extension":
            guard items.count == 3, let module = stringValue(items[0], p), let attr = stringValue(items[1], p),
                let code = intOf(items[2]), let key = UInt32(exactly: code), extensions.count < 4096
            else { return result }
            extensions[key] = (module, attr)
            return .noneValue
        case "copyreg._reconstructor", "copy_reg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__":
            guard let cls = items.first, cls.tag == .callable else { return result }
            return instance(of: cls)
        case "builtins.getattr", "__builtin__.getattr", "inspect.getattr_static":
            guard items.count >= 2, items[0].tag == .callable || items[0].tag == .module,
                let base = name(items[0].payload), let attr = stringValue(items[1], p)
            else { return result }
            let full = base + "." + attr
            observe("pickle.dynamic-global", "\(fname) resolves \(full)", offset: offset, global: full)
            guard let id = intern(full) else { return PVal(.callable, PVal.none32) }
            return PVal(.callable, UInt64(id))
        case "builtins.__import__", "__builtin__.__import__", "importlib.import_module", "importlib.__import__":
            guard let first = items.first, let mod = stringValue(first, p) else { return result }
            observe("pickle.dynamic-global", "\(fname) imports \(mod)", offset: offset, global: mod)
            guard let id = intern(mod) else { return result }
            return PVal(.module, UInt64(id))
        case "builtins.str", "__builtin__.str":
            guard items.count == 1, items[0].tag == .strSpan || items[0].tag == .strOwned else { return result }
            return items[0]
        case "operator.add", "_operator.add", "operator.concat", "_operator.concat", "operator.__add__",
            "_operator.__add__", "operator.__concat__", "_operator.__concat__":
            guard items.count == 2, let a = stringBytes(items[0], p), let b = stringBytes(items[1], p) else {
                return result
            }
            let isBytes = items[0].tag == .bytesSpan || items[0].tag == .bytesOwned
            return ownedValue(Array((a + b).prefix(PickleMachine.ownedByteCap)), bytes: isBytes)
        case "codecs.decode", "_codecs.decode", "codecs.encode", "_codecs.encode":
            guard items.count == 2, let enc = stringValue(items[1], p) else { return result }
            switch enc.lowercased() {
            case "rot13", "rot_13", "rot-13":
                guard let s = stringBytes(items[0], p) else { return result }
                return ownedValue(s.map(PickleText.rot13), bytes: false)
            case "latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1":
                // How protocols 0-2 write bytes: _codecs.encode('...', 'latin1').
                guard fname.hasSuffix("encode") else { return result }
                return foldBytes(items[0], offset: offset, p) { PickleText.latin1($0, limit: $1) }
            default:
                return result
            }
        case "base64.b64decode", "binascii.a2b_base64", "base64.decodebytes", "base64.standard_b64decode":
            guard items.count >= 1 else { return result }
            return foldBytes(items[0], offset: offset, p) { PickleText.base64($0, limit: $1) }
        case "builtins.bytes.fromhex", "builtins.bytearray.fromhex", "binascii.unhexlify", "binascii.a2b_hex":
            guard items.count >= 1 else { return result }
            return foldBytes(items[0], offset: offset, p) { PickleText.hex($0, limit: $1) }
        default:
            return result
        }
    }

    /// Decodes a constant string argument into bytes, scans them for a nested pickle, and keeps a prefix.
    mutating func foldBytes(
        _ v: PVal, offset: Int, _ p: UnsafeRawBufferPointer,
        _ decode: (UnsafeRawBufferPointer, Int) -> [UInt8]?
    ) -> PVal {
        guard folded < budget.maxHeldBytes else {
            noteBudget(
                "folded",
                "more than \(budget.maxHeldBytes) bytes decoded from constant strings; later decodings are not followed",
                offset)
            return PVal(.bytesOwned, PVal.none32)
        }
        let limit = Swift.max(PickleMachine.ownedByteCap, budget.maxHeldBytes &- folded)
        var decoded: [UInt8]?
        switch v.tag {
        case .strSpan, .bytesSpan, .bytearraySpan:
            guard !v.spanSaturated else { return PVal(.bytesOwned, PVal.none32) }
            let o = v.spanOffset
            let l = v.spanLength
            guard o <= p.count, l <= p.count &- o else { return .unknown }
            decoded = decode(UnsafeRawBufferPointer(rebasing: p[o..<o &+ l]), limit)
        case .strOwned, .bytesOwned:
            guard let i = v.index, i < owned.count else { return .unknown }
            decoded = owned[i].withUnsafeBytes { decode($0, limit) }
        default:
            return PVal(.callResult, PVal.none32)
        }
        guard var bytes = decoded else { return PVal(.bytesOwned, PVal.none32) }
        folded &+= Swift.max(bytes.count, 1)
        let full = bytes
        if bytes.count > PickleMachine.ownedByteCap { bytes.removeSubrange(PickleMachine.ownedByteCap...) }
        let value = ownedValue(bytes, bytes: true)
        if full.count >= 2 && PickleLint.startByte[Int(full[0])] {
            full.withUnsafeBytes { nestedCheck($0, at: offset, slice: nil, copy: full, key: value) }
        }
        return value
    }

    mutating func recordCall(
        callee: PVal, items from: Int, _ to: Int, more: Int, kwargs: PVal?, offset: Int,
        opcode: UInt8, _ p: UnsafeRawBufferPointer
    ) {
        let keep = Swift.min(to &- from, PickleMachine.childSlots)
        let values = keep > 0 ? Array(stack[from..<from &+ keep]) : []
        recordCall(
            callee: callee, values: values, more: Swift.max(0, to &- from &- keep) &+ more, kwargs: kwargs,
            offset: offset, opcode: opcode, p)
    }

    mutating func recordCall(
        callee: PVal, values: [PVal], more: Int, kwargs: PVal?, offset: Int, opcode: UInt8,
        _ p: UnsafeRawBufferPointer
    ) {
        let calleeName =
            callee.tag == .callable || callee.tag == .instance ? name(callee.payload) ?? "<unknown>" : "<unknown>"
        if !pendingNested.isEmpty { promoteNested(values, callee: calleeName, build: opcode == Op.BUILD) }
        let firstTime = seenCallees.insert(calleeName).inserted
        guard calls.count < recordCap || (firstTime && calls.count < recordCap &* 2) else {
            noteBudget("calls", "more than \(recordCap) calls; only calls to new callees are listed after that", offset)
            return
        }
        var args: [String] = []
        if held < budget.maxHeldBytes {
            args.reserveCapacity(values.count &+ 1)
            for v in values { args.append(render(v, p)) }
            if let kwargs { args += renderKeywords(kwargs, p) }
            if more > 0 { args.append("...") }
            for a in args { held &+= a.utf8.count }
        } else {
            noteBudget(
                "held", "more than \(budget.maxHeldBytes) bytes held; later call arguments are not rendered", offset)
            args = ["<budget>"]
        }
        calls.append(PickleCall(callee: calleeName, args: args, offset: offset, opcode: Op.name(opcode)))
    }

    // MARK: - Observations

    /// Whether another observation of `kind` would be kept (lets hot paths skip building messages).
    func wants(_ kind: String) -> Bool {
        observations.count < PickleMachine.maxObservations
            && observationCounts[kind, default: 0] < PickleMachine.observationsPerKind
    }

    mutating func observe(
        _ kind: String, _ message: String, offset: Int?, global: String? = nil,
        details: [(String, String)] = []
    ) {
        let count = observationCounts[kind, default: 0]
        observationCounts[kind] = count &+ 1
        guard count < PickleMachine.observationsPerKind, observations.count < PickleMachine.maxObservations else {
            return
        }
        observations.append(
            Observation(kind, message, Evidence(offset: offset, member: member, global: global, details: details)))
    }

    mutating func noteBudget(_ what: String, _ message: String, _ offset: Int?) {
        guard budgetNotes.insert(what).inserted else { return }
        observe("pickle.budget", message, offset: offset, details: [("limit", what)])
    }

    @inline(__always) mutating func truncated(_ at: Int, _ op: UInt8, need: Int, _ rem: Int) -> StreamEnd {
        observe(
            "pickle.truncated", "\(Op.name(op)) needs more bytes than remain", offset: at,
            details: [("opcode", Op.name(op)), ("remaining", String(rem))])
        return .failed(at)
    }

    mutating func lying(_ at: Int, _ op: UInt8, _ length: UInt64, _ rem: Int) -> StreamEnd {
        observe(
            "pickle.truncated", "\(Op.name(op)) declares \(length) bytes but only \(rem) remain", offset: at,
            details: [("opcode", Op.name(op)), ("length", String(length)), ("remaining", String(rem))])
        return .failed(at)
    }
}
