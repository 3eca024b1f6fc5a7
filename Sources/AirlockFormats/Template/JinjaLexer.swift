/// A token of a Jinja2 template, as Jinja's own lexer (default delimiters) splits it.
struct JinjaToken: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        /// Text outside tags (a `{% raw %}` block's content too).
        case data(String)
        /// `{{` (expression) or `{%` (statement), with whitespace control stripped.
        case begin(statement: Bool)
        /// `}}` or `%}`.
        case end
        /// An identifier.
        case name(String)
        /// A string literal, its escapes decoded as Jinja decodes them (Python's `unicode-escape`); `exact` is false
        /// when an escape could not be decoded here (a `\N{…}` name other than the few known).
        case string(String, exact: Bool)
        /// An integer literal (nil when it does not fit), or a float (nil).
        case number(Int?)
        /// An operator or punctuation.
        case op(String)
    }
    var kind: Kind
    /// Offset (in UTF-8 bytes) in the template.
    var offset: Int
}

/// Why tokenizing stopped.
struct JinjaLexError: Error, Equatable {
    var message: String
    var offset: Int
}

/// Splits a template the way Jinja2's lexer does with its default delimiters: `{{ }}`, `{% %}`, `{# #}`,
/// whitespace control (`-`, `+`), `{% raw %}` blocks, and inside tags names, numbers, operators and string
/// literals with escapes. Inside a tag an end delimiter only counts when every bracket opened in the tag is
/// closed (`{{ {'a': 1} }}`), as in Jinja. One pass, no recursion; at most `maxTokens` tokens.
struct JinjaLexer {
    let s: [UInt8]
    var i = 0
    var tokens: [JinjaToken] = []
    let maxTokens: Int
    /// The scan's deadline, asked every `JinjaTemplate.deadlineStride` tokens and bytes.
    var clock = DeadlineStride(every: JinjaTemplate.deadlineStride)
    var byteClock = DeadlineStride(every: JinjaTemplate.deadlineStride * 64)

    init(_ bytes: [UInt8], maxTokens: Int) {
        s = bytes
        self.maxTokens = maxTokens
    }

    static let operators: [String] = [
        "//", "**", "==", "!=", ">=", "<=", "+", "-", "*", "/", "%", "~", "[", "]", "(", ")", "{", "}", "<", ">",
        "=", ".", ":", "|", ",", ";",
    ]

    func at(_ k: Int, _ text: String) -> Bool {
        var j = k
        for b in text.utf8 {
            guard j < s.count, s[j] == b else { return false }
            j += 1
        }
        return true
    }

    mutating func emit(_ kind: JinjaToken.Kind, _ offset: Int) throws(JinjaLexError) {
        guard tokens.count < maxTokens else {
            throw JinjaLexError(message: "more than \(maxTokens) tokens", offset: offset)
        }
        if clock.stop(at: tokens.count) { throw JinjaLexError(message: JinjaTemplate.stoppedMessage, offset: offset) }
        tokens.append(JinjaToken(kind: kind, offset: offset))
    }

    /// Tokenizes the whole template.
    mutating func run() throws(JinjaLexError) {
        var textStart = 0
        while i < s.count {
            if byteClock.stop(at: i) { throw JinjaLexError(message: JinjaTemplate.stoppedMessage, offset: i) }
            guard s[i] == UInt8(ascii: "{"), i + 1 < s.count,
                s[i + 1] == UInt8(ascii: "{") || s[i + 1] == UInt8(ascii: "%") || s[i + 1] == UInt8(ascii: "#")
            else {
                i += 1
                continue
            }
            if i > textStart { try emit(.data(text(textStart, i)), textStart) }
            let open = i
            let kind = s[i + 1]
            i += 2
            if i < s.count && (s[i] == UInt8(ascii: "-") || s[i] == UInt8(ascii: "+")) { i += 1 }
            if kind == UInt8(ascii: "#") {
                guard let end = find("#}", from: i) else {
                    throw JinjaLexError(message: "a comment is never closed", offset: open)
                }
                i = end + 2
            } else if kind == UInt8(ascii: "%"), let after = rawStart(i) {
                // {% raw %} … {% endraw %}: the content is text.
                guard let (contentEnd, resume) = rawEnd(from: after) else {
                    throw JinjaLexError(message: "a raw block is never closed", offset: open)
                }
                try emit(.data(text(after, contentEnd)), after)
                i = resume
            } else {
                try emit(.begin(statement: kind == UInt8(ascii: "%")), open)
                try inside(statement: kind == UInt8(ascii: "%"), open: open)
            }
            textStart = i
        }
        if s.count > textStart { try emit(.data(text(textStart, s.count)), textStart) }
    }

