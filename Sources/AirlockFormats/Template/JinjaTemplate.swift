/// Static analysis of Jinja2 chat templates (GGUF's `tokenizer.chat_template`, Hugging Face's `chat_template`).
///
/// A loader that renders a template with a plain `jinja2.Environment` (llama-cpp-python before 0.2.72,
/// CVE-2024-34359) runs whatever Python the template reaches: `cycler.__init__.__globals__.os.popen(…)`,
/// `''.__class__.__mro__[1].__subclasses__()`. transformers renders in an `ImmutableSandboxedEnvironment`, which
/// refuses attributes starting with `_`. The analyser reads the template as Jinja does (`JinjaLexer`), parses its
/// expressions, evaluates what it can of the strings a template builds (`~` and `+` of literals, `%` and `|format`
/// with `%c`, `|join`, `|replace`, `|reverse`, slicing, string methods, `set` variables, conditionals), and
/// reports the attribute names it reaches:
///
/// - `template.sandbox-escape`: a name that leads out of Jinja's namespace to Python's (`__subclasses__`,
///   `__globals__`, `__builtins__`, `__import__`, frame globals), written or built;
/// - `template.dunder-access`, `template.private-attribute`: other `__…__` and `_…` names;
/// - `template.dynamic-attribute`: an attribute (`|attr(x)`, `obj[x]`) named by a string the analyser could not
///   evaluate; `template.global-attribute`: attributes of Jinja's globals (`cycler.x`, `self._…`);
/// - `template.code-name`: names of Python's process functions (`popen`, `system`, …);
/// - `template.unusual`: tags a chat template never needs (`include`, `import`, `extends`);
/// - `template.too-large`, `template.too-deep`, `template.budget`, `template.malformed`, `template.unparsed`.
///
/// Bounded: at most `maxBytes` of template, `maxTokens` tokens, expressions nested at most `maxDepth` deep (the
/// parser is recursive descent with that depth checked before every descent), constant strings at most 4 KiB.
public enum JinjaTemplate {
    /// Templates larger than this are reported (real chat templates are a few KiB to tens of KiB).
    public static let largeSize = 256 << 10
    /// Templates larger than this are not analysed past it.
    public static let maxBytes = 4 << 20
    /// Most tokens read.
    public static let maxTokens = 1_000_000
    /// Deepest expression nesting followed.
    public static let maxDepth = 48
    /// Most bytes of computed strings searched for names per template.
    public static let maxSearched = 2 << 20
    /// Most work (bytes of strings computed, operations evaluated) per template; past it the analysis stops with
    /// `template.budget`.
    public static let maxWork = 16 << 20
    /// Most observations kept per template.
    public static let maxObservations = 64
    /// Tokens (and work units / 16, bytes / 64) between two questions to the scan's deadline
    /// (`ScanDeadline.current`); a template the deadline stopped gives no observations (the report is an error).
    static let deadlineStride = 4096
    static let stoppedMessage = "the scan's deadline passed"

    /// Context variables whose values come from the model's own files (GGUF token texts, `tokenizer_config.json`):
    /// an attribute named by one of them is named by the template's author, out of the analyser's sight.
    public static let modelStrings: Set<String> = [
        "bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token",
        "additional_special_tokens",
    ]
    /// Names that lead from a template's objects to Python's module globals, built-ins or every class.
    public static let escapeNames: [String] = [
        "__subclasses__", "__globals__", "__builtins__", "__import__", "__loader__", "__spec__", "f_globals",
        "f_builtins", "f_locals", "f_back", "gi_frame", "tb_frame", "cr_frame", "ag_frame", "func_globals",
        "_TemplateReference__context",
    ]
    /// Names of Python functions that start processes or run code.
    public static let codeNames: Set<String> = [
        "popen", "system", "eval", "exec", "execfile", "spawnl", "spawnv", "spawnlp", "spawnvp", "posix_spawn",
        "check_output", "check_call", "getoutput", "getstatusoutput", "import_module", "compile", "subprocess",
    ]
    /// Jinja's globals (and Flask's and the loaders' additions) that templates reach Python through.
    public static let globals: Set<String> = [
        "range", "lipsum", "dict", "cycler", "joiner", "namespace", "self", "request", "config", "url_for", "g",
        "session", "get_flashed_messages", "raise_exception", "strftime_now",
    ]

