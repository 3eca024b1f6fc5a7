@testable import AirlockFormats
import Foundation
import Testing
import AirlockTestSupport

private let pickle: [UInt8] = [
    0x80, 0x02, 0x7D, 0x71, 0x00, 0x58, 0x01, 0x00, 0x00, 0x00, 0x61, 0x71, 0x01, 0x4B, 0x01, 0x73, 0x2E,
]

private func read(_ b: ZipBuilder, budget: ScanBudget = .standard) throws -> (ZipArchive, ByteView) {
    let v = ByteView(b.build())
    return (try ZipArchive.read(v, budget: budget), v)
}

private func member(_ name: String, _ text: String = "payload", deflate: Bool = false) -> ZipBuilder.Member {
    ZipBuilder.Member(name, Array(text.utf8), deflate: deflate)
}

@Suite("Zip: benign archives")
struct ZipBenignTests {
    @Test(
        "zipfile output, a PyTorch layout, data descriptors: no observations, members extract",
        arguments: [
            "benign_deflate.zip", "benign_stored.zip", "pytorch.zip", "descriptor.zip",
        ])
    func benign(_ file: String) throws {
        let v = try ZipSamples.load(file)
        let a = try ZipArchive.read(v)
        #expect(a.observations == [], "\(a.observations)")
        #expect(a.hiddenEntries.isEmpty)
        #expect(a.minizRefusal == nil)
        #expect(!a.entries.isEmpty)
        #expect(ZipDetector.looksLikeZip(v) && ZipDetector.torchTreatsAsZip(v))
        for e in a.entries {
            #expect(e.dataOffset != nil)
            let x = try a.extractChecked(e, from: v, limit: 1 << 20)
            #expect(x.crcMatches && x.sizeMatches && x.streamComplete, "\(e.name)")
        }
        #expect(a.verifyAll(view: v, limit: 1 << 20) == [])
    }

    @Test("the PyTorch layout: names, lookups as miniz and Python do them, pickle bytes")
    func pytorchLayout() throws {
        let v = try ZipSamples.load("pytorch.zip")
        let a = try ZipArchive.read(v)
        #expect(
            a.entries.map(\.name) == [
                "archive/data.pkl", "archive/byteorder", "archive/data/0", "archive/version",
                "archive/.data/serialization_id",
            ])
        let pkl = try #require(a.minizEntry(named: "archive/data.pkl"))
        #expect(try a.extract(pkl, from: v, limit: 100).array == pickle)
        #expect(a.minizEntry(named: "ARCHIVE/DATA.PKL") == pkl, "miniz looks names up case-insensitively")
        #expect(a.pythonEntry(named: "ARCHIVE/DATA.PKL") == nil)
        for (i, e) in a.entries.enumerated() { #expect(a.minizIndex(of: e.nameBytes) == i) }
        #expect(a.minizEntry(named: "archive/missing") == nil)
        #expect(a.prefixBytes == 0 && a.trailingBytes == 0 && a.comment.isEmpty)
    }

