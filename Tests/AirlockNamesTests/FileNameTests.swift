import AirlockNames
import AirlockAnalysis
@testable import AirlockFormats
import Testing
import AirlockTestSupport

/// `FileName`: bytes in, a lossless and injective display out, and back.
@Suite("FileName: names are bytes")
struct FileNameTests {
    static let table: [([UInt8], String)] = [
        (Array("model.safetensors".utf8), "model.safetensors"),
        (Array("w".utf8) + [0xFF] + Array(".pkl".utf8), "w\\xFF.pkl"),
        (Array("w\u{FFFD}.pkl".utf8), "w\u{FFFD}.pkl"),
        (Array("a\\b".utf8), "a\\\\b"),
        (Array("\\xFF".utf8), "\\\\xFF"),  // a name that is the escape's own text
        (Array("a\nb\r\t".utf8), "a\\x0Ab\\x0D\\x09"),
        (Array("\u{1B}[31mred".utf8), "\\x1B[31mred"),
        ([0x7F], "\\x7F"),
        (Array("\u{85}".utf8), "\\xC2\\x85"),  // C1 next line
        (Array("evil\u{202E}lkp.pt".utf8), "evil\\xE2\\x80\\xAElkp.pt"),  // right-to-left override
        (Array("a\u{200B}b".utf8), "a\\xE2\\x80\\x8Bb"),  // zero-width space
        (Array("\u{FEFF}x".utf8), "\\xEF\\xBB\\xBFx"),
        ([0xC0, 0xAF], "\\xC0\\xAF"),  // overlong `/`
        ([0xED, 0xA0, 0x80], "\\xED\\xA0\\x80"),  // a surrogate
        ([0xE2, 0x82], "\\xE2\\x82"),  // cut short
        ([0xF4, 0x90, 0x80, 0x80], "\\xF4\\x90\\x80\\x80"),  // past U+10FFFF
        (Array("é/日本語/😀".utf8), "é/日本語/😀"),
        (Array("e\u{301}".utf8), "e\u{301}"),
    ]

    @Test("escaped form, and back to the same bytes", arguments: table)
    func escapes(bytes: [UInt8], shown: String) {
        let name = FileName(bytes: bytes)
        #expect(Array(name.escaped.utf8) == Array(shown.utf8), "\(name.escaped)")
        #expect(FileName(escaped: shown)?.bytes == bytes)
    }

    @Test(
        "only the canonical escaped form is read",
        arguments: [
            "w\\xff.pkl", "\\x41", "a\nb", "\\q", "\\x4", "a\\", "\\x00", "x\u{202E}", "\\xZZ", "\\\\\\",
        ])
    func refusesOtherSpellings(text: String) {
        #expect(FileName(escaped: text) == nil)
    }

    @Test("injective and lossless on random bytes; validity agrees with Swift's UTF-8 decoder")
    func randomNames() {
        var rng = SplitMix(seed: 11)
        var seen: [String: [UInt8]] = [:]
        for _ in 0..<5000 {
            let n = Int.random(in: 1...12, using: &rng)
            let bytes = (0..<n).map { _ -> UInt8 in
                // Mostly bytes around UTF-8's edges, some ASCII and backslashes.
                let pool: [UInt8] = [
                    0x5C, 0x78, 0x41, 0x0A, 0x7F, 0x80, 0xBF, 0xC2, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xFF, 0x9F, 0xA0,
                ]
                return Bool.random(using: &rng)
                    ? pool.randomElement(using: &rng)! : UInt8.random(in: 1...255, using: &rng)
            }
            let name = FileName(bytes: bytes)
            let shown = name.escaped
            #expect(FileName(escaped: shown)?.bytes == bytes, "\(bytes) → \(shown)")
            // Keyed by the escaped text's bytes: `String` keys would merge canonically equivalent texts.
            let key = shown.utf8.map { String($0, radix: 16) }.joined(separator: ",")
            if let other = seen[key] { #expect(other == bytes, "\(other) and \(bytes) both show as \(shown)") }
            seen[key] = bytes
            let swiftValid = Array(String(decoding: bytes, as: UTF8.self).utf8) == bytes
            #expect(name.isValidUTF8 == swiftValid, "\(bytes)")
            #expect(!shown.unicodeScalars.contains { $0.value < 0x20 || ($0.value >= 0x7F && $0.value <= 0x9F) })
        }
    }

    @Test("NFC and NFD are two names that read alike; U+FFFD and an invalid byte too")
    func lookalikes() {
        let nfc = FileName("\u{E9}.pkl"), nfd = FileName("e\u{301}.pkl")
        #expect("\u{E9}.pkl" == "e\u{301}.pkl")  // what a String key would do
        #expect(nfc != nfd && Set([nfc, nfd]).count == 2)
        #expect(nfc.lookalikeKey == nfd.lookalikeKey)
        let invalid = FileName(bytes: Array("w".utf8) + [0xFF] + Array(".pkl".utf8))
        #expect(invalid != FileName("w\u{FFFD}.pkl") && invalid.lookalikeKey == FileName("w\u{FFFD}.pkl").lookalikeKey)
        #expect(!invalid.isValidUTF8 && !invalid.hasUnsafeCharacters)
        #expect(FileName("a\nb").hasUnsafeCharacters && FileName("a\nb").isValidUTF8)
    }

    @Test("paths: components, last component, within; a NUL never reaches a system call")
    func paths() {
        let path = FileName("a").appending(FileName(bytes: [0xFF])).appending(FileName("c.pkl"))
        #expect(path.bytes == [0x61, 0x2F, 0xFF, 0x2F] + Array("c.pkl".utf8))
        #expect(path.components.count == 3 && path.lastComponent == FileName("c.pkl"))
        #expect(
            path.isWithin(FileName("a")) && !path.isWithin(FileName("a/\u{FFFD}"))
                && !FileName("ab").isWithin(FileName("a")))
        #expect(FileName(bytes: [0x61, 0x00, 0x62]).withCString { $0.pointee } == 0)
        #expect(FileName(bytes: [0xFF]).withCString { UInt8(bitPattern: $0.pointee) } == 0xFF)
    }

    @Test("the text report shows control characters a model chose as \\xHH: no forged line, no terminal escape")
    func textReport() {
        #expect(FileName.escapingControls("a\nb\\c \u{202E}x") == "a\\x0Ab\\c \\xE2\\x80\\xAEx")
        #expect(FileName.escapingControls("w\\xFF.pkl") == "w\\xFF.pkl")  // an escaped name is left alone
        let target = ReportTarget(path: "m.pkl", size: 1, sha256: nil, format: "pickle")
        let finding = Finding(
            rule: "pickle.dangerous-import", severity: .critical,
            message: "imports os.sy\nCLEAN  \u{1B}[2Jstem", evidence: Evidence(member: "a\rb", args: ["'\n'"]))
        let text = Report(target: target, findings: [finding]).text()
        #expect(text.split(separator: "\n").count == 4, "\(text)")
        #expect(
            !text.contains("\u{1B}") && !text.contains("\r") && text.contains("os.sy\\x0ACLEAN  \\x1B[2Jstem"),
            "\(text)")
    }
}
