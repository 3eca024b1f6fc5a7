@testable import AirlockFormats
import Testing

/// ONNX recognised by its protobuf structure, whatever its IR version and whatever unknown fields it carries; other
/// protobufs left alone; the whole model walked.
@Suite("ONNX structure")
struct ONNXStructureTests {
    static let relu = Proto().string(1, "x").string(2, "y").string(4, "Relu")
    static let graph = Proto().message(1, relu).string(2, "g")

    static func model(ir: UInt64?, graph: Proto = graph, prefix: Proto = Proto()) -> Proto {
        var m = prefix
        if let ir { m = m.int(1, ir) }
        return m.string(2, "onnx-current").message(8, Proto().string(1, "").int(2, 23)).message(7, graph)
    }

    static func external(_ location: String, name: String = "w") -> Proto {
        Proto().int(1, 2).int(2, 1).string(8, name)
            .message(13, Proto().string(1, "location").string(2, location)).int(14, 1)
    }

    @Test(
        "IR versions from today's and future onnx are ONNX; a future one is a note, not a stop",
        arguments: [
            (UInt64(10), false), (13, false), (14, false), (99, true), (1 << 40, true),
        ])
    func irVersions(ir: UInt64, future: Bool) {
        let bytes = Self.model(ir: ir, graph: Self.graph.message(5, Self.external("/etc/passwd")))
        let view = ByteView(bytes.bytes)
        #expect(FormatDetector.sniff(view) == .onnx)
        let kinds = ONNXParser.parse(view).observations.map(\.kind)
        #expect(kinds.contains("onnx.external-data-traversal"), "\(kinds)")
        #expect(kinds.contains("onnx.ir-version-unknown") == future, "\(kinds)")
    }

    @Test("unknown fields, groups and pickle-looking bytes in front do not hide a model protobuf still loads")
    func prefixes() {
        let group: [UInt8] = Proto.varint(50 << 3 | 3) + Proto().int(1, 7).bytes + Proto.varint(50 << 3 | 4)
        let prefixes: [Proto] = [
            Proto().string(999, "garbage"),
            Proto(bytes: group),
            Proto().int(32, 0x2E),  // 80 02 2E: PROTO 2, STOP to a pickle sniffer
            Proto().int(1000, 1).string(4000, String(repeating: "z", count: 300)),
            // More empty fields than any cap a sniffer might keep.
            Proto(bytes: Array([[UInt8]](repeating: Proto().int(1000, 0).bytes, count: 50_000).joined())),
        ]
        for prefix in prefixes {
            let view = ByteView(
                Self.model(ir: 13, graph: Self.graph.message(5, Self.external("../x")), prefix: prefix).bytes)
            #expect(FormatDetector.sniff(view) == .onnx, "\(prefix.bytes.prefix(8))")
            #expect(ONNXParser.parse(view).observations.map(\.kind).contains("onnx.external-data-traversal"))
        }
    }

    @Test("a model that is a graph and nothing else is still ONNX")
    func tiny() {
        let view = ByteView(Proto().message(7, Self.graph).bytes)
        #expect(FormatDetector.sniff(view) == .onnx)
        #expect(ONNXParser.parse(view).observations.map(\.kind) == ["onnx.no-ir-version"])
    }

    @Test("protobufs that are not ONNX stay what they are")
    func notONNX() {
        // sentencepiece's tokenizer.model: field 1 holds pieces (messages), 2 the trainer spec, 3 the normalizer.
        let sentencepiece = Proto().message(1, Proto().string(1, "▁the").int(3, 1))
            .message(1, Proto().string(1, "<unk>").int(3, 2)).message(2, Proto().string(1, "corpus.txt").int(3, 8000))
            .message(3, Proto().string(1, "nmt_nfkc"))
        // TensorFlow saved_model.pb: schema version (varint 1), meta graphs (field 2).
        let savedModel = Proto().int(1, 1).message(
            2, Proto().message(1, Proto().string(1, "serve")).message(2, Proto().message(1, Proto().string(1, "x"))))
        // A frozen GraphDef: nodes are field 1 (messages), versions field 4.
        let graphDef = Proto().message(1, Proto().string(1, "x").string(2, "Placeholder")).message(
            4, Proto().int(1, 27))
        // Field 7 that is no graph.
        let fake = Proto().int(1, 8).string(7, "hello, not a graph")
        for bytes in [sentencepiece, savedModel, graphDef, fake, Proto().int(1, 8)] {
            #expect(FormatDetector.sniff(ByteView(bytes.bytes)) != .onnx, "\(bytes.bytes.prefix(12))")
        }
    }

