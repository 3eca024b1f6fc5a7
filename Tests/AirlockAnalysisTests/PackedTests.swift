@testable import AirlockAnalysis
import AirlockFormats
import Foundation
import Testing

/// Compressed and packed files (docs/formats.md, "Compressed and packed files"): written by the real joblib, pandas
/// and 7zz (`Tests/Generators/packed.py`), each analysed as its content.
@Suite("Packed files", .serialized)
struct PackedTests {
    struct Expectation: Decodable {
        var path: String
        var verdict: String
        var rules: [String]
        var format: String?
        var compression: String?
        var sameAs: String?
    }

    /// Rules a compressed file adds to its content's.
    static let wrapperRules: Set<String> = ["compressed.stream", "format.name-mismatch"]

    @Test("every compression joblib and pandas write, tar and 7z: verdict, evidence, format, compression")
    func generated() throws {
        let dir = try generate("packed")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let expectations = try JSONDecoder().decode(
            [Expectation].self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/expectations.json")))
        #expect(expectations.count >= 55)
        var reports: [String: Report] = [:]
        for e in expectations { reports[e.path] = StaticScanner.scan(file: "\(dir)/\(e.path)") }
        for e in expectations {
            let r = try #require(reports[e.path])
            let rules = Set(r.findings.map(\.rule))
            #expect(r.verdict.rawValue == e.verdict, "\(e.path): \(r.findings.map { "\($0.rule) \($0.message)" })")
            for rule in e.rules { #expect(rules.contains(rule), "\(e.path) lacks \(rule): \(rules.sorted())") }
            if let format = e.format { #expect(r.target.format == format, "\(e.path)") }
            if let compression = e.compression { #expect(r.target.compression == compression, "\(e.path)") }
            if e.compression == nil && e.format != nil && e.format != "unknown" && !e.path.hasSuffix(".gz") {
                #expect(r.target.compression == nil, "\(e.path)")
            }
            if let base = e.sameAs, let b = reports[base] {
                let content = Set(b.findings.map(\.rule))
                #expect(rules.subtracting(PackedTests.wrapperRules) == content, "\(e.path) vs \(base)")
            }
            // The compression is named in the evidence of every finding about the content.
            if r.target.compression != nil {
                for f in r.findings where f.rule.hasPrefix("pickle.") {
                    #expect(f.evidence.details.contains { $0.0 == "compression" }, "\(e.path): \(f.rule)")
                }
            }
        }
    }

    @Test("a stream that expands past the budget stops at the budget, and what came out is still analysed")
    func bomb() throws {
        let dir = try generate("packed_hostile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let budget = ScanBudget(maxInflatedBytes: 4 << 20)
        let view = try ByteView.map(path: dir + "/bomb_after_payload.gz")
        let out = Decompressor.decompress(view, .gzip, limit: budget.maxInflatedBytes)
        #expect(out.overLimit && out.data.count == budget.maxInflatedBytes && !out.complete)
        let r = StaticScanner.scan(file: dir + "/bomb_after_payload.gz", budget: budget)
        #expect(Set(r.findings.map(\.rule)).isSuperset(of: ["compressed.bomb", "pickle.dangerous-import"]))
        #expect(r.verdict == .malicious)
        let z = StaticScanner.scan(file: dir + "/bomb.7z", budget: budget)
        #expect(z.findings.contains { $0.rule == "7z.bomb" }, "\(z.findings.map(\.rule))")
    }

    @Test("the limit is exact: as many bytes as the limit are complete, one more is over it")
    func exactLimit() throws {
        let dir = try generate("packed_hostile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // seed.xz holds a small pickle: decode it whole, then with one byte less than it holds.
        let xz = try ByteView.map(path: dir + "/seed.xz")
        let whole = Decompressor.decompress(xz, .xz, limit: 1 << 20)
        #expect(whole.complete && !whole.overLimit && whole.streams == 1 && whole.consumed == xz.count)
        let exact = Decompressor.decompress(xz, .xz, limit: whole.data.count)
        #expect(exact.complete && !exact.overLimit && exact.data.count == whole.data.count)
        let short = Decompressor.decompress(xz, .xz, limit: whole.data.count - 1)
        #expect(short.overLimit && !short.complete && short.data.count == whole.data.count - 1)
        #expect(short.data.array == Array(whole.data.array.dropLast()))
        // Stored 7z output is cut at the limit the same way, and its content is what was packed.
        let copy = SevenZipArchive.read(try ByteView.map(path: dir + "/copy.7z"), limit: 1 << 20)
        #expect(copy.members.map(\.name) == ["a.txt", "m.pkl"] && copy.observations.isEmpty)
    }

    @Test("hand-made hostile archives and streams: a clear finding, never a crash")
    func hostile() throws {
        let dir = try generate("packed_hostile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let expectations = try JSONDecoder().decode(
            [Expectation].self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/expectations.json")))
        #expect(expectations.count >= 10)
        for e in expectations {
            let r = StaticScanner.scan(file: "\(dir)/\(e.path)", budget: ScanBudget(maxInflatedBytes: 4 << 20))
            let rules = Set(r.findings.map(\.rule))
            #expect(r.verdict.rawValue == e.verdict, "\(e.path): \(r.findings.map { "\($0.rule) \($0.message)" })")
            for rule in e.rules { #expect(rules.contains(rule), "\(e.path) lacks \(rule): \(rules.sorted())") }
        }
    }

    @Test("mutated tar, 7z and compressed files never crash or hang the reader")
    func mutations() throws {
        let dir = try generate("packed_hostile")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var seed: UInt64 = 0x5EED
        func next() -> UInt64 {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return seed >> 33
        }
        let budget = ScanBudget(maxInflatedBytes: 1 << 20)
        var runs = 0
        for name in ["seed.7z", "seed_solid.7z", "seed.tar", "seed.tar.gz", "seed.xz", "seed.zst", "seed.lz4"] {
            let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name)")))
            for _ in 0..<150 {
                var bytes = original
                for _ in 0..<(1 + Int(next() % 4)) {
                    let at = Int(next() % UInt64(bytes.count))
                    bytes[at] = UInt8(truncatingIfNeeded: next())
                }
                if next() % 4 == 0 { bytes = Array(bytes.prefix(Int(next() % UInt64(bytes.count)))) }
                let r = StaticScanner.analyse(bytes: ByteView(bytes), budget: budget)
                #expect(r.findings.count < 10_000)
                runs += 1
            }
        }
        #expect(runs == 7 * 150)
    }
}
