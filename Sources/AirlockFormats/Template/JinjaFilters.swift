/// Filters, tests and string methods, folded on constants as Jinja and Python compute them.
extension JinjaAnalyser {
    mutating func filters(_ start: JinjaValue) throws(Fail) -> JinjaValue {
        var v = start
        while true {
            let at = offset
            if isOp("|") {
                p += 1
                try filterName(&v, at: at)
                try spend(v.byteCount + 1)
            } else if isName("is") {
                p += 1
                if isName("not") { p += 1 }
                _ = try name()
                while isOp(".") {
                    p += 1
                    _ = try name()
                }
                if isOp("(") {
                    _ = try arguments()
                } else if let t = current, !isName("else"), !isName("or"), !isName("and"), !isName("if"),
                    !isName("in"), !isName("is"), !isName("not")
                {
                    switch t.kind {
                    case .name, .string, .number, .op("("), .op("["), .op("{"):
                        _ = try postfix(try primary())
                    default: break
                    }
                }
                v = .unknown
            } else if isOp("(") {
                v = try call(v, at: at)
            } else {
                return v
            }
        }
    }

    /// One filter after `|`: its (dotted) name and arguments, applied to `v`.
    mutating func filterName(_ v: inout JinjaValue, at: Int) throws(Fail) {
        var filter = try name()
        while isOp(".") {
            p += 1
            filter += "." + (try name())
        }
        var args: [JinjaValue] = []
        var keywords: [(String, JinjaValue)] = []
        if isOp("(") { (args, keywords) = try arguments() }
        v = apply(filter, v, args, keywords, at: at)
    }

    func arg(_ args: [JinjaValue], _ k: Int, _ keywords: [(String, JinjaValue)], _ key: String) -> JinjaValue? {
        if let kw = keywords.first(where: { $0.0 == key }) { return kw.1 }
        return k < args.count ? args[k] : nil
    }

    mutating func apply(
        _ filter: String, _ v: JinjaValue, _ args: [JinjaValue], _ keywords: [(String, JinjaValue)], at: Int
    ) -> JinjaValue {
        // What a filter the analyser does not fold leaves: the global a value holds, a built string from whatever
        // the template made (objects shown as text included), or caller data.
        let stringy: JinjaValue = v.global.map { .global($0) } ?? (v.isStringLike || v.isGlobal ? .built : .unknown)
        handed(args + keywords.map(\.1), at: at)
        // Filters that read attributes of their items, on a value holding a global: the global's attributes.
        if let g = v.global, filter != "attr",
            ["map", "selectattr", "rejectattr", "groupby", "sort", "unique", "dictsort", "sum", "min", "max"]
                .contains(filter), !args.isEmpty || !keywords.isEmpty
        {
            note(
                "template.global-attribute",
                "the template reads attributes of the global \(g) through |\(filter): the way out of Jinja's namespace",
                at: at, ("jinjaGlobal", g))
        }
        // Filters that look attributes up by name.
        if let a = keywords.first(where: { $0.0 == "attribute" }) { check(value: a.1, how: "attribute=", at: at) }
        switch filter {
        case "attr":
            let name = arg(args, 0, keywords, "name") ?? .unknown
            if case .strs = name {
                check(value: name, how: "|attr", at: at)
            } else {
                note(
                    "template.dynamic-attribute",
                    "|attr is given a name the analyser cannot evaluate: an attribute the template hides from readers",
                    at: at)
            }
            if let g = v.global {
                note(
                    "template.global-attribute",
                    "the template reads an attribute of the global \(g): the way out of Jinja's namespace", at: at,
                    ("jinjaGlobal", g))
            }
            if case .strs(let n) = name, n.count == 1, case .dict(let d) = v, let m = d.member(n[0]) { return m }
            return stringy
        case "map":
            if case .strs(let f) = args.first ?? .unknown, f.contains("attr") {
                check(value: args.count > 1 ? args[1] : .built, how: "map(\"attr\")", at: at)
            }
            if case .strs = args.first ?? .unknown {
            } else if !args.isEmpty {
                check(value: args[0].isBuilt ? .built : .unknown, how: "map", at: at)
            }
            return stringy
        case "selectattr", "rejectattr", "groupby", "sort", "unique", "sum", "min", "max", "dictsort":
            if let a = args.first, filter.hasSuffix("attr") || filter == "groupby" {
                check(value: a, how: "|\(filter)", at: at)
            }
            return stringy
        case "format":
            guard case .strs(let f) = v, f.count == 1 else { return .built }
            return JinjaValue.percent(f[0], args).map { .str($0) } ?? .built
        case "join":
            let sep = arg(args, 0, keywords, "d")?.strings ?? [""]
            guard sep.count == 1 else { return .built }
            switch v {
            case .list(let l):
                var parts: [String] = []
                var size = 0
                for item in l.items {
                    guard let s = item.strings, s.count == 1 else { return .built }
                    size += s[0].utf8.count + sep[0].utf8.count
                    guard size <= JinjaValue.maxLength else { return .built }
                    parts.append(s[0])
                }
                let joined = parts.joined(separator: sep[0])
                return joined.utf8.count <= JinjaValue.maxLength ? .str(joined) : .built
            case .strs:
                return JinjaValue.map(v) { s in
                    s.count * (sep[0].utf8.count + 4) <= JinjaValue.maxLength
                        ? s.map(String.init).joined(separator: sep[0]) : nil
                }
            default: return stringy == .unknown ? .built : stringy
            }
        case "replace":
            guard let old = args.first?.strings, old.count == 1, let new = args.dropFirst().first?.strings,
                new.count == 1
            else { return stringy }
            if let count = args.dropFirst(2).first, count != .int(-1) { return stringy }
            spend(quadratic: v, old[0])
            return JinjaValue.map(v) { $0.replacingAll(old[0], with: new[0]) }
        case "reverse":
            if case .list(let l) = v { return .nested(l.items.reversed()) }
            return JinjaValue.map(v) { String($0.reversed()) }
        case "lower": return JinjaValue.map(v) { $0.lowercased() }
        case "upper": return JinjaValue.map(v) { $0.uppercased() }
        case "trim": return JinjaValue.map(v) { $0.trimmingSpaces() }
        case "string", "e", "escape", "safe", "forceescape":
            if case .int(let n) = v { return .str(String(n)) }
            if case .strs = v { return v }
            return .built  // an object shown as text: its repr holds any character the template wants
        case "capitalize": return JinjaValue.map(v) { $0.prefix(1).uppercased() + $0.dropFirst().lowercased() }
        case "list":
            switch v {
            case .strs(let s) where s.count == 1 && s[0].count <= JinjaValue.maxList:
                return .nested(s[0].map { .str(String($0)) })
            case .list: return v
            case .dict(let d): return .nested((d.keys ?? []).map { .str($0) })
            default: return stringy
            }
        case "items":
            guard case .dict(let d) = v else { return stringy }
            let pairs = zip(d.keys ?? [], d.items).map { JinjaValue.nested([.str($0), $1]) }
            return .nested(pairs)
        case "first", "last":
            if case .list(let l) = v, let x = filter == "first" ? l.items.first : l.items.last { return x }
            if case .dict(let d) = v, let k = filter == "first" ? d.keys?.first : d.keys?.last { return .str(k) }
            return JinjaValue.map(v) { s in (filter == "first" ? s.first : s.last).map(String.init) }
        case "int":
            if case .strs(let s) = v, s.count == 1, let n = Int(s[0].trimmingSpaces()) { return .int(n) }
            return v == .unknown ? .unknown : (v.isInt ? v : .unknown)
        case "default", "d":
            return JinjaValue.union(v, args.first ?? .unknown)
        case "length", "count", "wordcount", "abs", "round", "float", "filesizeformat":
            return .unknown  // numbers (or their text): never a name
        case "tojson", "urlize", "pprint", "xmlattr", "indent", "center", "truncate", "wordwrap", "striptags",
            "title", "urlencode":
            return v == .unknown ? .unknown : .built  // text of what the template made
        case "batch", "slice", "random", "select", "reject":
            return v.opaque
        default:
            return stringy
        }
    }

