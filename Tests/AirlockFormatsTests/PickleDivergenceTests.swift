@testable import AirlockFormats
import Foundation
import Testing

/// Where CPython's loaders read the same bytes differently, and the expansion bombs of fickling's tests. Each sample
/// is a few hand-made bytes; the semantics they pin were measured with CPython 3.11 (`pickle.loads`, `pickle.load` of
/// an `io.BytesIO`, `pickle._Unpickler`).
@Suite("Pickle scanner: loader divergences and bombs")
struct PickleDivergenceTests {
    static let system = Array("cos\nsystem\n(S'touch /tmp/airlock-pickle-test'\ntR".utf8)

    func frame(_ length: UInt64) -> [UInt8] { [0x95] + withUnsafeBytes(of: length.littleEndian) { Array($0) } }

    @Test("a file reader takes an argument that runs past a frame from after the frame; the scan reads both ways")
    func straddle() {
        // FRAME(3): SHORT_BINUNICODE, length 28, 'A' | 27 x '.' os.system ...
        let b: [UInt8] =
            [0x80, 4] + frame(3) + [0x8C, 28, 0x41] + [UInt8](repeating: 0x78, count: 27) + [0x2E, 0x30]
            + PickleDivergenceTests.system + [0x2E]
        let reading = b.withUnsafeBytes { FileReading.read($0, cap: 1 << 20) }
        // PROTO 4, SHORT_BINUNICODE 28 from offset 14 (after the frame): the 'A' in the frame is dropped.
        #expect(Array(reading.bytes.prefix(4)) == [0x80, 4, 0x8C, 28])
        #expect(reading.sourceOffset(4) == 14)
        let r = scan(b)
        #expect(r.observations.contains { $0.kind == "pickle.frame-divergence" && $0.evidence.offset == 11 })
        let system = r.imports.first { $0.fullName == "os.system" }
        #expect(system?.offset == 14 + 28 + 1)
    }

    @Test("frames read in place are no divergence; STOP inside a frame ends the pickle there")
    func framesInPlace() {
        let plain: [UInt8] = [0x80, 4] + frame(3) + [0x4B, 1, 0x2E]
        #expect(scan(plain).observations.isEmpty)
        let two: [UInt8] = [0x80, 4] + frame(6) + [0x4B, 1, 0x2E, 0x4B, 2, 0x2E]
        let r = scan(two)
        #expect(r.streams == 2)
        #expect(r.observations.isEmpty)
    }

    @Test("PROTO: a second one, one after the first opcode, an unsupported one mid-stream")
    func proto() {
        let twice = scan([0x80, 2, 0x80, 3, 0x4B, 1, 0x2E])
        #expect(twice.observations.map(\.kind) == ["pickle.proto-anomaly"])
        #expect(twice.protocolVersion == 2)
        let late = scan([0x4B, 1, 0x80, 2, 0x2E])
        #expect(late.observations.map(\.kind) == ["pickle.proto-anomaly"])
        let bad = scan([0x80, 2, 0x4E, 0x30, 0x80, 9, 0x4E, 0x2E])
        #expect(Set(bad.observations.map(\.kind)) == ["pickle.proto-anomaly", "pickle.unsupported-protocol"])
        // Legacy PyTorch: several pickles, each with its own PROTO, is no anomaly.
        #expect(scan([0x80, 2, 0x4B, 1, 0x2E, 0x80, 2, 0x4B, 2, 0x2E]).observations.isEmpty)
    }

    @Test("bytes that start like a pickle but are not one: kept only when something may unpickle them")
    func nestedConsumers() {
        // SHORT_BINBYTES holding an incomplete pickle (os.system without STOP).
        let inner = PickleDivergenceTests.system
        func bytesArg() -> [UInt8] { [0x43, UInt8(inner.count)] + inner }
        // numpy.core.multiarray.scalar(None, b'...'): data, not a pickle.
        let scalar = Array("cnumpy.core.multiarray\nscalar\n".utf8) + [0x4E] + bytesArg() + [0x86, 0x52, 0x2E]
        #expect(scan([0x80, 3] + scalar).nested.isEmpty)
        // pickle.loads(b'...'): the loader runs os.system before the stream breaks.
        let loads = Array("cpickle\nloads\n".utf8) + bytesArg() + [0x85, 0x52, 0x2E]
        let r = scan([0x80, 3] + loads)
        #expect(r.nested.count == 1)
        #expect(r.allImports.contains { $0.fullName == "os.system" })
        // A whole pickle is kept whoever receives it.
        let whole = [0x43, UInt8(inner.count + 1)] + inner + [0x2E]
        let kept = scan(
            [0x80, 3] + Array("cnumpy.core.multiarray\nscalar\n".utf8) + [0x4E] + whole + [0x86, 0x52, 0x2E])
        #expect(kept.nested.count == 1)
    }

