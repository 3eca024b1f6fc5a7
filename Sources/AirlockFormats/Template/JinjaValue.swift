/// What the template analyser knows of an expression's value: constant strings (a few candidates), integers, lists
/// and dicts the template made itself, a reference to one of Jinja's globals (or to an object reached from one), or
/// nothing — and whether that nothing is a string the template built itself (`built`), which is what matters when it
/// names an attribute.
indirect enum JinjaValue: Equatable {
    /// One of these constant strings (at most `JinjaValue.maxCandidates`).
    case strs([String])
    case int(Int)
    /// A list or tuple of known length (at most `JinjaValue.maxList` elements), made by the template.
    case list(JinjaSeq)
    /// A dict or namespace the template made (`dict(…)`, `namespace(…)`, `{…}`), with constant string keys.
    case dict(JinjaSeq)
    /// A global of Jinja or of the loader (`cycler`, `lipsum`, `self`, …), not shadowed by a `set`, or an object
    /// the template may have reached from it (through a container, a call, an attribute).
    case global(String)
    /// A method of a constant value (`"_".join`, `d.items`), to fold its call.
    case method(String, JinjaValue)
    /// Data from the caller (messages, loop variables over it, booleans, numbers we did not compute).
    case unknown
    /// A string (or list of them) the template built by operations the analyser did not evaluate: stringified
    /// objects (`lipsum|string`), concatenations with unknown parts, strings built in loops, members of the
    /// template's own containers it could not resolve.
    case built

    static let maxCandidates = 8
    static let maxList = 256
    static let maxLength = 4096
    /// Most values inside one container, counting nested ones (so that every walk of a value is bounded).
    static let maxWeight = 4096

    static func str(_ s: String) -> JinjaValue { .strs([s]) }

    /// Deepest nesting of containers kept (values built through `set` could otherwise nest without bound).
    static let maxNesting = 8

    /// How deeply containers nest in this value (cached: no walk).
    var nesting: Int {
        switch self {
        case .list(let s), .dict(let s): s.depth
        case .method(_, let base): base.nesting
        default: 0
        }
    }

    /// How many values this one holds, itself included (cached).
    var weight: Int {
        switch self {
        case .list(let s), .dict(let s): s.weight
        case .method(_, let base): 1 + base.weight
        default: 1
        }
    }

    /// The global this value is, holds, or was reached from.
    var global: String? {
        switch self {
        case .global(let g): g
        case .list(let s), .dict(let s): s.global
        case .method(_, let base): base.global
        default: nil
        }
    }

    /// A list of `items`, or an unevaluated value when it would nest deeper than `maxNesting` or weigh more than
    /// `maxWeight`.
    static func nested(_ items: [JinjaValue]) -> JinjaValue {
        let s = JinjaSeq(items, keys: nil)
        return s.depth <= maxNesting && s.weight <= maxWeight ? .list(s) : s.opaque
    }

    /// A dict of `keys` to `values` (the last of a repeated key wins, as in Python).
    static func dict(keys: [String], values: [JinjaValue]) -> JinjaValue {
        var k: [String] = []
        var v: [JinjaValue] = []
        for (key, value) in zip(keys, values) {
            if let i = k.firstIndex(of: key) {
                v[i] = value
            } else if k.count < maxList {
                k.append(key)
                v.append(value)
            }
        }
        let s = JinjaSeq(v, keys: k)
        return s.depth <= maxNesting && s.weight <= maxWeight ? .dict(s) : s.opaque
    }

    /// What is left of this value when the analyser cannot tell which part of it an operation picks: the global it
    /// holds, else a built string when it holds strings, else caller data.
    var opaque: JinjaValue {
        if let g = global { return .global(g) }
        switch self {
        case .list, .dict, .method, .strs, .built: return .built
        default: return .unknown
        }
    }

    /// Candidate strings when the value is a string constant, or an integer shown as one.
    var strings: [String]? {
        switch self {
        case .strs(let s): s
        case .int(let n): [String(n)]
        default: nil
        }
    }

    /// Either value (a conditional, `or`, a variable set on two paths). A global on either side is kept.
    static func union(_ a: JinjaValue, _ b: JinjaValue) -> JinjaValue {
        if a == b { return a }
        if case .strs(let x) = a, case .strs(let y) = b {
            var all = x
            for s in y where !all.contains(s) { all.append(s) }
            return all.count <= maxCandidates ? .strs(all) : .built
        }
        if let g = a.global ?? b.global { return .global(g) }
        if case .dict(let x) = a, case .dict(let y) = b, x.keys == y.keys {
            return .dict(JinjaSeq(zip(x.items, y.items).map { .shallowUnion($0, $1) }, keys: x.keys))
        }
        if case .list(let x) = a, case .list(let y) = b, x.items.count == y.items.count {
            return .nested(zip(x.items, y.items).map { .shallowUnion($0, $1) })
        }
        return a.isStringLike || b.isStringLike ? .built : .unknown
    }

    /// `union` without descending further (bounded work for element-wise unions).
    static func shallowUnion(_ a: JinjaValue, _ b: JinjaValue) -> JinjaValue {
        if a == b { return a }
        if case .strs = a, case .strs = b { return union(a, b) }
        if let g = a.global ?? b.global { return .global(g) }
        return a.isStringLike || b.isStringLike ? .built : .unknown
    }

    /// Whether the value is (or holds) a string the analyser did not evaluate.
    var isBuilt: Bool {
        switch self {
        case .built: true
        case .list(let s), .dict(let s): s.built
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
        guard case .strs(let xs) = v else { return v.opaque }
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
        case .list(let s), .dict(let s): s.stringLike
        default: false
        }
    }

    /// Bytes of the constant strings this value holds at its top (what computing it cost).
    var byteCount: Int {
        guard case .strs(let xs) = self else { return 0 }
        return xs.reduce(0) { $0 + $1.utf8.count }
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

/// The items of a list or dict the template made, with what the analyser asks of them computed once (so that no
/// question walks a value: values share their parts, and a walk could be exponential).
struct JinjaSeq: Equatable {
    let items: [JinjaValue]
    /// The dict's keys, parallel to `items`; nil for a list.
    let keys: [String]?
    let depth: Int
    let weight: Int
    let global: String?
    let stringLike: Bool
    let built: Bool

    init(_ items: [JinjaValue], keys: [String]?) {
        self.items = items
        self.keys = keys
        var depth = 0
        var weight = 1
        var global: String?
        var stringLike = keys.map { !$0.isEmpty } ?? false
        var built = false
        for v in items {
            depth = max(depth, v.nesting)
            weight = min(weight + v.weight, JinjaValue.maxWeight + 1)
            global = global ?? v.global
            stringLike = stringLike || v.isStringLike
            built = built || v.isBuilt
        }
        self.depth = depth + 1
        self.weight = weight
        self.global = global
        self.stringLike = stringLike
        self.built = built
    }

    static func == (a: JinjaSeq, b: JinjaSeq) -> Bool {
        a.weight == b.weight && a.keys == b.keys && a.items == b.items
    }

    /// What is left when the analyser cannot tell which item an operation picks.
    var opaque: JinjaValue {
        if let g = global { return .global(g) }
        return .built
    }

    /// The item for `key` of a dict.
    func member(_ key: String) -> JinjaValue? {
        guard let keys, let i = keys.firstIndex(of: key) else { return nil }
        return items[i]
    }
}

/// Substring search over UTF-8 bytes, linear in practice: each position is first tested at the needle's first byte
/// that is not `_`, so runs of underscores (the shape of a hostile template) cost one comparison per position.
enum JinjaBytes {
    static func contains(_ hay: String, _ needle: String) -> Bool {
        var h = hay
        var n = needle
        return h.withUTF8 { hb in
            n.withUTF8 { nb in
                guard nb.count > 0 else { return true }
                guard hb.count >= nb.count else { return false }
                let k = nb.firstIndex { $0 != 0x5F } ?? 0
                let key = nb[k]
                var i = 0
                let last = hb.count - nb.count
                while i <= last {
                    if hb[i + k] == key {
                        var j = 0
                        while j < nb.count && hb[i + j] == nb[j] { j += 1 }
                        if j == nb.count { return true }
                    }
                    i += 1
                }
                return false
            }
        }
    }
}