    @Test("a member written with force_zip64 by Python reads correctly")
    func zip64Python() throws {
        let v = try ZipSamples.load("zip64_forced.zip")
        let a = try ZipArchive.read(v)
        #expect(a.kinds == ["zip.zip64"], "\(a.observations)")
        let big = try #require(a.pythonEntry(named: "big/data.pkl"))
        #expect(big.isZip64)
        #expect(
            try a.extract(big, from: v, limit: 1 << 20).array == Array(repeating: pickle, count: 100).flatMap { $0 })
        #expect(a.verifyAll(view: v, limit: 1 << 20) == [])
    }

    @Test("a zip64 end record, locator and central zip64 fields read correctly")
    func zip64Builder() throws {
        var b = ZipBuilder([member("archive/data.pkl", "abc"), member("archive/version", "3\n", deflate: true)])
        b.zip64 = true
        let (a, v) = try read(b)
        #expect(a.kinds == ["zip.zip64"], "\(a.observations)")
        #expect(a.entries.count == 2 && a.entries.allSatisfy(\.isZip64))
        #expect(a.declaredEntryCount == 2)
        #expect(try a.extract(a.entries[1], from: v, limit: 10).array == Array("3\n".utf8))
    }

    @Test("the byte builder itself makes clean archives, stored and deflated")
    func builder() throws {
        let (a, v) = try read(ZipBuilder([member("a"), member("b/c", "xyz", deflate: true)]))
        #expect(a.observations == [])
        #expect(try a.extract(a.entries[1], from: v, limit: 3).array == Array("xyz".utf8))
        #expect(throws: FormatError.self) { try a.extract(a.entries[1], from: v, limit: 2) }
        #expect(a.verifyAll(view: v, limit: 100) == [])
    }

    @Test("detection: local magic at 0 or an end record near the end")
    func detector() throws {
        #expect(ZipDetector.looksLikeZip(ByteView(ZipBuilder([]).build())))
        var b = ZipBuilder([member("a")])
        b.prefix = Array(repeating: 0x41, count: 100)
        let v = ByteView(b.build())
        #expect(ZipDetector.looksLikeZip(v) && !ZipDetector.torchTreatsAsZip(v))
        #expect(!ZipDetector.looksLikeZip(ByteView(pickle)))
        #expect(!ZipDetector.looksLikeZip(ByteView([])))
        #expect(throws: FormatError.self) { try ZipArchive.read(ByteView(pickle)) }
    }
}

@Suite("Zip: disagreements between readers")
struct ZipObservationTests {
    @Test("duplicate names: which record miniz and Python each return")
    func duplicate() throws {
        var first = member("archive/data.pkl", "first")
        first.flags = 0
        let (a, v) = try read(
            ZipBuilder([first, member("archive/version", "3"), member("archive/data.pkl", "second")]))
        #expect(a.kinds == ["zip.duplicate-name"], "\(a.observations)")
        let o = try #require(a.observations.first)
        #expect(o.evidence.member == "archive/data.pkl")
        #expect(o.evidence.details.contains { $0 == ("pythonPicks", "2") })
        let python = try #require(a.pythonEntry(named: "archive/data.pkl"))
        #expect(try a.extract(python, from: v, limit: 100).array == Array("second".utf8))
        let miniz = try #require(a.minizIndex(of: Array("archive/data.pkl".utf8)))
        #expect([0, 2].contains(miniz))
        #expect(o.evidence.details.contains { $0 == ("minizPicks", String(miniz)) })
    }

    @Test("miniz's pick among duplicates follows its heap sort, not the directory order")
    func minizReplay() {
        // Two equal names: the heap sort swaps them, so the binary search lands on the second record.
        let two = MinizLookup.sortedOrder([Array("a".utf8), Array("a".utf8)])
        #expect(MinizLookup.locate(Array("a".utf8), names: [Array("a".utf8), Array("a".utf8)], order: two) != nil)
        let names = ["b", "a", "c", "a", "d"].map { Array($0.utf8) }
        let order = MinizLookup.sortedOrder(names)
        #expect(order.map { names[$0] } == ["a", "a", "b", "c", "d"].map { Array($0.utf8) })
        #expect(MinizLookup.locate(Array("C".utf8), names: names, order: order) == 2)
    }

    @Test("names equal but for case")
    func caseDuplicate() throws {
        let (a, _) = try read(ZipBuilder([member("archive/data.pkl"), member("archive/DATA.pkl")]))
        #expect(a.kinds == ["zip.duplicate-name-case"], "\(a.observations)")
    }

    @Test("local headers that disagree with the central directory")
    func localMismatches() throws {
        var name = member("archive/data.pkl")
        name.localName = Array("archive/evil.pkl".utf8)
        #expect(try read(ZipBuilder([name])).0.kinds == ["zip.local-name-mismatch"])
        var flags = member("a")
        flags.localFlags = 0x0800
        #expect(try read(ZipBuilder([flags])).0.kinds == ["zip.local-flags-mismatch"])
        var method = member("a")
        method.localMethod = 8
        #expect(try read(ZipBuilder([method])).0.kinds == ["zip.local-method-mismatch"])
        var size = member("a")
        size.localUncompressed = 3
        #expect(try read(ZipBuilder([size])).0.kinds == ["zip.local-size-mismatch"])
        var crc = member("a")
        crc.localCRC = 1
        #expect(try read(ZipBuilder([crc])).0.kinds == ["zip.local-crc-mismatch"])
        var deferred = member("a")
        deferred.flags = 0x0008
        deferred.localCRC = 0
        deferred.localCompressed = 0
        deferred.localUncompressed = 0
        // A data descriptor is announced but the bytes after the data do not match: reported once.
        #expect(try read(ZipBuilder([deferred])).0.kinds == ["zip.local-size-mismatch"])
    }

