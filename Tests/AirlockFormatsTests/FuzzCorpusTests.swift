@testable import airlock_fuzz
import Foundation
import Testing

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
