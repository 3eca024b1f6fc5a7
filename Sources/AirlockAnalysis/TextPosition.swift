internal import AirlockFormats

/// A place in a text file, for reports that point at a line (SARIF regions): 1-based line and column, the column in
/// Unicode code points. Written into a finding's evidence as the `fileLine` and `fileColumn` details (`line` is taken: TorchScript
/// findings give the line in an archive member).
struct TextPoint: Sendable, Equatable {
    var line: Int
    var column: Int

    /// The evidence details for this place.
    var details: [(String, String)] { [("fileLine", String(line)), ("fileColumn", String(column))] }
}

/// Lines and columns from the bytes of UTF-8 text files (JSON configs, templates, Python), bounded: only the first
/// `maxBytes` bytes are looked at, one pass each, no recursion.
enum TextPosition {
    /// Largest prefix of a file positions are found in.
    static let maxBytes = 64 << 20

    /// The line and column of byte `offset`; nil when it is past the end, past `maxBytes`, or the text is not
    /// UTF-8-like (a NUL before the offset: UTF-16 and UTF-32 files).
    static func point(_ bytes: [UInt8], offset: Int) -> TextPoint? { points(bytes, offsets: [offset])[offset] }

    /// The places of several offsets, found in one pass over the bytes (a file with many findings near its end is read
    /// once, not once per finding); offsets with no place are left out.
    static func points(_ bytes: [UInt8], offsets: [Int]) -> [Int: TextPoint] {
        let wanted = Set(offsets.filter { $0 >= 0 && $0 <= min(bytes.count, maxBytes) }).sorted()
        guard let last = wanted.last else { return [:] }
        var out: [Int: TextPoint] = [:]
        var next = 0
        var line = 1
        var column = 1
        var i = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        while next < wanted.count && wanted[next] < i { next += 1 }
        while i <= last {
            while next < wanted.count && wanted[next] == i {
                out[i] = TextPoint(line: line, column: column)
                next += 1
            }
            guard i < bytes.count else { break }
            let b = bytes[i]
            if b == 0 { break }
            // A line ends at LF, CR LF or a CR alone (old Mac text): the CR of a CR LF pair counts with its LF.
            if b == 0x0A || (b == 0x0D && (i + 1 >= bytes.count || bytes[i + 1] != 0x0A)) {
                line += 1
                column = 1
            } else if b & 0xC0 != 0x80 {
                column += 1
            }
            i += 1
        }
        return out
    }

    /// Where string literals and members of a JSON document are, read without building it.
    struct JSONScan {
        /// The byte offset of the opening quote of the last member of the top-level object whose key is exactly
        /// `key` (no escapes; Python's json lets the last of duplicate keys win).
        var keyOffset: Int?
        /// The offsets of the string literals inside that member's value, by their raw content (first occurrence).
        var strings: [[UInt8]: Int] = [:]
    }

    /// Most string literals recorded inside the member's value.
    static let maxStrings = 4096

    /// Scans `bytes` as JSON for the top-level member `key`. Malformed JSON gives what was found before the error.
    static func scanJSON(_ bytes: [UInt8], key: String) -> JSONScan {
        let wanted = Array(key.utf8)
        let end = min(bytes.count, maxBytes)
        var depth = 0
        var i = 0
        var member: (offset: Int, valueStart: Int)?
        var strings: [(offset: Int, raw: [UInt8])] = []
        while i < end {
            let b = bytes[i]
            switch b {
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
            case UInt8(ascii: "\""):
                let start = i
                var j = i + 1
                var plain = true
                while j < end && bytes[j] != UInt8(ascii: "\"") {
                    if bytes[j] == UInt8(ascii: "\\") {
                        plain = false
                        j += 1
                    }
                    j += 1
                }
                guard j < end else {
                    i = end
                    continue
                }
                let rawLength = j - start - 1
                var k = j + 1
                while k < end && [0x20, 0x09, 0x0A, 0x0D].contains(bytes[k]) { k += 1 }
                let isKey = k < end && bytes[k] == UInt8(ascii: ":")
                // A key written with escapes is the same key to Python's json: decoded, so that an escaped duplicate
                // after a plain one (the one Python keeps) is the place found.
                let matches =
                    plain
                    ? rawLength == wanted.count && (0..<rawLength).allSatisfy { bytes[start + 1 + $0] == wanted[$0] }
                    : rawLength <= 6 * wanted.count && decoded(bytes[(start + 1)..<j]) == wanted
                if depth == 1 && isKey && matches {
                    member = (start, k + 1)
                    strings.removeAll()
                } else if depth >= 1 && !isKey && plain && strings.count < maxStrings && rawLength <= 1024 {
                    strings.append((start, (0..<rawLength).map { bytes[start + 1 + $0] }))
                }
                i = j
            default: break
            }
            i += 1
        }
        guard let last = member else { return JSONScan() }
        var scan = JSONScan(keyOffset: last.offset)
        // Strings past the member's value belong to later members.
        let valueEnd = valueEnd(bytes, from: last.valueStart, limit: end)
        for s in strings where s.offset > last.offset && s.offset < valueEnd && scan.strings[s.raw] == nil {
            scan.strings[s.raw] = s.offset
        }
        return scan
    }

