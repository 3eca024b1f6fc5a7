public import AirlockNames
internal import AirlockFormats

/// Findings about a file's name itself, for folder scans (every entry) and intake (the model's own name).
public enum NameFindings {
    /// What an entry's name says by itself: bytes that are not UTF-8, characters that forge or hide text, and other
    /// entries that read the same. High (suspicious): no model needs such a name, and each one makes what a person
    /// or a tool reads differ from the file that is loaded.
    public static func findings(_ relative: FileName, lookalikes: [FileName]) -> [Finding] {
        var out: [Finding] = []
        let shown = relative.escaped
        func details() -> [(String, String)] { [("name", shown), ("bytes", hex(relative))] }
        if !relative.isValidUTF8 {
            out.append(
                Finding(
                    rule: "folder.name-not-utf8", severity: .high,
                    message:
                        "the name \(shown) is not valid UTF-8 (shown with \\xHH escapes): tools that decode names see another name, or the same name as another file",
                    evidence: Evidence(details: details())
                ))
        }
        if relative.hasUnsafeCharacters {
            out.append(
                Finding(
                    rule: "folder.name-control", severity: .high,
                    message:
                        "the name \(shown) holds control or invisible formatting characters (shown as \\xHH escapes): printed as it is, it could forge output or read as another name",
                    evidence: Evidence(details: details())
                ))
        }
        if !lookalikes.isEmpty {
            out.append(
                Finding(
                    rule: "folder.name-lookalike", severity: .high,
                    // The escaped forms differ, but NFC and NFD look alike on screen: the bytes tell them apart.
                    message:
                        "\(shown) (bytes \(hex(relative))) reads the same as \(lookalikes.map { "\($0.escaped) (bytes \(hex($0)))" }.joined(separator: ", ")) once decoded or Unicode-normalised, but is another file: a tool that decodes or normalises names takes one for the other",
                    evidence: Evidence(
                        details: details()
                            + lookalikes.prefix(8).enumerated().map {
                                ("lookalike\($0.offset + 1)", $0.element.escaped)
                            })
                ))
        }
        return out
    }

    /// The name's bytes in lower-case hex.
    public static func hex(_ name: FileName) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(name.bytes.count * 2)
        for b in name.bytes { out += [digits[Int(b >> 4)], digits[Int(b & 0xF)]] }
        return String(decoding: out, as: UTF8.self)
    }
}
