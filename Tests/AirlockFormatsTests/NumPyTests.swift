@testable import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

/// An `.npy` file as numpy writes it: magic, version, header length, the dict padded with spaces and ended by a
/// newline so that the data starts at a multiple of 64, then the data.
private func npy(_ header: String, _ data: [UInt8] = [], major: UInt8 = 1, pad: Bool = true) -> [UInt8] {
    var h = Array(header.utf8)
    let preamble = 8 + (major == 1 ? 2 : 4)
    if pad {
        while (preamble + h.count + 1) % 64 != 0 { h.append(0x20) }
        h.append(0x0A)
    }
    var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [major, 0]
    if major == 1 {
        out += [UInt8(h.count & 0xFF), UInt8((h.count >> 8) & 0xFF)]
    } else {
        out += [
            UInt8(h.count & 0xFF), UInt8((h.count >> 8) & 0xFF), UInt8((h.count >> 16) & 0xFF),
            UInt8((h.count >> 24) & 0xFF),
        ]
    }
    return out + h + data
}

private func zeros(_ n: Int) -> [UInt8] { Array(repeating: 0, count: n) }

private func kinds(_ bytes: [UInt8]) -> [String] {
    NumPyParser.parse(ByteView(bytes)).observations.map(\.kind)
}

private let matrix = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", zeros(48))
private let record = npy(
    "{'descr': [('id', '<i4'), ('', '|V4'), ('pos', '<f8', (3,)), ('name', '<U2')], 'fortran_order': False, 'shape': (2,), }",
    zeros(2 * (4 + 4 + 24 + 8)))