    /// Analyses `template`. Offsets in the observations are `base` plus the offset in the template; `details`
    /// (where the template was found: a metadata key, a JSON member) are added to each observation's evidence.
    public static func analyse(_ template: [UInt8], base: Int = 0, details: [(String, String)] = []) -> [Observation] {
        var a = JinjaAnalyser(base: base, details: details)
        if template.count > largeSize {
            a.note(
                "template.too-large", "the template is \(template.count) bytes; chat templates are a few KiB",
                at: 0, ("size", String(template.count)))
        }
        let bytes = template.count > maxBytes ? Array(template.prefix(maxBytes)) : template
        if template.count > maxBytes {
            a.note(
                "template.budget", "only the first \(maxBytes) bytes of the template were analysed", at: maxBytes)
        }
        let deadline = ScanDeadline.current
        if deadline?.stopped() != nil { return [] }
        var lexer = JinjaLexer(bytes, maxTokens: maxTokens)
        do {
            try lexer.run()
        } catch {
            if deadline?.interrupted != nil { return [] }
            a.note(
                "template.malformed", "Jinja would not compile this template: \(error.message)", at: error.offset)
        }
        a.tokens = lexer.tokens
        a.run()
        if deadline?.interrupted != nil { return [] }
        return a.log.finish()
    }
}

/// Parses and evaluates one template's tokens (`JinjaTemplate.analyse`).
struct JinjaAnalyser {
    struct Fail: Error {
        var message: String
        var offset: Int
    }

    var tokens: [JinjaToken] = []
    var p = 0
    let base: Int
    let details: [(String, String)]
    var log = ObservationLog(prefix: "template", cap: JinjaTemplate.maxObservations)
    var seen = Set<String>()
    /// Strings already searched for names, and how many bytes were.
    var checked = Set<String>()
    var searched = 0
    /// Work done so far (`JinjaTemplate.maxWork`), and whether it ran out.
    var work = 0
    var exhausted = false
    var env: [String: JinjaValue] = [:]
    var loops = 0
    var depth = 0
    var tooDeep = false
    /// A `{% set x %}…{% endset %}` being read: its target, text, and whether only text was inside.
    var blockSet: (target: String, text: String, pure: Bool)?
    /// The scan's deadline, asked every `JinjaTemplate.deadlineStride` tokens and 16 times as many units of work.
    var clock = DeadlineStride(every: JinjaTemplate.deadlineStride)
    var workClock = DeadlineStride(every: JinjaTemplate.deadlineStride * 16)

    init(base: Int, details: [(String, String)]) {
        self.base = base
        self.details = details
    }

    mutating func note(
        _ kind: String, _ message: String, at offset: Int, once key: String? = nil, _ extra: (String, String)...
    ) {
        guard seen.insert(kind + "\u{0}" + (key ?? message)).inserted else { return }
        var d = details
        d.append(("templateOffset", String(offset)))
        d += extra
        log.items.count < log.cap
            ? log.items.append(Observation(kind, message, Evidence(offset: base + offset, details: d)))
            : (log.dropped += 1)
    }

    // MARK: names

