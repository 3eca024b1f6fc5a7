@testable import AirlockAnalysis
import AirlockFormats
import AirlockTestSupport
import Foundation
import Testing

/// The adversarial review's bypasses of the pickle pre-check (`Tests/Generators/pickle_numbers.py`): a number line
/// the pre-check rejected but the unpickler reads (`I0x3e9`, `I01751`, `I1_001`, `L0x3e9L`, `Finfinity`, `g1_0`)
/// hid what followed: legacy `torch.load`'s later pickles, a plain pickle with no `.pkl` name, a torch ZIP's data.pkl.
/// The real loaders run every payload (confirmed by the generator); Airlock must call each file malicious.
@Suite("Pickle pre-check bypasses", .serialized)
struct PickleBypassScanTests {
    struct Sample: Decodable {
        var path: String
        var loader: String
        var confirmed: Bool
    }

    @Test("each sample runs its payload under the real loader and is malicious")
    func samples() throws {
        let dir = try generateSamples("pickle_numbers.py", [])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let samples = try JSONDecoder().decode(
            [Sample].self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/samples.json")))
        #expect(samples.count >= 14)
        #expect(samples.contains { $0.path == "torchzip_hexint.pt" })
        for s in samples {
            #expect(s.confirmed, "\(s.path): \(s.loader) did not run the payload, the sample is not a bypass")
            let r = StaticScanner.scan(file: "\(dir)/\(s.path)")
            #expect(r.verdict == .malicious, "\(s.path): \(r.verdict) \(r.findings.map { "\($0.rule) \($0.message)" })")
        }
    }

    @Test("legacy PyTorch: data after fewer than five pickles is at least medium, storage bytes after five are info")
    func legacyTrailing() throws {
        let dir = try makeHostDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func scan(_ bytes: [UInt8]) throws -> Report {
            let path = dir + "/m.pt"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            return StaticScanner.scan(file: path)
        }
        let magic: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E]
        let junk: [UInt8] = [0xFF, 0xFE, 0x00, 0x01]
        let proto = Array("\u{80}\u{02}M\u{e9}\u{03}.".unicodeScalars.map { UInt8($0.value) })
        let early = try scan(magic + proto + junk)
        let trailingEarly = early.findings.filter { $0.rule.hasPrefix("pickle.") && $0.severity >= .medium }
        #expect(!trailingEarly.isEmpty, "\(early.findings.map { "\($0.rule) \($0.severity)" })")
        let five = magic + proto + Array("}.N.].".utf8) + junk
        let late = try scan(five)
        let t = late.findings.first { $0.rule == "pickle.trailing-data" }
        #expect(t?.severity == .info, "\(late.findings.map { "\($0.rule) \($0.severity)" })")
    }
}
