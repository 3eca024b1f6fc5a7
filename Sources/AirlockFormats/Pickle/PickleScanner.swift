/// A pure-Swift symbolic pickle scanner: it follows the unpickler's stack and memo without executing anything and
/// reports every import and every call with its constant arguments. Safe on hostile input: bounded time, memory
/// and recursion (see `ScanBudget`).
public enum PickleScanner {
    /// Scans `view` (one or several pickles back to back). `member` is copied into every observation; `depth` is the
    /// nesting level of this view (pickles found inside strings are scanned with `depth + 1` up to
    /// `budget.maxNesting`).
    ///
    /// `joblib` reads the view as joblib's `NumpyUnpickler` does (a file written by `joblib.dump`, uncompressed or
    /// after decompression): raw NumPy array bytes follow each `NumpyArrayWrapper` and are skipped, an object array's
    /// nested pickle is scanned. Leave it false for pickles read by `pickle.load`, `torch.load` or `numpy.load`.
    ///
    /// `streams` is how many pickles the loader reads one after the other (legacy `torch.load` reads 5: the magic
    /// number, the protocol version, sys_info, the object and the storage keys): that many are read whatever their
    /// first bytes look like; pickles after them only if they look like pickles.
    public static func scan(
        _ view: ByteView, budget: ScanBudget = .standard, member: String? = nil, depth: Int = 0, joblib: Bool = false,
        streams: Int = 1
    ) -> PickleReport {
        var machine = PickleMachine(view: view, budget: budget, member: member, depth: depth, joblib: joblib)
        var report = view.withUnsafeBytes { p in machine.scanAll(p, forcedStreams: streams) }
        addFileReading(&report, view, budget: budget, member: member, depth: depth)
        if machine.joblibReads > 0 {
            // The same file given to pickle.load runs the "array bytes" as opcodes: add what that reading imports.
            let plain = scan(view, budget: budget, member: member, depth: depth, joblib: false, streams: streams)
            report.merge(plain) { $0 }
        }
        return report
    }
}
