@testable import AirlockFormats
import Testing
import AirlockTestSupport

/// A safetensors file: u64 LE header length, the header text, the data.
private func safetensors(_ header: String, _ data: [UInt8] = [], pad: Bool = true) -> [UInt8] {
    var h = Array(header.utf8)
    if pad { while h.count % 8 != 0 { h.append(0x20) } }
    var out: [UInt8] = []
    var n = UInt64(h.count)
    for _ in 0..<8 {
        out.append(UInt8(n & 0xFF))
        n >>= 8
    }
    return out + h + data
}

private func withLength(_ n: UInt64, _ rest: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    var v = n
    for _ in 0..<8 {
        out.append(UInt8(v & 0xFF))
        v >>= 8
    }
    return out + rest
}

private func kinds(_ bytes: [UInt8]) -> [String] {
    SafetensorsParser.parse(ByteView(bytes)).observations.map(\.kind)
}

private let twoTensors = safetensors(
    #"{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]},"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}}"#,
    Array(repeating: 1, count: 24))

@Suite("safetensors")
struct SafetensorsTests {
    static let benign: [(String, [UInt8])] = [
        ("empty header", safetensors("{}")),
        ("reference empty file", [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]),
        ("two tensors, metadata, out of order", twoTensors),
        (
            "scalar",
            safetensors(#"{"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]}}"#, Array(repeating: 0, count: 8))
        ),
        (
            "empty tensors share an offset",
            safetensors(
                #"{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"I64","shape":[2,0],"data_offsets":[0,0]}}"#
            )
        ),
        (
            "sub-byte F4 fills bytes",
            safetensors(#"{"f":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]}}"#, [0, 0, 0])
        ),
        (
            "F6 and F8 types",
            safetensors(
                #"{"a":{"dtype":"F6_E2M3","shape":[4],"data_offsets":[0,3]},"b":{"dtype":"F8_E8M0","shape":[1],"data_offsets":[3,4]},"c":{"dtype":"C64","shape":[1],"data_offsets":[4,12]}}"#,
                Array(repeating: 0, count: 12))
        ),
        (
            "unpadded header, null metadata",
            safetensors(
                #"{"__metadata__":null,"x":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}}"#, [1], pad: false)
        ),
    ]

    @Test("benign files give facts and no observations", arguments: 0..<benign.count)
    func benignFiles(_ i: Int) {
        let (name, bytes) = Self.benign[i]
        let report = SafetensorsParser.parse(ByteView(bytes))
        #expect(report.observations.isEmpty, "\(name): \(report.observations)")
        #expect(report.headerParsed, "\(name)")
        #expect(SafetensorsParser.looks(ByteView(bytes)), "\(name)")
    }

    @Test("facts of a two-tensor file")
    func facts() {
        let report = SafetensorsParser.parse(ByteView(twoTensors))
        #expect(report.tensorCount == 2)
        #expect(report.totalTensorBytes == 24)
        #expect(report.dtypes == ["BF16", "F32"])
        #expect(report.metadataKeys == ["format"])
        #expect(report.metadata.first?.1 == "pt")
        #expect(report.tensors.map(\.name) == ["b", "a"])
        #expect(report.tensors.first?.shape == [2, 2])
        #expect(report.dataOffset == twoTensors.count - 24)
        #expect(report.dataSize == 24)
    }

    static let u8 = #""dtype":"U8","shape":[4],"data_offsets":[0,4]"#
    static let anomalies: [(String, [UInt8], String)] = [
        ("shorter than 8 bytes", [1, 0, 0], "safetensors.truncated"),
        ("header past the end", withLength(100, Array("{}".utf8)), "safetensors.truncated"),
        ("2^63 header length", withLength(1 << 63, Array("{}".utf8)), "safetensors.header-too-large"),
        ("2^64-1 header length", withLength(UInt64.max, Array("{}".utf8)), "safetensors.header-too-large"),
        ("just over 100 MB", withLength(100_000_001, Array("{}".utf8)), "safetensors.header-too-large"),
        ("leading space", safetensors(" {}"), "safetensors.header-leading-space"),
        ("not JSON", safetensors("{nope}"), "safetensors.invalid-json"),
        ("NUL padding", safetensors("{}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}"), "safetensors.invalid-json"),
        ("invalid UTF-8 in a name", withLength(6, [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x7D]), "safetensors.invalid-json"),
        (
            "duplicate tensor name", safetensors("{\"a\":{\(u8)},\"a\":{\(u8)}}", [0, 0, 0, 0]),
            "safetensors.duplicate-key"
        ),
        ("an array header", safetensors("[]"), "safetensors.header-not-object"),
        (
            "deep nesting",
            safetensors(
                "{\"a\":{\(u8),\"x\":" + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)
                    + "}}",
                [0, 0, 0, 0]), "safetensors.nesting-too-deep"
        ),
        ("metadata value not a string", safetensors(#"{"__metadata__":{"k":1}}"#), "safetensors.metadata-not-string"),
        (
            "metadata nested object", safetensors(#"{"__metadata__":{"k":{"x":"y"}}}"#),
            "safetensors.metadata-not-string"
        ),
        ("metadata not an object", safetensors(#"{"__metadata__":["k"]}"#), "safetensors.metadata-not-object"),
        ("entry not an object", safetensors(#"{"a":[1]}"#), "safetensors.bad-entry"),
        ("entry without dtype", safetensors(#"{"a":{"shape":[],"data_offsets":[0,0]}}"#), "safetensors.bad-entry"),
        (
            "entry with a shape string",
            safetensors(#"{"a":{"dtype":"U8","shape":"4","data_offsets":[0,4]}}"#, [0, 0, 0, 0]),
            "safetensors.bad-entry"
        ),
        ("unknown field", safetensors("{\"a\":{\(u8),\"payload\":\"x\"}}", [0, 0, 0, 0]), "safetensors.unknown-field"),
        (
            "unknown dtype", safetensors(#"{"a":{"dtype":"Q4","shape":[4],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]),
            "safetensors.unknown-dtype"
        ),
        (
            "negative dimension",
            safetensors(#"{"a":{"dtype":"U8","shape":[-4],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]),
            "safetensors.bad-shape"
        ),
        (
            "fractional dimension",
            safetensors(#"{"a":{"dtype":"U8","shape":[4.0],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]),
            "safetensors.bad-shape"
        ),
        (
            "exponent dimension",
            safetensors(#"{"a":{"dtype":"U8","shape":[4e0],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]),
            "safetensors.bad-shape"
        ),
        (
            "dimension past Int",
            safetensors(#"{"a":{"dtype":"U8","shape":[99999999999999999999],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]),
            "safetensors.bad-shape"
        ),
        (
            "three offsets", safetensors(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4,4]}}"#, [0, 0, 0, 0]),
            "safetensors.bad-offsets"
        ),
        (
            "end before begin", safetensors(#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}"#, [0, 0, 0, 0]),
            "safetensors.bad-offsets"
        ),
        (
            "size disagrees", safetensors(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]),
            "safetensors.size-mismatch"
        ),
        (
            "F4 half a byte", safetensors(#"{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#, [0, 0]),
            "safetensors.size-mismatch"
        ),
        (
            "shape product overflows",
            safetensors(
                #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]),
            "safetensors.size-overflow"
        ),
        (
            "shape × size overflows",
            safetensors(
                #"{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}}"#, [0, 0, 0, 0]),
            "safetensors.size-overflow"
        ),
        (
            "offset past the data",
            safetensors(#"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}"#, [0, 0, 0, 0]),
            "safetensors.offset-out-of-bounds"
        ),
        (
            "huge offsets",
            safetensors(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[9223372036854775806,9223372036854775807]}}"#),
            "safetensors.offset-out-of-bounds"
        ),
        (
            "gap before the first",
            safetensors(#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#, [0, 0, 0, 0]), "safetensors.gap"
        ),
        (
            "gap between",
            safetensors(
                #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[3,4]}}"#,
                [0, 0, 0, 0]),
            "safetensors.gap"
        ),
        (
            "overlap",
            safetensors(
                #"{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"b":{"dtype":"U8","shape":[3],"data_offsets":[1,4]}}"#,
                [0, 0, 0, 0]),
            "safetensors.overlap"
        ),
        (
            "aliasing",
            safetensors(
                #"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#,
                [0, 0, 0, 0]),
            "safetensors.overlap"
        ),
        (
            "trailing bytes", safetensors("{\"a\":{\(u8)}}", [0, 0, 0, 0, 0x63, 0x6F, 0x73]),
            "safetensors.trailing-data"
        ),
        ("data with no tensors", safetensors("{}", [1]), "safetensors.trailing-data"),
    ]

    @Test("each anomaly is observed", arguments: 0..<anomalies.count)
    func anomaly(_ i: Int) {
        let (name, bytes, kind) = Self.anomalies[i]
        let found = kinds(bytes)
        #expect(found.contains(kind), "\(name): \(found)")
        for k in found { #expect(k.hasPrefix("safetensors."), "\(name): \(k)") }
    }

    @Test("a header over the scan budget is refused without being parsed")
    func budget() {
        let bytes = safetensors("{" + String(repeating: " ", count: 4096) + "}")
        var budget = ScanBudget()
        budget.maxHeldBytes = 1024
        let report = SafetensorsParser.parse(ByteView(bytes), budget: budget)
        #expect(report.observations.map(\.kind) == ["safetensors.budget-exceeded"])
    }

    @Test("observations are capped")
    func cap() {
        var header = "{"
        for i in 0..<2000 { header += "\"t\(i)\":{\"dtype\":\"??\",\"shape\":[],\"data_offsets\":[0,0]}," }
        header.removeLast()
        header += "}"
        let report = SafetensorsParser.parse(ByteView(safetensors(header)))
        #expect(report.tensorCount == 2000)
        #expect(report.observations.count == SafetensorsParser.maxObservations + 1)
        #expect(report.observations.last?.kind == "safetensors.observations-truncated")
    }

    @Test("evidence carries offsets and names")
    func evidence() {
        let report = SafetensorsParser.parse(ByteView(safetensors("{\"a\":{\(Self.u8)}}", [0, 0, 0, 0, 9])))
        let trailing = report.observations.first { $0.kind == "safetensors.trailing-data" }
        #expect(trailing?.evidence.offset == (report.dataOffset ?? 0) + 4)
        let dup = SafetensorsParser.parse(
            ByteView(safetensors("{\"a\":{\(Self.u8)},\"a\":{\(Self.u8)}}", [0, 0, 0, 0])))
        #expect(dup.observations.first?.evidence.offset ?? 0 > 8)
    }

    @Test("content sniffing")
    func looks() {
        #expect(SafetensorsParser.looks(ByteView(safetensors(" \n{}"))))
        #expect(!SafetensorsParser.looks(ByteView(safetensors("[]"))))
        #expect(!SafetensorsParser.looks(ByteView(withLength(1 << 40, Array("{}".utf8)))))
        #expect(!SafetensorsParser.looks(ByteView([0x93] + Array("NUMPY".utf8) + [1, 0, 0, 0])))
        #expect(!SafetensorsParser.looks(ByteView(Array("GGUF".utf8) + [3, 0, 0, 0, 0, 0, 0, 0])))
        #expect(!SafetensorsParser.looks(ByteView([])))
    }

    @Test("truncation at every offset never crashes and is observed")
    func truncation() {
        for n in 0..<twoTensors.count {
            let report = SafetensorsParser.parse(ByteView(Array(twoTensors[0..<n])))
            #expect(!report.observations.isEmpty, "cut at \(n)")
        }
    }

    @Test("random byte flips never crash")
    func flips() {
        var rng = SplitMix(state: 0x5AFE_7E45)
        let samples = Self.benign.map(\.1) + [twoTensors]
        for round in 0..<3000 {
            var bytes = samples[round % samples.count]
            for _ in 0..<Int.random(in: 1...4, using: &rng) where !bytes.isEmpty {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            let report = SafetensorsParser.parse(ByteView(bytes))
            _ = SafetensorsParser.looks(ByteView(bytes))
            #expect(report.observations.count <= SafetensorsParser.maxObservations + 1)
        }
    }
}
