internal import AirlockJSON

/// The Python code a Keras Lambda layer carries: `marshal.dumps(function.__code__)`, base64-encoded — Keras 3's
/// `{"class_name": "__lambda__", "config": {"code": "…"}}`, Keras 2's `func_dump` triple `["…", defaults,
/// closure]` with `function_type: "lambda"`. The evidence is the strings of the code object (its names, constants,
/// variable and file names), found by walking the marshal stream's string records; nothing is unmarshalled.
enum KerasCode {
    /// Most base64 characters decoded.
    static let maxEncoded = 4 << 20
    /// Most strings kept as evidence.
    static let maxStrings = 48
    /// Names whose presence in a Lambda's code says what it reaches.
    static let telling: Set<String> = [
        "os", "system", "popen", "subprocess", "exec", "eval", "__import__", "socket", "builtins", "open",
        "getattr", "compile", "ctypes", "pickle", "marshal", "shutil", "urllib", "requests", "connect",
    ]

    /// Base64 as Python's decoder reads it by default: characters outside the alphabet (newlines) are skipped, and
    /// decoding stops at padding. Nil past `maxEncoded`.
    static func decodeBase64(_ text: String) -> [UInt8]? {
        guard text.utf8.count <= maxEncoded else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count / 4 * 3)
        var acc: UInt32 = 0
        var bits = 0
        for c in text.utf8 {
            let v: UInt8
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = c - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = c - UInt8(ascii: "a") + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0") + 52
            case UInt8(ascii: "+"), UInt8(ascii: "-"): v = 62
            case UInt8(ascii: "/"), UInt8(ascii: "_"): v = 63
            case UInt8(ascii: "="): return out
            default: continue
            }
            acc = (acc << 6) | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        return out
    }

    /// The strings of a marshalled code object, in order, without duplicates: every record of a string type
    /// (`z`/`Z` short ASCII, `a`/`A` ASCII, `u` UTF-8, `t` interned, `s` bytes when printable; with or without the
    /// reference flag) whose length fits and whose bytes are printable. A scan, not a parse: it reads every version
    /// of the format alike, and a byte that only looks like a record adds a string to the evidence, never removes one.
    static func strings(_ data: [UInt8]) -> [String] {
        var out: [String] = []
        var seen = Set<String>()
        var i = 0
        while i < data.count, out.count < maxStrings {
            let type = data[i] & 0x7F
            var start = 0
            var length = -1
            switch type {
            case UInt8(ascii: "z"), UInt8(ascii: "Z"):
                if i + 1 < data.count {
                    length = Int(data[i + 1])
                    start = i + 2
                }
            case UInt8(ascii: "a"), UInt8(ascii: "A"), UInt8(ascii: "u"), UInt8(ascii: "t"), UInt8(ascii: "s"):
                if i + 4 < data.count {
                    length = Int(data[i + 1]) | Int(data[i + 2]) << 8 | Int(data[i + 3]) << 16 | Int(data[i + 4]) << 24
                    start = i + 5
                }
            default: break
            }
            guard length > 0, length <= 512, start + length <= data.count,
                data[start..<(start + length)].allSatisfy({ $0 >= 0x20 && $0 < 0x7F || $0 >= 0x80 })
            else {
                i += 1
                continue
            }
            let s = String(decoding: data[start..<(start + length)], as: UTF8.self)
            if type != UInt8(ascii: "s") || s.utf8.count >= 2, seen.insert(s).inserted { out.append(s) }
            i = start + length
        }
        return out
    }

    /// The encoded code of a Lambda layer's `function` value (Keras 3 or Keras 2), when it has one.
    static func encoded(_ function: JSON) -> String? {
        switch function {
        case .object(let members):
            guard case .object(let config)? = members.first(where: { $0.0 == "config" })?.1,
                case .string(let code)? = config.first(where: { $0.0 == "code" })?.1
            else { return nil }
            return code
        case .array(let items):
            if case .string(let code)? = items.first { return code }
            return nil
        case .string(let code):
            return code
        default:
            return nil
        }
    }

    /// Evidence details for a Lambda's `function`: the code's strings, and which telling names are among them.
    static func evidence(_ function: JSON) -> [(String, String)] {
        guard let text = encoded(function) else { return [] }
        guard let bytes = decodeBase64(text), !bytes.isEmpty else { return [("code", "not base64")] }
        let found = strings(bytes)
        var out: [(String, String)] = [("codeBytes", String(bytes.count))]
        if !found.isEmpty {
            out.append(("codeStrings", found.map { String($0.prefix(120)) }.joined(separator: ", ")))
        }
        let names = found.filter { telling.contains($0) }
        if !names.isEmpty { out.append(("codeNames", names.joined(separator: ","))) }
        return out
    }
}