    /// Judges an attribute name the template reaches (written, or evaluated from what it built). For a plain name
    /// token (`attribute` false: a variable, a keyword argument) only `__…__` names count: `_` and `system` are
    /// ordinary variable names.
    mutating func check(name: String, how: String, at offset: Int, attribute: Bool = true) {
        // Every escape name, dunder and private name has an underscore: most names are passed over at once.
        guard name.utf8.contains(0x5F) || (attribute && JinjaTemplate.codeNames.contains(name)) else { return }
        guard searchable(name.utf8.count) else { return }
        let shown = String(name.prefix(120))
        if let hit = JinjaTemplate.escapeNames.first(where: { JinjaBytes.contains(name, $0) }) {
            note(
                "template.sandbox-escape",
                "the template reaches \(hit) (\(how) \"\(shown)\"): a loader that renders it outside Jinja's sandbox runs arbitrary Python",
                at: offset, once: hit, ("name", shown))
        } else if JinjaBytes.contains(name, "__") {
            note(
                "template.dunder-access",
                "the template reaches a special attribute (\(how) \"\(shown)\"): no chat template needs Python's internals",
                at: offset, once: shown, ("name", shown))
        } else if !attribute {
            return
        } else if name.hasPrefix("_") {
            note(
                "template.private-attribute",
                "the template reaches a private attribute (\(how) \"\(shown)\"), which Jinja's sandbox refuses",
                at: offset, once: shown, ("name", shown))
        } else if JinjaTemplate.codeNames.contains(name) {
            note(
                "template.code-name", "the template names \(shown), a Python function that runs processes or code",
                at: offset, ("name", shown))
        }
    }

    /// Judges a constant string: names hidden in strings reach attributes through filters (`|attr`, `map`,
    /// `selectattr`, `str.format` fields).
    mutating func check(string: String, at offset: Int) {
        // Only strings with an underscore can hold a name worth reporting; each distinct string is searched once,
        // and the bytes searched are bounded (past the bound the template is reported, not searched further).
        guard string.utf8.contains(0x5F), checked.count < 65536, checked.insert(string).inserted else { return }
        guard searchable(string.utf8.count) else { return }
        if JinjaBytes.contains(string, "__")
            || JinjaTemplate.escapeNames.contains(where: { JinjaBytes.contains(string, $0) })
        {
            check(name: string, how: "string", at: offset)
        }
    }

    /// Counts `bytes` about to be searched for names; past `JinjaTemplate.maxSearched` the analysis stops with
    /// `template.budget` (the next `spend` throws).
    mutating func searchable(_ bytes: Int) -> Bool {
        searched += bytes
        guard searched > JinjaTemplate.maxSearched else { return true }
        if !exhausted {
            exhausted = true
            note(
                "template.budget",
                "the template computes more strings than the analyser searches (\(JinjaTemplate.maxSearched) bytes): the rest is not analysed",
                at: offset)
        }
        return false
    }

    mutating func check(value: JinjaValue, how: String, at offset: Int) {
        switch value {
        case .strs(let xs): for x in xs { check(name: x, how: how, at: offset) }
        case .built:
            note(
                "template.dynamic-attribute",
                "an attribute is named by a string the template builds (\(how)); a template that hides a name this way is hiding it from scanners",
                at: offset)
        case .list(let l): for v in l.items { check(value: v, how: how, at: offset) }
        case .dict, .method, .global:
            note(
                "template.dynamic-attribute",
                "an attribute is named by a value the template made that is not a string the analyser evaluates (\(how))",
                at: offset)
        default: break
        }
    }

    /// Counts `units` of work; past `JinjaTemplate.maxWork` the analysis stops with `template.budget`.
    mutating func spend(_ units: Int) throws(Fail) {
        work += units
        if workClock.stop(at: work) {
            exhausted = true  // no note: the report of a stopped scan is an error
            throw Fail(message: JinjaTemplate.stoppedMessage, offset: offset)
        }
        guard work > JinjaTemplate.maxWork || exhausted else { return }
        if !exhausted {
            exhausted = true
            note(
                "template.budget",
                "the template computes more than the analyser evaluates (\(JinjaTemplate.maxWork) units of work): the rest is not analysed",
                at: offset)
        }
        throw Fail(message: "work budget", offset: offset)
    }

    /// Counts the work of searching `value`'s strings for `needle` character by character (`replace`, `split`);
    /// the operation itself still runs, and the next `spend` stops the analysis.
    mutating func spend(quadratic value: JinjaValue, _ needle: String) {
        work += value.byteCount * max(1, needle.utf8.count)
    }

    // MARK: tokens

    var current: JinjaToken? { p < tokens.count ? tokens[p] : nil }
    var offset: Int { current?.offset ?? (tokens.last?.offset ?? 0) }