    @Test("CRC lies are found by verifyAll, stored and deflated, not by read")
    func crc() throws {
        var stored = member("s")
        stored.crc = 0xDEAD_BEEF
        var deflated = member("d", "deflated", deflate: true)
        deflated.crc = 0x1234_5678
        let (a, v) = try read(ZipBuilder([stored, deflated, member("ok")]))
        #expect(a.observations == [])
        let found = a.verifyAll(view: v, limit: 1 << 20)
        #expect(found.map(\.kind) == ["zip.crc-mismatch", "zip.crc-mismatch"])
        #expect(found.map(\.evidence.member) == ["s", "d"])
        #expect(try a.extractChecked(a.entries[0], from: v, limit: 100).crcMatches == false)
        #expect(
            try a.extract(a.entries[0], from: v, limit: 100).array == Array("payload".utf8), "data is returned anyway")
    }

    @Test("encrypted flag")
    func encrypted() throws {
        var m = member("archive/data.pkl")
        m.flags = 0x0001
        let (a, v) = try read(ZipBuilder([m]))
        #expect(a.kinds == ["zip.encrypted-flag"])
        #expect(try a.extract(a.entries[0], from: v, limit: 100).array == Array("payload".utf8))
    }

    @Test("prefix data with offsets that count it, and without (Python shifts, miniz does not)")
    func prefix() throws {
        var b = ZipBuilder([member("archive/data.pkl")])
        b.prefix = pickle
        let (a, v) = try read(b)
        #expect(a.kinds == ["zip.prefix-data"], "\(a.observations)")
        #expect(a.prefixBytes == pickle.count && a.baseOffset == 0)
        #expect(try a.extract(a.entries[0], from: v, limit: 100).array == Array("payload".utf8))

        b.offsetsIncludePrefix = false
        let (c, w) = try read(b)
        #expect(c.kinds == ["zip.prefix-data", "zip.offset-shift", "zip.miniz-refuses"], "\(c.observations)")
        #expect(c.baseOffset == pickle.count && c.minizRefusal != nil)
        #expect(try c.extract(c.entries[0], from: w, limit: 100).array == Array("payload".utf8))
    }

    @Test("a gap between directory and end record: Python shifts every offset")
    func gap() throws {
        var b = ZipBuilder([member("a")])
        b.gapBeforeEnd = [1, 2, 3, 4]
        let (a, _) = try read(b)
        #expect(a.kinds == ["zip.offset-shift"], "\(a.observations)")
    }

    @Test("trailing data and comments")
    func trailing() throws {
        var b = ZipBuilder([member("a")])
        b.comment = Array("a comment".utf8)
        let (a, _) = try read(b)
        #expect(a.observations == [] && a.comment == Array("a comment".utf8))
        b.trailing = pickle
        let (c, _) = try read(b)
        #expect(c.kinds == ["zip.trailing-data"] && c.trailingBytes == pickle.count)
    }

    @Test("two central records over the same bytes")
    func overlap() throws {
        var alias = member("archive/other.pkl")
        alias.centralOnly = true
        alias.localHeaderOffset = 0
        alias.localName = nil
        let (a, _) = try read(ZipBuilder([member("archive/data.pkl"), alias]))
        // The alias's local header names the other member, too.
        #expect(a.kinds == ["zip.overlapping-entries", "zip.local-name-mismatch"], "\(a.observations)")
    }

    @Test("offsets and sizes beyond the file")
    func outOfBounds() throws {
        var far = member("a")
        far.localHeaderOffset = 1 << 30
        let (a, _) = try read(ZipBuilder([far]))
        // The local header at 0 is now used by no central record: prefix data for the directory's readers.
        #expect(a.kinds == ["zip.entry-out-of-bounds", "zip.prefix-data", "zip.miniz-refuses"], "\(a.observations)")
        #expect(a.entries[0].dataOffset == nil)
        var bad = member("b")
        bad.localHeaderOffset = 5
        let (c, _) = try read(ZipBuilder([bad]))
        #expect(c.kinds.contains("zip.bad-local-header"))
    }

    @Test("declared bombs")
    func declaredBomb() throws {
        var m = member("archive/data.pkl", "x", deflate: true)
        m.declaredUncompressed = 1 << 30
        let (a, _) = try read(ZipBuilder([m]))
        #expect(a.kinds == ["zip.bomb"], "\(a.observations)")
    }

    @Test("a 1 GiB bomb stops at the limit, quickly")
    func realBomb() throws {
        let v = try ZipSamples.load("bomb.zip")
        let a = try ZipArchive.read(v)
        #expect(a.kinds == ["zip.bomb"])
        let start = ContinuousClock.now
        #expect {
            try a.extract(a.entries[0], from: v, limit: 16 << 20)
        } throws: { ($0 as? FormatError)?.kind == .budget }
        let found = a.verifyAll(view: v, limit: 16 << 20)
        #expect(found.map(\.kind) == ["zip.bomb"])
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    @Test(
        "names that escape", arguments: ["../../etc/passwd", "/etc/passwd", "a\\..\\b", "C:/x", "a/../../b", "a\u{0}b"])
    func traversal(_ name: String) throws {
        let (a, _) = try read(ZipBuilder([member(name)]))
        #expect(a.kinds == ["zip.path-traversal"], "\(a.observations)")
    }

    @Test("unsupported methods")
    func method() throws {
        var m = member("a")
        m.method = 12
        let (a, v) = try read(ZipBuilder([m]))
        #expect(a.kinds == ["zip.unsupported-method", "zip.miniz-refuses"])
        #expect(throws: FormatError.self) { try a.extract(a.entries[0], from: v, limit: 100) }
    }

    @Test("more than one end record")
    func multipleEnd() throws {
        let inner = ZipBuilder([member("a")]).build()
        var b = ZipBuilder([member("a")])
        b.comment = Array(inner.suffix(22))  // a second end record, inside the comment
        let (a, _) = try read(b)
        #expect(a.kinds.contains("zip.multiple-eocd"), "\(a.observations)")
    }

    @Test("entry counts: records past the count are Python's only; too few records is a refusal")
    func counts() throws {
        var b = ZipBuilder([member("archive/data.pkl"), member("archive/evil.pkl")])
        b.count = 1
        let (a, _) = try read(b)
        #expect(a.kinds == ["zip.count-mismatch"], "\(a.observations)")
        #expect(a.entries.map(\.name) == ["archive/data.pkl"] && a.hiddenEntries.map(\.name) == ["archive/evil.pkl"])
        #expect(a.pythonEntry(named: "archive/evil.pkl") != nil && a.minizEntry(named: "archive/evil.pkl") == nil)
        b.count = 3
        let (c, _) = try read(b)
        #expect(c.kinds == ["zip.count-mismatch", "zip.miniz-refuses"], "\(c.observations)")
    }

    @Test("a zip64 count of 2^32 does not allocate by the count")
    func hugeCount() throws {
        var b = ZipBuilder([member("a")])
        b.zip64 = true
        b.zip64Count = 1 << 32
        let (a, _) = try read(b)
        #expect(a.entries.count == 1)
        #expect(a.kinds.isSuperset(of: ["zip.count-mismatch", "zip.miniz-refuses", "zip.zip64"]))
    }

    @Test("names that are not UTF-8, or not flagged as such")
    func names() throws {
        let (a, _) = try read(ZipBuilder([ZipBuilder.Member(nameBytes: [0x61, 0xFF, 0xFE], [1])]))
        #expect(a.kinds == ["zip.non-utf8-name"])
        // Shown losslessly (not as U+FFFD), as folder entries are.
        #expect(a.entries.first?.name == "a\\xFF\\xFE" && a.observations.first?.evidence.member == "a\\xFF\\xFE")
        let (c, _) = try read(ZipBuilder([ZipBuilder.Member(nameBytes: Array("x\nCLEAN.pkl".utf8), [1])]))
        #expect(c.entries.first?.name == "x\\x0ACLEAN.pkl")
        let (b, _) = try read(ZipBuilder([member("café")]))
        #expect(b.kinds == ["zip.non-utf8-name"])
        var flagged = member("café")
        flagged.flags = 0x0800
        #expect(try read(ZipBuilder([flagged])).0.observations == [])
    }

    @Test("at most budget.maxEntries records are read")
    func entryLimit() throws {
        let b = ZipBuilder((0..<10).map { member("m\($0)") })
        var budget = ScanBudget()
        budget.maxEntries = 3
        let (a, _) = try read(b, budget: budget)
        #expect(a.entries.count == 3 && a.kinds == ["zip.entry-limit"], "\(a.observations)")
    }

    @Test("observations per kind are capped")
    func cap() throws {
        let (a, _) = try read(ZipBuilder((0..<100).map { member("../m\($0)") }))
        #expect(a.observations.count == 65)
        #expect(a.observations.last?.evidence.details.first { $0.0 == "omitted" }?.1 == "36")
    }
}

