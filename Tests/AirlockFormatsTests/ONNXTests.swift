@testable import AirlockFormats
import Testing
import AirlockTestSupport

/// A minimal protobuf writer for building ONNX models in tests.
struct Proto {
    var bytes: [UInt8] = []

    static func varint(_ v: UInt64) -> [UInt8] {
        var v = v
        var out: [UInt8] = []
        repeat {
            var b = UInt8(v & 0x7F)
            v >>= 7
            if v != 0 { b |= 0x80 }
            out.append(b)
        } while v != 0
        return out
    }

    func int(_ field: UInt64, _ v: UInt64) -> Proto {
        var p = self
        p.bytes += Proto.varint(field << 3) + Proto.varint(v)
        return p
    }

    func bytes(_ field: UInt64, _ b: [UInt8]) -> Proto {
        var p = self
        p.bytes += Proto.varint(field << 3 | 2) + Proto.varint(UInt64(b.count)) + b
        return p
    }

    func string(_ field: UInt64, _ s: String) -> Proto { bytes(field, Array(s.utf8)) }
    func message(_ field: UInt64, _ m: Proto) -> Proto { bytes(field, m.bytes) }
}

@Suite("ONNX")
struct ONNXTests {
    func tensor(name: String, dims: [UInt64], type: UInt64, raw: Int? = nil, location: String? = nil) -> Proto {
        var t = Proto()
        for d in dims { t = t.int(1, d) }
        t = t.int(2, type).string(8, name)
        if let raw { t = t.bytes(9, [UInt8](repeating: 0, count: raw)) }
        if let location {
            t = t.message(13, Proto().string(1, "location").string(2, location)).int(14, 1)
        }
        return t
    }

    func model(nodes: [Proto], initializers: [Proto]) -> ByteView {
        var graph = Proto().string(2, "g")
        for n in nodes { graph = graph.message(1, n) }
        for i in initializers { graph = graph.message(5, i) }
        let m = Proto().int(1, 8).string(2, "pytorch").message(8, Proto().string(1, "").int(2, 17)).message(7, graph)
        return ByteView(m.bytes)
    }

    @Test("a benign model: standard ops, consistent weights, relative external data")
    func benign() {
        let relu = Proto().string(1, "x").string(2, "y").string(4, "Relu")
        let v = model(
            nodes: [relu],
            initializers: [
                tensor(name: "w", dims: [2, 3], type: 1, raw: 24),
                tensor(name: "big", dims: [1000], type: 1, location: "weights/big.bin"),
            ])
        #expect(FormatDetector.sniff(v) == .onnx)
        let r = ONNXParser.parse(v)
        #expect(r.observations.isEmpty, "\(r.observations)")
        #expect(r.irVersion == 8)
        #expect(r.nodes == 1)
        #expect(r.initializers == 2)
        #expect(r.externalLocations == ["weights/big.bin"])
    }

    @Test(
        "external data that leaves the folder",
        arguments: ["/etc/passwd", "../../.ssh/id_rsa", "a/../../b", "C:\\\\x", "..\\\\x"])
    func traversal(location: String) {
        let r = ONNXParser.parse(
            model(nodes: [], initializers: [tensor(name: "w", dims: [4], type: 1, location: location)]))
        #expect(r.observations.map(\.kind) == ["onnx.external-data-traversal"])
    }

    @Test("custom operator domains, also inside a Loop body and a function")
    func customDomains() {
        let custom = Proto().string(4, "Evil").string(7, "com.attacker")
        let inner = Proto().string(4, "Other").string(7, "org.inner")
        let loop = Proto().string(4, "Loop").message(
            5, Proto().string(1, "body").int(20, 5).message(6, Proto().message(1, inner)))
        let r = ONNXParser.parse(model(nodes: [custom, loop], initializers: []))
        #expect(
            Set(r.observations.map { $0.evidence.details.first { $0.0 == "domain" }?.1 ?? "" }) == [
                "com.attacker", "org.inner",
            ])
        #expect(r.nodes == 3)
    }

    @Test("raw data that disagrees with dims and type")
    func sizeMismatch() {
        let r = ONNXParser.parse(model(nodes: [], initializers: [tensor(name: "w", dims: [2, 3], type: 1, raw: 7)]))
        #expect(r.observations.map(\.kind) == ["onnx.size-mismatch"])
        let huge = ONNXParser.parse(
            model(nodes: [], initializers: [tensor(name: "h", dims: [1 << 62, 1 << 62], type: 1, raw: 4)]))
        #expect(huge.observations.map(\.kind) == ["onnx.size-mismatch"])
    }

    @Test("truncation at every offset and deep subgraph nesting never crash")
    func hostile() {
        let relu = Proto().string(4, "Relu")
        let bytes = model(nodes: [relu], initializers: [tensor(name: "w", dims: [2, 3], type: 1, raw: 24)]).array
        for cut in 0..<bytes.count { _ = ONNXParser.parse(ByteView(Array(bytes[0..<cut]))) }
        var g = Proto().message(1, Proto().string(4, "Relu"))
        for _ in 0..<200 { g = Proto().message(1, Proto().string(4, "If").message(5, Proto().message(6, g))) }
        let deep = ONNXParser.parse(ByteView(Proto().int(1, 8).message(7, g).bytes))
        #expect(deep.observations.contains { $0.kind == "onnx.too-deep" })
        let lying = ONNXParser.parse(ByteView([0x3A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00]))
        #expect(lying.observations.contains { $0.kind == "onnx.malformed" })
    }
}
