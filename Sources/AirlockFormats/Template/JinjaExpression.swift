/// Jinja's expression grammar (the precedence of `jinja2.parser.Parser`), evaluated as far as constants go.
/// Recursive descent, with the depth checked against `JinjaTemplate.maxDepth` before every descent.
extension JinjaAnalyser {
    mutating func enter() throws(Fail) {
        depth += 1
        guard depth <= JinjaTemplate.maxDepth else {
            if !tooDeep {
                tooDeep = true
                note(
                    "template.too-deep", "expressions nest deeper than \(JinjaTemplate.maxDepth): not analysed further",
                    at: offset)
            }
            throw Fail(message: "too deep", offset: offset)
        }
    }

    /// An expression, or a tuple of them without parentheses (`{{ a, b }}`, `set x = a, b`).
    mutating func tuple() throws(Fail) -> JinjaValue {
        let first = try expression()
        guard isOp(",") else { return first }
        var items = [first]
        while isOp(",") {
            p += 1
            if atEnd || isOp(")") { break }
            let v = try expression()
            if items.count < JinjaValue.maxList { items.append(v) }
        }
        return JinjaValue.nested(items)
    }

    mutating func expression() throws(Fail) -> JinjaValue {
        try enter()
        defer { depth -= 1 }
        let at = offset
        var v = try orExpr()
        defer {
            // Every string the template computes is judged, wherever it goes (a keyword argument, a namespace).
            if case .strs(let xs) = v { for x in xs { check(string: x, at: at) } }
        }
        try spend(v.byteCount + 1)
        while isName("if") {
            p += 1
            _ = try orExpr()
            if isName("else") {
                p += 1
                v = JinjaValue.union(v, try expression())
            } else {
                v = JinjaValue.union(v, .unknown)
            }
        }
        return v
    }

    mutating func orExpr() throws(Fail) -> JinjaValue {
        var v = try andExpr()
        while isName("or") {
            p += 1
            v = JinjaValue.union(v, try andExpr())
        }
        return v
    }

    mutating func andExpr() throws(Fail) -> JinjaValue {
        var v = try notExpr()
        while isName("and") {
            p += 1
            v = JinjaValue.union(v, try notExpr())
        }
        return v
    }

    mutating func notExpr() throws(Fail) -> JinjaValue {
        if isName("not") {
            p += 1
            try enter()
            defer { depth -= 1 }
            _ = try notExpr()
            return .unknown
        }
        return try compare()
    }

