@testable import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

@Suite("Pickle scanner: hostile input")
struct PickleMalformedTests {
    static let cmd = Array("touch /tmp/airlock-pickle-test".utf8)

    func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    func le64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    func sbu(_ s: String) -> [UInt8] { [0x8C, UInt8(s.utf8.count)] + Array(s.utf8) }
    /// `os.system('touch ...')` without STOP, protocol 2.
    var payload: [UInt8] {
        [0x80, 2] + Array("cos\nsystem\n".utf8) + [0x58] + le32(UInt32(Self.cmd.count)) + Self.cmd + [0x85, 0x52]
    }

    @Test("lying lengths stop the stream with an observation at the opcode; what came before stays")
    func lyingLengths() {
        let cases: [(String, [UInt8])] = [
            ("BINUNICODE", [0x58] + le32(0x8000_0000) + [0x61, 0x62]),
            ("BINBYTES", [0x42] + le32(0xFFFF_FFFF)),
            ("BINSTRING", [0x54] + le32(0xFFFF_FFF0) + [0x61]),
            ("BINUNICODE8", [0x8D] + le64(.max) + [0x61]),
            ("BINBYTES8", [0x8E] + le64(1 << 63)),
            ("BYTEARRAY8", [0x96] + le64(UInt64(Int.max) + 1)),
            ("LONG4", [0x8B] + le32(0x8000_0001)),
            ("SHORT_BINUNICODE", [0x8C, 0xFF, 0x61]),
            ("LONG1", [0x8A, 0x09, 0x01]),
        ]
        for (name, tail) in cases {
            let bytes = payload + tail
            let r = scan(bytes)
            #expect(r.importNames == ["os.system"], "\(name)")
            #expect(r.calls.map(\.callee) == ["os.system"], "\(name)")
            let o = r.first("pickle.truncated")
            #expect(o?.evidence.offset == payload.count, "\(name): \(r.observations)")
            #expect(o?.evidence.details.first { $0.0 == "opcode" }?.1 == name)
            #expect(r.endOffset == payload.count)
        }
        // A FRAME that lies is noted, and the scan goes on.
        let framed = [0x80, 4, 0x95] + le64(.max) + sbu("os") + sbu("system") + [0x93, 0x2E]
        let fr = scan(framed)
        #expect(fr.count("pickle.truncated") == 1)
        #expect(fr.importNames == ["os.system"])
    }

    @Test(
        "LONG_BINGET 0xFFFFFFFF is a memo miss; LONG_BINPUT 0xFFFFFFFF is kept sparsely without allocating 2^32 slots")
    func hugeMemoIndices() {
        let miss = scan([0x80, 2, 0x6A] + le32(0xFFFF_FFFF) + [0x2E])
        #expect(miss.count("pickle.memo-miss") == 1)
        #expect(miss.first("pickle.memo-miss")?.evidence.offset == 2)

        // The callable stored at index 2^32-1 and fetched back.
        var b: [UInt8] = [0x80, 2] + Array("cos\nsystem\n".utf8) + [0x72] + le32(0xFFFF_FFFF) + [0x30]
        b += [0x6A] + le32(0xFFFF_FFFF) + sbu("x") + [0x85, 0x52, 0x2E]
        let r = scan(b)
        #expect(r.calls.map(\.callee) == ["os.system"])
        #expect(r.observations.isEmpty)
        // Protocol-0 text indices too, including absurd ones.
        let t = scan(Array("cos\nsystem\np99999999999999999999\n0g99999999999999999999\n(S'x'\ntR.".utf8))
        #expect(t.count("pickle.malformed-argument") == 1)
        #expect(t.count("pickle.memo-miss") == 1)
    }