    @Test("expansion bombs: DUP/APPEND self-reference, memo doubling, a stack of millions: bounded, budget noted")
    func bombs() {
        // EMPTY_LIST, then (DUP, APPEND) x 1 M: the list holds itself 1 M times.
        var dup: [UInt8] = [0x80, 2, 0x5D]
        for _ in 0..<1_000_000 { dup += [0x32, 0x61] }
        dup.append(0x2E)
        let r1 = scan(dup)
        #expect(r1.observations.isEmpty)
        #expect(r1.endOffset == dup.count)
        // EMPTY_LIST PUT 0 POP, then (MARK GET 0 GET 0 LIST PUT 0 POP) x 300 k: 2^300k nodes for a copying interpreter.
        var doubling: [UInt8] = [0x80, 2, 0x5D, 0x71, 0, 0x30]
        for _ in 0..<300_000 { doubling += [0x28, 0x68, 0, 0x68, 0, 0x6C, 0x71, 0, 0x30] }
        doubling += [0x68, 0, 0x2E]
        let r2 = scan(doubling)
        #expect(r2.endOffset == doubling.count)
        // DUP x 2 M: the stack passes its bound.
        var stack: [UInt8] = [0x80, 2, 0x4E]
        stack += [UInt8](repeating: 0x32, count: 2_000_000)
        stack.append(0x2E)
        let r3 = scan(stack)
        #expect(r3.observations.contains { $0.kind == "pickle.budget" })
        // A call rendering a deeply self-referencing list stays short.
        var render: [UInt8] = [0x80, 2, 0x5D, 0x71, 0]
        for _ in 0..<10_000 { render += [0x68, 0, 0x68, 0, 0x86, 0x71, 0, 0x30] }
        render += Array("cbuiltins\nprint\n".utf8) + [0x68, 0, 0x85, 0x52, 0x2E]
        let r4 = scan(render)
        #expect(r4.calls.allSatisfy { $0.args.joined().utf8.count < 1024 })
    }

    @Test("EXT after copyreg.add_extension imports what the registry names, in a later pickle of the file too")
    func extensionRegistry() {
        let register = Array("ccopyreg\nadd_extension\n(S'os'\nS'system'\nK\u{7}tR0".utf8)
        let call = [0x82, 7] + Array("(S'touch /tmp/airlock-pickle-test'\ntR".utf8) + [0x2E]
        let one = scan([0x80, 2] + register + call)
        #expect(one.importNames == ["copyreg.add_extension", "os.system"])
        #expect(one.imports.last?.opcode == "EXT1")
        let two = scan([0x80, 2] + register + [0x4E, 0x2E, 0x80, 2] + call)
        #expect(two.streams == 2)
        #expect(two.importNames.last == "os.system")
        // Unregistered: no import, the code is the evidence.
        #expect(scan([0x80, 2] + call).observations.contains { $0.kind == "pickle.ext-code" })
    }

    @Test("joblib arrays whose size cannot be told stop the scan with a finding, never a guess")
    func joblibUnknown() {
        // NumpyArrayWrapper() BUILD {'shape': <unknown>, 'dtype': 'f8'} : the dtype is a string, not a numpy.dtype.
        var b: [UInt8] =
            [0x80, 2] + Array("cjoblib.numpy_pickle\nNumpyArrayWrapper\n".utf8) + [0x29, 0x81, 0x7D, 0x28]
        b += [0x55, 5] + Array("shape".utf8) + [0x4B, 2, 0x85]
        b += [0x55, 5] + Array("dtype".utf8) + [0x55, 2] + Array("f8".utf8)
        b += [0x75, 0x62] + [UInt8](repeating: 0x41, count: 16) + [0x2E]
        let j = PickleScanner.scan(ByteView(b), joblib: true)
        #expect(j.observations.map(\.kind) == ["pickle.joblib-array-unknown"])
        // Read as a plain pickle (pickle.load), the bytes after BUILD are opcodes.
        let plain = PickleScanner.scan(ByteView(b))
        #expect(!plain.observations.contains { $0.kind == "pickle.joblib-array-unknown" })
    }

    @Test("numpy dtype strings: the sizes numpy gives")
    func dtypeSpecs() {
        let cases: [(String, Int?, Bool)] = [
            ("f8", 8, false), ("<i4", 4, false), (">u2", 2, false), ("b1", 1, false), ("c16", 16, false),
            ("M8", 8, false), ("m8[ns]", 8, false), ("O8", 8, true), ("U3", 12, false), ("S5", 5, false),
            ("V12", 12, false), ("d", 8, false), ("float32", 4, false), ("f3", nil, false), ("x9", nil, false),
        ]
        for (spec, size, object) in cases {
            let d = PickleMachine.dtypeSpec(Array(spec.utf8))
            #expect(d?.size == size, Comment(rawValue: spec))
            if size != nil { #expect(d?.object == object, Comment(rawValue: spec)) }
        }
    }
}
