import AirlockAnalysis
import AirlockFormats
@testable import airlock_fuzz
import Foundation
import Testing
import AirlockTestSupport

/// The committed fuzzing corpus (`Tests/Fuzz/Corpus`, seeds plus every crash `make fuzz` found) replayed in-process
/// through every parser, with the harness `make fuzz` uses: a parser that traps on one of these files fails here.
@Suite("Fuzzing corpus")
struct FuzzCorpusTests {
    static let corpus: String = {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        return root.appendingPathComponent("Tests/Fuzz/Corpus").path
    }()

    @Test("every corpus file goes through every parser", arguments: FuzzTarget.allCases)
    func replay(target: FuzzTarget) throws {
        var files: [String] = []
        CorpusFiles.collect(Self.corpus, into: &files)
        #expect(files.count >= 200, "the corpus at \(Self.corpus) is missing")
        for file in files {
            let bytes = try #require(CorpusFiles.read(file), "cannot read \(file)")
            target.run(bytes)
        }
    }

    @Test("each target has seeds of its own, each within -max_len")
    func layout() throws {
        for target in FuzzTarget.allCases {
            var files: [String] = []
            CorpusFiles.collect(Self.corpus + "/" + target.rawValue, into: &files)
            #expect(!files.isEmpty, "no seeds for \(target.rawValue)")
            for file in files { #expect((CorpusFiles.read(file)?.count ?? .max) <= 65536, "\(file) is over 64 KiB") }
        }
    }
}

/// What `make fuzz` found, pinned down beyond "does not crash".
@Suite("Fuzzing regressions")
struct FuzzRegressionTests {
    /// Many central records sharing one deflated member (`Corpus/format/regress-overlap-bomb.zip`: 500 records,
    /// 40 MiB each, 64 KiB in all) kept the scanner inflating for minutes: the total is now bounded per file.
    @Test("overlapping deflated members stop at the per-file inflation bound")
    func overlappingMembers() {
        var first = ZipBuilder.Member("a", Array(repeating: 0x41, count: 4096), deflate: true)
        first.localHeaderOffset = 0
        var members = [first]
        for i in 1..<50 {
            var m = first
            m.name = Array("a\(i)".utf8)
            m.centralOnly = true
            members.append(m)
        }
        let budget = ScanBudget(maxInflatedBytes: 1024)
        let report = StaticScanner.analyse(bytes: ByteView(ZipBuilder(members).build()), budget: budget)
        let inflated = report.findings.filter { $0.rule == "zip.bomb" && $0.message.contains("could not be read") }
        let stopped = report.findings.filter { $0.rule == "zip.bomb" && $0.message.contains("in all") }
        // Four members reach 4 × 1024 bytes; then one finding stands for all the rest.
        #expect(inflated.count == 4)
        #expect(stopped.count == 1)
        #expect(stopped.first?.evidence.member == "a4")
        #expect(report.findings.contains { $0.rule == "zip.overlapping-entries" })
    }
}