@Suite("Zip: hostile input")
struct ZipHostileTests {
    static func samples() throws -> [[UInt8]] {
        var z64 = ZipBuilder([member("archive/data.pkl", "abc", deflate: true), member("b")])
        z64.zip64 = true
        return [
            try ZipSamples.load("pytorch.zip").array, try ZipSamples.load("descriptor.zip").array,
            try ZipSamples.load("zip64_forced.zip").array, z64.build(),
        ]
    }

    @Test("truncation at every offset gives an archive or an error, never a crash")
    func truncation() throws {
        for bytes in try Self.samples() {
            for cut in 0...bytes.count {
                let v = ByteView(Array(bytes[..<cut]))
                if let a = try? ZipArchive.read(v) {
                    _ = a.verifyAll(view: v, limit: 1 << 16)
                    for e in a.entries { _ = try? a.extract(e, from: v, limit: 1 << 16) }
                }
            }
        }
    }

    @Test("single-byte corruption anywhere, deterministic")
    func corruption() throws {
        var rng = SplitMix(seed: 42)
        for bytes in try Self.samples() {
            for _ in 0..<1500 {
                var b = bytes
                for _ in 0..<Int(rng.next() % 4 + 1) {
                    b[Int(rng.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
                let v = ByteView(b)
                if let a = try? ZipArchive.read(v) {
                    _ = a.verifyAll(view: v, limit: 1 << 16)
                    _ = a.minizEntry(named: "archive/data.pkl")
                }
            }
        }
    }

    // The time limit only catches a reader gone badly wrong (a hang); speed is for benchmarks to judge, not a unit
    // test (a 5 s limit here failed on loaded machines).
    @Test(
        "many duplicate names, end records in every comment position: bounded findings, no hang",
        .timeLimit(.minutes(1)))
    func scale() throws {
        var b = ZipBuilder((0..<20_000).map { member("n\($0 / 2)", "") })
        // 2900 end-record signatures that lead nowhere, then one empty archive's end record.
        b.comment = Array(repeating: [0x50, 0x4B, 5, 6] + Array(repeating: 0xFF, count: 18), count: 2900).flatMap { $0 }
        let (a, _) = try read(b)
        #expect(a.entries.count == 20_000)
        #expect(a.observations("zip.duplicate-name").count == 65)
        #expect(a.minizRefusal != nil, "miniz takes the last signature and fails")
        var c = b
        c.comment += ZipBuilder([]).build()
        let (e, _) = try read(c)
        #expect(e.entries.isEmpty && e.kinds.contains("zip.multiple-eocd"), "readers see an empty archive")
    }

    @Test("saturated fields without zip64 data, and absurd offsets")
    func saturated() throws {
        var m = member("a")
        m.localHeaderOffset = UInt32.max
        m.declaredUncompressed = UInt32.max
        let (a, _) = try read(ZipBuilder([m]))
        #expect(a.kinds.contains("zip.malformed-extra"))
        #expect(a.entries[0].dataOffset == nil)
    }
}
