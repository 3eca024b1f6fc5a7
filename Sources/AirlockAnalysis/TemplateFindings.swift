public import AirlockFormats
internal import AirlockJSON

/// Chat templates wherever loaders find them: GGUF's `tokenizer.chat_template` metadata, the `chat_template` of a
/// Hugging Face `tokenizer_config.json` (a string, or a list of `{"name", "template"}`) or `chat_template.json`,
/// and `chat_template.jinja` files. Each is analysed by `JinjaTemplate`; its observations (`template.*`) are
/// weighed by `ObservationRules`.
enum TemplateFindings {
    /// Files larger than this are not parsed as JSON for a template (tokenizer configurations are small; a
    /// `tokenizer.json` vocabulary is large and holds none).
    static let maxJSONBytes = 64 << 20

    /// Most template bytes analysed in one file, all templates together (each is also cut at
    /// `JinjaTemplate.maxBytes`): real files hold a few templates of a few KiB.
    static let maxTotalTemplateBytes = 8 << 20

    /// The templates of a GGUF file; offsets are the file's. The scan's deadline (`ScanDeadline.current`) is asked
    /// before each template (and by the analyser as it reads one); past `maxTotalTemplateBytes` the templates left
    /// are reported (`template.budget`, medium), not analysed.
    static func gguf(_ view: ByteView, _ report: GGUFReport) -> [Finding] {
        var out: [Finding] = []
        let deadline = ScanDeadline.current
        var analysed = 0
        for (i, t) in report.chatTemplates.enumerated() {
            if deadline?.stopped() != nil { break }  // the report becomes an error (`ScanDeadline`)
            let length = min(t.length, JinjaTemplate.maxBytes + 1)
            guard analysed < maxTotalTemplateBytes else {
                let left = report.chatTemplates[i...]
                out.append(
                    Finding(
                        rule: "template.budget", severity: .medium,
                        message:
                            "the file holds more chat template text than the analyser reads (\(maxTotalTemplateBytes) bytes in all): \(left.count) template(s) from \(t.key) on were not analysed",
                        evidence: Evidence(
                            offset: t.offset,
                            details: [("key", t.key), ("notAnalysed", String(left.count))])))
                break
            }
            analysed += length
            guard let bytes = view.bytes(t.offset, length) else { continue }
            out += JinjaTemplate.analyse(bytes, base: t.offset, details: [("key", t.key)]).map(ObservationRules.finding)
        }
        return out
    }

    /// Whether the file is named like a Jinja template file (`chat_template.jinja`, `*.jinja`, `*.j2`).
    static func isTemplateFile(_ name: String) -> Bool {
        let base = (name.split(separator: "/").last.map(String.init) ?? name).lowercased()
        return base.hasSuffix(".jinja") || base.hasSuffix(".jinja2") || base.hasSuffix(".j2")
    }

    /// A whole file that is a template.
    static func file(_ view: ByteView) -> [Finding] {
        let bytes = view.bytes(0, min(view.count, JinjaTemplate.maxBytes + 1)) ?? []
        return TextPosition.located(JinjaTemplate.analyse(bytes).map(ObservationRules.finding), in: bytes)
    }

    /// The files transformers reads a `chat_template` member from.
    static let configNames: Set<String> = ["tokenizer_config.json", "chat_template.json", "processor_config.json"]

    /// The `chat_template` of a JSON object, when the file has one; offsets are within the template, whose JSON
    /// member the evidence names. The files transformers reads templates from are always parsed (a key spelled with
    /// `\u` escapes is still `chat_template` to Python's json); other JSON files only when the key appears as is.
    static func json(_ view: ByteView, name: String) -> [Finding] {
        let base = name.split(separator: "/").last.map(String.init) ?? name
        guard view.count <= maxJSONBytes,
            configNames.contains(base) || KerasFindings.contains(view, Array("chat_template".utf8))
        else { return [] }
        let tree: JSON
        let bytes = view.array
        let deadline = ScanDeadline.current
        do {
            // transformers reads these with Python's json: NaN, duplicate keys (the last wins) are accepted. The
            // scan's deadline is asked every few thousand values: the report of a parse it stopped is an error.
            tree = try JSON.parse(bytes, maxDepth: 64, dialect: .python, stop: deadline.map { d in { d.expired } })
        } catch {
            if deadline?.interrupted != nil { return [] }
            guard KerasFindings.contains(view, Array("template".utf8)) || KerasFindings.contains(view, [0x5C, 0x75])
            else { return [] }
            return [
                Finding(
                    rule: "template.malformed", severity: .medium,
                    message:
                        "the file may hold a chat template but is not JSON that Python's json reads (\(error.description)), so no template in it is analysed",
                    evidence: Evidence(member: "chat_template"))
            ]
        }
        guard case .object(let members) = tree else { return [] }
        var out: [Finding] = []
        for (key, value) in members where key == "chat_template" {
            switch value {
            case .string(let s):
                out += analyse(s, member: "chat_template")
            case .array(let items):
                var analysed = 0
                for (i, item) in items.prefix(GGUFParser.maxTemplates).enumerated() {
                    guard case .object(let fields) = item else { continue }
                    // As in a GGUF file: at most `maxTotalTemplateBytes` of template text in all.
                    guard analysed < maxTotalTemplateBytes else {
                        out.append(
                            Finding(
                                rule: "template.budget", severity: .medium,
                                message:
                                    "the file holds more chat template text than the analyser reads (\(maxTotalTemplateBytes) bytes in all): the templates from chat_template[\(i)] on were not analysed",
                                evidence: Evidence(member: "chat_template", details: [("from", String(i))])))
                        break
                    }
                    for (k, v) in fields where k == "template" {
                        if case .string(let t) = v { analysed += min(t.utf8.count, JinjaTemplate.maxBytes + 1) }
                    }
                    let name = fields.first { $0.0 == "name" }.flatMap {
                        if case .string(let n) = $0.1 { n } else { nil }
                    }
                    for (k, v) in fields where k == "template" {
                        if case .string(let s) = v {
                            out += analyse(s, member: "chat_template[\(name.map { "\"\($0)\"" } ?? String(i))]")
                        }
                    }
                }
            default:
                out.append(
                    Finding(
                        rule: "template.malformed", severity: .medium,
                        message: "chat_template is neither a string nor a list of named templates",
                        evidence: Evidence(member: "chat_template")))
            }
        }
        return TextPosition.atMember(out, key: "chat_template", in: bytes)
    }

    static func analyse(_ template: String, member: String) -> [Finding] {
        JinjaTemplate.analyse(Array(template.utf8.prefix(JinjaTemplate.maxBytes + 1))).map { o in
            var f = ObservationRules.finding(o)
            f.evidence.member = member
            f.evidence.offset = nil
            return f
        }
    }
}
