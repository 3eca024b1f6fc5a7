@testable import AirlockFormats
import Testing
import AirlockTestSupport

/// Writes GGUF by hand: little-endian integers, length-prefixed strings, typed metadata, tensor infos, padding.
private struct GGUFWriter {
    var version: UInt32 = 3
    var bytes: [UInt8] = []
    var wide: Bool { version >= 2 }

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
    mutating func u64(_ v: UInt64) { for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    mutating func count(_ v: UInt64) { if wide { u64(v) } else { u32(UInt32(truncatingIfNeeded: v)) } }
    mutating func string(_ s: String) {
        count(UInt64(s.utf8.count))
        bytes += Array(s.utf8)
    }
    mutating func header(tensors: UInt64, kvs: UInt64) {
        bytes += Array("GGUF".utf8)
        u32(version)
        count(tensors)
        count(kvs)
    }
    mutating func kvString(_ key: String, _ value: String) {
        string(key)
        u32(8)
        string(value)
    }
    mutating func kvU32(_ key: String, _ value: UInt32) {
        string(key)
        u32(4)
        u32(value)
    }
    mutating func tensor(_ name: String, _ dims: [UInt64], type: UInt32, offset: UInt64) {
        string(name)
        u32(UInt32(dims.count))
        for d in dims { count(d) }
        u32(type)
        u64(offset)
    }
    mutating func pad(_ alignment: Int = 32) { while bytes.count % alignment != 0 { bytes.append(0) } }
}

/// A small model: architecture, alignment, a token list, a nested array, and four tensors of different types.
private func model(version: UInt32 = 3) -> [UInt8] {
    var w = GGUFWriter(version: version)
    w.header(tensors: 4, kvs: 6)
    w.kvString("general.architecture", "llama")
    w.kvU32("general.alignment", 32)
    w.string("tokenizer.ggml.tokens")
    w.u32(9)
    w.u32(8)
    w.count(3)
    for t in ["<s>", "a", "b"] { w.string(t) }
    w.string("test.nested")
    w.u32(9)
    w.u32(9)
    w.count(2)
    for n in [2, 0] as [UInt64] {
        w.u32(5)
        w.count(n)
        for _ in 0..<n { w.u32(7) }
    }
    w.string("test.f64")
    w.u32(12)
    w.u64(0x4000_0000_0000_0000)
    w.string("test.flag")
    w.u32(7)
    w.u8(1)
    // F32 [4, 2] = 32 bytes at 0; Q4_0 [64] = 2 blocks × 18 = 36 bytes at 32 (pad to 96); Q8_0 [32, 2] = 68 bytes
    // at 96 (pad to 192); BF16 [3] = 6 bytes at 192 (pad to 224).
    w.tensor("a.weight", [4, 2], type: 0, offset: 0)
    w.tensor("b.weight", [64], type: 2, offset: 32)
    w.tensor("c.weight", [32, 2], type: 8, offset: 96)
    w.tensor("d.bias", [3], type: 30, offset: 192)
    w.pad()
    w.bytes += Array(repeating: 0x11, count: 224)
    return w.bytes
}

/// One tensor after `kvs` raw metadata bytes; returns the file.
private func single(
    version: UInt32 = 3, kvCount: UInt64 = 0, kvs: (inout GGUFWriter) -> Void = { _ in },
    name: String = "t", dims: [UInt64] = [8], type: UInt32 = 0, offset: UInt64 = 0, data: Int = 32
) -> [UInt8] {
    var w = GGUFWriter(version: version)
    w.header(tensors: 1, kvs: kvCount)
    kvs(&w)
    w.tensor(name, dims, type: type, offset: offset)
    w.pad()
    w.bytes += Array(repeating: 0, count: data)
    return w.bytes
}

private func kinds(_ bytes: [UInt8]) -> [String] {
    GGUFParser.parse(ByteView(bytes)).observations.map(\.kind)
}

@Suite("GGUF")
struct GGUFTests {
    static let benign: [(String, [UInt8])] = [
        ("v3 model", model()),
        ("v2 model", model(version: 2)),
        ("v1 model (32-bit counts)", model(version: 1)),
        (
            "no metadata, no tensors",
            {
                var w = GGUFWriter()
                w.header(tensors: 0, kvs: 0)
                return w.bytes
            }()
        ),
        ("one tensor, default alignment", single()),
        ("alignment 64", single(kvCount: 1, kvs: { $0.kvU32("general.alignment", 64) }, offset: 0, data: 64)),
    ]

