@testable import AirlockAnalysis
import AirlockFormats
import Foundation
import Testing

/// Keras models written by Tests/Generators/keras_models.py (h5py for HDF5): Lambda layers reported with the names
/// and constants of their marshalled code, in `.keras` (Keras 3) and legacy `.h5` (Keras 2's `func_dump`, variable-
/// and fixed-length `model_config`), code-running layers and custom objects.
@Suite("Keras scan")
struct KerasScanTests {
    struct Expectation: Decodable {
        var path: String
        var verdict: String
        var rules: [String]
        var codeNames: [String]
    }

    @Test("every generated Keras model gets its verdict, rules and code evidence")
    func generated() throws {
        let dir = try generate("keras_models")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let expectations = try JSONDecoder().decode(
            [Expectation].self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/expectations.json")))
        #expect(expectations.count >= 17)
        for e in expectations {
            let r = StaticScanner.scan(file: "\(dir)/\(e.path)")
            let rules = r.findings.map(\.rule)
            #expect(r.verdict.rawValue == e.verdict, "\(e.path): \(r.findings.map { "\($0.rule) \($0.message)" })")
            for rule in e.rules { #expect(rules.contains(rule), "\(e.path) lacks \(rule): \(rules)") }
            #expect(rules.filter { $0 == "keras.lambda" }.count <= 1, "\(e.path): one finding per Lambda")
            guard !e.codeNames.isEmpty else { continue }
            let lambda = try #require(r.findings.first { $0.rule == "keras.lambda" })
            let names = lambda.evidence.details.first { $0.0 == "codeNames" }?.1.split(separator: ",") ?? []
            for n in e.codeNames { #expect(names.contains(Substring(n)), "\(e.path): \(lambda.evidence.details)") }
            let strings = lambda.evidence.details.first { $0.0 == "codeStrings" }?.1 ?? ""
            #expect(strings.contains("touch "), "\(e.path): the command is among the code's constants")
        }
    }

    @Test("an HDF5 file of unclosed config candidates is scanned in bounded work and says so")
    func unclosedCandidates() throws {
        // Each `{"class_name"` once started a brace scan to the end of the file: quadratic (508 KiB took > 60 s).
        let bytes: [UInt8] =
            [0x89] + Array("HDF\r\n".utf8) + [0x1A, 0x0A]
            + Array(repeating: Array(#"{"class_name""#.utf8), count: 40_000).flatMap { $0 }
        let path = NSTemporaryDirectory() + "airlock-keras-dos-\(UUID().uuidString.prefix(8)).h5"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let r = StaticScanner.scan(file: path)
        #expect(r.target.format == "hdf5")
        #expect(r.findings.map(\.rule) == ["keras.config-scan-limit"], "\(r.findings.map(\.rule))")
    }

    @Test("Lambda names in JSON strings are found however they are escaped, and only as whole strings")
    func lambdaText() {
        func rules(_ text: String) -> [String] {
            KerasFindings.searchLambda(ByteView(Array(text.utf8))).map(\.rule)
        }
        #expect(rules(#"x"class_name" :\#n "\u004c\u0061mbda"{"#) == ["keras.lambda"])
        #expect(rules(#"{"class_name": "Dense", "name": "\u005f_lambda__""#) == ["keras.lambda-text"])
        #expect(rules(#"{"class_name": "Lambda2", "name": "lambda", "f": "Lambda_1"}"#).isEmpty)
        #expect(rules(#""\u004"ambda""#).isEmpty)
    }

    @Test("marshal strings and lenient base64, on hand-made bytes")
    func codeStrings() {
        // z (short ASCII), Z|0x80 (interned, flagged), a (4-byte length), a control byte, a length past the end.
        let bytes: [UInt8] =
            [0x7A, 2] + Array("os".utf8) + [0xDA, 6] + Array("system".utf8) + [0x61, 3, 0, 0, 0] + Array("abc".utf8)
            + [0x7A, 2, 0x01, 0x02] + [0x7A, 200, 0x41]
        #expect(KerasCode.strings(bytes) == ["os", "system", "abc"])
        #expect(KerasCode.decodeBase64("b3Mu\nc3lz\ndGVt") == Array("os.system".utf8))
        #expect(KerasCode.decodeBase64("YQ==trailing") == Array("a".utf8))
    }
}
