public import AirlockAnalysis
internal import AirlockFormats
internal import AirlockSandbox

/// What Jinja's sandbox said of a GGUF model's chat templates (`template-sandbox` lines of the `gguf` loader,
/// `Profiles/harness/airlock_templates.py`): transformers renders chat templates in an
/// `ImmutableSandboxedEnvironment`, llama-cpp-python (before 0.2.72) did not. The harness renders each template
/// sandboxed first and prints the answer before anything unsandboxed runs, so the lines at the head of its output
/// are its own; they are detail, and the verdict still comes from the trace and the static findings.
enum TemplateSandbox {
    /// Most templates reported.
    static let maxLines = 64

    /// Info findings `probe.template-sandbox`, one per template, for a detonation of the `gguf` loader.
    static func findings(_ detonation: Detonation) -> [Finding] {
        guard detonation.arguments.contains(HarnessFormat.gguf.rawValue), !detonation.linePrefix.isEmpty else {
            return []
        }
        let prefix = detonation.linePrefix
        let head = prefix + HarnessProtocol.Line.templateSandbox.rawValue + " "
        let lines = String(decoding: detonation.result.stderr.prefix(65536), as: UTF8.self).split(separator: "\n")
            .prefix { $0.hasPrefix(head) || !$0.hasPrefix(prefix + "template") }
            .filter { $0.hasPrefix(head) }.prefix(maxLines)
        return lines.map { line in
            let detail = String(line.dropFirst(head.count).prefix(300))
            let words = detail.split(separator: " ", maxSplits: 2).map(String.init)
            let answer = words.first ?? "", key = words.count > 1 ? words[1] : ""
            let message: String
            switch answer {
            case "refused":
                message =
                    "Jinja's sandbox (transformers' ImmutableSandboxedEnvironment) refused \(key): \(words.count > 2 ? words[2] : "SecurityError"); an unsandboxed renderer runs it"
            case "accepted": message = "Jinja's sandbox (transformers' ImmutableSandboxedEnvironment) rendered \(key)"
            default: message = "in Jinja's sandbox, \(key) raised \(words.count > 2 ? words[2] : "an exception")"
            }
            return Finding(
                rule: "probe.template-sandbox", severity: .info, message: message,
                evidence: Evidence(details: [("template", key), ("sandbox", answer)]))
        }
    }
}