    @Test("benign files give facts and no observations", arguments: 0..<benign.count)
    func benignFiles(_ i: Int) {
        let (name, bytes) = Self.benign[i]
        let report = GGUFParser.parse(ByteView(bytes))
        #expect(report.observations.isEmpty, "\(name): \(report.observations)")
        #expect(report.dataOffset != nil, "\(name)")
        #expect(GGUFParser.looks(ByteView(bytes)))
    }

    @Test("facts of a model")
    func facts() {
        for version: UInt32 in [1, 2, 3] {
            let report = GGUFParser.parse(ByteView(model(version: version)))
            #expect(report.version == version)
            #expect(report.tensorCount == 4)
            #expect(report.kvCount == 6)
            #expect(report.architecture == "llama")
            #expect(report.alignment == 32)
            #expect(report.metadataKeys.first == "general.architecture")
            #expect(report.tensors.map(\.name) == ["a.weight", "b.weight", "c.weight", "d.bias"])
            #expect(report.tensors.map(\.size) == [32, 36, 68, 6])
            #expect(report.tensors.first?.dims == [4, 2])
            #expect((report.dataOffset ?? 0) % 32 == 0)
        }
    }

    static let anomalies: [(String, [UInt8], String)] = [
        ("bad magic", Array("GGUG".utf8) + [3, 0, 0, 0], "gguf.bad-magic"),
        ("no version", Array("GGUF".utf8) + [3], "gguf.truncated"),
        ("version 4", Array("GGUF".utf8) + [4, 0, 0, 0] + Array(repeating: 0, count: 16), "gguf.unsupported-version"),
        ("big-endian", Array("GGUF".utf8) + [0, 0, 0, 3] + Array(repeating: 0, count: 16), "gguf.unsupported-version"),
        (
            "2^64-1 counts",
            {
                var w = GGUFWriter()
                w.header(tensors: .max, kvs: .max)
                return w.bytes
            }(), "gguf.count-exceeds-file"
        ),
        (
            "2^64-1 counts end the file",
            {
                var w = GGUFWriter()
                w.header(tensors: .max, kvs: .max)
                return w.bytes
            }(), "gguf.truncated"
        ),
        (
            "2^32-1 counts in v1",
            {
                var w = GGUFWriter(version: 1)
                w.header(tensors: 0xFFFF_FFFF, kvs: 0xFFFF_FFFF)
                return w.bytes
            }(),
            "gguf.count-exceeds-file"
        ),
        (
            "key length 2^64-1",
            {
                var w = GGUFWriter()
                w.header(tensors: 0, kvs: 1)
                w.u64(.max)
                w.u32(4)
                return w.bytes
            }(), "gguf.truncated"
        ),
        (
            "key length 2^63",
            {
                var w = GGUFWriter()
                w.header(tensors: 0, kvs: 1)
                w.u64(1 << 63)
                return w.bytes
            }(), "gguf.truncated"
        ),
        (
            "string value past the end",
            {
                var w = GGUFWriter()
                w.header(tensors: 0, kvs: 1)
                w.string("k")
                w.u32(8)
                w.u64(100)
                return w.bytes
            }(),
            "gguf.truncated"
        ),
        (
            "unknown value type",
            {
                var w = GGUFWriter()
                w.header(tensors: 0, kvs: 1)
                w.string("k")
                w.u32(13)
                w.u32(0)
                return w.bytes
            }(),
            "gguf.unknown-value-type"
        ),
        (
            "array of u64 with 2^64-1 elements",
            {
                var w = GGUFWriter()
                w.header(tensors: 0, kvs: 1)
                w.string("k")
                w.u32(9)
                w.u32(10)
                w.u64(.max)
                return w.bytes
            }(), "gguf.truncated"
        ),
        (
            "array of strings with 2^61 elements",
            {
                var w = GGUFWriter()
                w.header(tensors: 0, kvs: 1)
                w.string("k")
                w.u32(9)
                w.u32(8)
                w.u64(1 << 61)
                w.u64(0)
                return w.bytes
            }(), "gguf.truncated"
        ),
        (
            "array of unknown elements",
            {
                var w = GGUFWriter()
                w.header(tensors: 0, kvs: 1)
                w.string("k")
                w.u32(9)
                w.u32(42)
                w.u64(1)
                w.u32(0)
                return w.bytes
            }(), "gguf.unknown-value-type"
        ),
        (
            "arrays nested 1000 deep",
            {
                var w = GGUFWriter()
                w.header(tensors: 0, kvs: 1)
                w.string("k")
                w.u32(9)
                for _ in 0..<1000 {
                    w.u32(9)
                    w.u64(1)
                }
                w.u32(4)
                w.u64(0)
                return w.bytes
            }(), "gguf.nesting-too-deep"
        ),
        (
            "duplicate key",
            {
                var w = GGUFWriter()
                w.header(tensors: 0, kvs: 2)
                w.kvString("general.architecture", "llama")
                w.kvString("general.architecture", "evil")
                return w.bytes
            }(), "gguf.duplicate-key"
        ),
        (
            "architecture not a string",
            {
                var w = GGUFWriter()
                w.header(tensors: 0, kvs: 1)
                w.kvU32("general.architecture", 1)
                return w.bytes
            }(),
            "gguf.bad-metadata"
        ),
        ("alignment 0", single(kvCount: 1, kvs: { $0.kvU32("general.alignment", 0) }), "gguf.bad-alignment"),
        ("alignment 48", single(kvCount: 1, kvs: { $0.kvU32("general.alignment", 48) }), "gguf.bad-alignment"),
        (
            "alignment a string", single(kvCount: 1, kvs: { $0.kvString("general.alignment", "32") }),
            "gguf.bad-alignment"
        ),
        (
            "alignment a u64",
            single(
                kvCount: 1,
                kvs: {
                    $0.string("general.alignment")
                    $0.u32(10)
                    $0.u64(32)
                }), "gguf.bad-alignment"
        ),
        ("five dimensions", single(dims: [1, 1, 1, 1, 8]), "gguf.too-many-dims"),
        (
            "2^32-1 dimensions",
            single(dims: []).enumerated().map { $0.offset >= 33 && $0.offset < 37 ? 0xFF : $0.element },
            "gguf.truncated"
        ),
        ("name of 64 bytes", single(name: String(repeating: "n", count: 64)), "gguf.name-too-long"),
        (
            "duplicate tensor",
            {
                var w = GGUFWriter()
                w.header(tensors: 2, kvs: 0)
                w.tensor("t", [8], type: 0, offset: 0)
                w.tensor("t", [8], type: 0, offset: 32)
                w.pad()
                w.bytes += Array(repeating: 0, count: 64)
                return w.bytes
            }(), "gguf.duplicate-tensor"
        ),
        ("removed type Q4_2", single(type: 4), "gguf.unknown-type"),
        ("unknown type", single(type: 0xFFFF_FFFF), "gguf.unknown-type"),
        ("Q4_0 row not whole blocks", single(dims: [31], type: 2), "gguf.bad-shape"),
        ("element count overflows", single(dims: [1 << 40, 1 << 40]), "gguf.size-overflow"),
        ("byte size overflows", single(dims: [1 << 62], type: 28), "gguf.size-overflow"),
        ("misaligned offset", single(dims: [1], offset: 4), "gguf.misaligned"),
        ("data past the end", single(dims: [16], data: 32), "gguf.out-of-bounds"),
        ("offset near 2^64", single(dims: [8], offset: UInt64.max - 31), "gguf.out-of-bounds"),
        (
            "overlap",
            {
                var w = GGUFWriter()
                w.header(tensors: 2, kvs: 0)
                w.tensor("a", [16], type: 0, offset: 0)
                w.tensor("b", [8], type: 0, offset: 32)
                w.pad()
                w.bytes += Array(repeating: 0, count: 64)
                return w.bytes
            }(), "gguf.overlap"
        ),
        ("gap", single(dims: [8], offset: 64, data: 96), "gguf.gap"),
        ("trailing data", single(dims: [8], data: 96), "gguf.trailing-data"),
        (
            "header ends before the data section",
            {
                var w = GGUFWriter()
                w.header(tensors: 1, kvs: 0)
                w.tensor("t", [8], type: 0, offset: 0)
                w.u8(0)
                return w.bytes
            }(), "gguf.truncated"
        ),
    ]

