/// A mutable object the machine must follow by identity: a `numpy.dtype` (its `__setstate__` decides the item size
/// and whether it holds Python objects) or a joblib `NumpyArrayWrapper` (its attributes decide how many raw bytes
/// joblib reads after it).
struct PObject {
    enum Kind { case dtype, wrapper }
    var kind: Kind
    /// Name id of the class (for rendering and BUILD callees).
    var cls: UInt64
    // dtype: nil when the scanner cannot tell.
    var itemsize: Int?
    var hasObject: Bool?
    /// `S`, `U`, `V`: `__setstate__` takes the item size from the state.
    var flexible = false
    /// Bytes per character of a flexible dtype (4 for `U`).
    var unit = 1
    // wrapper: attributes set by BUILD, nil while absent.
    var shape: PVal?
    var dtype: PVal?
    var alignment: PVal?
    /// A BUILD whose state the scanner could not read completely.
    var unsure = false
}

/// joblib's `NumpyUnpickler` (uncompressed `joblib.dump` files): when a BUILD leaves a `NumpyArrayWrapper` on the
/// stack, joblib reads the array's bytes from the file right there (an alignment byte and padding, then shape × item
/// size bytes, or for object arrays a whole nested pickle read with `pickle.load`), and the pickle goes on after them.
/// joblib unpickles with the pure-Python `pickle._Unpickler`, whose frames are read ahead: raw bytes read inside a
/// frame come from the end of that frame, and the opcodes continue after them once the frame is used up.
extension PickleMachine {
    static let wrapperClass = "joblib.numpy_pickle.NumpyArrayWrapper"
    static let objectCap = 1 << 16

    mutating func newObject(_ kind: PObject.Kind, cls: UInt64) -> PVal? {
        guard objects.count < PickleMachine.objectCap else {
            noteBudget("objects", "more than \(PickleMachine.objectCap) dtypes and array wrappers", nil)
            return nil
        }
        objects.append(PObject(kind: kind, cls: cls))
        return PVal(.object, UInt64(objects.count &- 1))
    }

    func objectIndex(_ v: PVal) -> Int? {
        guard v.tag == .object, v.payload < UInt64(objects.count) else { return nil }
        return Int(v.payload)
    }

    /// The value NEWOBJ/OBJ/INST/`copyreg._reconstructor` produce for an instance of `cls`.
    mutating func instance(of cls: PVal) -> PVal {
        guard cls.tag == .callable else { return PVal(.instance, PVal.none32) }
        if joblibArrays, name(cls.payload) == PickleMachine.wrapperClass,
            let o = newObject(.wrapper, cls: cls.payload)
        {
            return o
        }
        return PVal(.instance, cls.payload)
    }

    /// INST and OBJ call the class with the values above the mark (`stack[from...]`).
    mutating func constructed(_ cls: PVal, from: Int) -> PVal {
        let n = stack.count &- from
        let keep = Swift.min(Swift.max(0, n), PickleMachine.childSlots)
        return constructed(cls, keep > 0 ? Array(stack[from..<from &+ keep]) : [], more: Swift.max(0, n &- keep))
    }

    /// Calling the class (REDUCE, INST, OBJ) runs `NumpyArrayWrapper.__init__(subclass, shape, order, dtype,
    /// allow_mmap=False, numpy_array_alignment_bytes=16)`: the attributes come from the arguments, and a BUILD after
    /// it makes joblib read the array. Other classes give a plain instance.
    mutating func constructed(_ cls: PVal, _ args: [PVal], more: Int) -> PVal {
        let made = instance(of: cls)
        guard let oi = objectIndex(made), objects[oi].kind == .wrapper else { return made }
        let count = args.count &+ more
        guard more == 0, count >= 4, count <= 6 else {
            objects[oi].unsure = true
            return made
        }
        objects[oi].shape = args[1]
        objects[oi].dtype = args[3]
        objects[oi].alignment = count == 6 ? args[5] : PVal(.int, 16)
        return made
    }

    /// `numpy.dtype(spec, align, copy)`: a dtype object whose size the spec string gives.
    mutating func newDtype(_ callee: PVal, _ items: [PVal], _ p: UnsafeRawBufferPointer) -> PVal? {
        guard let o = newObject(.dtype, cls: callee.payload), let i = objectIndex(o) else { return nil }
        if let first = items.first, first.tag == .strSpan || first.tag == .strOwned,
            let spec = stringBytes(first, p), let d = PickleMachine.dtypeSpec(spec)
        {
            objects[i].itemsize = d.size
            objects[i].hasObject = d.object
            objects[i].flexible = d.flexible
            objects[i].unit = d.unit
        }
        return o
    }

