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
        }
        return v
    }

    mutating func concat() throws(Fail) -> JinjaValue {
        var v = try math2()
        while isOp("~") {
            p += 1
            v = JinjaValue.concat(v, try math2())
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
                    if case .list(let items) = w { args = items } else { args = [w] }
                    v = JinjaValue.percent(f[0], args).map { .str($0) } ?? .built
                } else {
                    v = arithmetic(v, w) { b, c in c == 0 ? (0, true) : b.remainderReportingOverflow(dividingBy: c) }
                }
            case "//":
                v = arithmetic(v, w) { b, c in c == 0 ? (0, true) : b.dividedReportingOverflow(by: c) }
            default: v = .unknown
            }
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
                return .list([])
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
            while !isOp("}") {
                _ = try expression()
                try expect(":")
                _ = try expression()
                guard isOp(",") else { break }
                p += 1
            }
            try expect("}")
            return .unknown
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
        guard let start = int(0), let stop = int(1), let step = int(2) else {
            return base.isStringLike ? .built : .unknown
        }
        switch base {
        case .strs:
            return JinjaValue.map(base) { s in
                let chars = Array(s)
                return JinjaValue.sliceIndices(count: chars.count, start: start, stop: stop, step: step)
                    .map { String($0.map { chars[$0] }) }
            }
        case .list(let items):
            guard let idx = JinjaValue.sliceIndices(count: items.count, start: start, stop: stop, step: step) else {
                return .built
            }
            return .list(idx.map { items[$0] })
        default: return base.isStringLike ? .built : .unknown
        }
    }

    /// `base[key]`: Jinja's `getitem` falls back to `getattr`, so a string key is an attribute name.
    mutating func item(_ base: JinjaValue, _ key: JinjaValue, at: Int) -> JinjaValue {
        switch (base, key) {
        case (.list(let items), .int(let n)):
            let k = n < 0 ? n + items.count : n
            return k >= 0 && k < items.count ? items[k] : .unknown
        case (.strs, .int(let n)):
            return JinjaValue.map(base) { s in
                let chars = Array(s)
                let k = n < 0 ? n + chars.count : n
                return k >= 0 && k < chars.count ? String(chars[k]) : nil
            }
        case (_, .int): return base.isStringLike ? .built : .unknown
        default: return attribute(base, key, how: "subscript", at: at)
        }
    }

    mutating func attribute(_ base: JinjaValue, _ name: JinjaValue, how: String, at: Int) -> JinjaValue {
        check(value: name, how: how, at: at)
        if case .global(let g) = base {
            note(
                "template.global-attribute",
                "the template reads an attribute of the global \(g): the way out of Jinja's namespace", at: at,
                ("jinjaGlobal", g))
            return .unknown
        }
        if case .strs(let n) = name, n.count == 1 {
            switch base {
            case .strs, .list, .int: return .method(n[0], base)
            default: break
            }
        }
        return base.isStringLike ? .built : .unknown
    }

    mutating func call(_ callee: JinjaValue, at: Int) throws(Fail) -> JinjaValue {
        let (args, keywords) = try arguments()
        switch callee {
        case .method(let m, let base): return method(m, base, args)
        case .global("range"):
            for a in args { if case .int(let n) = a, abs(n) > 100_000 { large(at: at) } }
            if args.count == 2, case .int(let a) = args[0], case .int(let b) = args[1], b >= a, b - a <= 256 {
                return .list((a..<b).map { .int($0) })
            }
            return .unknown
        case .global("dict"):
            for (k, _) in keywords { check(name: k, how: "keyword", at: at) }
            return .unknown
        case .global("lipsum"), .global("cycler"), .global("joiner"):
            return .built
        default:
            return callee.isStringLike || callee == .built ? .built : .unknown
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
        case (.list(let x), .list(let y)): return x.count + y.count <= JinjaValue.maxList ? .list(x + y) : .built
        default: return a.isStringLike || b.isStringLike ? .built : .unknown
        }
    }

    func arithmetic(_ a: JinjaValue, _ b: JinjaValue, _ op: (Int, Int) -> (Int, Bool)) -> JinjaValue {
        guard case .int(let x) = a, case .int(let y) = b else { return .unknown }
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
