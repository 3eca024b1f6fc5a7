/// Pickles inside strings, and the places where CPython's loaders read the same bytes differently.
extension PickleMachine {
    /// Strings that start like a pickle and wait for their consumer.
    static let pendingCap = 256

    /// Scans a string value that looks like a pickle, recursively up to the nesting bound. A complete pickle (it
    /// reaches `STOP` cleanly) is always kept; bytes that merely start like one (a NumPy scalar's raw bytes, say) are
    /// kept only if the string is later passed to something that may unpickle it (`promoteNested`).
    mutating func nestedCheck(
        _ bytes: UnsafeRawBufferPointer, at offset: Int, slice: (Int, Int)?, copy: [UInt8]? = nil, key: PVal
    ) {
        guard PickleLint.plausible(bytes) else { return }
        guard depth < budget.maxNesting else {
            observe(
                "pickle.nesting-limit", "a pickle nested deeper than \(budget.maxNesting) levels is not analysed",
                offset: offset)
            return
        }
        guard nested.count < nestedCap, pendingNested.count < PickleMachine.pendingCap else {
            noteBudget("nested", "more than \(nestedCap) nested pickles; later ones are not analysed", offset)
            return
        }
        let sub: ByteView?
        if let (o, l) = slice { sub = view.slice(o, l) } else { sub = copy.map { ByteView($0) } }
        guard let sub else { return }
        var subBudget = budget
        subBudget.maxOperations = Swift.max(0, budget.maxOperations &- opcodeCount)
        let report = PickleScanner.scan(sub, budget: subBudget, member: member, depth: depth &+ 1)
        opcodeCount &+= report.opcodeCount
        if PickleMachine.isWholePickle(report) {
            nested.append(report)
            nestedOffsets.append(offset)
        } else {
            pendingNested[key.raw] = (report, offset)
        }
    }

    /// Callables real files pass raw bytes to as data (NumPy scalars and arrays, protocol-2 bytes): a string that
    /// merely starts like a pickle is not one for them. Every other callee may unpickle what it is given
    /// (`pickle.loads`, `torch.load` of a `BytesIO`, `functools.partial(pickle.loads, …)`, a callee the scanner
    /// cannot name), or pass it on (`bytes(…)`, containers), so the string's scan is kept.
    static let dataConsumers: Set<String> = [
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct", "numpy.dtype", "numpy.ndarray", "numpy.frombuffer", "_codecs.encode",
        "codecs.encode",
    ]

    /// Whether a scan is of a real pickle: it reached STOP, and it imports something or shows none of the anomalies
    /// random bytes produce (trailing bytes, invalid opcodes, underflows, EXT codes, …).
    static func isWholePickle(_ r: PickleReport) -> Bool {
        let anomalies: Set<String> = [
            "pickle.trailing-data", "pickle.invalid-opcode", "pickle.stack-underflow", "pickle.memo-miss",
            "pickle.truncated", "pickle.ext-code", "pickle.malformed-argument", "pickle.unsupported-protocol",
            "pickle.proto-anomaly", "pickle.frame-divergence",
        ]
        // A pickle that reaches STOP after an import is no accident of random bytes, whatever follows it.
        return r.complete && (!r.imports.isEmpty || !r.observations.contains { anomalies.contains($0.kind) })
    }

    /// Keeps the scans of strings that are not whole pickles when a call that may unpickle receives them: the loader
    /// runs every opcode before the one that breaks, and ignores what follows STOP.
    mutating func promoteNested(_ values: [PVal], callee: String, build: Bool) {
        // Strings inside an argument tuple or state count too (ndarray states, `pickle.loads(*args)`).
        var all: [PVal] = []
        for v in values {
            if v.isStringLike { all.append(v) } else if let ci = containerIndex(v) { all += children(ci) }
        }
        let keep = !build && !PickleMachine.dataConsumers.contains(callee)
        for v in all where v.isStringLike {
            guard let (report, offset) = pendingNested.removeValue(forKey: v.raw) else { continue }
            if keep {
                nested.append(report)
                nestedOffsets.append(offset)
            }
        }
    }

    /// An opcode that CPython's loaders read differently: `pickle.loads` of bytes reads frames in place (an opcode
    /// may run past a frame's end), the C unpickler reading a file drops the rest of a frame when an opcode needs more
    /// than it holds, and the pure-Python unpickler (joblib) refuses both.
    mutating func frameDivergence(_ at: Int, _ what: String) {
        observe(
            "pickle.frame-divergence",
            "\(what): CPython's unpicklers disagree on these bytes (bytes: read on; files: the rest of the frame is skipped; pure Python: refused)",
            offset: at)
    }

    /// `PROTO` after the first opcode or more than once: CPython accepts any version up to 5 anywhere, but no pickler
    /// writes it, and scanners that only read the first one disagree.
    mutating func protoAnomaly(_ at: Int, start: Int, version: Int) {
        protoCount &+= 1
        if at != start || protoCount > 1 {
            observe(
                "pickle.proto-anomaly",
                protoCount > 1
                    ? "a second PROTO (version \(version))" : "PROTO (version \(version)) is not the first opcode",
                offset: at, details: [("version", String(version))])
        }
    }
}