    func text(_ a: Int, _ b: Int) -> String { String(decoding: s[a..<b], as: UTF8.self) }

    func find(_ needle: String, from k: Int) -> Int? {
        var j = k
        while j < s.count {
            if at(j, needle) { return j }
            j += 1
        }
        return nil
    }

    func skipSpace(_ k: Int) -> Int {
        var j = k
        while j < s.count, s[j] == 0x20 || s[j] == 0x09 || s[j] == 0x0A || s[j] == 0x0D || s[j] == 0x0C || s[j] == 0x0B
        {
            j += 1
        }
        return j
    }

    /// After `{%` (and its whitespace control): the offset after `raw %}` when this tag opens a raw block.
    func rawStart(_ k: Int) -> Int? {
        var j = skipSpace(k)
        guard at(j, "raw") else { return nil }
        j = skipSpace(j + 3)
        if at(j, "-%}") || at(j, "+%}") { return j + 3 }
        if at(j, "%}") { return j + 2 }
        return nil
    }

    /// The end of a raw block's content and the offset after its `{% endraw %}`.
    func rawEnd(from k: Int) -> (Int, Int)? {
        var j = k
        while let open = find("{%", from: j) {
            var t = open + 2
            if t < s.count && (s[t] == UInt8(ascii: "-") || s[t] == UInt8(ascii: "+")) { t += 1 }
            t = skipSpace(t)
            if at(t, "endraw") {
                t = skipSpace(t + 6)
                if at(t, "-%}") || at(t, "+%}") { return (open, t + 3) }
                if at(t, "%}") { return (open, t + 2) }
            }
            j = open + 2
        }
        return nil
    }

    /// Tokens inside `{{ … }}` or `{% … %}`, up to and including the end delimiter.
    mutating func inside(statement: Bool, open: Int) throws(JinjaLexError) {
        var depth = 0
        let close = statement ? "%}" : "}}"
        while true {
            i = skipSpace(i)
            guard i < s.count else { throw JinjaLexError(message: "a tag is never closed", offset: open) }
            if depth == 0 {
                if at(i, "-" + close) || at(i, "+" + close) {
                    try emit(.end, i)
                    i += 3
                    return
                }
                if at(i, close) {
                    try emit(.end, i)
                    i += 2
                    return
                }
            }
            let c = s[i]
            let start = i
            if c == UInt8(ascii: "'") || c == UInt8(ascii: "\"") {
                let (value, exact) = try string(quote: c)
                try emit(.string(value, exact: exact), start)
            } else if JinjaLexer.isDigit(c) {
                try emit(.number(number()), start)
            } else if JinjaLexer.isNameStart(c) {
                while i < s.count, JinjaLexer.isNameChar(s[i]) { i += 1 }
                try emit(.name(text(start, i)), start)
            } else if let op = JinjaLexer.operators.first(where: { at(i, $0) }) {
                i += op.utf8.count
                if op == "(" || op == "[" || op == "{" { depth += 1 }
                if op == ")" || op == "]" || op == "}" { depth = max(0, depth - 1) }
                try emit(.op(op), start)
            } else {
                throw JinjaLexError(message: "unexpected character in a tag", offset: i)
            }
        }
    }

    static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    /// Identifiers: ASCII letters, `_`, and any non-ASCII byte (Jinja accepts Unicode identifiers).
    static func isNameStart(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || c >= 0x80
    }
    static func isNameChar(_ c: UInt8) -> Bool { isNameStart(c) || isDigit(c) }

