@testable import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

/// Self-checks on realistic large pickles (no timing assertions: timing belongs to benchmarks).
@Suite("Pickle scanner: large pickles")
struct PickleLargeTests {
    /// Writes a pickle made by CPython's own pickler to a temp file; returns the path and the expected opcode count.
    func generate(_ kind: String, _ n: Int) throws -> (String, Int) {
        let path = NSTemporaryDirectory() + "airlock-pickle-\(kind)-\(getpid()).pkl"
        let script = """
            import pickle, struct, sys
            kind, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
            if kind == "floats":
                value = [float(i) for i in range(n)]
                class R:
                    def __reduce__(self): return (len, (value,))   # builtins.len: harmless, and shows the argument
                data = pickle.dumps(R(), protocol=4)
            else:
                data = pickle.dumps({"layer%07d.block.weight" % i: i * 0.5 for i in range(n)}, protocol=4)
            with open(path, "wb") as f:
                f.write(data)
            pos, frames = 2, 0
            while pos < len(data):
                assert data[pos] == 0x95
                frames += 1
                pos += 9 + struct.unpack("<Q", data[pos + 1:pos + 9])[0]
            batches = (n + 999) // 1000
            if kind == "floats":
                # PROTO, FRAMEs, 'builtins' MEMOIZE 'len' MEMOIZE STACK_GLOBAL MEMOIZE EMPTY_LIST MEMOIZE,
                # (MARK BINFLOAT*1000 APPENDS)*, TUPLE1 MEMOIZE REDUCE MEMOIZE STOP
                print(1 + frames + 8 + n + 2 * batches + 5)
            else:
                # PROTO, FRAMEs, EMPTY_DICT MEMOIZE, (MARK (key MEMOIZE value)*1000 SETITEMS)*, STOP; the C pickler's
                # batch loop writes one more MARK SETITEMS pair when the size is a multiple of 1000.
                print(1 + frames + 2 + 3 * n + 2 * (n // 1000 + 1) + 1)
            """
        let out = try runPython(["-c", script, kind, String(n), path])
        guard let ops = Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw PickleTestError("bad output \(out)")
        }
        return (path, ops)
    }

    @Test("5M floats (protocol 4, 45 MB): one import, one call, exact opcode count, no observations")
    func fiveMillionFloats() throws {
        let (path, ops) = try generate("floats", 5_000_000)
        defer { unlink(path) }
        let view = try ByteView.map(path: path)
        let clock = ContinuousClock()
        var r = PickleReport()
        let t = clock.measure { r = PickleScanner.scan(view) }
        print("5M floats: \(view.count) bytes scanned in \(t)")
        #expect(r.importNames == ["builtins.len"])
        #expect(
            r.calls == [
                PickleCall(
                    callee: "builtins.len", args: ["[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, ...]"],
                    offset: r.calls.first?.offset ?? 0, opcode: "REDUCE")
            ])
        #expect(r.opcodeCount == ops)
        #expect(r.observations.isEmpty)
        #expect(r.streams == 1 && r.protocolVersion == 4 && r.endOffset == view.count)
    }

    @Test("a dict of 1M str → float entries (protocol 4): no imports, no observations")
    func millionEntryDict() throws {
        let (path, ops) = try generate("dict", 1_000_000)
        defer { unlink(path) }
        let view = try ByteView.map(path: path)
        let clock = ContinuousClock()
        var r = PickleReport()
        let t = clock.measure { r = PickleScanner.scan(view) }
        print("1M-entry dict: \(view.count) bytes scanned in \(t)")
        #expect(r.imports.isEmpty && r.calls.isEmpty && r.nested.isEmpty)
        #expect(r.opcodeCount == ops)
        #expect(r.observations.isEmpty)
    }
}
