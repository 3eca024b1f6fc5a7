public import AirlockSandbox

/// Finds honeytokens in bytes that left the sandbox, as is and encoded the way thieves encode them: hex, base64 and
/// base32 at every alignment (standard and URL-safe), URL encoding and JSON escaping. Any run of `window` characters
/// of one of those forms counts, so a value split across DNS labels, packets or lines is found piece by piece, and a
/// prefix or suffix cut off does not hide the rest.
///
/// Only the tokens' random parts (`Honeytoken.secrets`) are looked for: `window` characters of them cannot occur by
/// chance. The work is linear: one rolling hash per byte and a table look-up, with a comparison only where the hash
/// matches a window of a needle, and each match skipped past once found. A flood of bytes costs its length, nothing
/// more; callers bound the length (`ExfiltrationSearch.maxBytes`).
public struct ExfiltrationMatcher: Sendable {
    /// Characters of a needle that make a match.
    public static let window = 16

    /// One form of one token's secret.
    struct Needle: Sendable {
        var token: Int
        var form: String
        var bytes: [UInt8]
    }

    /// Where a match was found, and what it was.
    public struct Match: Sendable, Equatable {
        /// Index into the tokens the matcher was made with.
        public var token: Int
        /// How the value was encoded (`as is`, `base64`, `hex`, …).
        public var form: String
        /// Offset of the match in the bytes searched.
        public var offset: Int
        /// Bytes matched (at least `window`).
        public var length: Int
    }

    let needles: [Needle]
    /// Window hash → (needle, offset of the window in it).
    private let windows: [UInt64: [(needle: Int, at: Int)]]
    /// Whether the bytes are folded to lower case before matching (DNS names: resolvers may change the case).
    let folded: Bool
    /// One bit per low `filterBits` bits of a window hash: most bytes are turned away here, before the table.
    private let filter: [UInt64]
    private static let filterBits = 21

    /// Whether only letters and digits are compared (folded to lower case): a value cut by dashes, dots, spaces,
    /// line breaks or escapes every few characters still matches.
    let squeezed: Bool

    /// A matcher for `tokens`; `foldCase` for haystacks whose case may have changed on the way; `squeeze` to compare
    /// letters and digits alone.
    public init(tokens: [Honeytoken], foldCase: Bool = false, squeeze: Bool = false) {
        folded = foldCase || squeeze
        squeezed = squeeze
        let foldCase = foldCase || squeeze
        var needles: [Needle] = []
        for (index, token) in tokens.enumerated() {
            for secret in token.secrets where secret.count >= 8 {
                var seen = Set<[UInt8]>()
                for (form, bytes) in ExfiltrationMatcher.forms(secret) {
                    let b =
                        squeeze
                        ? ExfiltrationMatcher.squeeze(bytes) : foldCase ? ExfiltrationMatcher.lower(bytes) : bytes
                    guard b.count >= ExfiltrationMatcher.window, seen.insert(b).inserted else { continue }
                    needles.append(Needle(token: index, form: form, bytes: b))
                }
            }
        }
        var windows: [UInt64: [(needle: Int, at: Int)]] = [:]
        for (n, needle) in needles.enumerated() {
            var h = RollingHash()
            for (i, byte) in needle.bytes.enumerated() {
                h.push(
                    byte, leaving: i >= ExfiltrationMatcher.window ? needle.bytes[i - ExfiltrationMatcher.window] : nil)
                if i >= ExfiltrationMatcher.window - 1 {
                    windows[h.value, default: []].append((n, i + 1 - ExfiltrationMatcher.window))
                }
            }
        }
        self.needles = needles
        self.windows = windows
        var filter = [UInt64](repeating: 0, count: (1 << ExfiltrationMatcher.filterBits) / 64)
        for key in windows.keys {
            let bit = Int(truncatingIfNeeded: key & ((1 << ExfiltrationMatcher.filterBits) - 1))
            filter[bit >> 6] |= 1 << UInt64(bit & 63)
        }
        self.filter = filter
    }