    /// The bytes of a JSON string's raw content with its escapes decoded (a lone surrogate becomes U+FFFD); nil when
    /// an escape is malformed.
    static func decoded(_ raw: ArraySlice<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        var units: [UInt16] = []
        var i = raw.startIndex
        func flush() {
            guard !units.isEmpty else { return }
            for scalar in String(decoding: units, as: UTF16.self).unicodeScalars {
                UTF8.encode(scalar) { out.append($0) }
            }
            units.removeAll()
        }
        while i < raw.endIndex {
            let b = raw[i]
            guard b == UInt8(ascii: "\\") else {
                flush()
                out.append(b)
                i += 1
                continue
            }
            guard i + 1 < raw.endIndex else { return nil }
            let e = raw[i + 1]
            if e == UInt8(ascii: "u") {
                guard i + 6 <= raw.endIndex,
                    let unit = UInt16(String(decoding: raw[(i + 2)..<(i + 6)], as: UTF8.self), radix: 16)
                else { return nil }
                units.append(unit)
                i += 6
                continue
            }
            flush()
            let simple: [UInt8: UInt8] = [
                0x22: 0x22, 0x5C: 0x5C, 0x2F: 0x2F, 0x62: 0x08, 0x66: 0x0C, 0x6E: 0x0A, 0x72: 0x0D, 0x74: 0x09,
            ]
            guard let c = simple[e] else { return nil }
            out.append(c)
            i += 2
        }
        flush()
        return out
    }

    /// Where the JSON value starting at or after `from` ends (exclusive), skipping strings; `limit` at most.
    static func valueEnd(_ bytes: [UInt8], from: Int, limit: Int) -> Int {
        var depth = 0
        var i = from
        var started = false
        while i < limit {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                i += 1
                while i < limit && bytes[i] != UInt8(ascii: "\"") { i += bytes[i] == UInt8(ascii: "\\") ? 2 : 1 }
                started = true
                if depth == 0 { return min(i + 1, limit) }
            } else if b == UInt8(ascii: "{") || b == UInt8(ascii: "[") {
                depth += 1
                started = true
            } else if b == UInt8(ascii: "}") || b == UInt8(ascii: "]") {
                depth -= 1
                if depth <= 0 { return min(i + 1, limit) }
            } else if started && depth == 0 && (b == UInt8(ascii: ",") || b == 0x0A) {
                return i
            } else if ![0x20, 0x09, 0x0A, 0x0D].contains(b) {
                started = true
            }
            i += 1
        }
        return limit
    }

    /// `findings` with the line and column of their offset in `bytes` (a whole text file) added to the evidence.
    static func located(_ findings: [Finding], in bytes: [UInt8]) -> [Finding] {
        let places = points(
            bytes, offsets: findings.compactMap { $0.evidence.member == nil ? $0.evidence.offset : nil })
        return findings.map { f in
            guard f.evidence.member == nil, let offset = f.evidence.offset, let p = places[offset] else { return f }
            var located = f
            located.evidence.details += p.details
            return located
        }
    }

    /// `findings` with the line and column of the top-level JSON member `key` in `bytes` added to the evidence (the
    /// template's own offsets are within the decoded string, not the file).
    static func atMember(_ findings: [Finding], key: String, in bytes: [UInt8]) -> [Finding] {
        guard !findings.isEmpty, let offset = scanJSON(bytes, key: key).keyOffset,
            let p = point(bytes, offset: offset)
        else { return findings }
        return findings.map { f in
            var located = f
            located.evidence.details += p.details
            return located
        }
    }
}