    static func isDtypeClass(_ n: String) -> Bool {
        n == "numpy.dtype" || (n.hasPrefix("numpy.") && n.hasSuffix(".dtype"))
    }

    // MARK: - BUILD

    /// BUILD on a tracked object: a dtype's `__setstate__`, or a wrapper's `__dict__` update followed by joblib's
    /// read of the array bytes. Returns a stream end when the stream cannot go on.
    mutating func buildObject(_ oi: Int, _ state: PVal, at: Int, pos: inout Int, _ p: UnsafeRawBufferPointer)
        -> StreamEnd?
    {
        switch objects[oi].kind {
        case .dtype:
            setDtypeState(oi, state)
            return nil
        case .wrapper:
            joblibReads &+= 1
            setWrapperState(oi, state, p)
            return readArray(oi, at: at, pos: &pos, p)
        }
    }

    /// numpy's `arraydescr_setstate`, as measured: versions 3 and 4 take the flags (and so `hasobject`) from the state,
    /// and flexible types take their item size from it; older versions derive the flags from the fields.
    mutating func setDtypeState(_ oi: Int, _ state: PVal) {
        let (items, more) = tupleItems(state)
        let count = items.count &+ more
        guard state.tag == .container, let version = items.first.flatMap(intOf) else {
            return forgetDtype(oi)
        }
        switch (version, count) {
        case (3, 8), (4, 9):
            guard let elsize = intOf(items[5]), let flags = intOf(items[7]) else { return forgetDtype(oi) }
            objects[oi].hasObject = flags & 1 != 0
            if objects[oi].flexible { objects[oi].itemsize = Int(exactly: elsize) }
        case (1, 7), (2, 7):
            guard let elsize = intOf(items[5]) else { return forgetDtype(oi) }
            if items[4] != .noneValue { objects[oi].hasObject = nil }
            if objects[oi].flexible { objects[oi].itemsize = Int(exactly: elsize) }
        default:
            forgetDtype(oi)
        }
    }

    mutating func forgetDtype(_ oi: Int) {
        objects[oi].itemsize = nil
        objects[oi].hasObject = nil
    }

    func intOf(_ v: PVal) -> Int64? {
        switch v.tag {
        case .int: v.intValue
        case .bigInt: v.index.flatMap { $0 < bigInts.count ? bigInts[$0] : nil }
        case .const: v == .trueValue ? 1 : v == .falseValue ? 0 : nil
        default: nil
        }
    }

    /// `load_build` of the pure-Python unpickler: a dict updates `__dict__`; a 2-tuple is (dict, slot state).
    mutating func setWrapperState(_ oi: Int, _ state: PVal, _ p: UnsafeRawBufferPointer) {
        var parts = [state]
        if let ci = containerIndex(state), containers[ci].kind == .tuple {
            let (items, more) = tupleItems(state)
            guard items.count == 2, more == 0 else {
                objects[oi].unsure = true
                return
            }
            parts = items
        }
        for part in parts where part != .noneValue {
            guard let ci = containerIndex(part), containers[ci].kind == .dict else {
                objects[oi].unsure = true
                continue
            }
            let kids = Array(children(ci))
            if containers[ci].count &* 2 > kids.count { objects[oi].unsure = true }
            var k = 0
            while k &+ 1 < kids.count {
                defer { k &+= 2 }
                guard kids[k].tag == .strSpan || kids[k].tag == .strOwned, let key = stringValue(kids[k], p) else {
                    if kids[k].tag == .unknown { objects[oi].unsure = true }
                    continue
                }
                switch key {
                case "shape": objects[oi].shape = kids[k &+ 1]
                case "dtype": objects[oi].dtype = kids[k &+ 1]
                case "numpy_array_alignment_bytes": objects[oi].alignment = kids[k &+ 1]
                default: break
                }
            }
        }
    }

    // MARK: - The array bytes

    /// Where joblib's next raw read starts: inside a frame, after the frame (the pure-Python unpickler read it ahead).
    func rawStart(_ pos: Int) -> Int { pos < frameEnd ? frameEnd &+ rawDeferred : pos }

    mutating func rawAdvance(_ pos: inout Int, by count: Int) {
        if pos < frameEnd {
            rawDeferred &+= count
        } else {
            frameEnd = 0  // the frame is used up: the raw bytes are no opcode running past it
            pos &+= count
        }
    }

    mutating func unknownArray(_ at: Int, _ why: String) -> StreamEnd {
        observe(
            "pickle.joblib-array-unknown",
            "joblib reads a NumPy array's bytes here, but \(why); the rest of the stream is not analysed", offset: at,
            global: PickleMachine.wrapperClass)
        return .failed(at)
    }