    /// Every token found in `bytes`, each once (its first and longest-reaching match), in the order found.
    public func matches(in bytes: [UInt8]) -> [Match] {
        guard squeezed else { return matches(folded ? ExfiltrationMatcher.lower(bytes) : bytes) }
        // Offsets and lengths back in `bytes`: the n-th letter or digit, found by one walk per match.
        let found = matches(ExfiltrationMatcher.squeeze(bytes))
        return found.map { m in
            var kept = 0
            var start = -1
            var end = bytes.count
            for (i, b) in bytes.enumerated() where ExfiltrationMatcher.isAlphanumeric(b) {
                if kept == m.offset { start = i }
                kept += 1
                if kept == m.offset + m.length {
                    end = i + 1
                    break
                }
            }
            return Match(token: m.token, form: m.form, offset: max(start, 0), length: end - max(start, 0))
        }
    }

    private func matches(_ haystack: [UInt8]) -> [Match] {
        let w = ExfiltrationMatcher.window
        guard haystack.count >= w, !windows.isEmpty else { return [] }
        var found: [Match] = []
        var tokensFound = Set<Int>()
        var i = 0
        let mask = UInt64((1 << ExfiltrationMatcher.filterBits) - 1)
        while i < haystack.count {
            // The hot loop: a rolling hash and one bit test per byte, over raw buffers.
            guard
                let (at, hash) = haystack.withUnsafeBufferPointer({ hay in
                    filter.withUnsafeBufferPointer { bits -> (Int, UInt64)? in
                        var h: UInt64 = 0
                        var k = i
                        let first = min(i + w, hay.count)
                        while k < first {
                            h = h &* RollingHash.base &+ UInt64(hay[k]) &+ 1
                            k += 1
                        }
                        guard k - i == w else { return nil }
                        while true {
                            let bit = Int(truncatingIfNeeded: h & mask)
                            if bits[bit >> 6] & (1 << UInt64(bit & 63)) != 0 { return (k, h) }
                            guard k < hay.count else { return nil }
                            h = h &* RollingHash.base &+ UInt64(hay[k]) &+ 1
                            h = h &- (UInt64(hay[k - w]) &+ 1) &* RollingHash.outgoing
                            k += 1
                        }
                    }
                })
            else { break }
            let start = at - w
            // A false hit of the filter or the hash: go on with the next window, hashing it afresh.
            i = start + 1
            guard let candidates = windows[hash] else { continue }
            let end = at
            var best: Match? = nil
            for (n, at) in candidates {
                let needle = needles[n]
                guard haystack[start..<end].elementsEqual(needle.bytes[at..<at + w]) else { continue }
                var length = w
                while start + length < haystack.count && at + length < needle.bytes.count
                    && haystack[start + length] == needle.bytes[at + length]
                {
                    length += 1
                }
                if best == nil || length > best!.length {
                    best = Match(token: needle.token, form: needle.form, offset: start, length: length)
                }
            }
            guard let best else { continue }
            if tokensFound.insert(best.token).inserted { found.append(best) }
            // Past the match: its bytes are accounted for; the hash starts again after it.
            i = start + best.length
        }
        return found
    }