    /// A number: decimal, `0x`/`0o`/`0b`, with `_` separators; floats and exponents give nil.
    mutating func number() -> Int? {
        var radix = 10
        if s[i] == UInt8(ascii: "0"), i + 1 < s.count {
            switch s[i + 1] | 0x20 {
            case UInt8(ascii: "x"): radix = 16
            case UInt8(ascii: "o"): radix = 8
            case UInt8(ascii: "b"): radix = 2
            default: break
            }
            if radix != 10 { i += 2 }
        }
        let start = i
        var isFloat = false
        while i < s.count {
            let c = s[i]
            if JinjaLexer.isDigit(c) || c == UInt8(ascii: "_") || (radix == 16 && JinjaLexer.isNameChar(c)) {
                i += 1
            } else if radix == 10, c == UInt8(ascii: "."), i + 1 < s.count, JinjaLexer.isDigit(s[i + 1]) {
                isFloat = true
                i += 1
            } else if radix == 10, c | 0x20 == UInt8(ascii: "e") {
                isFloat = true
                i += 1
                if i < s.count, s[i] == UInt8(ascii: "+") || s[i] == UInt8(ascii: "-") { i += 1 }
            } else {
                break
            }
        }
        guard !isFloat else { return nil }
        let digits = text(start, i).filter { $0 != "_" }
        return Int(digits, radix: radix)
    }

    /// A string literal from its opening quote; decoded like Python's `unicode-escape`.
    mutating func string(quote: UInt8) throws(JinjaLexError) -> (String, Bool) {
        let open = i
        i += 1
        var out: [UInt8] = []
        var exact = true
        while i < s.count {
            let c = s[i]
            if c == quote {
                i += 1
                return (String(decoding: out, as: UTF8.self), exact)
            }
            guard c == UInt8(ascii: "\\"), i + 1 < s.count else {
                out.append(c)
                i += 1
                continue
            }
            let e = s[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "\n"): break
            case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): out.append(e)
            case UInt8(ascii: "a"): out.append(0x07)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "v"): out.append(0x0B)
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var v = UInt32(e - 0x30)
                var n = 1
                while n < 3, i < s.count, s[i] >= 0x30 && s[i] <= 0x37 {
                    v = v * 8 + UInt32(s[i] - 0x30)
                    i += 1
                    n += 1
                }
                append(scalar: v, to: &out)
            case UInt8(ascii: "x"), UInt8(ascii: "u"), UInt8(ascii: "U"):
                let width = e == UInt8(ascii: "x") ? 2 : e == UInt8(ascii: "u") ? 4 : 8
                guard i + width <= s.count, let v = UInt32(text(i, i + width), radix: 16) else {
                    exact = false
                    continue
                }
                i += width
                append(scalar: v, to: &out)
            case UInt8(ascii: "N"):
                guard i < s.count, s[i] == UInt8(ascii: "{"), let close = find("}", from: i), close - i < 128 else {
                    exact = false
                    continue
                }
                let name = text(i + 1, close).uppercased()
                i = close + 1
                if let v = JinjaLexer.namedCharacter(name) { append(scalar: v, to: &out) } else { exact = false }
            default:
                out.append(UInt8(ascii: "\\"))
                out.append(e)
            }
        }
        throw JinjaLexError(message: "a string is never closed", offset: open)
    }

    func append(scalar v: UInt32, to out: inout [UInt8]) {
        let scalar = Unicode.Scalar(v) ?? "\u{FFFD}"
        out += Array(String(Character(scalar)).utf8)
    }

    /// A `\N{…}` name: ASCII letters and digits by their Unicode names, and the punctuation in `namedCharacters`.
    static func namedCharacter(_ name: String) -> UInt32? {
        if let v = namedCharacters[name] { return v }
        let words = name.split(separator: " ")
        if words.count == 4, words[0] == "LATIN", words[2] == "LETTER", words[3].count == 1,
            let c = words[3].unicodeScalars.first, c.isASCII, c.properties.isAlphabetic
        {
            if words[1] == "SMALL" { return c.value | 0x20 }
            if words[1] == "CAPITAL" { return c.value & ~0x20 }
        }
        let digits = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]
        if words.count == 2, words[0] == "DIGIT", let d = digits.firstIndex(of: String(words[1])) {
            return 0x30 + UInt32(d)
        }
        return nil
    }

    /// The `\N{…}` names a template needs to spell an attribute name (others leave the literal inexact).
    static let namedCharacters: [String: UInt32] = [
        "LOW LINE": 0x5F, "FULL STOP": 0x2E, "SPACE": 0x20, "LEFT SQUARE BRACKET": 0x5B, "RIGHT SQUARE BRACKET": 0x5D,
        "APOSTROPHE": 0x27, "QUOTATION MARK": 0x22,
    ]
}
