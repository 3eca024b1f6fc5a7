@testable import AirlockAnalysis
@testable import AirlockFormats
import Foundation
import Testing

/// Tar archives, gzip and lzma/xz streams that CPython's readers (torch.load's tarfile, joblib's and pandas' gzip and
/// lzma) read differently from GNU tar or zlib (`Tests/Generators/packed_divergence.py`): Airlock reads each as
/// Python does, byte for byte, and finds the payload Python would load.
@Suite("Packed files read as Python reads them", .serialized)
struct PackedDivergenceTests {
    struct Expectation: Decodable {
        var path: String
        var verdict: String
        var rules: [String]
        var kind: String
        var python: PythonReading?
    }

    /// What Python read: a tar's members (name → hex) or a stream's content (hex).
    enum PythonReading: Decodable {
        case members([String: String])
        case content(String)

        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) {
                self = .content(s)
            } else {
                self = .members(try c.decode([String: String].self))
            }
        }
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    @Test("every sample: the verdict and rules, and Airlock's reading equals Python's")
    func samples() throws {
        let dir = try generate("packed_divergence")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let expectations = try JSONDecoder().decode(
            [Expectation].self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/expectations.json")))
        #expect(expectations.count >= 24)
        for e in expectations {
            let path = "\(dir)/\(e.path)"
            let r = StaticScanner.scan(file: path)
            let rules = Set(r.findings.map(\.rule))
            #expect(r.verdict.rawValue == e.verdict, "\(e.path): \(r.findings.map { "\($0.rule) \($0.message)" })")
            for rule in e.rules { #expect(rules.contains(rule), "\(e.path) lacks \(rule): \(rules.sorted())") }
            let view = try ByteView.map(path: path)
            switch (e.kind, e.python) {
            case ("tar", .members(let python)?):
                #expect(TarArchive.looks(view), "\(e.path)")
                let archive = TarArchive.read(view)
                var ours: [String: String] = [:]
                for m in archive.members {
                    ours[m.name] = PackedDivergenceTests.hex(view.slice(m.offset, m.size)!.array)
                }
                for (name, data) in python { #expect(ours[name] == data, "\(e.path): \(name) differs from Python's") }
            case (let kind, .content(let python)?):
                let compression = try #require(Compression(rawValue: kind))
                #expect(Compression.detect(view) == compression, "\(e.path)")
                let out = Decompressor.decompress(view, compression, limit: 1 << 20)
                #expect(PackedDivergenceTests.hex(out.data.array) == python, "\(e.path): \(out.failure ?? "")")
                #expect(out.complete && out.consumed == view.count, "\(e.path): \(out.consumed) of \(view.count)")
            default:
                break
            }
        }
    }

    @Test("a 1 GiB declared lzma dictionary is decoded, and with a large budget only half of it comes out")
    func bigDictionary() throws {
        // 400 MiB of zeros in an lzma "alone" stream written with a 1 MiB dictionary, its header patched to 1 GiB.
        let dir = NSTemporaryDirectory() + "airlock-bigdict-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = """
            import lzma, struct, sys
            c = lzma.LZMACompressor(format=lzma.FORMAT_ALONE, filters=[{"id": lzma.FILTER_LZMA1, "dict_size": 1 << 20}])
            out = bytearray(b"".join(c.compress(b"\\0" * (1 << 20)) for _ in range(400)) + c.flush())
            out[1:5] = struct.pack("<I", 1 << 30)
            open(sys.argv[1], "wb").write(out)
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", script, dir + "/big.lzma"]
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let view = try ByteView.map(path: dir + "/big.lzma")
        let small = Decompressor.decompress(view, .lzma, limit: 1 << 20)
        #expect(small.data.count == 1 << 20 && small.overLimit)
        let limit = 256 << 20
        let out = Decompressor.decompress(view, .lzma, limit: limit)
        #expect(out.overLimit && out.data.count == limit / 2 && out.failure == nil)
    }

    @Test("Python's number fields: signs, '_', '0o', whitespace, NUL cuts, base-256; pax int() with Unicode digits")
    func numbers() {
        func nti(_ s: String) -> Int? { TarNumbers.nti(Array(s.utf8).map { $0 }).map(\.value) }
        #expect(nti("0000644\0") == 0o644)
        #expect(nti("+006543\0") == 0o6543)
        #expect(nti("-17 ") == -0o17)
        #expect(nti("\t17\t") == 0o17)
        #expect(nti("0o17") == 0o17 && nti("0o_17") == 0o17 && nti("1_7") == 0o17)
        #expect(nti("1__7") == nil && nti("17_") == nil && nti("_17") == nil && nti("8") == nil)
        #expect(nti("\0" + "777") == 0)
        #expect(nti("        ") == 0)
        #expect(TarNumbers.nti([0x80, 0, 0, 1, 0]).map(\.value) == 256)
        #expect(TarNumbers.nti([0xFF, 0xFF, 0xFF, 0xFF, 0xFE]).map(\.value) == -2)
        #expect(TarNumbers.nti(Array("0000644\0".utf8))?.canonical == true)
        #expect(TarNumbers.nti(Array("+000644\0".utf8))?.canonical == false)
        #expect(TarNumbers.paxInt("+600") == 600 && TarNumbers.paxInt(" 6_00 ") == 600)
        #expect(TarNumbers.paxInt("\u{FF16}\u{FF10}\u{FF10}") == 600 && TarNumbers.paxInt("0600") == 600)
        #expect(TarNumbers.paxInt("6__00") == nil && TarNumbers.paxInt("0x10") == nil && TarNumbers.paxInt("") == nil)
        #expect(TarNumbers.paxInt("99999999999999999999999") == Int.max)
        #expect(TarNumbers.normpath("a//b/./c/../d") == "a/b/d" && TarNumbers.normpath("../x") == "../x")
        #expect(TarNumbers.normpath("/../x") == "/x" && TarNumbers.normpath("") == ".")
    }
}