    /// `NumpyArrayWrapper.read_array`: skips the raw bytes (or scans the nested pickle of an object array).
    mutating func readArray(_ oi: Int, at: Int, pos: inout Int, _ p: UnsafeRawBufferPointer) -> StreamEnd? {
        let w = objects[oi]
        guard !w.unsure else { return unknownArray(at, "the wrapper's state is not a plain dict the scanner can read") }
        guard let shapeV = w.shape, let dtypeV = w.dtype else {
            return unknownArray(at, "the wrapper has no shape or dtype (joblib would fail here)")
        }
        guard let di = objectIndex(dtypeV), objects[di].kind == .dtype, let hasObject = objects[di].hasObject else {
            return unknownArray(at, "its dtype is not a numpy.dtype the scanner can evaluate")
        }
        guard let ci = containerIndex(shapeV), containers[ci].kind == .tuple || containers[ci].kind == .list,
            containers[ci].count == Int(containers[ci].nchild)
        else { return unknownArray(at, "its shape is not a tuple of constant integers") }
        var count: Int64 = 1
        for v in children(ci) {
            guard let d = intOf(v) else { return unknownArray(at, "its shape is not a tuple of constant integers") }
            let (m, o) = count.multipliedReportingOverflow(by: d)
            guard d >= 0, !o else { return badArray(at, "the shape \(render(shapeV, p)) is negative or overflows") }
            count = m
        }
        if hasObject { return readObjectArray(at: at, pos: &pos, p) }
        guard let itemsize = objects[di].itemsize else {
            return unknownArray(at, "its dtype's item size is not known")
        }
        guard itemsize > 0 else { return badArray(at, "its dtype's item size is \(itemsize)") }
        var start = rawStart(pos)
        var consumed = 0
        if let align = w.alignment, align != .noneValue {
            guard align.tag != .unknown, align.tag != .callResult, align.tag != .instance else {
                return unknownArray(at, "whether alignment padding follows is not known")
            }
            guard start < p.count else { return lyingArray(at, 1, 0) }
            let pad = Int(p[start])
            consumed = 1 &+ pad
            start &+= consumed
        }
        let (bytes, o) = count.multipliedReportingOverflow(by: Int64(itemsize))
        let remaining = Swift.max(0, p.count &- start)
        guard !o, bytes <= Int64(remaining) else { return lyingArray(at, o ? Int64.max : bytes, remaining) }
        rawAdvance(&pos, by: consumed &+ Int(bytes))
        return nil
    }

    mutating func badArray(_ at: Int, _ why: String) -> StreamEnd {
        observe(
            "pickle.malformed-argument", "joblib cannot read the NumPy array here: \(why)", offset: at,
            global: PickleMachine.wrapperClass)
        return .failed(at)
    }

    mutating func lyingArray(_ at: Int, _ length: Int64, _ remaining: Int) -> StreamEnd {
        observe(
            "pickle.truncated", "a joblib array declares \(length) bytes but only \(remaining) remain", offset: at,
            details: [("opcode", "BUILD"), ("length", String(length)), ("remaining", String(remaining))])
        return .failed(at)
    }

    /// An object array: joblib calls `pickle.load` on the file, which reads one complete pickle (C unpickler,
    /// frames read in place) and leaves the file just after its STOP.
    mutating func readObjectArray(at: Int, pos: inout Int, _ p: UnsafeRawBufferPointer) -> StreamEnd? {
        let start = rawStart(pos)
        guard depth < budget.maxNesting else {
            observe(
                "pickle.nesting-limit", "an object array's pickle nested deeper than \(budget.maxNesting) levels",
                offset: start)
            return .budget(at)
        }
        guard nested.count < nestedCap, opcodeCount < budget.maxOperations else {
            noteBudget("nested", "more than \(nestedCap) nested pickles; later ones are not analysed", start)
            return .budget(at)
        }
        guard start < p.count, let sub = view.slice(start, p.count &- start) else { return lyingArray(at, 1, 0) }
        var subBudget = budget
        subBudget.maxOperations = budget.maxOperations &- opcodeCount
        var machine = PickleMachine(view: sub, budget: subBudget, member: member, depth: depth &+ 1, joblib: false)
        let (report, end) = sub.withUnsafeBytes { machine.scanOne($0) }
        opcodeCount &+= report.opcodeCount
        nested.append(report)
        nestedOffsets.append(start)
        guard case .stop(let length) = end else { return .failed(at) }
        rawAdvance(&pos, by: length)
        return nil
    }