@Suite("NumPy .npy")
struct NumPyTests {
    static let benign: [(String, [UInt8], Int)] = [
        ("float32 matrix", matrix, 4),
        ("0-d bool", npy("{'descr': '|b1', 'fortran_order': False, 'shape': (), }", [1]), 1),
        ("empty", npy("{'descr': '<i8', 'fortran_order': False, 'shape': (0,), }"), 8),
        ("fortran order, big-endian", npy("{'descr': '>u2', 'fortran_order': True, 'shape': (2, 3), }", zeros(12)), 2),
        ("structured with padding and subarray", record, 40),
        (
            "nested structured",
            npy(
                "{'descr': [('a', [('x', '<f4'), ('y', '<f4')], (2,)), ('b', '|u1')], 'fortran_order': False, 'shape': (1,), }",
                zeros(17)), 17
        ),
        (
            "titled field",
            npy("{'descr': [(('title', 'f'), '<i2')], 'fortran_order': False, 'shape': (5,), }", zeros(10)), 2
        ),
        ("unicode", npy("{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }", zeros(24)), 12),
        ("bytes", npy("{'descr': '|S5', 'fortran_order': False, 'shape': (1,), }", zeros(5)), 5),
        ("datetime", npy("{'descr': '<M8[ns]', 'fortran_order': False, 'shape': (3,), }", zeros(24)), 8),
        ("complex", npy("{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }", zeros(16)), 16),
        ("float16, double quotes", npy(#"{"descr": "<f2", "fortran_order": False, "shape": (4,)}"#, zeros(8)), 2),
        ("version 2", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", zeros(16), major: 2), 8),
        (
            "version 3, UTF-8 field name",
            npy("{'descr': [('é\\n', '<i4')], 'fortran_order': False, 'shape': (1,), }", zeros(4), major: 3), 4
        ),
        ("Python 2 long suffix", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3L, 4L), }", zeros(48)), 4),
        ("unpadded", npy("{'descr':'|u1','fortran_order':False,'shape':(1,)}", [7], pad: false), 1),
    ]

    @Test("benign arrays give facts and no observations", arguments: 0..<benign.count)
    func benignFiles(_ i: Int) {
        let (name, bytes, itemSize) = Self.benign[i]
        let report = NumPyParser.parse(ByteView(bytes))
        #expect(report.observations.isEmpty, "\(name): \(report.observations)")
        #expect(report.itemSize == itemSize, "\(name)")
        #expect(report.expectedDataSize == report.dataSize, "\(name)")
        #expect(!report.hasObjects && report.pickleOffset == nil, "\(name)")
        #expect(NumPyParser.looks(ByteView(bytes)))
    }

    @Test("facts of a matrix")
    func facts() {
        let report = NumPyParser.parse(ByteView(matrix))
        #expect(report.version?.major == 1 && report.version?.minor == 0)
        #expect(report.descr == "<f4")
        #expect(report.shape == [3, 4])
        #expect(report.fortranOrder == false)
        #expect(report.elementCount == 12)
        #expect(report.dataOffset == 128)
        #expect(report.headerLength == 118)
        let rec = NumPyParser.parse(ByteView(record))
        #expect(rec.structured)
        #expect(rec.shape == [2])
    }

    @Test("object arrays point at their pickle")
    func objects() {
        let pickle: [UInt8] = [0x80, 0x03, 0x4E, 0x2E]  // protocol 3, None, STOP
        for descr in ["'|O'", "'O'", "[('a', '<f4'), ('b', '|O')]", "[('n', [('deep', '|O')], (2,))]"] {
            let bytes = npy("{'descr': \(descr), 'fortran_order': False, 'shape': (1,), }", pickle)
            let report = NumPyParser.parse(ByteView(bytes))
            #expect(report.hasObjects, "\(descr)")
            #expect(report.pickleOffset == bytes.count - pickle.count, "\(descr)")
            #expect(report.observations.map(\.kind) == ["numpy.object-dtype"], "\(descr): \(report.observations)")
            #expect(report.observations.first?.evidence.offset == report.pickleOffset)
        }
    }

    static let anomalies: [(String, [UInt8], String)] = [
        ("bad magic", Array("\u{93}NUMPI".utf8) + [1, 0, 0, 0], "numpy.bad-magic"),
        ("no version", [0x93] + Array("NUMPY".utf8), "numpy.truncated"),
        ("version 4", npy("{}", major: 4), "numpy.unsupported-version"),
        ("version 1.1", [0x93] + Array("NUMPY".utf8) + [1, 1, 2, 0] + Array("{}".utf8), "numpy.unsupported-version"),
        ("no header length", [0x93] + Array("NUMPY".utf8) + [1, 0, 9], "numpy.truncated"),
        (
            "header past the end", [0x93] + Array("NUMPY".utf8) + [1, 0, 0xFF, 0x00] + Array("{}".utf8),
            "numpy.truncated"
        ),
        (
            "lying v2 length", [0x93] + Array("NUMPY".utf8) + [2, 0, 0xFF, 0xFF, 0xFF, 0xFF] + Array("{}".utf8),
            "numpy.header-too-large"
        ),
        (
            "header over numpy's limit",
            npy(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }" + String(repeating: " ", count: 12000),
                zeros(4), major: 2), "numpy.header-too-large"
        ),
        (
            "code in the header",
            npy("{'descr': __import__('os').system('id'), 'fortran_order': False, 'shape': (1,), }", zeros(4)),
            "numpy.bad-header"
        ),
        ("a call", npy("dict(descr='<f4', fortran_order=False, shape=(1,))", zeros(4)), "numpy.bad-header"),
        ("not a dict", npy("['<f4', False, (1,)]", zeros(4)), "numpy.bad-header"),
        ("unterminated", npy("{'descr': '<f4", zeros(4)), "numpy.bad-header"),
        (
            "trailing junk", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x", zeros(4)),
            "numpy.bad-header"
        ),
        ("float shape", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1.5,)}", zeros(4)), "numpy.bad-header"),
        (
            "fortran_order not bool", npy("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", zeros(4)),
            "numpy.bad-header"
        ),
        (
            "invalid UTF-8 in v3",
            npy("{'descr': [('\u{FFFD}', '<f4')], 'fortran_order': False, 'shape': (1,)}", zeros(4), major: 3)
                .map { $0 == 0xEF ? 0xFF : $0 }, "numpy.bad-header"
        ),
        (
            "deep nesting",
            npy(
                "{'descr': " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)
                    + ", 'fortran_order': False, 'shape': (1,)}", zeros(4)), "numpy.bad-header"
        ),
        (
            "extra key", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'payload': 'x'}", zeros(4)),
            "numpy.header-keys"
        ),
        ("missing key", npy("{'descr': '<f4', 'shape': (1,)}", zeros(4)), "numpy.header-keys"),
        (
            "duplicate key", npy("{'descr': '|O', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", zeros(4)),
            "numpy.duplicate-key"
        ),
        (
            "negative dimension", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", zeros(4)),
            "numpy.bad-shape"
        ),
        (
            "shape not a tuple", npy("{'descr': '<f4', 'fortran_order': False, 'shape': [1]}", zeros(4)),
            "numpy.bad-shape"
        ),
        (
            "parenthesised int shape", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1)}", zeros(4)),
            "numpy.bad-shape"
        ),
        (
            "dimension past Int",
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", zeros(4)),
            "numpy.bad-header"
        ),
        (
            "unknown type string", npy("{'descr': '<q9', 'fortran_order': False, 'shape': (1,)}", zeros(4)),
            "numpy.unknown-descr"
        ),
        (
            "type name", npy("{'descr': 'float32', 'fortran_order': False, 'shape': (1,)}", zeros(4)),
            "numpy.unknown-descr"
        ),
        (
            "malformed field", npy("{'descr': [('a',)], 'fortran_order': False, 'shape': (1,)}", zeros(4)),
            "numpy.unknown-descr"
        ),
        (
            "short data", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4)}", zeros(47)),
            "numpy.size-mismatch"
        ),
        (
            "trailing data",
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", zeros(4) + Array("hidden".utf8)),
            "numpy.size-mismatch"
        ),
        (
            "shape product overflows",
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}", zeros(4)),
            "numpy.size-overflow"
        ),
        (
            "shape × item size overflows",
            npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,)}", zeros(4)),
            "numpy.size-overflow"
        ),
        (
            "huge string item",
            npy("{'descr': '<U4611686018427387904', 'fortran_order': False, 'shape': (1,)}", zeros(4)),
            "numpy.unknown-descr"
        ),
    ]

    @Test("each anomaly is observed", arguments: 0..<anomalies.count)
    func anomaly(_ i: Int) {
        let (name, bytes, kind) = Self.anomalies[i]
        let found = kinds(bytes)
        #expect(found.contains(kind), "\(name): \(found)")
        for k in found { #expect(k.hasPrefix("numpy."), "\(name): \(k)") }
    }

    @Test("the literal parser reads what Python would, and nothing else")
    func literal() throws {
        let parse = { (s: String) throws -> NumPyLiteral in
            try NumPyLiteral.parse(Array(s.utf8), maxDepth: 8, latin1: false, longSuffix: false)
        }
        #expect(try parse("(1,)") == .tuple([.int(1)]))
        #expect(try parse("(1)") == .int(1))
        #expect(try parse("()") == .tuple([]))
        #expect(
            try parse("[1, (2, 3), {'a': None}, ]")
                == .list([.int(1), .tuple([.int(2), .int(3)]), .dict([(.string("a"), .none)])]))
        #expect(try parse("'\\x41\\u00e9\\''") == .string("Aé'"))
        #expect(try parse("-3") == .int(-3))
        for bad in [
            "(1,,)", "[,]", "{1:}", "{[1]: 2}", "Truex", "01", "1.0", "'a' 'b'", "{'a' 1}", "((((((((((1))))))))))",
            "b'x'", "1L",
        ] {
            #expect(throws: NumPyLiteral.SyntaxError.self, "\(bad)") { try parse(bad) }
        }
    }

    @Test("item sizes of type strings")
    func itemSizes() {
        let table: [(String, NumPyParser.SimpleSize)] = [
            ("<f4", .size(4)), ("|b1", .size(1)), ("?", .size(1)), ("<i8", .size(8)), ("|u1", .size(1)),
            ("<U0", .size(0)),
            ("|V16", .size(16)), ("<m8[25s]", .size(8)), ("<M8", .size(8)), ("|O", .object), ("O8", .object),
            ("<i3", .unknown), ("<M8[", .unknown), ("", .unknown), ("<", .unknown), ("|O1", .unknown),
            ("<f-4", .unknown),
        ]
        for (text, expected) in table { #expect(NumPyParser.simpleItemSize(text) == expected, "\(text)") }
    }

    @Test("truncation at every offset never crashes and is observed")
    func truncation() {
        for sample in [matrix, record] {
            for n in 0..<sample.count {
                let report = NumPyParser.parse(ByteView(Array(sample[0..<n])))
                #expect(!report.observations.isEmpty, "cut at \(n)")
            }
        }
    }

    @Test("random byte flips never crash")
    func flips() {
        var rng = SplitMix(state: 0x0B1E_C7)
        let samples = Self.benign.map(\.1)
        for round in 0..<3000 {
            var bytes = samples[round % samples.count]
            for _ in 0..<Int.random(in: 1...4, using: &rng) where !bytes.isEmpty {
                bytes[Int.random(in: 0..<min(bytes.count, 128), using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            let report = NumPyParser.parse(ByteView(bytes))
            #expect(report.observations.count <= NumPyParser.maxObservations + 1)
        }
    }

    /// Files numpy itself wrote (`python3 Tests/Generators/npy_crosscheck.py DIR`), when AIRLOCK_NPY_SAMPLES names
    /// such a directory: every one must parse without observations other than `numpy.object-dtype`.
    @Test("files written by numpy, when provided")
    func numpyWritten() throws {
        guard let dir = ProcessInfo.processInfo.environment["AIRLOCK_NPY_SAMPLES"] else { return }
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".npy") }.sorted()
        #expect(!names.isEmpty)
        for name in names {
            let view = try ByteView.map(path: dir + "/" + name)
            let report = NumPyParser.parse(view)
            let kinds = report.observations.map(\.kind)
            if name.hasPrefix("object") {
                #expect(kinds == ["numpy.object-dtype"], "\(name): \(report.observations)")
            } else {
                #expect(kinds.isEmpty, "\(name): \(report.observations)")
            }
        }
    }
}