    @Test("functions, sparse initializers, training graphs and Scan bodies are walked")
    func everyPlace() {
        let constant = { (location: String) in
            Proto().string(4, "Constant").message(
                5, Proto().string(1, "value").int(20, 4).message(5, Self.external(location)))
        }
        let function = Proto().string(1, "F").string(10, "custom.fn").message(7, constant("/f"))
        let sparse = Proto().message(1, Self.external("/sparse")).message(2, Proto().int(1, 1).int(2, 7))
        let training = Proto().message(1, Proto().message(5, Self.external("/training")))
        let scan = Proto().string(4, "Scan").message(
            5, Proto().string(1, "body").int(20, 5).message(6, Proto().message(1, constant("/scan"))))
        let graph = Self.graph.message(15, sparse).message(1, scan)
        let m = Self.model(ir: 13, graph: graph).message(25, function).message(20, training)
        let r = ONNXParser.parse(ByteView(m.bytes))
        #expect(Set(r.externalLocations) == ["/f", "/sparse", "/training", "/scan"])
        #expect(r.observations.filter { $0.kind == "onnx.external-data-traversal" }.count == 4)
    }

    @Test("external_data that readers could take differently")
    func externalDataKeys() {
        let ambiguous = Proto().string(8, "w").message(13, Proto().string(1, "location").string(2, "a.bin"))
            .message(13, Proto().string(1, "location").string(2, "b.bin")).int(14, 1)
        let unknownKey = Proto().string(8, "w").message(13, Proto().string(1, "location").string(2, "a.bin"))
            .message(13, Proto().string(1, "__class__").string(2, "x")).int(14, 1)
        let badOffset = Proto().string(8, "w").message(13, Proto().string(1, "location").string(2, "a.bin"))
            .message(13, Proto().string(1, "offset").string(2, "-5")).int(14, 1)
        let noLocation = Proto().string(8, "w").int(14, 1)
        let cases: [(Proto, String)] = [
            (ambiguous, "onnx.external-data-ambiguous"), (unknownKey, "onnx.external-data-key"),
            (badOffset, "onnx.external-data-offset"), (noLocation, "onnx.external-data-no-location"),
        ]
        for (tensor, kind) in cases {
            let r = ONNXParser.parse(ByteView(Self.model(ir: 13, graph: Self.graph.message(5, tensor)).bytes))
            #expect(r.observations.map(\.kind) == [kind])
        }
        let ok = Proto().string(8, "w").message(13, Proto().string(1, "location").string(2, "a.bin"))
            .message(13, Proto().string(1, "offset").string(2, "4096")).message(
                13, Proto().string(1, "length").string(2, "8")
            )
            .int(14, 1)
        let r = ONNXParser.parse(ByteView(Self.model(ir: 13, graph: Self.graph.message(5, ok)).bytes))
        #expect(r.observations.isEmpty)
        #expect(r.externalReferences.first.map { [$0.offset, $0.length] } == [4096, 8])
    }

    @Test("metadata with code or control characters is noted")
    func metadata() {
        let code = Self.model(ir: 13).message(14, Proto().string(1, "hook").string(2, "__import__('os').system('id')"))
        #expect(ONNXParser.parse(ByteView(code.bytes)).observations.map(\.kind) == ["onnx.metadata-code"])
        let odd = Self.model(ir: 13).message(14, Proto().string(1, "k").string(2, "a\u{1B}[2Jb"))
        #expect(ONNXParser.parse(ByteView(odd.bytes)).observations.map(\.kind) == ["onnx.metadata-odd"])
        let huge = Self.model(ir: 13).message(
            14, Proto().string(1, "k").string(2, String(repeating: "a", count: 2 << 20)))
        #expect(ONNXParser.parse(ByteView(huge.bytes)).observations.map(\.kind) == ["onnx.metadata-odd"])
        let plain = Self.model(ir: 13).message(14, Proto().string(1, "author").string(2, "Ada"))
        #expect(ONNXParser.parse(ByteView(plain.bytes)).observations.isEmpty)
    }

    @Test("truncation, lying lengths and groups nested past the limit are bounded")
    func bounded() {
        let bytes = Self.model(ir: 13, graph: Self.graph.message(5, Self.external("/x"))).bytes
        for cut in 0..<bytes.count {
            let view = ByteView(Array(bytes[0..<cut]))
            _ = FormatDetector.sniff(view)
            _ = ONNXParser.parse(view)
        }
        var deepGroup: [UInt8] = []
        for _ in 0..<10_000 { deepGroup += Proto.varint(5 << 3 | 3) }
        #expect(FormatDetector.sniff(ByteView(deepGroup + Self.model(ir: 13).bytes)) != .onnx)
        let lying = Proto.varint(7 << 3 | 2) + Proto.varint(UInt64(Int.max)) + [0x0A, 0x00]
        #expect(FormatDetector.sniff(ByteView(Proto().int(1, 13).bytes + lying)) != .onnx)
        #expect(
            ONNXParser.parse(ByteView(Proto().int(1, 13).bytes + lying)).observations.map(\.kind).contains(
                "onnx.malformed"))
    }
}