    @Test("200k-deep MARK/EMPTY_LIST and 200k-deep nested lists: no recursion, bounded rendering")
    func deepNesting() {
        let depth = 200_000
        var marks: [UInt8] = [0x80, 2]
        for _ in 0..<depth { marks += [0x28, 0x5D] }
        marks.append(0x2E)
        let r = scan(marks)
        #expect(r.streams == 1)
        #expect(r.opcodeCount == 2 * depth + 2)

        // ]]]]...aaaa: a list inside a list 200k times, then passed to os.system.
        var lists: [UInt8] = [0x80, 2] + Array("cos\nsystem\n".utf8)
        lists += [UInt8](repeating: 0x5D, count: depth)
        lists += [UInt8](repeating: 0x61, count: depth - 1)
        lists += [0x85, 0x52, 0x2E]
        let l = scan(lists)
        #expect(l.calls.count == 1)
        #expect(l.calls.first?.args == ["[[[[[...]]]]]"])
        #expect(l.observations.isEmpty)

        // Deep MARKs with a small budget stop cleanly.
        var budget = ScanBudget.standard
        budget.maxEntries = 1000
        let capped = scan(marks, budget: budget)
        #expect(capped.count("pickle.budget") == 1)
    }

    @Test("huge counts: stack, operations, memo and held-bytes budgets are observations, never crashes")
    func budgets() {
        var budget = ScanBudget.standard
        budget.maxEntries = 1000
        // 5000 values after one MARK: the stack bound is reached.
        var b: [UInt8] = [0x80, 2, 0x28] + [UInt8](repeating: 0x4E, count: 5000) + [0x74, 0x2E]
        var r = scan(b, budget: budget)
        #expect(r.first("pickle.budget")?.evidence.offset == 3 + 1000)

        // Operations.
        budget = .standard
        budget.maxOperations = 100
        r = scan(payload + [UInt8](repeating: 0x4E, count: 1000) + [0x2E], budget: budget)
        #expect(r.count("pickle.budget") == 1)
        #expect(r.opcodeCount == 100)
        #expect(r.calls.map(\.callee) == ["os.system"])

        // Memo: entries past the bound are dropped; fetching one is a budget observation.
        budget = .standard
        budget.maxEntries = 16
        b = [0x80, 4]
        for _ in 0..<100 { b += [0x4E, 0x94, 0x30] }
        b += [0x68, 50, 0x2E]
        r = scan(b, budget: budget)
        #expect(r.count("pickle.budget") == 1)
        #expect(r.count("pickle.memo-miss") == 0)

        // Containers: a list of 3M items keeps a count and 8 children.
        var list: [UInt8] = [0x80, 2] + Array("cbuiltins\nlen\n".utf8) + [0x5D]
        for _ in 0..<3000 {
            list.append(0x28)
            list += [UInt8](repeating: 0x88, count: 1000)
            list.append(0x65)
        }
        list += [0x85, 0x52, 0x2E]
        r = scan(list)
        #expect(r.calls.first?.args == ["[True, True, True, True, True, True, True, True, ...]"])
        #expect(r.observations.isEmpty)
    }

    @Test("nested pickles: found inside bytes, scanned to maxNesting, deeper ones observed")
    func nestingLimit() {
        // pickle.loads(b'<pickle.loads(b'...os.system...')>') six levels deep.
        var inner: [UInt8] = payload + [0x2E]
        for _ in 0..<6 {
            inner =
                [0x80, 3] + Array("cpickle\nloads\n".utf8) + [0x42] + le32(UInt32(inner.count)) + inner + [
                    0x85, 0x52, 0x2E,
                ]
        }
        var budget = ScanBudget.standard
        budget.maxNesting = 4
        let r = scan(inner, budget: budget)
        var level = r
        var levels = 0
        while let next = level.nested.first {
            level = next
            levels += 1
        }
        #expect(levels == 4)
        #expect(level.count("pickle.nesting-limit") == 1)
        #expect(r.nestedOffsets == [2 + 14 + 5])
    }

