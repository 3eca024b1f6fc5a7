/// What the template analyser knows of an expression's value: constant strings (a few candidates), integers and
/// lists it could evaluate, a reference to one of Jinja's globals, or nothing — and whether that nothing is a
/// string the template built itself (`built`), which is what matters when it names an attribute.
indirect enum JinjaValue: Equatable {
    /// One of these constant strings (at most `JinjaValue.maxCandidates`).
    case strs([String])
    case int(Int)
    /// A list or tuple of known length (at most `JinjaValue.maxList` elements).
    case list([JinjaValue])
    /// A global of Jinja or of the loader (`cycler`, `lipsum`, `self`, …), not shadowed by a `set`.
    case global(String)
    /// A method of a constant value (`"_".join`), to fold its call.
    case method(String, JinjaValue)
    /// Data from the caller (messages, loop variables over it, booleans, numbers we did not compute).
    case unknown
    /// A string (or list of them) the template built by operations the analyser did not evaluate: stringified
    /// objects (`lipsum|string`), concatenations with unknown parts, strings built in loops.
    case built

    static let maxCandidates = 8
    static let maxList = 256
    static let maxLength = 4096

    static func str(_ s: String) -> JinjaValue { .strs([s]) }

    /// Deepest nesting of lists kept (values built through `set` could otherwise nest without bound).
    static let maxNesting = 8

    /// How deeply lists nest in this value; bounded by `maxNesting` + 1, since every nested list is made by
    /// `nested(_:)`.
    var nesting: Int {
        switch self {
        case .list(let items): 1 + (items.map(\.nesting).max() ?? 0)
        case .method(_, let base): base.nesting
        default: 0
        }
    }

    /// A list of `items`, or an unevaluated value when it would nest deeper than `maxNesting`.
    static func nested(_ items: [JinjaValue]) -> JinjaValue {
        guard items.allSatisfy({ $0.nesting < maxNesting }) else {
            return items.contains { $0.isStringLike } ? .built : .unknown
        }
        return .list(items)
    }

    /// Candidate strings when the value is a string constant, or an integer shown as one.
    var strings: [String]? {
        switch self {
        case .strs(let s): s
        case .int(let n): [String(n)]
        default: nil
        }
    }

    /// Either value (a conditional, `or`, a variable set on two paths).
    static func union(_ a: JinjaValue, _ b: JinjaValue) -> JinjaValue {
        if a == b { return a }
        if case .strs(let x) = a, case .strs(let y) = b {
            var all = x
            for s in y where !all.contains(s) { all.append(s) }
            return all.count <= maxCandidates ? .strs(all) : .built
        }
        if a == .built || b == .built { return .built }
        if case .strs = a { return .built }
        if case .strs = b { return .built }
        if case .list = a { return .built }
        if case .list = b { return .built }
        return .unknown
    }

    /// Whether the value is (or holds) a string the analyser did not evaluate.
    var isBuilt: Bool {
        switch self {
        case .built: true
        case .list(let items): items.contains { $0.isBuilt }
        default: false
        }
    }

    /// `a ~ b`: both converted to strings and joined.
    static func concat(_ a: JinjaValue, _ b: JinjaValue) -> JinjaValue {
        guard let x = a.strings, let y = b.strings, x.count * y.count <= maxCandidates else { return .built }
        var out: [String] = []
        for p in x {
            for q in y {
                guard p.utf8.count + q.utf8.count <= maxLength else { return .built }
                out.append(p + q)
            }
        }
        return .strs(out)
    }

    /// A string from constant pieces, or `built`.
    static func map(_ v: JinjaValue, _ f: (String) -> String?) -> JinjaValue {
        guard case .strs(let xs) = v else { return v.isStringLike ? .built : .unknown }
        var out: [String] = []
        for x in xs {
            guard let y = f(x), y.utf8.count <= maxLength else { return .built }
            out.append(y)
        }
        return .strs(out)
    }

    var isStringLike: Bool {
        switch self {
        case .strs, .built: true
        case .list(let items): items.contains { $0.isStringLike }
        default: false
        }
    }

    /// Python's `%` formatting of `format` with `args` (`%s`, `%c`, `%d`, `%i`, `%x`, `%o`, `%r`, `%%`).
    static func percent(_ format: String, _ args: [JinjaValue]) -> String? {
        var out = ""
        var k = 0
        var it = format.makeIterator()
        while let c = it.next() {
            guard c == "%" else {
                out.append(c)
                continue
            }
            // Flags, width and precision are not evaluated.
            guard let spec = it.next() else { return nil }
            if spec == "%" {
                out.append("%")
                continue
            }
            guard k < args.count else { return nil }
            let a = args[k]
            k += 1
            switch (spec, a) {
            case ("s", .strs(let s)) where s.count == 1: out += s[0]
            case ("r", .strs(let s)) where s.count == 1: out += "'" + s[0] + "'"
            case ("s", .int(let n)), ("d", .int(let n)), ("i", .int(let n)), ("r", .int(let n)): out += String(n)
            case ("x", .int(let n)): out += String(n, radix: 16)
            case ("o", .int(let n)): out += String(n, radix: 8)
            case ("c", .int(let n)):
                guard n >= 0, n <= 0x10FFFF, let u = Unicode.Scalar(UInt32(n)) else { return nil }
                out.append(Character(u))
            case ("c", .strs(let s)) where s.count == 1 && s[0].count == 1: out += s[0]
            default: return nil
            }
            guard out.utf8.count <= maxLength else { return nil }
        }
        return out
    }

    /// Python's `str.format` with positional `{}` / `{n}` fields only.
    static func braceFormat(_ format: String, _ args: [JinjaValue]) -> String? {
        var out = ""
        var auto = 0
        var it = Array(format)
        var k = 0
        while k < it.count {
            let c = it[k]
            if c == "{", k + 1 < it.count, it[k + 1] == "{" {
                out.append("{")
                k += 2
                continue
            }
            if c == "}", k + 1 < it.count, it[k + 1] == "}" {
                out.append("}")
                k += 2
                continue
            }
            guard c == "{" else {
                out.append(c)
                k += 1
                continue
            }
            guard let close = it[k...].firstIndex(of: "}") else { return nil }
            let field = String(it[(k + 1)..<close])
            let index: Int
            if field.isEmpty {
                index = auto
                auto += 1
            } else if let n = Int(field) {
                index = n
            } else {
                return nil  // attribute or key lookups in a field are judged as a string constant
            }
            guard index >= 0, index < args.count, let s = args[index].strings, s.count == 1 else { return nil }
            out += s[0]
            guard out.utf8.count <= maxLength else { return nil }
            k = close + 1
        }
        it.removeAll()
        return out
    }

    /// Python slicing of a sequence of `count` elements.
    static func sliceIndices(count: Int, start: Int?, stop: Int?, step: Int?) -> [Int]? {
        let step = step ?? 1
        guard step != 0, count <= maxLength else { return nil }
        func clamp(_ v: Int?, _ dflt: Int, low: Int, high: Int) -> Int {
            guard var v else { return dflt }
            if v < 0 { v += count }
            return min(max(v, low), high)
        }
        var out: [Int] = []
        if step > 0 {
            var k = clamp(start, 0, low: 0, high: count)
            let end = clamp(stop, count, low: 0, high: count)
            while k < end && out.count <= maxLength {
                out.append(k)
                k += step
            }
        } else {
            var k = clamp(start, count - 1, low: -1, high: count - 1)
            let end = clamp(stop, -1, low: -1, high: count - 1)
            while k > end && out.count <= maxLength {
                out.append(k)
                k += step
            }
        }
        return out
    }
}