    /// The forms a secret travels in: as is, hex, base64 and base32 at each alignment, URL-encoded, JSON-escaped.
    static func forms(_ secret: [UInt8]) -> [(String, [UInt8])] {
        var out: [(String, [UInt8])] = [("as is", secret)]
        let hexDigits = Array("0123456789abcdef".utf8)
        let hex = secret.flatMap { [hexDigits[Int($0 >> 4)], hexDigits[Int($0 & 15)]] }
        out.append(("hex", hex))
        out.append(("hex", hex.map { $0 >= 0x61 ? $0 - 0x20 : $0 }))
        for shift in 0..<3 {
            out.append(("base64", aligned(secret, shift: shift, bits: 6, alphabet: TokenText.base64)))
            out.append(("base64url", aligned(secret, shift: shift, bits: 6, alphabet: TokenText.urlSafe)))
        }
        for shift in 0..<5 {
            let upper = aligned(secret, shift: shift, bits: 5, alphabet: TokenText.base32Upper)
            out.append(("base32", upper))
            out.append(("base32", lower(upper)))
        }
        var percentUpper: [UInt8] = [], percentLower: [UInt8] = [], json: [UInt8] = []
        let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)
        let upperDigits = Array("0123456789ABCDEF".utf8)
        for b in secret {
            if unreserved.contains(b) {
                percentUpper.append(b)
                percentLower.append(b)
            } else {
                percentUpper += [UInt8(ascii: "%"), upperDigits[Int(b >> 4)], upperDigits[Int(b & 15)]]
                percentLower += [UInt8(ascii: "%"), hexDigits[Int(b >> 4)], hexDigits[Int(b & 15)]]
            }
            switch b {
            case UInt8(ascii: "/"), UInt8(ascii: "\""), UInt8(ascii: "\\"): json += [UInt8(ascii: "\\"), b]
            case UInt8(ascii: "\n"): json += Array("\\n".utf8)
            case 0..<0x20, 0x7F...:
                json += Array("\\u00".utf8) + [hexDigits[Int(b >> 4)], hexDigits[Int(b & 15)]]
            default: json.append(b)
            }
        }
        out.append(("URL-encoded", percentUpper))
        out.append(("URL-encoded", percentLower))
        out.append(("JSON-escaped", json))
        return out
    }

    /// The characters of `secret`'s encoding (`bits` per character) when it follows `shift` other bytes: only those
    /// made of the secret's bits alone, which are the same whatever came before or after it.
    static func aligned(_ secret: [UInt8], shift: Int, bits: Int, alphabet: [UInt8]) -> [UInt8] {
        let startBit = shift * 8, endBit = (shift + secret.count) * 8
        var out: [UInt8] = []
        var c = (startBit + bits - 1) / bits
        while c * bits + bits <= endBit {
            var value = 0
            for k in 0..<bits {
                let bit = c * bits + k - startBit
                value = value << 1 | Int(secret[bit / 8] >> (7 - UInt8(bit % 8)) & 1)
            }
            out.append(alphabet[value])
            c += 1
        }
        return out
    }

    static func isAlphanumeric(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
    }

    /// Letters and digits alone, in lower case.
    static func squeeze(_ bytes: [UInt8]) -> [UInt8] {
        // A table and raw buffers: this runs over every byte that left the sandbox.
        var kept = 0
        let out = [UInt8](unsafeUninitializedCapacity: bytes.count) { buffer, count in
            bytes.withUnsafeBufferPointer { input in
                squeezeTable.withUnsafeBufferPointer { table in
                    for b in input {
                        let t = table[Int(b)]
                        if t != 0 {
                            buffer[kept] = t
                            kept += 1
                        }
                    }
                }
            }
            count = kept
        }
        return out
    }

    /// Byte → itself in lower case if a letter or digit, else 0.
    private static let squeezeTable: [UInt8] = (0..<256).map { b in
        let byte = UInt8(b)
        guard isAlphanumeric(byte) else { return 0 }
        return byte >= 0x41 && byte <= 0x5A ? byte + 0x20 : byte
    }

    static func lower(_ bytes: [UInt8]) -> [UInt8] {
        bytes.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }
    }
}

/// A polynomial hash over the last `ExfiltrationMatcher.window` bytes, updated in constant time per byte.
struct RollingHash {
    static let base: UInt64 = 0x100_0000_01B3
    /// `base` to the power `window`, to take the leaving byte out.
    static let outgoing: UInt64 = {
        var p: UInt64 = 1
        for _ in 0..<ExfiltrationMatcher.window { p = p &* base }
        return p
    }()
    var value: UInt64 = 0

    mutating func push(_ byte: UInt8, leaving: UInt8?) {
        value = value &* RollingHash.base &+ UInt64(byte) &+ 1
        if let leaving { value = value &- (UInt64(leaving) &+ 1) &* RollingHash.outgoing }
    }
}