    mutating func compare() throws(Fail) -> JinjaValue {
        var v = try math1()
        while true {
            if let t = current, case .op(let o) = t.kind, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                p += 1
            } else if isName("in") {
                p += 1
            } else if isName("not"), p + 1 < tokens.count, tokens[p + 1].kind == .name("in") {
                p += 2
            } else {
                return v
            }
            _ = try math1()
            v = .unknown
        }
    }

    mutating func math1() throws(Fail) -> JinjaValue {
        var v = try concat()
        while isOp("+") || isOp("-") {
            let plus = isOp("+")
            p += 1
            let w = try concat()
            v = plus ? add(v, w) : arithmetic(v, w) { $0.subtractingReportingOverflow($1) }
            try spend(v.byteCount + 1)
        }
        return v
    }

    mutating func concat() throws(Fail) -> JinjaValue {
        var v = try math2()
        while isOp("~") {
            p += 1
            v = JinjaValue.concat(v, try math2())
            try spend(v.byteCount + 1)
        }
        return v
    }

    mutating func math2() throws(Fail) -> JinjaValue {
        var v = try power()
        while let t = current, case .op(let o) = t.kind, ["*", "/", "//", "%"].contains(o) {
            p += 1
            let w = try power()
            switch o {
            case "*": v = multiply(v, w, at: t.offset)
            case "%":
                if case .strs(let f) = v, f.count == 1 {
                    let args: [JinjaValue]
                    if case .list(let l) = w { args = l.items } else { args = [w] }
                    v = JinjaValue.percent(f[0], args).map { .str($0) } ?? .built
                } else {
                    v = arithmetic(v, w) { b, c in c == 0 ? (0, true) : b.remainderReportingOverflow(dividingBy: c) }
                }
            case "//":
                v = arithmetic(v, w) { b, c in c == 0 ? (0, true) : b.dividedReportingOverflow(by: c) }
            default: v = .unknown
            }
            try spend(v.byteCount + 1)
        }
        return v
    }

    mutating func power() throws(Fail) -> JinjaValue {
        var v = try unary()
        while isOp("**") {
            p += 1
            let w = try unary()
            if case .int(let b) = v, case .int(let e) = w, e >= 0, e < 64 {
                var r = 1
                var overflow = false
                for _ in 0..<e where !overflow { (r, overflow) = r.multipliedReportingOverflow(by: b) }
                v = overflow ? .unknown : .int(r)
                if overflow || abs(r) >= 1_000_000_000 { large(at: offset) }
            } else {
                v = .unknown
            }
        }
        return v
    }

    mutating func unary() throws(Fail) -> JinjaValue {
        try enter()
        defer { depth -= 1 }
        var v: JinjaValue
        if isOp("-") {
            p += 1
            let w = try unary()
            if case .int(let n) = w, n != Int.min { v = .int(-n) } else { v = .unknown }
        } else if isOp("+") {
            p += 1
            v = try unary()
        } else {
            v = try primary()
        }
        v = try postfix(v)
        return try filters(v)
    }

    mutating func primary() throws(Fail) -> JinjaValue {
        guard let t = current else { throw Fail(message: "expected an expression", offset: offset) }
        switch t.kind {
        case .name(let n):
            p += 1
            switch n {
            case "true", "false", "True", "False", "none", "None": return .unknown
            default:
                // `ns.attr` set by `{% set ns.attr = … %}`.
                var key = n
                while isOp("."), p + 1 < tokens.count, case .name(let m) = tokens[p + 1].kind,
                    env[key + "." + m] != nil
                {
                    check(name: m, how: "attribute", at: tokens[p + 1].offset)
                    key += "." + m
                    p += 2
                }
                if let v = env[key] { return v }
                if JinjaTemplate.globals.contains(n) { return .global(n) }
                // Strings the model's own files supply (GGUF token texts, tokenizer_config.json): the template's
                // author chose them, and the analyser does not know them.
                return JinjaTemplate.modelStrings.contains(n) ? .built : .unknown
            }
        case .string(let s, let exact):
            p += 1
            var v: JinjaValue = exact ? .str(s) : .built
            while case .string(let more, let exact2) = current?.kind {  // adjacent literals concatenate
                p += 1
                v = JinjaValue.concat(v, exact2 ? .str(more) : .built)
            }
            return v
        case .number(let n):
            p += 1
            return n.map { .int($0) } ?? .unknown
        case .op("("):
            p += 1
            if isOp(")") {
                p += 1
                return .nested([])
            }
            let v = try tuple()
            try expect(")")
            return v
        case .op("["):
            p += 1
            var items: [JinjaValue] = []
            while !isOp("]") {
                let v = try expression()
                if items.count < JinjaValue.maxList { items.append(v) }
                guard isOp(",") else { break }
                p += 1
            }
            try expect("]")
            return JinjaValue.nested(items)
        case .op("{"):
            p += 1
            var keys: [String] = []
            var values: [JinjaValue] = []
            var exact = true
            while !isOp("}") {
                let k = try expression()
                try expect(":")
                let v = try expression()
                if case .strs(let ks) = k, ks.count == 1 { keys.append(ks[0]) } else { exact = false }
                if values.count < JinjaValue.maxList { values.append(v) }
                guard isOp(",") else { break }
                p += 1
            }
            try expect("}")
            // A key the analyser cannot evaluate: which value a look-up finds is unknown.
            return exact ? JinjaValue.dict(keys: keys, values: values) : JinjaValue.nested(values).opaque
        default:
            throw Fail(message: "unexpected token", offset: t.offset)
        }
    }

    mutating func postfix(_ start: JinjaValue) throws(Fail) -> JinjaValue {
        var v = start
        while true {
            let at = offset
            if isOp(".") {
                p += 1
                switch current?.kind {
                case .name(let n):
                    p += 1
                    v = attribute(v, .str(n), how: "attribute", at: at)
                case .number(let n):
                    p += 1
                    v = item(v, n.map { .int($0) } ?? .unknown, at: at)
                default: throw Fail(message: "expected a name after .", offset: offset)
                }
            } else if isOp("[") {
                p += 1
                v = try index(v, at: at)
            } else if isOp("(") {
                v = try call(v, at: at)
            } else {
                return v
            }
            try spend(v.byteCount + 1)
        }
    }

    mutating func index(_ base: JinjaValue, at: Int) throws(Fail) -> JinjaValue {
        var result = JinjaValue.unknown
        var parts = 0
        while !isOp("]") {
            parts += 1
            var bounds: [JinjaValue?] = [nil]
            if !isOp(":") { bounds[0] = try expression() }
            var isSlice = false
            while isOp(":") && bounds.count < 3 {
                isSlice = true
                p += 1
                bounds.append(isOp(":") || isOp("]") || isOp(",") ? nil : try expression())
            }
            if isSlice {
                result = slice(base, bounds)
            } else if let key = bounds[0] {
                result = parts == 1 ? item(base, key, at: at) : .unknown
            }
            guard isOp(",") else { break }
            p += 1
        }
        try expect("]")
        return result
    }

    func slice(_ base: JinjaValue, _ b: [JinjaValue?]) -> JinjaValue {
        func int(_ k: Int) -> Int?? {
            guard k < b.count, let v = b[k] else { return .some(nil) }
            if case .int(let n) = v { return .some(n) }
            return nil
        }
        guard let start = int(0), let stop = int(1), let step = int(2) else { return base.opaque }
        switch base {
        case .strs:
            return JinjaValue.map(base) { s in
                let chars = Array(s)
                return JinjaValue.sliceIndices(count: chars.count, start: start, stop: stop, step: step)
                    .map { String($0.map { chars[$0] }) }
            }
        case .list(let l):
            guard let idx = JinjaValue.sliceIndices(count: l.items.count, start: start, stop: stop, step: step) else {
                return base.opaque
            }
            return .nested(idx.map { l.items[$0] })
        default: return base.opaque
        }
    }

    /// `base[key]`: Jinja's `getitem` falls back to `getattr`, so a string key is an attribute name.
    mutating func item(_ base: JinjaValue, _ key: JinjaValue, at: Int) -> JinjaValue {
        switch (base, key) {
        case (.list(let l), .int(let n)):
            let k = n < 0 ? n + l.items.count : n
            return k >= 0 && k < l.items.count ? l.items[k] : .unknown
        case (.strs, .int(let n)):
            return JinjaValue.map(base) { s in
                let chars = Array(s)
                let k = n < 0 ? n + chars.count : n
                return k >= 0 && k < chars.count ? String(chars[k]) : nil
            }
        case (.dict(let d), .strs(let k)) where k.count == 1 && d.member(k[0]) != nil:
            return d.member(k[0]) ?? .unknown
        case (.global, .int): return attribute(base, key, how: "subscript", at: at)
        case (_, .int): return base.opaque
        default: return attribute(base, key, how: "subscript", at: at)
        }
    }

    /// Methods of a dict the analyser folds (`getattr` finds them before the dict's items).
    static let dictMethods: Set<String> = ["items", "values", "keys", "get"]

    /// `base.name`, `base|attr(name)`, `base[name]`: the name is judged; a member the analyser resolves is returned;
    /// anything else of a value that holds a global is still that global (reached: reported), and anything else of
    /// a value the template made is a `built` string, never caller data.
    mutating func attribute(_ base: JinjaValue, _ name: JinjaValue, how: String, at: Int) -> JinjaValue {
        check(value: name, how: how, at: at)
        if case .strs(let n) = name, n.count == 1 {
            switch base {
            case .dict(let d):
                if how != "subscript" || d.member(n[0]) == nil, JinjaAnalyser.dictMethods.contains(n[0]) {
                    return .method(n[0], base)
                }
                if let v = d.member(n[0]) { return v }
            case .strs, .list, .int: return .method(n[0], base)
            default: break
            }
        }
        if let g = base.global {
            note(
                "template.global-attribute",
                "the template reads an attribute of the global \(g) (or of a value holding it): the way out of Jinja's namespace",
                at: at, ("jinjaGlobal", g))
            return .global(g)
        }
        return base.opaque
    }

    mutating func call(_ callee: JinjaValue, at: Int) throws(Fail) -> JinjaValue {
        let (args, keywords) = try arguments()
        switch callee {
        case .method(let m, let base):
            handed(args + keywords.map(\.1), at: at)  // `d.update(a=lipsum)`, `l.append(lipsum)`
            return method(m, base, args)
        case .global("range"):
            for a in args { if case .int(let n) = a, abs(n) > 100_000 { large(at: at) } }
            if args.count == 2, case .int(let a) = args[0], case .int(let b) = args[1], b >= a, b - a <= 256 {
                return .nested((a..<b).map { .int($0) })
            }
            return .unknown
        case .global("dict"), .global("namespace"):
            for (k, _) in keywords { check(name: k, how: "keyword", at: at) }
            var keys: [String] = []
            var values: [JinjaValue] = []
            if let first = args.first {
                switch first {
                case .dict(let d):
                    keys = d.keys ?? []
                    values = d.items
                case .list(let l):
                    for pair in l.items {
                        guard case .list(let kv) = pair, kv.items.count == 2, case .strs(let k) = kv.items[0],
                            k.count == 1
                        else { return JinjaValue.nested(args + keywords.map(\.1)).opaque }
                        keys.append(k[0])
                        values.append(kv.items[1])
                    }
                default: return JinjaValue.nested(args + keywords.map(\.1)).opaque
                }
            }
            return JinjaValue.dict(keys: keys + keywords.map(\.0), values: values + keywords.map(\.1))
        case .global("lipsum"), .global("raise_exception"), .global("strftime_now"):
            handed(args + keywords.map(\.1), at: at)
            return .built
        case .global(let g):
            // `cycler(…)`, `joiner(…)`, and whatever a global's attributes lead to: objects of Python.
            handed(args + keywords.map(\.1), at: at)
            return .global(g)
        default:
            handed(args + keywords.map(\.1), at: at)
            // A macro, `caller`, `loop.cycle` given strings can give them back: what it returns is built.
            let stringArgs = (args + keywords.map(\.1)).contains { $0.isStringLike }
            return callee.isStringLike || callee == .built || stringArgs ? .built : .unknown
        }
    }

    /// A global handed to a call (a macro, `caller`, `loop.cycle`, a method) is reached by code the analyser does
    /// not follow: reported as reached.
    mutating func handed(_ values: [JinjaValue], at: Int) {
        for v in values {
            if let g = v.global {
                note(
                    "template.global-attribute",
                    "the template hands the global \(g) (or a value holding it) to a call, out of the analyser's sight",
                    at: at, ("jinjaGlobal", g))
            }
        }
    }

    /// `(a, b, name=c, *d, **e)`.
    mutating func arguments() throws(Fail) -> ([JinjaValue], [(String, JinjaValue)]) {
        try expect("(")
        var args: [JinjaValue] = []
        var keywords: [(String, JinjaValue)] = []
        while !isOp(")") {
            if isOp("*") || isOp("**") { p += 1 }
            if case .name(let n) = current?.kind, p + 1 < tokens.count, tokens[p + 1].kind == .op("=") {
                p += 2
                let v = try expression()
                if keywords.count < 64 { keywords.append((n, v)) }
            } else {
                let v = try expression()
                if args.count < 64 { args.append(v) }
            }
            guard isOp(",") else { break }
            p += 1
        }
        try expect(")")
        return (args, keywords)
    }

    func add(_ a: JinjaValue, _ b: JinjaValue) -> JinjaValue {
        switch (a, b) {
        case (.strs, .strs): return JinjaValue.concat(a, b)
        case (.int(let x), .int(let y)):
            let (r, o) = x.addingReportingOverflow(y)
            return o ? .unknown : .int(r)
        case (.list(let x), .list(let y)):
            return x.items.count + y.items.count <= JinjaValue.maxList
                ? .nested(x.items + y.items) : JinjaValue.union(a.opaque, b.opaque)
        default:
            if let g = a.global ?? b.global { return .global(g) }
            return a.isStringLike || b.isStringLike ? .built : .unknown
        }
    }

    func arithmetic(_ a: JinjaValue, _ b: JinjaValue, _ op: (Int, Int) -> (Int, Bool)) -> JinjaValue {
        guard case .int(let x) = a, case .int(let y) = b else {
            return (a.global ?? b.global).map { .global($0) } ?? .unknown
        }
        let (r, o) = op(x, y)
        return o ? .unknown : .int(r)
    }

    mutating func multiply(_ a: JinjaValue, _ b: JinjaValue, at: Int) -> JinjaValue {
        switch (a, b) {
        case (.int(let x), .int(let y)):
            let (r, o) = x.multipliedReportingOverflow(by: y)
            return o ? .unknown : .int(r)
        case (.strs, .int(let n)), (.int(let n), .strs):
            let s = a.strings != nil && b == .int(n) ? a : b
            if n > 100_000 { large(at: at) }
            return JinjaValue.map(s) { x in
                n >= 0 && x.utf8.count * n <= JinjaValue.maxLength ? String(repeating: x, count: n) : nil
            }
        default:
            if case .int(let n) = b, n > 100_000 { large(at: at) }
            if let g = a.global ?? b.global { return .global(g) }  // `[lipsum] * 2`
            return a.isStringLike || b.isStringLike ? .built : .unknown
        }
    }

    mutating func large(at: Int) {
        note(
            "template.resource-exhaustion",
            "the template builds a very large value (a repetition or range of 100 000 or more): rendering it can exhaust memory",
            at: at)
    }
}