    @Test("each anomaly is observed", arguments: 0..<anomalies.count)
    func anomaly(_ i: Int) {
        let (name, bytes, kind) = Self.anomalies[i]
        let found = kinds(bytes)
        #expect(found.contains(kind), "\(name): \(found)")
        for k in found { #expect(k.hasPrefix("gguf."), "\(name): \(k)") }
    }

    @Test("a wide string array stops at the operation budget")
    func operations() {
        var w = GGUFWriter()
        w.header(tensors: 0, kvs: 1)
        w.string("k")
        w.u32(9)
        w.u32(8)
        w.count(10_000)
        for _ in 0..<10_000 { w.string("") }
        var budget = ScanBudget()
        budget.maxOperations = 1000
        #expect(
            GGUFParser.parse(ByteView(w.bytes), budget: budget).observations.map(\.kind) == ["gguf.budget-exceeded"])
        #expect(GGUFParser.parse(ByteView(w.bytes)).observations.isEmpty)
    }

    @Test("the type table matches the sizes documented")
    func types() {
        #expect(GGUFParser.typeSize(0)! == (1, 4))
        #expect(GGUFParser.typeSize(2)! == (32, 18))
        #expect(GGUFParser.typeSize(8)! == (32, 34))
        #expect(GGUFParser.typeSize(12)! == (256, 144))
        #expect(GGUFParser.typeSize(30)! == (1, 2))
        for removed: UInt32 in [4, 5, 31, 32, 33, 36, 37, 38, 40] { #expect(GGUFParser.typeSize(removed) == nil) }
        for t: UInt32 in 0..<40 { #expect((GGUFParser.typeSize(t) == nil) == (GGUFParser.typeName(t) == nil), "\(t)") }
    }

    @Test("content sniffing")
    func looks() {
        #expect(GGUFParser.looks(ByteView(Array("GGUF".utf8))))
        #expect(!GGUFParser.looks(ByteView(Array("GGU".utf8))))
        #expect(!GGUFParser.looks(ByteView([0x93] + Array("NUMPY".utf8))))
    }

    @Test("truncation at every offset never crashes and is observed")
    func truncation() {
        let sample = model()
        let dataStart = GGUFParser.parse(ByteView(sample)).dataOffset ?? 0
        for n in 0..<sample.count {
            let report = GGUFParser.parse(ByteView(Array(sample[0..<n])))
            // A cut inside the last tensor's padding leaves a well-formed file.
            if n < dataStart + 198 { #expect(!report.observations.isEmpty, "cut at \(n)") }
        }
    }

    @Test("random byte flips never crash")
    func flips() {
        var rng = SplitMix(state: 0x6606_F00D)
        let samples = Self.benign.map(\.1)
        for round in 0..<3000 {
            var bytes = samples[round % samples.count]
            for _ in 0..<Int.random(in: 1...4, using: &rng) where !bytes.isEmpty {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            let report = GGUFParser.parse(ByteView(bytes))
            #expect(report.observations.count <= GGUFParser.maxObservations + 1)
        }
    }
}