    func isOp(_ op: String) -> Bool {
        if case .op(let o) = current?.kind { return o == op }
        return false
    }
    func isName(_ n: String) -> Bool {
        if case .name(let x) = current?.kind { return x == n }
        return false
    }
    var atEnd: Bool {
        guard let t = current else { return true }
        return t.kind == .end
    }

    mutating func expect(_ op: String) throws(Fail) {
        guard isOp(op) else { throw Fail(message: "expected \(op)", offset: offset) }
        p += 1
    }

    mutating func name() throws(Fail) -> String {
        guard case .name(let n) = current?.kind else { throw Fail(message: "expected a name", offset: offset) }
        p += 1
        return n
    }

    // MARK: the template

    mutating func run() {
        // Every name and string literal, whether or not the parser understands the tag around it.
        for (k, t) in tokens.enumerated() {
            if clock.stop(at: k) { return }
            switch t.kind {
            case .name(let n): check(name: n, how: "name", at: t.offset, attribute: false)
            case .string(let s, let exact):
                check(string: s, at: t.offset)
                if !exact {
                    note(
                        "template.unevaluated-string",
                        "a string literal uses an escape the analyser does not decode (\\N{…})", at: t.offset)
                }
            case .data(let text):
                if let hit = JinjaTemplate.escapeNames.first(where: { JinjaBytes.contains(text, $0) }) {
                    note(
                        "template.dunder-text",
                        "the template's text holds \(hit), which a macro or block can hand to code",
                        at: t.offset, ("name", hit))
                }
            default: break
            }
        }
        p = 0
        while let t = current {
            if clock.stop(at: p) { return }
            switch t.kind {
            case .data(let text):
                if var b = blockSet {
                    b.text += text
                    blockSet = b
                }
                p += 1
            case .begin(let statement):
                p += 1
                let start = t.offset
                do throws(Fail) {
                    if statement {
                        try statementTag()
                    } else {
                        if blockSet != nil { blockSet!.pure = false }
                        _ = try tuple()
                    }
                    guard atEnd else { throw Fail(message: "unexpected token", offset: offset) }
                } catch {
                    if exhausted { return }
                    if !tooDeep {
                        note(
                            "template.unparsed", "the analyser could not parse this tag: \(error.message)",
                            at: error.offset, ("tagOffset", String(start)))
                    }
                }
                while let u = current, u.kind != .end { p += 1 }
                p += 1
            default:
                p += 1
            }
        }
    }

    mutating func statementTag() throws(Fail) {
        let keyword = try name()
        switch keyword {
        case "set":
            try setTag()
        case "for":
            let targets = try targetNames()
            guard isName("in") else { throw Fail(message: "expected in", offset: offset) }
            p += 1
            let iterable = try orExpr()
            if isName("if") {
                p += 1
                _ = try expression()
            }
            if isName("recursive") { p += 1 }
            loops += 1
            let element: JinjaValue
            switch iterable {
            case .list(let l): element = l.items.reduce(l.items.first ?? .unknown) { JinjaValue.union($0, $1) }
            case .dict(let d):
                element = (d.keys ?? []).map { JinjaValue.str($0) }.reduce(.unknown) {
                    $0 == .unknown ? $1 : JinjaValue.union($0, $1)
                }
            case .global(let g): element = .global(g)
            case .strs(let xs):
                element =
                    xs.allSatisfy { $0.count <= 64 }
                    ? .strs(Array(Set(xs.flatMap { $0.map { String($0) } })).sorted()) : .built
            case .built: element = .built
            default: element = .unknown
            }
            for (k, t) in targets.enumerated() {
                if targets.count == 1 {
                    assign(t, element, replacing: true)
                } else if case .list(let parts) = element, parts.items.count == targets.count {
                    assign(t, parts.items[k], replacing: true)  // `for k, v in d.items()`
                } else {
                    assign(t, element.opaque, replacing: true)
                }
            }
        case "endfor":
            loops = max(0, loops - 1)
        case "if", "elif":
            _ = try expression()
        case "macro":
            // A macro's output (and its caller's) is text the template built.
            let macroName = try name()
            assign(macroName, .built, replacing: true)
            if env["caller"] == nil { assign("caller", .built, replacing: true) }
            try expect("(")
            while !isOp(")") {
                _ = try name()
                if isOp("=") {
                    p += 1
                    handed([try expression()], at: offset)  // a global as a parameter's default
                }
                guard isOp(",") else { break }
                p += 1
            }
            try expect(")")
        case "call":
            if isOp("(") {
                p += 1
                while !isOp(")") {
                    _ = try name()
                    if isOp("=") {
                        p += 1
                        _ = try expression()
                    }
                    guard isOp(",") else { break }
                    p += 1
                }
                try expect(")")
            }
            _ = try expression()
        case "filter":
            var v = JinjaValue.built
            try filterName(&v, at: offset)
        case "with":
            while !atEnd {
                let n = try name()
                try expect("=")
                assign(n, try expression(), replacing: true)
                guard isOp(",") else { break }
                p += 1
            }
        case "do", "autoescape":
            _ = try expression()
        case "endset":
            if let b = blockSet {
                assign(b.target, b.pure ? .str(b.text) : .built, replacing: true)
                if b.pure { check(string: b.text, at: offset) }
            }
            blockSet = nil
        case "include", "import", "from", "extends":
            note(
                "template.unusual",
                "the template uses {% \(keyword) %}: chat templates are rendered from a string, with no other templates to load",
                at: offset, ("tag", keyword))
            while !atEnd { p += 1 }
        case "else", "endif", "endmacro", "endcall", "endfilter", "endwith", "endautoescape", "break", "continue",
            "generation", "endgeneration", "block", "endblock":
            while !atEnd { p += 1 }
        default:
            note(
                "template.unusual", "the template uses {% \(keyword) %}, a tag chat templates do not use", at: offset,
                ("tag", String(keyword.prefix(60))))
            while !atEnd { p += 1 }
        }
    }