    @Test("decoding the same memoized string again and again is bounded")
    func foldAmplification() {
        // base64.b64decode(GET 0) ten thousand times, on a 64 KiB string that decodes to a pickle.
        let inner = payload + [0x2E]
        let b64 = Array(Data(inner + [UInt8](repeating: 0x4E, count: 48 * 1024)).base64EncodedString().utf8)
        var b: [UInt8] = [0x80, 4, 0x58] + le32(UInt32(b64.count)) + b64 + [0x94, 0x30]
        b += Array("cbase64\nb64decode\n".utf8) + [0x94, 0x30]
        for _ in 0..<10_000 { b += [0x68, 1, 0x68, 0, 0x85, 0x52, 0x30] }
        b.append(0x4E)
        b.append(0x2E)
        var budget = ScanBudget.standard
        budget.maxHeldBytes = 1 << 20
        let r = scan(b, budget: budget)
        #expect(
            r.observations.contains {
                $0.kind == "pickle.budget" && $0.evidence.details.contains { $0 == ("limit", "folded") }
            })
        #expect(r.nested.count <= 25)
        #expect(r.nested.first?.importNames == ["os.system"])
    }

    @Test("random opcode soup and random bytes never crash")
    func fuzz() {
        var rng = SplitMix(state: 0xA1B0C)
        let interesting: [UInt8] = [
            0x28, 0x2E, 0x30, 0x31, 0x32, 0x4E, 0x52, 0x61, 0x62, 0x63, 0x65, 0x68, 0x6A, 0x6C,
            0x6F, 0x71, 0x72, 0x73, 0x74, 0x75, 0x5D, 0x7D, 0x29, 0x81, 0x85, 0x86, 0x87, 0x8C,
            0x8F, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x58, 0x42, 0x43, 0x4B, 0x8A, 0x8B, 0x82,
            0x69, 0x53, 0x56, 0x67, 0x70, 0x49, 0x46, 0x0A, 0x27, 0x61, 0x2E,
        ]
        for round in 0..<3000 {
            let n = Int(rng.next() % 64) + 1
            var b: [UInt8] = round % 2 == 0 ? [0x80, UInt8(rng.next() % 6)] : []
            for _ in 0..<n {
                b.append(
                    round % 3 == 0
                        ? UInt8(truncatingIfNeeded: rng.next())
                        : interesting[Int(rng.next() % UInt64(interesting.count))])
            }
            let r = scan(b)
            #expect(r.endOffset <= b.count)
            _ = PickleDetector.looksLikePickle(ByteView(b))
        }
    }

    @Test("the detector accepts pickles and rejects text, JSON, ZIP, zeros and floats")
    func detector() {
        let yes: [[UInt8]] = [
            payload + [0x2E], [0x80, 5, 0x4E, 0x2E], Array("(dp0\nS'a'\np1\nI1\ns.".utf8),
            Array("cos\nsystem\n(S'x'\ntR.".utf8), [0x5D, 0x71, 0x00, 0x2E],
        ]
        for y in yes { #expect(PickleDetector.looksLikePickle(ByteView(y)), "\(y)") }
        let no: [[UInt8]] = [
            Array("hello world".utf8), Array("{\"a\": 1}".utf8), [0x50, 0x4B, 0x03, 0x04, 0, 0],
            [UInt8](repeating: 0, count: 64), [0x80, 9, 0x4E, 0x2E], Array("Name: x\n".utf8),
            [], [0x80], Array("I am here\n".utf8), Array("layer1.weight".utf8),
            withUnsafeBytes(of: (1.5).bitPattern.littleEndian) { Array($0) },
        ]
        for n in no { #expect(!PickleDetector.looksLikePickle(ByteView(n)), "\(n)") }
    }

    @Test("truncated streams and invalid opcodes report offsets; empty input is a truncated stream")
    func basicErrors() {
        let e = scan([])
        #expect(e.count("pickle.truncated") == 1)
        #expect(e.endOffset == 0)
        let r = scan(payload)
        #expect(r.first("pickle.truncated")?.evidence.offset == payload.count)
        #expect(r.calls.map(\.callee) == ["os.system"])
        let u = scan([0x80, 2, 0x52, 0x74, 0x65, 0x2E])
        #expect(u.count("pickle.stack-underflow") >= 1)
        #expect(u.calls.map(\.callee) == ["<unknown>"])
    }
}