    /// Scans exactly one pickle from the start of `p` and says how it ended.
    mutating func scanOne(_ p: UnsafeRawBufferPointer) -> (PickleReport, StreamEnd) {
        resetStream()
        let end = runStream(p, start: 0)
        var endOffset = 0
        switch end {
        case .stop(let at), .failed(let at), .budget(let at): endOffset = at
        }
        let report = PickleReport(
            imports: imports, calls: calls, observations: observations, streams: 1,
            protocolVersion: protocolVersion, opcodeCount: opcodeCount, nested: nested,
            nestedOffsets: nestedOffsets, endOffset: endOffset,
            complete: { if case .stop = end { true } else { false } }())
        return (report, end)
    }

    // MARK: - dtype strings

    /// What `numpy.dtype(spec)` gives for the spellings numpy writes and the common aliases; nil for anything else
    /// (the caller then says the size is unknown rather than guess).
    static func dtypeSpec(_ raw: [UInt8]) -> (size: Int, object: Bool, flexible: Bool, unit: Int)? {
        var s = String(decoding: raw, as: UTF8.self)
        if let first = s.first, "<>=|".contains(first) { s.removeFirst() }
        if let bracket = s.firstIndex(of: "["), s.hasSuffix("]") { s = String(s[..<bracket]) }
        guard !s.isEmpty, s.count <= 16 else { return nil }
        let named: [String: Int] = [
            "bool": 1, "bool_": 1, "int8": 1, "uint8": 1, "byte": 1, "ubyte": 1, "int16": 2, "uint16": 2, "short": 2,
            "ushort": 2, "half": 2, "float16": 2, "int32": 4, "uint32": 4, "intc": 4, "uintc": 4, "float32": 4,
            "single": 4, "int64": 8, "uint64": 8, "int": 8, "int_": 8, "intp": 8, "uintp": 8, "longlong": 8,
            "ulonglong": 8, "float": 8, "float64": 8, "double": 8, "complex64": 8, "csingle": 8, "datetime64": 8,
            "timedelta64": 8, "complex": 16, "complex128": 16, "cdouble": 16, "longdouble": 16, "float128": 16,
            "complex256": 32, "clongdouble": 32,
        ]
        if let size = named[s] { return (size, false, false, 1) }
        if s == "object" || s == "object_" || s == "O" || s == "O8" { return (8, true, false, 1) }
        let chars = Array(s.utf8)
        let kind = chars[0]
        let digits = chars.dropFirst()
        let number: Int? =
            digits.isEmpty
            ? nil : digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) ? Int(String(decoding: digits, as: UTF8.self)) : nil
        if !digits.isEmpty && number == nil { return nil }
        switch (kind, number) {
        case (UInt8(ascii: "S"), _), (UInt8(ascii: "a"), _), (UInt8(ascii: "V"), _):
            return (number ?? 0, false, true, 1)
        case (UInt8(ascii: "U"), _):
            let (size, o) = (number ?? 0).multipliedReportingOverflow(by: 4)
            return o ? nil : (size, false, true, 4)
        case (UInt8(ascii: "b"), 1?): return (1, false, false, 1)
        case (UInt8(ascii: "i"), let n?), (UInt8(ascii: "u"), let n?):
            return [1, 2, 4, 8].contains(n) ? (n, false, false, 1) : nil
        case (UInt8(ascii: "f"), let n?): return [2, 4, 8, 16].contains(n) ? (n, false, false, 1) : nil
        case (UInt8(ascii: "c"), let n?): return [8, 16, 32].contains(n) ? (n, false, false, 1) : nil
        case (UInt8(ascii: "M"), 8?), (UInt8(ascii: "m"), 8?), (UInt8(ascii: "M"), nil), (UInt8(ascii: "m"), nil):
            return (8, false, false, 1)
        case (_, nil) where chars.count == 1:
            let codes: [UInt8: Int] = [
                UInt8(ascii: "?"): 1, UInt8(ascii: "b"): 1, UInt8(ascii: "B"): 1, UInt8(ascii: "h"): 2,
                UInt8(ascii: "H"): 2, UInt8(ascii: "i"): 4, UInt8(ascii: "I"): 4, UInt8(ascii: "l"): 8,
                UInt8(ascii: "L"): 8, UInt8(ascii: "q"): 8, UInt8(ascii: "Q"): 8, UInt8(ascii: "p"): 8,
                UInt8(ascii: "P"): 8, UInt8(ascii: "e"): 2, UInt8(ascii: "f"): 4, UInt8(ascii: "d"): 8,
                UInt8(ascii: "g"): 16, UInt8(ascii: "F"): 8, UInt8(ascii: "D"): 16, UInt8(ascii: "G"): 32,
            ]
            return codes[kind].map { ($0, false, false, 1) }
        default:
            return nil
        }
    }
}