    /// `set a = …`, `set a, b = …`, `set ns.x = …`, `set a %}…{% endset`.
    mutating func setTag() throws(Fail) {
        var targets: [String] = []
        repeat {
            if isOp(",") { p += 1 }
            var t = try name()
            while isOp(".") {
                p += 1
                let attr = try name()
                check(name: attr, how: "attribute", at: offset)
                t += "." + attr
            }
            targets.append(t)
        } while isOp(",")
        guard isOp("=") else {
            // A block set; a filter on it is applied to the text.
            if isOp("|") {
                var v = JinjaValue.built
                while isOp("|") {
                    p += 1
                    try filterName(&v, at: offset)
                }
                blockSet = (targets[0], "", false)
            } else {
                blockSet = (targets[0], "", true)
            }
            return
        }
        p += 1
        let value = try tuple()
        if targets.count == 1 {
            assign(targets[0], value, replacing: true)
        } else if case .list(let l) = value, l.items.count == targets.count {
            for (t, v) in zip(targets, l.items) { assign(t, v, replacing: true) }
        } else {
            for t in targets { assign(t, value.opaque, replacing: true) }
        }
    }

    /// Loop targets (`a`, `a, b`, `(a, b)`).
    mutating func targetNames() throws(Fail) -> [String] {
        var out: [String] = []
        let parens = isOp("(")
        if parens { p += 1 }
        repeat {
            if isOp(",") { p += 1 }
            out.append(try name())
        } while isOp(",")
        if parens { try expect(")") }
        return out
    }

    /// Records an assignment. Variables keep every value they may hold (a `set` inside an `if` does not erase the
    /// one before it); inside a loop, strings are `built`: a loop can accumulate any string from its pieces.
    mutating func assign(_ target: String, _ value: JinjaValue, replacing: Bool) {
        var v = value
        if loops > 0, v.isStringLike { v = v.opaque }
        // `set ns.a = …` adds a value to what `namespace(a=…)` gave it.
        if env[target] == nil, let dot = target.firstIndex(of: "."), case .dict(let d) = env[String(target[..<dot])],
            let m = d.member(String(target[target.index(after: dot)...]))
        {
            v = JinjaValue.union(m, v)
        }
        if let old = env[target] { v = JinjaValue.union(old, v) }
        if env.count < 4096 || env[target] != nil { env[target] = v }
    }
}