    /// A method of a constant string or list, called with `args`.
    mutating func method(_ m: String, _ base: JinjaValue, _ args: [JinjaValue]) -> JinjaValue {
        switch m {
        case "join":
            guard case .list = args.first ?? .unknown else {
                return (args.first ?? .unknown).opaque == .unknown
                    ? .built : (args.first ?? .unknown).opaque
            }
            return apply("join", args[0], [base], [], at: offset)
        case "replace", "upper", "lower", "reverse":
            return apply(m, base, args, [], at: offset)
        case "strip": return args.isEmpty ? JinjaValue.map(base) { $0.trimmingSpaces() } : .built
        case "format":
            guard case .strs(let f) = base, f.count == 1 else { return .built }
            return JinjaValue.braceFormat(f[0], args).map { .str($0) } ?? .built
        case "split":
            guard case .strs(let s) = base, s.count == 1, let sep = args.first?.strings, sep.count == 1,
                !sep[0].isEmpty
            else { return .built }
            spend(quadratic: base, sep[0])
            let parts = s[0].components(separatedByString: sep[0])
            return parts.count <= JinjaValue.maxList ? .nested(parts.map { .str($0) }) : .built
        case "items", "values", "keys":
            guard case .dict(let d) = base else { return base.opaque }
            let keys = (d.keys ?? []).map { JinjaValue.str($0) }
            switch m {
            case "items": return .nested(zip(keys, d.items).map { JinjaValue.nested([$0, $1]) })
            case "values": return .nested(d.items)
            default: return .nested(keys)
            }
        case "get":
            guard case .dict(let d) = base else { return base.opaque }
            if case .strs(let k) = args.first ?? .unknown, k.count == 1, let v = d.member(k[0]) { return v }
            return JinjaValue.union(base.opaque, args.dropFirst().first ?? .unknown)
        default:
            return base.opaque
        }
    }
}

extension JinjaValue {
    var isGlobal: Bool {
        if case .global = self { return true }
        return false
    }
    var isInt: Bool {
        if case .int = self { return true }
        return false
    }
}

extension String {
    /// Every occurrence of `old` replaced by `new` (Python's `str.replace`; an empty `old` inserts `new` between
    /// characters).
    func replacingAll(_ old: String, with new: String) -> String? {
        // The largest result first, so that no input makes a large string only to throw it away.
        let pieces = old.isEmpty ? count + 1 : utf8.count / max(1, old.utf8.count) + 1
        guard utf8.count + pieces * new.utf8.count <= JinjaValue.maxLength else { return nil }
        if old.isEmpty {
            return new + map { String($0) + new }.joined()
        }
        return components(separatedByString: old).joined(separator: new)
    }

    func components(separatedByString sep: String) -> [String] {
        var out: [String] = []
        var rest = Substring(self)
        while let r = rest.range(of: sep) {
            out.append(String(rest[..<r.lowerBound]))
            rest = rest[r.upperBound...]
            if out.count > JinjaValue.maxLength { break }
        }
        out.append(String(rest))
        return out
    }

    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}

extension Substring {
    /// The first range of `sep`, by characters.
    func range(of sep: String) -> Range<Substring.Index>? {
        guard !sep.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(sep) { return i..<index(i, offsetBy: sep.count) }
            i = index(after: i)
        }
        return nil
    }
}
